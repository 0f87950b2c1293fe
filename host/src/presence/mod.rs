//! Presence: shared keys, hashes, sets, counters, lists and pub/sub between rooms and hosts
//! (Colyseus's `Presence` API).
//!
//! - [`LocalPresence`]: the embedded default, in this process's memory.
//! - [`RedisPresence`]: Redis, shared by every host process of a deployment; the same commands
//!   Colyseus's `RedisPresence` sends, so keys and topics mean the same thing to both.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;

mod local;
mod redis;

pub use self::local::LocalPresence;
pub use self::redis::RedisPresence;

/// Presence failures.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// The backing store could not be reached in time or refused the operation.
    #[error("presence unavailable: {0}")]
    Unavailable(String),
    /// The key holds another kind of value, or an integer operation met a value that is not one.
    #[error("wrong kind of value at key {0:?}")]
    WrongType(String),
    /// An integer operation would leave the 64-bit signed range.
    #[error("integer overflow at key {0:?}")]
    Overflow(String),
    /// A global name inside the space reserved for room types' own keys.
    #[error("global name {0:?} is reserved: names starting with \"plugin:\" belong to room types")]
    Reserved(String),
    /// The presence was configured wrongly (a malformed Redis URL, say).
    #[error("presence misconfigured: {0}")]
    Config(String),
}

type Result<T> = std::result::Result<T, PresenceError>;

/// A subscription: messages published to the topic arrive here until it is dropped.
pub type Subscription = mpsc::UnboundedReceiver<String>;

/// Shared state between rooms and host processes.
///
/// Keys expire lazily or actively as the store likes, but an expired key is never seen again.
/// Operations on a key holding another kind of value fail with [`PresenceError::WrongType`];
/// a shared store that cannot answer within its timeout fails with
/// [`PresenceError::Unavailable`], never hangs. A write that failed so may still have happened
/// (the store may have run it and then failed to answer in time).
#[async_trait::async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Sets a string value (and clears any time to live).
    async fn set(&self, key: &str, value: &str) -> Result<()>;
    /// Sets a string value that expires.
    async fn setex(&self, key: &str, value: &str, ttl: Duration) -> Result<()>;
    /// Reads a string value.
    async fn get(&self, key: &str) -> Result<Option<String>>;
    /// Reads several string values in one step; `None` for a missing key or one of another kind
    /// (as Redis's MGET).
    async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<String>>>;
    /// Sets a string value that expires, only if the key does not exist; true if it was set
    /// (`SET key value NX PX`). With [`Presence::del_if_equal`] this is a lock owned by whoever
    /// holds `value`: contenders never extend it, so a dead holder's lock expires on time.
    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> Result<bool>;
    /// Deletes a string key only while it holds `value`; true if it did (one atomic step).
    async fn del_if_equal(&self, key: &str, value: &str) -> Result<bool>;
    /// Sets a string key's time to live only while it holds `value`; true if it did (one atomic
    /// step): how the owner of a [`Presence::set_nx`] lock renews it.
    async fn expire_if_equal(&self, key: &str, value: &str, ttl: Duration) -> Result<bool>;
    /// Deletes a key of any kind.
    async fn del(&self, key: &str) -> Result<()>;
    /// Whether a key exists.
    async fn exists(&self, key: &str) -> Result<bool>;
    /// Sets a key's time to live; false if there is no such key.
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool>;
    /// Adds to a set; true if it was new.
    async fn sadd(&self, key: &str, member: &str) -> Result<bool>;
    /// Members of a set, in no particular order.
    async fn smembers(&self, key: &str) -> Result<Vec<String>>;
    /// Whether a set holds a member.
    async fn sismember(&self, key: &str, member: &str) -> Result<bool>;
    /// Removes from a set; true if it was there.
    async fn srem(&self, key: &str, member: &str) -> Result<bool>;
    /// Size of a set.
    async fn scard(&self, key: &str) -> Result<usize>;
    /// Intersection of sets, in no particular order; a missing key is an empty set.
    async fn sinter(&self, keys: &[&str]) -> Result<Vec<String>>;
    /// Sets a hash field; true if it was new.
    async fn hset(&self, key: &str, field: &str, value: &str) -> Result<bool>;
    /// Adds to an integer hash field.
    async fn hincrby(&self, key: &str, field: &str, by: i64) -> Result<i64>;
    /// Adds to an integer hash field and, in the same atomic step, sets the whole hash's time to
    /// live (Colyseus's `hincrbyex`, MULTI HINCRBY + EXPIRE).
    ///
    /// This is the creation lock of joinOrCreate across processes: the caller that gets 1 creates
    /// the room, the others wait for it; the lock disappears by itself if its holder dies.
    /// On a key of another kind it fails with [`PresenceError::WrongType`], though Redis still
    /// sets that key's time to live (MULTI does not roll back).
    async fn hincrbyex(&self, key: &str, field: &str, by: i64, ttl: Duration) -> Result<i64>;
    /// Reads a hash field.
    async fn hget(&self, key: &str, field: &str) -> Result<Option<String>>;
    /// Removes a hash field; true if it was there.
    async fn hdel(&self, key: &str, field: &str) -> Result<bool>;
    /// Number of fields in a hash.
    async fn hlen(&self, key: &str) -> Result<usize>;
    /// Every field of a hash.
    async fn hgetall(&self, key: &str) -> Result<HashMap<String, String>>;
    /// Adds to an integer value.
    async fn incrby(&self, key: &str, by: i64) -> Result<i64>;
    /// Pushes on the right of a list; returns its length.
    async fn rpush(&self, key: &str, value: &str) -> Result<usize>;
    /// Pushes on the left of a list; returns its length.
    async fn lpush(&self, key: &str, value: &str) -> Result<usize>;
    /// Pops from the right of a list.
    async fn rpop(&self, key: &str) -> Result<Option<String>>;
    /// Pops from the left of a list.
    async fn lpop(&self, key: &str) -> Result<Option<String>>;
    /// Length of a list.
    async fn llen(&self, key: &str) -> Result<usize>;
    /// Publishes to a topic; returns how many subscribers got it: receivers for the embedded
    /// presence, subscribed connections (one per host process) for a shared store. Zero means
    /// nobody listens.
    async fn publish(&self, topic: &str, message: &str) -> Result<usize>;
    /// Subscribes to a topic; drop the receiver to unsubscribe. Messages published after this
    /// returns are delivered.
    async fn subscribe(&self, topic: &str) -> Result<Subscription>;
    /// Topics with subscribers that match a glob pattern (`*` only), sorted.
    async fn channels(&self, pattern: &str) -> Result<Vec<String>>;
}
