//! The test host's presence: an in-memory store with the semantics of the host's embedded
//! presence, on the test clock.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use odeon_protocol::abi::{Event, Key, PresenceOp, PresenceValue};

/// A key as the host stores it: a global name, or a name inside one room type's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Scoped {
    /// The room type owning the name; `None` for a global one.
    room_type: Option<String>,
    name: String,
}

impl Scoped {
    fn new(key: &Key, room_type: &str) -> Self {
        let room_type = (!key.global).then(|| room_type.to_owned());
        Self { room_type, name: key.name.clone() }
    }
}

#[derive(Debug)]
enum Stored {
    Str(String),
    Set(BTreeSet<String>),
    Hash(BTreeMap<String, String>),
    List(VecDeque<String>),
}

#[derive(Debug)]
struct Entry {
    value: Stored,
    /// When the key disappears, on the test clock.
    expires_ms: Option<u64>,
}

/// Who runs an operation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Caller<'a> {
    /// The caller's room type, which scopes its local keys.
    pub room_type: &'a str,
    /// Whether it is the room under test, whose subscriptions the store keeps.
    pub under_test: bool,
}

type Answer = Result<PresenceValue, String>;

/// Keys, values and the room under test's subscriptions.
#[derive(Debug, Default)]
pub(super) struct Store {
    entries: HashMap<Scoped, Entry>,
    subscriptions: BTreeSet<Scoped>,
}

impl Store {
    /// Runs `op` at `now_ms`: its answer, and the message the room under test receives if it is
    /// a publication on a topic the room subscribed to.
    pub fn apply(&mut self, op: PresenceOp, caller: Caller<'_>, now_ms: u64) -> (Answer, Option<Event>) {
        let scoped = |key: &Key| Scoped::new(key, caller.room_type);
        let answer = match op {
            PresenceOp::Publish { topic, message } => {
                let delivered = self.subscriptions.contains(&scoped(&topic));
                let event = delivered.then_some(Event::PresenceMessage { topic: topic.name, message });
                return (Ok(PresenceValue::Int(delivered.into())), event);
            }
            PresenceOp::Subscribe { topic } => {
                if caller.under_test {
                    self.subscriptions.insert(scoped(&topic));
                }
                Ok(PresenceValue::Nil)
            }
            PresenceOp::Unsubscribe { topic } => {
                if caller.under_test {
                    self.subscriptions.remove(&scoped(&topic));
                }
                Ok(PresenceValue::Nil)
            }
            PresenceOp::SInter { keys } => self.sinter(keys.iter().map(scoped).collect(), now_ms),
            op => self.apply_to_key(op, scoped, now_ms),
        };
        (answer, None)
    }

    /// Forgets the room under test's subscriptions, as the host does when it disposes.
    pub fn unsubscribe_all(&mut self) {
        self.subscriptions.clear();
    }

    /// Whether the room under test subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &Key, room_type: &str) -> bool {
        self.subscriptions.contains(&Scoped::new(topic, room_type))
    }

    fn apply_to_key(&mut self, op: PresenceOp, scoped: impl Fn(&Key) -> Scoped, now: u64) -> Answer {
        use PresenceValue::{Bool, Int, Nil};
        let int = |n: usize| Int(n as i64);
        match op {
            PresenceOp::Set { key, value, ttl_ms } => {
                let expires_ms = ttl_ms.map(|ttl| now + ttl);
                self.entries.insert(scoped(&key), Entry { value: Stored::Str(value), expires_ms });
                Ok(Nil)
            }
            PresenceOp::Get { key } => {
                self.read(&key, scoped, now, str_of, |s| PresenceValue::Str(s.clone()))
            }
            PresenceOp::Del { key } => {
                self.entries.remove(&scoped(&key));
                Ok(Nil)
            }
            PresenceOp::Exists { key } => Ok(Bool(self.live(&scoped(&key), now).is_some())),
            PresenceOp::Expire { key, ttl_ms } => {
                let entry = self.live(&scoped(&key), now);
                Ok(Bool(entry.map(|e| e.expires_ms = Some(now + ttl_ms)).is_some()))
            }
            PresenceOp::Incr { key, by } => {
                let counter = self.entry(&key, scoped, now, || Stored::Str("0".into()), str_of)?;
                let n = counter.parse::<i64>().map_err(|_| wrong_kind(&key))? + by;
                *counter = n.to_string();
                Ok(Int(n))
            }
            PresenceOp::SAdd { key, member } => Ok(Bool(
                self.entry(&key, scoped, now, || Stored::Set(BTreeSet::new()), set_of)?.insert(member),
            )),
            PresenceOp::SRem { key, member } => {
                self.read(&key, scoped, now, set_of, |s| Bool(s.remove(&member))).map(or(Bool(false)))
            }
            PresenceOp::SMembers { key } => self
                .read(&key, scoped, now, set_of, |s| list(s.iter()))
                .map(or(PresenceValue::List(Vec::new()))),
            PresenceOp::SIsMember { key, member } => {
                self.read(&key, scoped, now, set_of, |s| Bool(s.contains(&member))).map(or(Bool(false)))
            }
            PresenceOp::SCard { key } => {
                self.read(&key, scoped, now, set_of, |s| int(s.len())).map(or(Int(0)))
            }
            PresenceOp::HSet { key, field, value } => {
                let hash = self.entry(&key, scoped, now, || Stored::Hash(BTreeMap::new()), hash_of)?;
                Ok(Bool(hash.insert(field, value).is_none()))
            }
            PresenceOp::HIncrBy { key, field, by } => {
                let hash = self.entry(&key, scoped, now, || Stored::Hash(BTreeMap::new()), hash_of)?;
                let current =
                    hash.get(&field).map_or(Ok(0), |v| v.parse::<i64>()).map_err(|_| wrong_kind(&key))?;
                hash.insert(field, (current + by).to_string());
                Ok(Int(current + by))
            }
            PresenceOp::HGet { key, field } => {
                self.read(&key, scoped, now, hash_of, |h| opt_str(h.get(&field).cloned()))
            }
            PresenceOp::HDel { key, field } => self
                .read(&key, scoped, now, hash_of, |h| Bool(h.remove(&field).is_some()))
                .map(or(Bool(false))),
            PresenceOp::HLen { key } => {
                self.read(&key, scoped, now, hash_of, |h| int(h.len())).map(or(Int(0)))
            }
            PresenceOp::HGetAll { key } => {
                let all =
                    |h: &mut BTreeMap<String, String>| PresenceValue::Map(h.clone().into_iter().collect());
                self.read(&key, scoped, now, hash_of, all).map(or(PresenceValue::Map(Vec::new())))
            }
            PresenceOp::RPush { key, value } => {
                let list = self.entry(&key, scoped, now, || Stored::List(VecDeque::new()), list_of)?;
                list.push_back(value);
                Ok(int(list.len()))
            }
            PresenceOp::LPush { key, value } => {
                let list = self.entry(&key, scoped, now, || Stored::List(VecDeque::new()), list_of)?;
                list.push_front(value);
                Ok(int(list.len()))
            }
            PresenceOp::RPop { key } => self.read(&key, scoped, now, list_of, |l| opt_str(l.pop_back())),
            PresenceOp::LPop { key } => self.read(&key, scoped, now, list_of, |l| opt_str(l.pop_front())),
            PresenceOp::LLen { key } => {
                self.read(&key, scoped, now, list_of, |l| int(l.len())).map(or(Int(0)))
            }
            PresenceOp::Publish { .. }
            | PresenceOp::Subscribe { .. }
            | PresenceOp::Unsubscribe { .. }
            | PresenceOp::SInter { .. } => unreachable!("handled by Store::apply"),
        }
    }

    fn sinter(&mut self, keys: Vec<Scoped>, now: u64) -> Answer {
        let mut common: Option<BTreeSet<String>> = None;
        for key in keys {
            let members = match self.live(&key, now) {
                None => BTreeSet::new(),
                Some(Entry { value: Stored::Set(set), .. }) => set.clone(),
                Some(_) => return Err(wrong_kind_name(&key.name)),
            };
            common = Some(match common {
                None => members,
                Some(acc) => acc.intersection(&members).cloned().collect(),
            });
        }
        Ok(list(common.unwrap_or_default().iter()))
    }

    /// The entry at `key` unless it expired (then it is removed).
    fn live(&mut self, key: &Scoped, now: u64) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| e.expires_ms.is_some_and(|at| at <= now)) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    /// The value of kind `pick` at `key`, created with `make` if missing.
    fn entry<T>(
        &mut self,
        key: &Key,
        scoped: impl Fn(&Key) -> Scoped,
        now: u64,
        make: fn() -> Stored,
        pick: fn(&mut Stored) -> Option<&mut T>,
    ) -> Result<&mut T, String> {
        let at = scoped(key);
        if self.live(&at, now).is_none() {
            self.entries.insert(at.clone(), Entry { value: make(), expires_ms: None });
        }
        let entry = self.entries.get_mut(&at).expect("inserted above");
        pick(&mut entry.value).ok_or_else(|| wrong_kind(key))
    }

    /// `f` of the value of kind `pick` at `key`; `Nil` if there is none.
    fn read<T>(
        &mut self,
        key: &Key,
        scoped: impl Fn(&Key) -> Scoped,
        now: u64,
        pick: fn(&mut Stored) -> Option<&mut T>,
        f: impl FnOnce(&mut T) -> PresenceValue,
    ) -> Answer {
        match self.live(&scoped(key), now) {
            None => Ok(PresenceValue::Nil),
            Some(entry) => pick(&mut entry.value).map(f).ok_or_else(|| wrong_kind(key)),
        }
    }
}

/// Replaces the `Nil` of a missing key with `default`.
fn or(default: PresenceValue) -> impl FnOnce(PresenceValue) -> PresenceValue {
    move |value| if value == PresenceValue::Nil { default } else { value }
}

fn opt_str(value: Option<String>) -> PresenceValue {
    value.map_or(PresenceValue::Nil, PresenceValue::Str)
}

fn list<'a>(members: impl Iterator<Item = &'a String>) -> PresenceValue {
    PresenceValue::List(members.cloned().collect())
}

/// The host's error for an operation on a key holding another kind of value.
fn wrong_kind(key: &Key) -> String {
    wrong_kind_name(&key.name)
}

fn wrong_kind_name(name: &str) -> String {
    format!("wrong kind of value at key {name:?}")
}

fn str_of(v: &mut Stored) -> Option<&mut String> {
    if let Stored::Str(s) = v { Some(s) } else { None }
}

fn set_of(v: &mut Stored) -> Option<&mut BTreeSet<String>> {
    if let Stored::Set(s) = v { Some(s) } else { None }
}

fn hash_of(v: &mut Stored) -> Option<&mut BTreeMap<String, String>> {
    if let Stored::Hash(h) = v { Some(h) } else { None }
}

fn list_of(v: &mut Stored) -> Option<&mut VecDeque<String>> {
    if let Stored::List(l) = v { Some(l) } else { None }
}
