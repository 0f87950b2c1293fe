//! The ABI records of the services a room uses off its guest calls: presence operations and
//! their answers, and room listings.

use serde::{Deserialize, Serialize};

/// A presence key or topic. Names are scoped to the plugin's room type unless `global`, so rooms
/// of different types cannot read each other's keys by accident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// The name as the room uses it.
    pub name: String,
    /// Shared by every room type.
    pub global: bool,
}

/// A presence operation (Colyseus's `Presence` API). Its answer arrives later as
/// [`Event::PresenceResult`]; nothing blocks the room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PresenceOp {
    /// Set a string, optionally expiring. Answers `Nil`.
    Set { key: Key, value: String, ttl_ms: Option<u64> },
    /// Read a string. Answers `Str` or `Nil`.
    Get { key: Key },
    /// Delete a key. Answers `Nil`.
    Del { key: Key },
    /// Whether a key exists. Answers `Bool`.
    Exists { key: Key },
    /// Set a time to live. Answers `Bool` (false: no such key).
    Expire { key: Key, ttl_ms: u64 },
    /// Add to a counter. Answers `Int`.
    Incr { key: Key, by: i64 },
    /// Add a set member. Answers `Bool` (true: new).
    SAdd { key: Key, member: String },
    /// Remove a set member. Answers `Bool`.
    SRem { key: Key, member: String },
    /// Set members. Answers `List`.
    SMembers { key: Key },
    /// Set membership. Answers `Bool`.
    SIsMember { key: Key, member: String },
    /// Set size. Answers `Int`.
    SCard { key: Key },
    /// Set intersection. Answers `List`.
    SInter { keys: Vec<Key> },
    /// Set a hash field. Answers `Bool` (true: new).
    HSet { key: Key, field: String, value: String },
    /// Add to a hash field. Answers `Int`.
    HIncrBy { key: Key, field: String, by: i64 },
    /// Read a hash field. Answers `Str` or `Nil`.
    HGet { key: Key, field: String },
    /// Remove a hash field. Answers `Bool`.
    HDel { key: Key, field: String },
    /// Hash size. Answers `Int`.
    HLen { key: Key },
    /// Every hash field. Answers `Map`.
    HGetAll { key: Key },
    /// Push on the right of a list. Answers `Int` (the new length).
    RPush { key: Key, value: String },
    /// Push on the left of a list. Answers `Int`.
    LPush { key: Key, value: String },
    /// Pop from the right. Answers `Str` or `Nil`.
    RPop { key: Key },
    /// Pop from the left. Answers `Str` or `Nil`.
    LPop { key: Key },
    /// List length. Answers `Int`.
    LLen { key: Key },
    /// Publish on a topic. Answers `Int` (receivers).
    Publish { topic: Key, message: String },
    /// Receive the topic's messages as [`Event::PresenceMessage`] until unsubscribed or disposed.
    /// Answers `Nil`.
    Subscribe { topic: Key },
    /// Stop receiving a topic. Answers `Nil`.
    Unsubscribe { topic: Key },
}

/// A presence answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PresenceValue {
    /// Nothing (a missing key, or an operation without a value).
    Nil,
    /// A yes/no answer.
    Bool(bool),
    /// A number.
    Int(i64),
    /// A string.
    Str(String),
    /// Strings (set members).
    List(Vec<String>),
    /// Field/value pairs (a hash).
    Map(Vec<(String, String)>),
}

/// A room listing as rooms see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    /// Room id.
    pub room_id: String,
    /// Room type name.
    pub name: String,
    /// The host process running it.
    pub process_id: String,
    /// Joined clients plus held seats.
    pub clients: u32,
    /// Seat limit, if any.
    pub max_clients: Option<u32>,
    /// Locked or full.
    pub locked: bool,
    /// Private.
    pub private: bool,
    /// Metadata, a MessagePack map.
    #[serde(with = "serde_bytes")]
    pub metadata: Vec<u8>,
}
