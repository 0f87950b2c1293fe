//! What rooms ask of shared services: presence operations and room-listing queries, run outside
//! the guest call with their answers delivered to the room's inbox as events.
//!
//! Keys and topics are scoped to the room type unless the guest marks them global, and a room's
//! subscriptions end when it disposes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use odeon_protocol::abi::{Event, Key, Listing, PresenceOp, PresenceValue};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::driver::{Driver, RoomListing};
use crate::presence::{Presence, PresenceError};
use crate::rooms::RoomMsg;

/// The most presence operations and listing queries one room may have in flight; past it an
/// operation is answered with an error at once instead of being started.
pub const MAX_IN_FLIGHT: usize = 1024;
/// The most topics one room may be subscribed to.
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// A room's view of presence: its scope and its live subscriptions.
pub struct RoomServices {
    presence: Arc<dyn Presence>,
    driver: Arc<dyn Driver>,
    room_type: String,
    /// The room's own inbox, weakly: answers to a disposed room are dropped.
    inbox: mpsc::WeakUnboundedSender<RoomMsg>,
    /// Topic as the room named it (and its scope) → the task forwarding its messages.
    subscriptions: HashMap<(String, bool), JoinHandle<()>>,
    /// Operations started and not yet answered.
    in_flight: Arc<AtomicUsize>,
}

/// Counts one operation in flight until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RoomServices {
    /// Services for a room of `room_type` whose inbox is `inbox`.
    pub fn new(
        presence: Arc<dyn Presence>,
        driver: Arc<dyn Driver>,
        room_type: String,
        inbox: mpsc::WeakUnboundedSender<RoomMsg>,
    ) -> Self {
        Self { presence, driver, room_type, inbox, subscriptions: HashMap::new(), in_flight: Arc::default() }
    }

    /// Starts a presence operation; its answer arrives as an [`Event::PresenceResult`].
    pub fn presence(&mut self, op_id: u64, op: PresenceOp) {
        if let Err(e) = check_global(&op) {
            self.answer(op_id, Err(e.to_string()));
            return;
        }
        match op {
            PresenceOp::Subscribe { topic }
                if self.subscriptions.len() >= MAX_SUBSCRIPTIONS
                    && !self.subscriptions.contains_key(&(topic.name.clone(), topic.global)) =>
            {
                self.answer(
                    op_id,
                    Err(format!("a room may subscribe to at most {MAX_SUBSCRIPTIONS} topics")),
                );
            }
            PresenceOp::Subscribe { topic } => self.subscribe(Some(op_id), topic),
            PresenceOp::Unsubscribe { topic } => {
                if let Some(task) = self.subscriptions.remove(&(topic.name, topic.global)) {
                    task.abort();
                }
                self.answer(op_id, Ok(PresenceValue::Nil));
            }
            op => {
                let Some(counted) = self.start() else {
                    return self.answer(op_id, Err(too_many()));
                };
                let presence = self.presence.clone();
                let scope = self.room_type.clone();
                let inbox = self.inbox.clone();
                tokio::spawn(async move {
                    let _counted = counted;
                    let result = run(&*presence, &scope, op).await.map_err(|e| e.to_string());
                    if let Some(inbox) = inbox.upgrade() {
                        let _ = inbox.send(RoomMsg::Service(Event::PresenceResult { op_id, result }));
                    }
                });
            }
        }
    }

    /// Starts a listing query; its answer arrives as an [`Event::Rooms`].
    pub fn query_rooms(&self, op_id: u64, name: Option<String>) {
        let Some(counted) = self.start() else {
            if let Some(inbox) = self.inbox.upgrade() {
                let _ = inbox.send(RoomMsg::Service(Event::Rooms { op_id, result: Err(too_many()) }));
            }
            return;
        };
        let driver = self.driver.clone();
        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            let _counted = counted;
            let result = driver
                .query(name.as_deref())
                .await
                .map(|all| all.iter().map(listing_record).collect())
                .map_err(|e| e.to_string());
            if let Some(inbox) = inbox.upgrade() {
                let _ = inbox.send(RoomMsg::Service(Event::Rooms { op_id, result }));
            }
        });
    }

    /// Operations started whose answers are not in the room's inbox yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The topics the room is subscribed to (a moving room takes them along).
    pub fn topics(&self) -> Vec<Key> {
        self.subscriptions.keys().map(|(name, global)| Key { name: name.clone(), global: *global }).collect()
    }

    /// Subscribes again to the topics of a room that moved here; nothing is answered (the
    /// guest had its answers where it came from).
    pub fn resubscribe(&mut self, topics: Vec<Key>) {
        for topic in topics {
            self.subscribe(None, topic);
        }
    }

    fn subscribe(&mut self, op_id: Option<u64>, topic: Key) {
        let presence = self.presence.clone();
        let scoped = scoped(&self.room_type, &topic);
        let inbox = self.inbox.clone();
        let name = topic.name.clone();
        let task = tokio::spawn(async move {
            let mut subscription = match presence.subscribe(&scoped).await {
                Ok(s) => s,
                Err(e) => {
                    if let (Some(inbox), Some(op_id)) = (inbox.upgrade(), op_id) {
                        let _ = inbox.send(RoomMsg::Service(Event::PresenceResult {
                            op_id,
                            result: Err(e.to_string()),
                        }));
                    }
                    return;
                }
            };
            if let (Some(inbox), Some(op_id)) = (inbox.upgrade(), op_id) {
                let _ = inbox
                    .send(RoomMsg::Service(Event::PresenceResult { op_id, result: Ok(PresenceValue::Nil) }));
            }
            while let Some(message) = subscription.recv().await {
                let Some(inbox) = inbox.upgrade() else { return };
                if inbox
                    .send(RoomMsg::Service(Event::PresenceMessage { topic: name.clone(), message }))
                    .is_err()
                {
                    return;
                }
            }
        });
        if let Some(old) = self.subscriptions.insert((topic.name, topic.global), task) {
            old.abort();
        }
    }

    /// Counts a new operation in flight, unless [`MAX_IN_FLIGHT`] are already.
    fn start(&self) -> Option<InFlight> {
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let counted = InFlight(self.in_flight.clone());
        (n < MAX_IN_FLIGHT).then_some(counted)
    }

    fn answer(&self, op_id: u64, result: Result<PresenceValue, String>) {
        if let Some(inbox) = self.inbox.upgrade() {
            let _ = inbox.send(RoomMsg::Service(Event::PresenceResult { op_id, result }));
        }
    }
}

impl Drop for RoomServices {
    fn drop(&mut self) {
        for (_, task) in self.subscriptions.drain() {
            task.abort();
        }
    }
}

fn too_many() -> String {
    format!("a room may have at most {MAX_IN_FLIGHT} presence operations and room queries in flight")
}

/// The store key for a room's key: room-type keys live under `plugin:<type>:`.
fn scoped(room_type: &str, key: &Key) -> String {
    if key.global { key.name.clone() } else { format!("{LOCAL_PREFIX}{room_type}:{}", key.name) }
}

/// Global names may not reach into a room type's scope.
const LOCAL_PREFIX: &str = "plugin:";

fn check_global(op: &PresenceOp) -> Result<(), PresenceError> {
    let keys: Vec<&Key> = match op {
        PresenceOp::SInter { keys } => keys.iter().collect(),
        PresenceOp::Publish { topic, .. }
        | PresenceOp::Subscribe { topic }
        | PresenceOp::Unsubscribe { topic } => {
            vec![topic]
        }
        PresenceOp::Set { key, .. }
        | PresenceOp::Get { key }
        | PresenceOp::Del { key }
        | PresenceOp::Exists { key }
        | PresenceOp::Expire { key, .. }
        | PresenceOp::Incr { key, .. }
        | PresenceOp::SAdd { key, .. }
        | PresenceOp::SRem { key, .. }
        | PresenceOp::SMembers { key }
        | PresenceOp::SIsMember { key, .. }
        | PresenceOp::SCard { key }
        | PresenceOp::HSet { key, .. }
        | PresenceOp::HIncrBy { key, .. }
        | PresenceOp::HGet { key, .. }
        | PresenceOp::HDel { key, .. }
        | PresenceOp::HLen { key }
        | PresenceOp::HGetAll { key }
        | PresenceOp::RPush { key, .. }
        | PresenceOp::LPush { key, .. }
        | PresenceOp::RPop { key }
        | PresenceOp::LPop { key }
        | PresenceOp::LLen { key } => vec![key],
    };
    match keys.iter().find(|k| k.global && k.name.starts_with(LOCAL_PREFIX)) {
        Some(k) => Err(PresenceError::Reserved(k.name.clone())),
        None => Ok(()),
    }
}

async fn run(p: &dyn Presence, scope: &str, op: PresenceOp) -> Result<PresenceValue, PresenceError> {
    use PresenceValue::{Bool, Int, List, Nil, Str};
    check_global(&op)?;
    let k = |key: &Key| scoped(scope, key);
    let ms = std::time::Duration::from_millis;
    Ok(match op {
        PresenceOp::Set { key, value, ttl_ms: None } => p.set(&k(&key), &value).await.map(|_| Nil)?,
        PresenceOp::Set { key, value, ttl_ms: Some(t) } => {
            p.setex(&k(&key), &value, ms(t)).await.map(|_| Nil)?
        }
        PresenceOp::Get { key } => p.get(&k(&key)).await?.map_or(Nil, Str),
        PresenceOp::Del { key } => p.del(&k(&key)).await.map(|_| Nil)?,
        PresenceOp::Exists { key } => Bool(p.exists(&k(&key)).await?),
        PresenceOp::Expire { key, ttl_ms } => Bool(p.expire(&k(&key), ms(ttl_ms)).await?),
        PresenceOp::Incr { key, by } => Int(p.incrby(&k(&key), by).await?),
        PresenceOp::SAdd { key, member } => Bool(p.sadd(&k(&key), &member).await?),
        PresenceOp::SRem { key, member } => Bool(p.srem(&k(&key), &member).await?),
        PresenceOp::SMembers { key } => List(p.smembers(&k(&key)).await?),
        PresenceOp::SIsMember { key, member } => Bool(p.sismember(&k(&key), &member).await?),
        PresenceOp::SCard { key } => Int(p.scard(&k(&key)).await? as i64),
        PresenceOp::SInter { keys } => {
            let keys: Vec<String> = keys.iter().map(k).collect();
            List(p.sinter(&keys.iter().map(String::as_str).collect::<Vec<_>>()).await?)
        }
        PresenceOp::HSet { key, field, value } => Bool(p.hset(&k(&key), &field, &value).await?),
        PresenceOp::HIncrBy { key, field, by } => Int(p.hincrby(&k(&key), &field, by).await?),
        PresenceOp::HGet { key, field } => p.hget(&k(&key), &field).await?.map_or(Nil, Str),
        PresenceOp::HDel { key, field } => Bool(p.hdel(&k(&key), &field).await?),
        PresenceOp::HLen { key } => Int(p.hlen(&k(&key)).await? as i64),
        PresenceOp::HGetAll { key } => {
            let mut all: Vec<_> = p.hgetall(&k(&key)).await?.into_iter().collect();
            all.sort();
            PresenceValue::Map(all)
        }
        PresenceOp::RPush { key, value } => Int(p.rpush(&k(&key), &value).await? as i64),
        PresenceOp::LPush { key, value } => Int(p.lpush(&k(&key), &value).await? as i64),
        PresenceOp::RPop { key } => p.rpop(&k(&key)).await?.map_or(Nil, Str),
        PresenceOp::LPop { key } => p.lpop(&k(&key)).await?.map_or(Nil, Str),
        PresenceOp::LLen { key } => Int(p.llen(&k(&key)).await? as i64),
        PresenceOp::Publish { topic, message } => Int(p.publish(&k(&topic), &message).await? as i64),
        PresenceOp::Subscribe { .. } | PresenceOp::Unsubscribe { .. } => {
            unreachable!("subscriptions are handled by RoomServices::presence")
        }
    })
}

/// A listing as guests see it.
pub fn listing_record(l: &RoomListing) -> Listing {
    Listing {
        room_id: l.room_id.clone(),
        name: l.name.clone(),
        process_id: l.process_id.clone(),
        clients: l.clients,
        max_clients: l.max_clients,
        locked: l.locked,
        private: l.private,
        metadata: rmp_serde::to_vec_named(&l.metadata).expect("JSON always encodes as MessagePack"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::LocalPresence;

    fn local(name: &str) -> Key {
        Key { name: name.into(), global: false }
    }

    #[tokio::test]
    async fn keys_are_scoped_to_the_room_type_unless_global() {
        let p = LocalPresence::default();
        run(&p, "chat", PresenceOp::Incr { key: local("n"), by: 2 }).await.unwrap();
        let other = run(&p, "board", PresenceOp::Get { key: local("n") }).await.unwrap();
        assert_eq!(other, PresenceValue::Nil, "another room type cannot see a local key");
        assert_eq!(p.get("plugin:chat:n").await.unwrap().as_deref(), Some("2"));
        let global = Key { name: "n".into(), global: true };
        run(&p, "chat", PresenceOp::Set { key: global.clone(), value: "g".into(), ttl_ms: None })
            .await
            .unwrap();
        let seen = run(&p, "board", PresenceOp::Get { key: global }).await.unwrap();
        assert_eq!(seen, PresenceValue::Str("g".into()));
        let sneaky = Key { name: "plugin:chat:n".into(), global: true };
        let refused = run(&p, "board", PresenceOp::Get { key: sneaky }).await;
        assert!(matches!(refused, Err(PresenceError::Reserved(_))), "{refused:?}");
    }

    #[tokio::test]
    async fn subscriptions_deliver_by_the_rooms_own_topic_name_and_end_on_drop() {
        let p: Arc<dyn Presence> = Arc::new(LocalPresence::default());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut services = RoomServices::new(
            p.clone(),
            Arc::new(crate::driver::LocalDriver::default()),
            "chat".into(),
            tx.downgrade(),
        );
        services.presence(1, PresenceOp::Subscribe { topic: local("news") });
        assert!(matches!(
            rx.recv().await,
            Some(RoomMsg::Service(Event::PresenceResult { op_id: 1, result: Ok(PresenceValue::Nil) }))
        ));
        assert_eq!(p.publish("plugin:chat:news", "hello").await.unwrap(), 1);
        match rx.recv().await {
            Some(RoomMsg::Service(Event::PresenceMessage { topic, message })) => {
                assert_eq!((topic.as_str(), message.as_str()), ("news", "hello"))
            }
            other => panic!("expected a presence message, got {other:?}"),
        }
        drop(services);
        tokio::task::yield_now().await;
        assert!(p.channels("*").await.unwrap().is_empty(), "a dropped room leaves no subscription");
    }
}
