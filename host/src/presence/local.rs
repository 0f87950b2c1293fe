//! [`LocalPresence`]: the embedded presence, in this process's memory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Presence, PresenceError, Result, Subscription};

#[derive(Debug)]
enum Value {
    Str(String),
    Set(HashSet<String>),
    Hash(HashMap<String, String>),
    List(VecDeque<String>),
}

#[derive(Debug, Default)]
struct State {
    values: HashMap<String, (Value, Option<Instant>)>,
    topics: HashMap<String, Vec<mpsc::UnboundedSender<String>>>,
}

impl State {
    fn live(&mut self, key: &str) -> Option<&mut Value> {
        if self.values.get(key).is_some_and(|(_, exp)| exp.is_some_and(|e| e <= Instant::now())) {
            self.values.remove(key);
        }
        self.values.get_mut(key).map(|(v, _)| v)
    }

    fn entry<T>(
        &mut self,
        key: &str,
        make: fn() -> Value,
        pick: fn(&mut Value) -> Option<&mut T>,
    ) -> Result<&mut T> {
        if self.live(key).is_none() {
            self.values.insert(key.to_string(), (make(), None));
        }
        let (v, _) = self.values.get_mut(key).expect("inserted above");
        pick(v).ok_or_else(|| PresenceError::WrongType(key.to_string()))
    }

    /// Removes a collection left empty, as Redis does: an empty set, hash or list is no key.
    fn prune(&mut self, key: &str) {
        let empty = match self.values.get(key) {
            Some((Value::Set(s), _)) => s.is_empty(),
            Some((Value::Hash(h), _)) => h.is_empty(),
            Some((Value::List(l), _)) => l.is_empty(),
            _ => false,
        };
        if empty {
            self.values.remove(key);
        }
    }

    fn hincrby(&mut self, key: &str, field: &str, by: i64) -> Result<i64> {
        let h = self.entry(key, || Value::Hash(HashMap::new()), hash_of)?;
        let n = incremented(key, h.get(field).map(String::as_str), by)?;
        h.insert(field.into(), n.to_string());
        Ok(n)
    }

    fn read<T, R>(
        &mut self,
        key: &str,
        pick: fn(&mut Value) -> Option<&mut T>,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<Option<R>> {
        match self.live(key) {
            None => Ok(None),
            Some(v) => pick(v).map(f).map(Some).ok_or_else(|| PresenceError::WrongType(key.to_string())),
        }
    }
}

/// When a key set to live for `ttl` expires; never, past the clock's range.
fn deadline(ttl: Duration) -> Option<Instant> {
    Instant::now().checked_add(ttl)
}

/// `current` (a missing value counts as 0) plus `by`, as Redis's INCRBY and HINCRBY compute it.
fn incremented(key: &str, current: Option<&str>, by: i64) -> Result<i64> {
    let current =
        current.map_or(Ok(0), str::parse::<i64>).map_err(|_| PresenceError::WrongType(key.into()))?;
    current.checked_add(by).ok_or_else(|| PresenceError::Overflow(key.into()))
}

fn set_of(v: &mut Value) -> Option<&mut HashSet<String>> {
    if let Value::Set(s) = v { Some(s) } else { None }
}
fn hash_of(v: &mut Value) -> Option<&mut HashMap<String, String>> {
    if let Value::Hash(h) = v { Some(h) } else { None }
}
fn list_of(v: &mut Value) -> Option<&mut VecDeque<String>> {
    if let Value::List(l) = v { Some(l) } else { None }
}
fn str_of(v: &mut Value) -> Option<&mut String> {
    if let Value::Str(s) = v { Some(s) } else { None }
}

/// The embedded presence: everything in this process's memory.
#[derive(Debug, Default)]
pub struct LocalPresence {
    state: Mutex<State>,
}

impl LocalPresence {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("presence lock"))
    }
}

#[async_trait::async_trait]
impl Presence for LocalPresence {
    async fn set(&self, key: &str, value: &str) -> Result<()> {
        self.with(|s| s.values.insert(key.into(), (Value::Str(value.into()), None)));
        Ok(())
    }
    async fn setex(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        self.with(|s| s.values.insert(key.into(), (Value::Str(value.into()), deadline(ttl))));
        Ok(())
    }
    async fn get(&self, key: &str) -> Result<Option<String>> {
        self.with(|s| s.read(key, str_of, |v| v.clone()))
    }
    async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<String>>> {
        Ok(self.with(|s| keys.iter().map(|k| s.read(k, str_of, |v| v.clone()).ok().flatten()).collect()))
    }
    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> Result<bool> {
        Ok(self.with(|s| {
            if s.live(key).is_some() {
                return false;
            }
            s.values.insert(key.into(), (Value::Str(value.into()), deadline(ttl)));
            true
        }))
    }
    async fn del_if_equal(&self, key: &str, value: &str) -> Result<bool> {
        Ok(self.with(|s| {
            let holds = matches!(s.live(key), Some(Value::Str(v)) if v == value);
            if holds {
                s.values.remove(key);
            }
            holds
        }))
    }
    async fn expire_if_equal(&self, key: &str, value: &str, ttl: Duration) -> Result<bool> {
        Ok(self.with(|s| {
            let holds = matches!(s.live(key), Some(Value::Str(v)) if v == value);
            if holds && let Some((_, exp)) = s.values.get_mut(key) {
                *exp = deadline(ttl);
            }
            holds
        }))
    }
    async fn del(&self, key: &str) -> Result<()> {
        self.with(|s| s.values.remove(key));
        Ok(())
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.with(|s| s.live(key).is_some()))
    }
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        Ok(self.with(|s| {
            s.live(key);
            s.values.get_mut(key).map(|(_, exp)| *exp = deadline(ttl)).is_some()
        }))
    }
    async fn sadd(&self, key: &str, member: &str) -> Result<bool> {
        self.with(|s| Ok(s.entry(key, || Value::Set(HashSet::new()), set_of)?.insert(member.into())))
    }
    async fn smembers(&self, key: &str) -> Result<Vec<String>> {
        self.with(|s| Ok(s.read(key, set_of, |v| v.iter().cloned().collect())?.unwrap_or_default()))
    }
    async fn sismember(&self, key: &str, member: &str) -> Result<bool> {
        self.with(|s| Ok(s.read(key, set_of, |v| v.contains(member))?.unwrap_or(false)))
    }
    async fn srem(&self, key: &str, member: &str) -> Result<bool> {
        self.with(|s| {
            let removed = s.read(key, set_of, |v| v.remove(member))?.unwrap_or(false);
            s.prune(key);
            Ok(removed)
        })
    }
    async fn scard(&self, key: &str) -> Result<usize> {
        self.with(|s| Ok(s.read(key, set_of, |v| v.len())?.unwrap_or(0)))
    }
    async fn sinter(&self, keys: &[&str]) -> Result<Vec<String>> {
        self.with(|s| {
            let mut result: Option<HashSet<String>> = None;
            for key in keys {
                let members = s.read(key, set_of, |v| v.clone())?.unwrap_or_default();
                result = Some(match result {
                    None => members,
                    Some(acc) => acc.intersection(&members).cloned().collect(),
                });
            }
            Ok(result.unwrap_or_default().into_iter().collect())
        })
    }
    async fn hset(&self, key: &str, field: &str, value: &str) -> Result<bool> {
        self.with(|s| {
            Ok(s.entry(key, || Value::Hash(HashMap::new()), hash_of)?
                .insert(field.into(), value.into())
                .is_none())
        })
    }
    async fn hincrby(&self, key: &str, field: &str, by: i64) -> Result<i64> {
        self.with(|s| s.hincrby(key, field, by))
    }
    async fn hincrbyex(&self, key: &str, field: &str, by: i64, ttl: Duration) -> Result<i64> {
        self.with(|s| {
            let n = s.hincrby(key, field, by)?;
            if let Some((_, exp)) = s.values.get_mut(key) {
                *exp = deadline(ttl);
            }
            Ok(n)
        })
    }
    async fn hget(&self, key: &str, field: &str) -> Result<Option<String>> {
        self.with(|s| Ok(s.read(key, hash_of, |h| h.get(field).cloned())?.flatten()))
    }
    async fn hdel(&self, key: &str, field: &str) -> Result<bool> {
        self.with(|s| {
            let removed = s.read(key, hash_of, |h| h.remove(field).is_some())?.unwrap_or(false);
            s.prune(key);
            Ok(removed)
        })
    }
    async fn hlen(&self, key: &str) -> Result<usize> {
        self.with(|s| Ok(s.read(key, hash_of, |h| h.len())?.unwrap_or(0)))
    }
    async fn hgetall(&self, key: &str) -> Result<HashMap<String, String>> {
        self.with(|s| Ok(s.read(key, hash_of, |h| h.clone())?.unwrap_or_default()))
    }
    async fn incrby(&self, key: &str, by: i64) -> Result<i64> {
        self.with(|s| {
            let v = s.entry(key, || Value::Str("0".into()), str_of)?;
            let n = incremented(key, Some(v), by)?;
            *v = n.to_string();
            Ok(n)
        })
    }
    async fn rpush(&self, key: &str, value: &str) -> Result<usize> {
        self.with(|s| {
            let l = s.entry(key, || Value::List(VecDeque::new()), list_of)?;
            l.push_back(value.into());
            Ok(l.len())
        })
    }
    async fn lpush(&self, key: &str, value: &str) -> Result<usize> {
        self.with(|s| {
            let l = s.entry(key, || Value::List(VecDeque::new()), list_of)?;
            l.push_front(value.into());
            Ok(l.len())
        })
    }
    async fn rpop(&self, key: &str) -> Result<Option<String>> {
        self.with(|s| {
            let popped = s.read(key, list_of, |l| l.pop_back())?.flatten();
            s.prune(key);
            Ok(popped)
        })
    }
    async fn lpop(&self, key: &str) -> Result<Option<String>> {
        self.with(|s| {
            let popped = s.read(key, list_of, |l| l.pop_front())?.flatten();
            s.prune(key);
            Ok(popped)
        })
    }
    async fn llen(&self, key: &str) -> Result<usize> {
        self.with(|s| Ok(s.read(key, list_of, |l| l.len())?.unwrap_or(0)))
    }
    async fn publish(&self, topic: &str, message: &str) -> Result<usize> {
        Ok(self.with(|s| {
            let Some(subs) = s.topics.get_mut(topic) else { return 0 };
            subs.retain(|tx| tx.send(message.to_string()).is_ok());
            let n = subs.len();
            if n == 0 {
                s.topics.remove(topic);
            }
            n
        }))
    }
    async fn subscribe(&self, topic: &str) -> Result<Subscription> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.with(|s| s.topics.entry(topic.into()).or_default().push(tx));
        Ok(rx)
    }
    async fn channels(&self, pattern: &str) -> Result<Vec<String>> {
        Ok(self.with(|s| {
            s.topics.retain(|_, subs| {
                subs.retain(|tx| !tx.is_closed());
                !subs.is_empty()
            });
            let mut names: Vec<_> = s.topics.keys().filter(|t| glob(pattern, t)).cloned().collect();
            names.sort();
            names
        }))
    }
}

fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            s.starts_with(head) && {
                let rest = &s[head.len()..];
                (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_expire_and_kinds_are_checked() {
        let p = LocalPresence::default();
        p.setex("k", "v", Duration::from_millis(30)).await.unwrap();
        assert_eq!(p.get("k").await.unwrap().as_deref(), Some("v"));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(p.get("k").await.unwrap(), None);
        p.sadd("s", "a").await.unwrap();
        assert!(matches!(p.hget("s", "f").await, Err(PresenceError::WrongType(_))));
        assert!(p.expire("s", Duration::from_secs(1)).await.unwrap());
        assert!(!p.expire("missing", Duration::from_secs(1)).await.unwrap());
    }

    #[tokio::test]
    async fn sets_hashes_lists_and_counters() {
        let p = LocalPresence::default();
        assert!(p.sadd("a", "x").await.unwrap());
        assert!(!p.sadd("a", "x").await.unwrap());
        p.sadd("a", "y").await.unwrap();
        p.sadd("b", "y").await.unwrap();
        assert_eq!(p.sinter(&["a", "b"]).await.unwrap(), vec!["y".to_string()]);
        assert_eq!(p.scard("a").await.unwrap(), 2);
        assert!(p.srem("a", "x").await.unwrap());
        assert!(p.hset("h", "f", "1").await.unwrap());
        assert_eq!(p.hincrby("h", "f", 4).await.unwrap(), 5);
        assert_eq!(p.hlen("h").await.unwrap(), 1);
        assert!(p.hdel("h", "f").await.unwrap());
        assert_eq!(p.incrby("c", 3).await.unwrap(), 3);
        assert_eq!(p.incrby("c", -1).await.unwrap(), 2);
        p.rpush("l", "1").await.unwrap();
        p.lpush("l", "0").await.unwrap();
        assert_eq!(p.llen("l").await.unwrap(), 2);
        assert_eq!(p.lpop("l").await.unwrap().as_deref(), Some("0"));
        assert_eq!(p.rpop("l").await.unwrap().as_deref(), Some("1"));
    }

    #[tokio::test]
    async fn pubsub_delivers_and_forgets_dropped_subscribers() {
        let p = LocalPresence::default();
        let mut a = p.subscribe("$lobby").await.unwrap();
        let b = p.subscribe("$lobby").await.unwrap();
        assert_eq!(p.channels("$*").await.unwrap(), vec!["$lobby".to_string()]);
        assert_eq!(p.publish("$lobby", "hi").await.unwrap(), 2);
        assert_eq!(a.recv().await.as_deref(), Some("hi"));
        drop(b);
        assert_eq!(p.publish("$lobby", "again").await.unwrap(), 1);
        drop(a);
        assert!(p.channels("*").await.unwrap().is_empty());
    }
}
