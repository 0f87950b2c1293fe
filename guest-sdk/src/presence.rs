//! Presence (shared keys, hashes, sets, counters, lists and pub/sub) and room queries.
//!
//! Nothing here blocks: every operation is queued as an effect and returns an [`OpId`] at once;
//! the host runs it after the hook returns and the answer arrives in a later call, as
//! [`Room::on_presence`](crate::Room::on_presence) or [`Room::on_rooms`](crate::Room::on_rooms)
//! with the same id. Messages on subscribed topics arrive as
//! [`Room::on_presence_message`](crate::Room::on_presence_message).
//!
//! Keys and topics are scoped to the room type unless global: a `&str` (or [`Key::local`]) names
//! a key only rooms of this type see, [`Key::global`] one every room type shares.

use std::fmt::{self, Display};

use odeon_protocol::abi::{Effect, Key, PresenceOp, PresenceValue};

use crate::Ctx;

/// Identifies a presence operation or a room query, echoed in its answer.
///
/// Ids are unique per room for its whole life, so a room can keep them in a map to remember
/// what each answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(u64);

impl OpId {
    pub(crate) fn new(id: u64) -> Self {
        Self(id)
    }

    /// The id as the host sees it.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op {}", self.0)
    }
}

/// Building [`Key`]s; in the [`prelude`](crate::prelude): `Key::global("visits")`.
pub trait KeyExt {
    /// A key or topic shared by every room type.
    fn global(name: impl Into<String>) -> Key;

    /// A key or topic scoped to this room type, the same as passing the name as a `&str`.
    fn local(name: impl Into<String>) -> Key;
}

impl KeyExt for Key {
    fn global(name: impl Into<String>) -> Key {
        Key { name: name.into(), global: true }
    }

    fn local(name: impl Into<String>) -> Key {
        Key { name: name.into(), global: false }
    }
}

/// Anything usable as a presence key or topic: a name scoped to the room type (`"notes"`,
/// `String`) or an explicit [`Key`].
///
/// This stands in for `From` conversions, which Rust's orphan rules forbid on the ABI's [`Key`].
pub trait IntoKey {
    /// Converts into the ABI's [`Key`].
    fn into_key(self) -> Key;
}

impl IntoKey for Key {
    fn into_key(self) -> Key {
        self
    }
}

impl IntoKey for &Key {
    fn into_key(self) -> Key {
        self.clone()
    }
}

impl IntoKey for &str {
    fn into_key(self) -> Key {
        Key::local(self)
    }
}

impl IntoKey for String {
    fn into_key(self) -> Key {
        Key::local(self)
    }
}

impl IntoKey for &String {
    fn into_key(self) -> Key {
        Key::local(self.as_str())
    }
}

/// Reading a [`PresenceValue`]; in the [`prelude`](crate::prelude).
///
/// Each accessor answers `None` for another kind of value; a missing key is
/// [`PresenceValue::Nil`], so `value.into_string()` is `None` for it.
pub trait PresenceValueExt {
    /// Whether this is `Nil` (a missing key, or an operation without a value).
    fn is_nil(&self) -> bool;
    /// A `Bool` answer.
    fn as_bool(&self) -> Option<bool>;
    /// An `Int` answer (counters, sizes, lengths).
    fn as_int(&self) -> Option<i64>;
    /// A `Str` answer.
    fn as_str(&self) -> Option<&str>;
    /// A `List` answer (set members).
    fn as_list(&self) -> Option<&[String]>;
    /// A `Map` answer (hash fields).
    fn as_map(&self) -> Option<&[(String, String)]>;
    /// A `Str` answer, owned.
    fn into_string(self) -> Option<String>;
    /// A `List` answer, owned.
    fn into_list(self) -> Option<Vec<String>>;
    /// A `Map` answer, owned.
    fn into_map(self) -> Option<Vec<(String, String)>>;
}

impl PresenceValueExt for PresenceValue {
    fn is_nil(&self) -> bool {
        matches!(self, PresenceValue::Nil)
    }

    fn as_bool(&self) -> Option<bool> {
        if let PresenceValue::Bool(b) = self { Some(*b) } else { None }
    }

    fn as_int(&self) -> Option<i64> {
        if let PresenceValue::Int(n) = self { Some(*n) } else { None }
    }

    fn as_str(&self) -> Option<&str> {
        if let PresenceValue::Str(s) = self { Some(s) } else { None }
    }

    fn as_list(&self) -> Option<&[String]> {
        if let PresenceValue::List(list) = self { Some(list) } else { None }
    }

    fn as_map(&self) -> Option<&[(String, String)]> {
        if let PresenceValue::Map(map) = self { Some(map) } else { None }
    }

    fn into_string(self) -> Option<String> {
        if let PresenceValue::Str(s) = self { Some(s) } else { None }
    }

    fn into_list(self) -> Option<Vec<String>> {
        if let PresenceValue::List(list) = self { Some(list) } else { None }
    }

    fn into_map(self) -> Option<Vec<(String, String)>> {
        if let PresenceValue::Map(map) = self { Some(map) } else { None }
    }
}

/// What an outstanding id waits for, so an answer of the wrong kind is not mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Presence,
    Rooms,
}

/// The room's presence (Colyseus's `this.presence`), from [`Ctx::presence`].
///
/// One method per operation; each queues the operation and returns its [`OpId`]. The answer
/// arrives later in [`Room::on_presence`](crate::Room::on_presence); the comment on each method
/// says which [`PresenceValue`] it carries. Keys are `&str` (scoped to the room type) or [`Key`].
///
/// ```
/// use odeon_guest::prelude::*;
///
/// fn count_visit(ctx: &mut Ctx) -> OpId {
///     // `on_presence` gets `Ok(PresenceValue::Int(visits))` with this id.
///     ctx.presence().incr(Key::global("visits"))
/// }
/// ```
pub struct Presence<'a, S = (), U = ()> {
    ctx: &'a mut Ctx<S, U>,
}

impl<S, U> std::fmt::Debug for Presence<'_, S, U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence").field("ctx", &self.ctx).finish()
    }
}

impl<'a, S, U> Presence<'a, S, U> {
    pub(crate) fn new(ctx: &'a mut Ctx<S, U>) -> Self {
        Self { ctx }
    }

    /// Queues any operation; the methods below are shorthands for this.
    pub fn run(&mut self, op: PresenceOp) -> OpId {
        self.ctx.issue(OpKind::Presence, |op_id| Effect::Presence { op_id, op })
    }

    /// Sets a string value. Answers `Nil`.
    pub fn set(&mut self, key: impl IntoKey, value: impl Into<String>) -> OpId {
        self.run(PresenceOp::Set { key: key.into_key(), value: value.into(), ttl_ms: None })
    }

    /// Sets a string value that expires after `ttl_ms` milliseconds. Answers `Nil`.
    pub fn set_with_ttl(&mut self, key: impl IntoKey, value: impl Into<String>, ttl_ms: u64) -> OpId {
        self.run(PresenceOp::Set { key: key.into_key(), value: value.into(), ttl_ms: Some(ttl_ms) })
    }

    /// Reads a string value. Answers `Str`, or `Nil` for a missing key.
    pub fn get(&mut self, key: impl IntoKey) -> OpId {
        self.run(PresenceOp::Get { key: key.into_key() })
    }

    /// Deletes a key of any kind. Answers `Nil`.
    pub fn del(&mut self, key: impl IntoKey) -> OpId {
        self.run(PresenceOp::Del { key: key.into_key() })
    }

    /// Whether a key exists. Answers `Bool`.
    pub fn exists(&mut self, key: impl IntoKey) -> OpId {
        self.run(PresenceOp::Exists { key: key.into_key() })
    }

    /// Makes a key expire after `ttl_ms` milliseconds. Answers `Bool` (false: no such key).
    pub fn expire(&mut self, key: impl IntoKey, ttl_ms: u64) -> OpId {
        self.run(PresenceOp::Expire { key: key.into_key(), ttl_ms })
    }

    /// Adds 1 to a counter (a missing key counts as 0). Answers `Int`, the new value.
    pub fn incr(&mut self, key: impl IntoKey) -> OpId {
        self.incr_by(key, 1)
    }

    /// Subtracts 1 from a counter. Answers `Int`, the new value.
    pub fn decr(&mut self, key: impl IntoKey) -> OpId {
        self.incr_by(key, -1)
    }

    /// Adds `by` to a counter. Answers `Int`, the new value.
    pub fn incr_by(&mut self, key: impl IntoKey, by: i64) -> OpId {
        self.run(PresenceOp::Incr { key: key.into_key(), by })
    }

    /// Adds a set member. Answers `Bool` (true: it is new).
    pub fn sadd(&mut self, key: impl IntoKey, member: impl Into<String>) -> OpId {
        self.run(PresenceOp::SAdd { key: key.into_key(), member: member.into() })
    }

    /// Removes a set member. Answers `Bool` (true: it was there).
    pub fn srem(&mut self, key: impl IntoKey, member: impl Into<String>) -> OpId {
        self.run(PresenceOp::SRem { key: key.into_key(), member: member.into() })
    }

    /// A set's members. Answers `List`.
    pub fn smembers(&mut self, key: impl IntoKey) -> OpId {
        self.run(PresenceOp::SMembers { key: key.into_key() })
    }

    /// Whether a set holds `member`. Answers `Bool`.
    pub fn sismember(&mut self, key: impl IntoKey, member: impl Into<String>) -> OpId {
        self.run(PresenceOp::SIsMember { key: key.into_key(), member: member.into() })
    }

    /// A set's size. Answers `Int`.
    pub fn scard(&mut self, key: impl IntoKey) -> OpId {
        self.run(PresenceOp::SCard { key: key.into_key() })
    }

    /// The members every one of `keys`' sets holds. Answers `List`.
    pub fn sinter<K: IntoKey>(&mut self, keys: impl IntoIterator<Item = K>) -> OpId {
        self.run(PresenceOp::SInter { keys: keys.into_iter().map(IntoKey::into_key).collect() })
    }

    /// Sets a hash field. Answers `Bool` (true: the field is new).
    pub fn hset(&mut self, key: impl IntoKey, field: impl Into<String>, value: impl Into<String>) -> OpId {
        self.run(PresenceOp::HSet { key: key.into_key(), field: field.into(), value: value.into() })
    }

    /// Adds `by` to an integer hash field (a missing field counts as 0). Answers `Int`.
    pub fn hincrby(&mut self, key: impl IntoKey, field: impl Into<String>, by: i64) -> OpId {
        self.run(PresenceOp::HIncrBy { key: key.into_key(), field: field.into(), by })
    }

    /// Reads a hash field. Answers `Str`, or `Nil` for a missing field.
    pub fn hget(&mut self, key: impl IntoKey, field: impl Into<String>) -> OpId {
        self.run(PresenceOp::HGet { key: key.into_key(), field: field.into() })
    }

    /// Removes a hash field. Answers `Bool` (true: it was there).
    pub fn hdel(&mut self, key: impl IntoKey, field: impl Into<String>) -> OpId {
        self.run(PresenceOp::HDel { key: key.into_key(), field: field.into() })
    }

    /// The number of fields in a hash. Answers `Int`.
    pub fn hlen(&mut self, key: impl IntoKey) -> OpId {
        self.run(PresenceOp::HLen { key: key.into_key() })
    }

    /// Every field of a hash. Answers `Map`.
    pub fn hgetall(&mut self, key: impl IntoKey) -> OpId {
        self.run(PresenceOp::HGetAll { key: key.into_key() })
    }

    /// Pushes on the right of a list. Answers `Int`, the new length.
    pub fn rpush(&mut self, key: impl IntoKey, value: impl Into<String>) -> OpId {
        self.run(PresenceOp::RPush { key: key.into_key(), value: value.into() })
    }

    /// Pushes on the left of a list. Answers `Int`, the new length.
    pub fn lpush(&mut self, key: impl IntoKey, value: impl Into<String>) -> OpId {
        self.run(PresenceOp::LPush { key: key.into_key(), value: value.into() })
    }

    /// Pops from the right of a list. Answers `Str`, or `Nil` when it is empty.
    pub fn rpop(&mut self, key: impl IntoKey) -> OpId {
        self.run(PresenceOp::RPop { key: key.into_key() })
    }

    /// Pops from the left of a list. Answers `Str`, or `Nil` when it is empty.
    pub fn lpop(&mut self, key: impl IntoKey) -> OpId {
        self.run(PresenceOp::LPop { key: key.into_key() })
    }

    /// A list's length. Answers `Int`.
    pub fn llen(&mut self, key: impl IntoKey) -> OpId {
        self.run(PresenceOp::LLen { key: key.into_key() })
    }

    /// Publishes `message` on `topic`. Answers `Int`, how many subscribers got it (this room
    /// included, if it subscribed).
    pub fn publish(&mut self, topic: impl IntoKey, message: impl Into<String>) -> OpId {
        self.run(PresenceOp::Publish { topic: topic.into_key(), message: message.into() })
    }

    /// Receives `topic`'s messages in [`Room::on_presence_message`](crate::Room::on_presence_message)
    /// until unsubscribed or disposed. Answers `Nil`.
    pub fn subscribe(&mut self, topic: impl IntoKey) -> OpId {
        self.run(PresenceOp::Subscribe { topic: topic.into_key() })
    }

    /// Stops receiving `topic`'s messages. Answers `Nil`.
    pub fn unsubscribe(&mut self, topic: impl IntoKey) -> OpId {
        self.run(PresenceOp::Unsubscribe { topic: topic.into_key() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_local_unless_global() {
        assert_eq!("a".into_key(), Key { name: "a".into(), global: false });
        assert_eq!(String::from("a").into_key(), Key::local("a"));
        assert_eq!((&String::from("a")).into_key(), Key::local("a"));
        assert_eq!(Key::global("a").into_key(), Key { name: "a".into(), global: true });
        assert_eq!((&Key::global("a")).into_key(), Key::global("a"));
    }

    #[test]
    fn value_accessors_match_their_kind_only() {
        assert!(PresenceValue::Nil.is_nil());
        assert!(!PresenceValue::Int(0).is_nil());
        assert_eq!(PresenceValue::Bool(true).as_bool(), Some(true));
        assert_eq!(PresenceValue::Int(3).as_bool(), None);
        assert_eq!(PresenceValue::Int(3).as_int(), Some(3));
        assert_eq!(PresenceValue::Str("3".into()).as_int(), None);
        assert_eq!(PresenceValue::Str("s".into()).as_str(), Some("s"));
        assert_eq!(PresenceValue::Nil.as_str(), None);
        assert_eq!(PresenceValue::Str("s".into()).into_string().as_deref(), Some("s"));
        assert_eq!(PresenceValue::Nil.into_string(), None);
        let list = PresenceValue::List(vec!["a".into()]);
        assert_eq!(list.as_list(), Some(&["a".to_owned()][..]));
        assert_eq!(list.clone().into_list(), Some(vec!["a".to_owned()]));
        assert_eq!(list.as_map(), None);
        let map = PresenceValue::Map(vec![("f".into(), "v".into())]);
        assert_eq!(map.as_map(), Some(&[("f".to_owned(), "v".to_owned())][..]));
        assert_eq!(map.clone().into_map(), Some(vec![("f".to_owned(), "v".to_owned())]));
        assert_eq!(map.into_list(), None);
    }

    #[test]
    fn every_method_queues_its_operation_with_a_fresh_id() {
        let mut ctx: Ctx = Ctx::default();
        let mut p = ctx.presence();
        let g = || Key::global("g");
        let ids = [
            p.set("k", "v"),
            p.set_with_ttl("k", "v", 5),
            p.get("k"),
            p.del("k"),
            p.exists("k"),
            p.expire("k", 7),
            p.incr(g()),
            p.decr("k"),
            p.incr_by("k", 5),
            p.sadd("s", "m"),
            p.srem("s", "m"),
            p.smembers("s"),
            p.sismember("s", "m"),
            p.scard("s"),
            p.sinter(["s", "t"]),
            p.hset("h", "f", "v"),
            p.hincrby("h", "f", 2),
            p.hget("h", "f"),
            p.hdel("h", "f"),
            p.hlen("h"),
            p.hgetall("h"),
            p.rpush("l", "v"),
            p.lpush("l", "v"),
            p.rpop("l"),
            p.lpop("l"),
            p.llen("l"),
            p.publish(g(), "m"),
            p.subscribe(g()),
            p.unsubscribe("t"),
        ];
        let rooms = ctx.query_rooms(Some("board"));
        assert_eq!(ids.map(OpId::as_u64), std::array::from_fn(|i| i as u64 + 1));
        assert_eq!(rooms.as_u64(), 30);
        assert_eq!(rooms.to_string(), "op 30");

        let l = |name: &str| Key::local(name);
        let expected = [
            PresenceOp::Set { key: l("k"), value: "v".into(), ttl_ms: None },
            PresenceOp::Set { key: l("k"), value: "v".into(), ttl_ms: Some(5) },
            PresenceOp::Get { key: l("k") },
            PresenceOp::Del { key: l("k") },
            PresenceOp::Exists { key: l("k") },
            PresenceOp::Expire { key: l("k"), ttl_ms: 7 },
            PresenceOp::Incr { key: g(), by: 1 },
            PresenceOp::Incr { key: l("k"), by: -1 },
            PresenceOp::Incr { key: l("k"), by: 5 },
            PresenceOp::SAdd { key: l("s"), member: "m".into() },
            PresenceOp::SRem { key: l("s"), member: "m".into() },
            PresenceOp::SMembers { key: l("s") },
            PresenceOp::SIsMember { key: l("s"), member: "m".into() },
            PresenceOp::SCard { key: l("s") },
            PresenceOp::SInter { keys: vec![l("s"), l("t")] },
            PresenceOp::HSet { key: l("h"), field: "f".into(), value: "v".into() },
            PresenceOp::HIncrBy { key: l("h"), field: "f".into(), by: 2 },
            PresenceOp::HGet { key: l("h"), field: "f".into() },
            PresenceOp::HDel { key: l("h"), field: "f".into() },
            PresenceOp::HLen { key: l("h") },
            PresenceOp::HGetAll { key: l("h") },
            PresenceOp::RPush { key: l("l"), value: "v".into() },
            PresenceOp::LPush { key: l("l"), value: "v".into() },
            PresenceOp::RPop { key: l("l") },
            PresenceOp::LPop { key: l("l") },
            PresenceOp::LLen { key: l("l") },
            PresenceOp::Publish { topic: g(), message: "m".into() },
            PresenceOp::Subscribe { topic: g() },
            PresenceOp::Unsubscribe { topic: l("t") },
        ];
        let mut effects = ctx.take_effects();
        assert_eq!(effects.pop(), Some(Effect::QueryRooms { op_id: 30, name: Some("board".into()) }));
        let expected: Vec<_> =
            expected.into_iter().zip(1..).map(|(op, op_id)| Effect::Presence { op_id, op }).collect();
        assert_eq!(effects, expected);
    }
}
