//! [`RedisPresence`]: presence in Redis, shared by every host process of a deployment.
//!
//! Commands go through a `ConnectionManager`: one multiplexed connection that reconnects by
//! itself. Subscriptions share one subscriber connection, owned by a driver task that fans
//! messages out to the receivers, unsubscribes a topic once its last receiver is dropped and,
//! after a reconnect, subscribes again to every topic that still has one.
//!
//! Every operation is bounded by [`TIMEOUT`]: while Redis is down or does not answer, callers get
//! [`PresenceError::Unavailable`] rather than waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use ::redis::{Client, Cmd, FromRedisValue, Msg, Pipeline, RedisError, RedisResult, cmd, pipe};
use arc_swap::ArcSwap;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::{Presence, PresenceError, Result, Subscription};

/// How long one operation may wait for Redis, reconnection included, before it fails with
/// [`PresenceError::Unavailable`].
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the driver checks that both connections answer, so a connection that died without
/// a word (or a Redis restart while this host was idle) is replaced before the next caller needs it.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// The subscriber connection's reconnect delays: doubling from the first to the second.
const RECONNECT_DELAY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));
/// Topics per SUBSCRIBE when resubscribing after a reconnect.
const SUBSCRIBE_BATCH: usize = 512;
/// The longest time to live sent to Redis, in milliseconds (about 35,000 years): Redis refuses
/// expiry times that overflow its clock.
const MAX_TTL_MS: u128 = 1 << 50;

/// Presence in Redis (or any server speaking its protocol), with the commands Colyseus's
/// `RedisPresence` sends, so hosts and Colyseus processes can share one.
///
/// Create it inside a Tokio runtime: it spawns the task that drives its subscriptions, which
/// ends when the `RedisPresence` is dropped (and with it every subscription).
pub struct RedisPresence {
    client: Client,
    /// The command connection, shared with the driver; replaced when an operation times out, in
    /// case the connection went silent without closing (a manager only reconnects on errors it
    /// sees).
    commands: Arc<ArcSwap<ConnectionManager>>,
    hub: Arc<Hub>,
    driver: JoinHandle<()>,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence").field("client", &self.client).finish_non_exhaustive()
    }
}

impl Drop for RedisPresence {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl RedisPresence {
    /// Connects to Redis at `url` (`redis://[user:password@]host[:port][/db]`; `rediss://` is not
    /// supported), opening the command and the subscriber connections.
    ///
    /// Fails with [`PresenceError::Config`] for a malformed URL and with
    /// [`PresenceError::Unavailable`] when Redis does not answer within [`TIMEOUT`].
    pub async fn connect(url: &str) -> Result<Self> {
        let client =
            Client::open(url).map_err(|e| PresenceError::Config(format!("invalid redis url: {e}")))?;
        let connect = async {
            let commands = ConnectionManager::new_with_config(client.clone(), manager_config()).await?;
            let pubsub = client.get_async_pubsub().await?;
            Ok::<_, RedisError>((commands, pubsub))
        };
        let (commands, pubsub) = timeout(TIMEOUT, connect)
            .await
            .map_err(|_| unanswered("connecting"))?
            .map_err(|e| unavailable(&e))?;
        let (sink, stream) = pubsub.split();
        let (watch_tx, watch_rx) = mpsc::unbounded_channel();
        let hub = Arc::new(Hub {
            topics: Mutex::default(),
            order: tokio::sync::Mutex::new(()),
            sink: watch::Sender::new(Some(sink)),
            watch: watch_tx,
        });
        let commands = Arc::new(ArcSwap::from_pointee(commands));
        let driver = tokio::spawn(drive(hub.clone(), client.clone(), commands.clone(), stream, watch_rx));
        Ok(Self { client, commands, hub, driver })
    }

    /// Sends `request`, bounded by [`TIMEOUT`]. A request that failed because the connection was
    /// down is sent once more (on the connection the manager makes meanwhile) when `retry`
    /// allows it.
    async fn call<T: FromRedisValue>(&self, key: &str, retry: Retry, request: Request) -> Result<T> {
        let current = self.commands.load_full();
        let attempt = async {
            let mut con = (*current).clone();
            match request.send(&mut con).await {
                Err(e) if retry.allows(&e) => request.send(&mut con).await,
                done => done,
            }
        };
        match timeout(TIMEOUT, attempt).await {
            Ok(done) => done.map_err(|e| classify(e, key)),
            Err(_) => {
                // Nothing came back at all: the connection may be half-open, which the manager
                // never notices. Start afresh (unless a concurrent caller already did).
                if let Ok(fresh) =
                    ConnectionManager::new_lazy_with_config(self.client.clone(), manager_config())
                {
                    self.commands.compare_and_swap(&current, Arc::new(fresh));
                }
                Err(unanswered(&request.name()))
            }
        }
    }

    async fn one<T: FromRedisValue>(&self, key: &str, retry: Retry, c: &mut Cmd) -> Result<T> {
        self.call(key, retry, Request::One(std::mem::take(c))).await
    }
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(3)
        .set_min_delay(RECONNECT_DELAY.0)
        .set_max_delay(RECONNECT_DELAY.1)
}

/// Milliseconds to live, as PSETEX and PEXPIRE take them: at least 1 (PSETEX refuses 0).
fn millis(ttl: Duration) -> u64 {
    ttl.as_millis().clamp(1, MAX_TTL_MS) as u64
}

#[async_trait::async_trait]
impl Presence for RedisPresence {
    async fn set(&self, key: &str, value: &str) -> Result<()> {
        self.one(key, Retry::Idempotent, cmd("SET").arg(key).arg(value)).await
    }
    async fn setex(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        // Colyseus sends SETEX with seconds; PSETEX is the same command in milliseconds.
        self.one(key, Retry::Idempotent, cmd("PSETEX").arg(key).arg(millis(ttl)).arg(value)).await
    }
    async fn get(&self, key: &str) -> Result<Option<String>> {
        self.one(key, Retry::Idempotent, cmd("GET").arg(key)).await
    }
    async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<String>>> {
        let Some(first) = keys.first() else { return Ok(Vec::new()) };
        // MGET answers nil for a key of another kind; decoded per value so one odd key cannot
        // fail the whole read.
        let values: Vec<::redis::Value> = self.one(first, Retry::Idempotent, cmd("MGET").arg(keys)).await?;
        Ok(values.into_iter().map(|v| String::from_redis_value(v).ok()).collect())
    }
    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> Result<bool> {
        let set: Option<String> = self
            .one(key, Retry::IfUnsent, cmd("SET").arg(key).arg(value).arg("NX").arg("PX").arg(millis(ttl)))
            .await?;
        Ok(set.is_some())
    }
    async fn del_if_equal(&self, key: &str, value: &str) -> Result<bool> {
        // `pcall`: a key of another kind is left alone, not an error.
        const SCRIPT: &str = "if redis.pcall('GET', KEYS[1]) == ARGV[1] then \
                              return redis.call('DEL', KEYS[1]) else return 0 end";
        let n: i64 =
            self.one(key, Retry::Idempotent, cmd("EVAL").arg(SCRIPT).arg(1).arg(key).arg(value)).await?;
        Ok(n == 1)
    }
    async fn expire_if_equal(&self, key: &str, value: &str, ttl: Duration) -> Result<bool> {
        const SCRIPT: &str = "if redis.pcall('GET', KEYS[1]) == ARGV[1] then \
                              return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
        let n: i64 = self
            .one(key, Retry::Idempotent, cmd("EVAL").arg(SCRIPT).arg(1).arg(key).arg(value).arg(millis(ttl)))
            .await?;
        Ok(n == 1)
    }
    async fn del(&self, key: &str) -> Result<()> {
        self.one(key, Retry::Idempotent, cmd("DEL").arg(key)).await
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        self.one(key, Retry::Idempotent, cmd("EXISTS").arg(key)).await
    }
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.one(key, Retry::Idempotent, cmd("PEXPIRE").arg(key).arg(millis(ttl))).await
    }
    async fn sadd(&self, key: &str, member: &str) -> Result<bool> {
        self.one(key, Retry::IfUnsent, cmd("SADD").arg(key).arg(member)).await
    }
    async fn smembers(&self, key: &str) -> Result<Vec<String>> {
        self.one(key, Retry::Idempotent, cmd("SMEMBERS").arg(key)).await
    }
    async fn sismember(&self, key: &str, member: &str) -> Result<bool> {
        self.one(key, Retry::Idempotent, cmd("SISMEMBER").arg(key).arg(member)).await
    }
    async fn srem(&self, key: &str, member: &str) -> Result<bool> {
        self.one(key, Retry::IfUnsent, cmd("SREM").arg(key).arg(member)).await
    }
    async fn scard(&self, key: &str) -> Result<usize> {
        self.one(key, Retry::Idempotent, cmd("SCARD").arg(key)).await
    }
    async fn sinter(&self, keys: &[&str]) -> Result<Vec<String>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.one(&keys.join(", "), Retry::Idempotent, cmd("SINTER").arg(keys)).await
    }
    async fn hset(&self, key: &str, field: &str, value: &str) -> Result<bool> {
        self.one(key, Retry::IfUnsent, cmd("HSET").arg(key).arg(field).arg(value)).await
    }
    async fn hincrby(&self, key: &str, field: &str, by: i64) -> Result<i64> {
        self.one(key, Retry::IfUnsent, cmd("HINCRBY").arg(key).arg(field).arg(by)).await
    }
    async fn hincrbyex(&self, key: &str, field: &str, by: i64, ttl: Duration) -> Result<i64> {
        let mut transaction = pipe();
        transaction.atomic().cmd("HINCRBY").arg(key).arg(field).arg(by);
        transaction.cmd("PEXPIRE").arg(key).arg(millis(ttl)).ignore();
        let (n,): (i64,) = self.call(key, Retry::IfUnsent, Request::Atomic(transaction)).await?;
        Ok(n)
    }
    async fn hget(&self, key: &str, field: &str) -> Result<Option<String>> {
        self.one(key, Retry::Idempotent, cmd("HGET").arg(key).arg(field)).await
    }
    async fn hdel(&self, key: &str, field: &str) -> Result<bool> {
        self.one(key, Retry::IfUnsent, cmd("HDEL").arg(key).arg(field)).await
    }
    async fn hlen(&self, key: &str) -> Result<usize> {
        self.one(key, Retry::Idempotent, cmd("HLEN").arg(key)).await
    }
    async fn hgetall(&self, key: &str) -> Result<HashMap<String, String>> {
        self.one(key, Retry::Idempotent, cmd("HGETALL").arg(key)).await
    }
    async fn incrby(&self, key: &str, by: i64) -> Result<i64> {
        self.one(key, Retry::IfUnsent, cmd("INCRBY").arg(key).arg(by)).await
    }
    async fn rpush(&self, key: &str, value: &str) -> Result<usize> {
        self.one(key, Retry::IfUnsent, cmd("RPUSH").arg(key).arg(value)).await
    }
    async fn lpush(&self, key: &str, value: &str) -> Result<usize> {
        self.one(key, Retry::IfUnsent, cmd("LPUSH").arg(key).arg(value)).await
    }
    async fn rpop(&self, key: &str) -> Result<Option<String>> {
        self.one(key, Retry::IfUnsent, cmd("RPOP").arg(key)).await
    }
    async fn lpop(&self, key: &str) -> Result<Option<String>> {
        self.one(key, Retry::IfUnsent, cmd("LPOP").arg(key)).await
    }
    async fn llen(&self, key: &str) -> Result<usize> {
        self.one(key, Retry::Idempotent, cmd("LLEN").arg(key)).await
    }
    async fn publish(&self, topic: &str, message: &str) -> Result<usize> {
        self.one(topic, Retry::IfUnsent, cmd("PUBLISH").arg(topic).arg(message)).await
    }
    async fn subscribe(&self, topic: &str) -> Result<Subscription> {
        let (tx, rx) = mpsc::unbounded_channel();
        match timeout(TIMEOUT, self.hub.subscribe(topic, tx)).await {
            Ok(Ok(())) => Ok(rx),
            Ok(Err(e)) => Err(classify(e, topic)),
            // The receiver is dropped here, so the driver forgets the topic again (and
            // unsubscribes it if the SUBSCRIBE went through after all).
            Err(_) => Err(unanswered("SUBSCRIBE")),
        }
    }
    async fn channels(&self, pattern: &str) -> Result<Vec<String>> {
        let mut names: Vec<String> =
            self.one(pattern, Retry::Idempotent, cmd("PUBSUB").arg("CHANNELS").arg(pattern)).await?;
        names.sort();
        Ok(names)
    }
}

/// A command, or commands run atomically (MULTI … EXEC).
enum Request {
    One(Cmd),
    Atomic(Pipeline),
}

impl Request {
    async fn send<T: FromRedisValue>(&self, con: &mut ConnectionManager) -> RedisResult<T> {
        match self {
            Request::One(c) => c.query_async(con).await,
            Request::Atomic(p) => p.query_async(con).await,
        }
    }

    /// The command's name, for messages.
    fn name(&self) -> String {
        let first = match self {
            Request::One(c) => Some(c),
            Request::Atomic(p) => p.cmd_iter().next(),
        };
        let name = first.and_then(|c| c.args_iter().next()).and_then(|arg| match arg {
            ::redis::Arg::Simple(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        });
        match self {
            Request::One(_) => name.unwrap_or_default(),
            Request::Atomic(_) => format!("MULTI {}", name.unwrap_or_default()),
        }
    }
}

/// When a request that failed may be sent again.
#[derive(Clone, Copy)]
enum Retry {
    /// Sending it twice does what sending it once does, and answers the same: retry after any
    /// connection failure.
    Idempotent,
    /// Retry only if it certainly never reached Redis (the connection was refused), since it may
    /// otherwise have run already.
    IfUnsent,
}

impl Retry {
    fn allows(self, e: &RedisError) -> bool {
        match self {
            Retry::Idempotent => e.is_unrecoverable_error(),
            Retry::IfUnsent => e.is_connection_refusal(),
        }
    }
}

/// The presence error for a Redis error about `key`.
fn classify(e: RedisError, key: &str) -> PresenceError {
    // A command failing inside MULTI … EXEC reports its error among the transaction's.
    let server = e.clone().into_server_errors().and_then(|all| all.first().map(|(_, s)| s.clone()));
    let (code, detail) = match &server {
        Some(s) => (Some(s.code()), s.details().unwrap_or_default()),
        None => (e.code(), e.detail().unwrap_or_default()),
    };
    match code {
        Some("WRONGTYPE") => PresenceError::WrongType(key.into()),
        // INCRBY and HINCRBY on a value that is not an integer.
        Some("ERR") if detail.contains("not an integer") => PresenceError::WrongType(key.into()),
        Some("ERR") if detail.contains("overflow") => PresenceError::Overflow(key.into()),
        _ => unavailable(&e),
    }
}

fn unavailable(e: &RedisError) -> PresenceError {
    PresenceError::Unavailable(format!("redis: {e}"))
}

fn unanswered(what: &str) -> PresenceError {
    PresenceError::Unavailable(format!("redis did not answer {what} within {}s", TIMEOUT.as_secs()))
}

/// What callers of `subscribe` and the driver task share.
struct Hub {
    /// Topic → the senders of its receivers. Locked briefly, never across an await.
    topics: Mutex<HashMap<String, Vec<mpsc::UnboundedSender<String>>>>,
    /// Held while subscribing, unsubscribing and resubscribing after a reconnect, so the topics
    /// Redis has this connection subscribed to follow the order of the decisions taken on
    /// `topics`.
    order: tokio::sync::Mutex<()>,
    /// The subscriber connection's command half; `None` while the connection is down.
    sink: watch::Sender<Option<PubSubSink>>,
    /// New receivers for the driver to watch: a topic is unsubscribed once its last receiver is
    /// dropped.
    watch: mpsc::UnboundedSender<(String, mpsc::UnboundedSender<String>)>,
}

impl Hub {
    /// Registers `tx` for `topic` and has the subscriber connection SUBSCRIBE to it, waiting
    /// for a connection while it is being re-established. The caller bounds the wait.
    async fn subscribe(&self, topic: &str, tx: mpsc::UnboundedSender<String>) -> RedisResult<()> {
        let mut sinks = self.sink.subscribe();
        let mut registered = false;
        loop {
            if sinks.wait_for(Option::is_some).await.is_err() {
                return Err(closed());
            }
            let order = self.order.lock().await;
            let Some(mut sink) = self.sink.borrow().clone() else { continue };
            if !registered {
                self.topics.lock().expect("topics lock").entry(topic.into()).or_default().push(tx.clone());
                let _ = self.watch.send((topic.into(), tx.clone()));
                registered = true;
            }
            match sink.subscribe(topic).await {
                Ok(()) => return Ok(()),
                // The connection is going away; the driver replaces it (and resubscribes
                // registered topics, this one included). Try again on the new one.
                Err(e) if e.is_unrecoverable_error() => {
                    tracing::debug!(topic, error = %e, "redis subscription failed; retrying");
                }
                Err(e) => return Err(e),
            }
            drop(order);
            sleep(RECONNECT_DELAY.0).await;
        }
    }

    /// Topics with at least one live receiver; the others are forgotten.
    fn live_topics(&self) -> Vec<String> {
        let mut topics = self.topics.lock().expect("topics lock");
        topics.retain(|_, senders| {
            senders.retain(|tx| !tx.is_closed());
            !senders.is_empty()
        });
        topics.keys().cloned().collect()
    }

    /// Hands a message to the topic's receivers; true if none is left.
    fn deliver(&self, msg: &Msg) -> bool {
        let payload = String::from_utf8_lossy(msg.get_payload_bytes());
        let mut topics = self.topics.lock().expect("topics lock");
        match topics.get_mut(msg.get_channel_name()) {
            Some(senders) => {
                senders.retain(|tx| tx.send(payload.clone().into_owned()).is_ok());
                senders.is_empty()
            }
            None => true,
        }
    }
}

fn closed() -> RedisError {
    RedisError::from((::redis::ErrorKind::Client, "presence closed"))
}

/// Unsubscribes the subscriber connection from `topic` unless it has a live receiver again.
async fn unsubscribe_if_unused(hub: Arc<Hub>, topic: String) {
    let _order = hub.order.lock().await;
    {
        let mut topics = hub.topics.lock().expect("topics lock");
        if let Some(senders) = topics.get_mut(&topic) {
            senders.retain(|tx| !tx.is_closed());
            if !senders.is_empty() {
                return;
            }
            topics.remove(&topic);
        }
    }
    // While the connection is down there is nothing to do: the topic is no longer registered,
    // so the next connection does not subscribe to it.
    let sink = hub.sink.borrow().clone();
    if let Some(mut sink) = sink {
        match timeout(TIMEOUT, sink.unsubscribe(&topic)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(topic, error = %e, "redis unsubscribe failed"),
            Err(_) => tracing::debug!(topic, "redis unsubscribe timed out"),
        }
    }
}

/// Resolves with `topic` once the receiver of `tx` is dropped.
async fn receiver_dropped(topic: String, tx: mpsc::UnboundedSender<String>) -> String {
    tx.closed().await;
    topic
}

/// The next message, or `None` when the connection is lost; never resolves while there is none.
async fn next_message(stream: &mut Option<PubSubStream>) -> Option<Msg> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Opens a subscriber connection, subscribes it to every topic with a live receiver and makes
/// it the one callers use.
async fn reconnect(hub: &Hub, client: &Client) -> RedisResult<PubSubStream> {
    let pubsub = timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
    let (mut sink, stream) = pubsub.split();
    let _order = hub.order.lock().await;
    let topics = hub.live_topics();
    for batch in topics.chunks(SUBSCRIBE_BATCH) {
        timeout(TIMEOUT, sink.subscribe(batch))
            .await
            .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
    }
    tracing::info!(topics = topics.len(), "redis subscriber connection re-established");
    hub.sink.send_replace(Some(sink));
    Ok(stream)
}

/// Sends PING on the command connection and ignores the answer: a dead connection makes the
/// manager reconnect now rather than on the next caller's command.
fn poke(commands: &ArcSwap<ConnectionManager>) {
    let mut con = (**commands.load()).clone();
    tokio::spawn(async move {
        let _ = timeout(TIMEOUT, cmd("PING").query_async::<::redis::Value>(&mut con)).await;
    });
}

/// The driver task: owns the subscriber connection's message stream.
async fn drive(
    hub: Arc<Hub>,
    client: Client,
    commands: Arc<ArcSwap<ConnectionManager>>,
    stream: PubSubStream,
    mut watch: mpsc::UnboundedReceiver<(String, mpsc::UnboundedSender<String>)>,
) {
    let mut stream = Some(stream);
    let mut dropped = FuturesUnordered::new();
    let mut delay = RECONNECT_DELAY.0;
    let mut retry_at = Instant::now();
    let mut health = tokio::time::interval_at(Instant::now() + HEALTH_INTERVAL, HEALTH_INTERVAL);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = next_message(&mut stream) => match msg {
                Some(msg) => {
                    if hub.deliver(&msg) {
                        tokio::spawn(unsubscribe_if_unused(hub.clone(), msg.get_channel_name().into()));
                    }
                }
                None => {
                    tracing::warn!("redis subscriber connection lost; reconnecting");
                    hub.sink.send_replace(None);
                    stream = None;
                    delay = RECONNECT_DELAY.0;
                    retry_at = Instant::now();
                    // The command connection most likely went down with it.
                    poke(&commands);
                }
            },
            () = sleep_until(retry_at), if stream.is_none() => {
                match reconnect(&hub, &client).await {
                    Ok(s) => stream = Some(s),
                    Err(e) => {
                        tracing::debug!(error = %e, "redis subscriber reconnect failed");
                        retry_at = Instant::now() + delay;
                        delay = (delay * 2).min(RECONNECT_DELAY.1);
                    }
                }
            }
            Some((topic, tx)) = watch.recv() => dropped.push(receiver_dropped(topic, tx)),
            Some(topic) = dropped.next(), if !dropped.is_empty() => {
                tokio::spawn(unsubscribe_if_unused(hub.clone(), topic));
            }
            _ = health.tick() => {
                poke(&commands);
                let sink = hub.sink.borrow().clone();
                if let Some(mut sink) = sink
                    && !matches!(timeout(TIMEOUT, sink.ping::<::redis::Value>()).await, Ok(Ok(_)))
                {
                    tracing::warn!("redis subscriber connection does not answer; reconnecting");
                    hub.sink.send_replace(None);
                    stream = None;
                    delay = RECONNECT_DELAY.0;
                    retry_at = Instant::now();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_milliseconds_within_what_redis_accepts() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(millis(Duration::MAX), MAX_TTL_MS as u64);
    }

    #[test]
    fn server_errors_map_to_presence_errors() {
        let server =
            |code: &str, detail: &str| ::redis::make_extension_error(code.into(), Some(detail.into()));
        let wrong = server("WRONGTYPE", "Operation against a key holding the wrong kind of value");
        assert!(matches!(classify(wrong, "k"), PresenceError::WrongType(k) if k == "k"));
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let e = classify(io, "k");
        assert!(matches!(e, PresenceError::Unavailable(_)), "{e}");
        assert!(e.to_string().starts_with("presence unavailable: redis: "), "{e}");
    }

    #[test]
    fn only_requests_that_never_reached_redis_are_retried_unless_idempotent() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let dropped = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(Retry::IfUnsent.allows(&refused));
        assert!(!Retry::IfUnsent.allows(&dropped));
        assert!(Retry::Idempotent.allows(&dropped));
        assert!(Request::Atomic(pipe().atomic().cmd("HINCRBY").to_owned()).name() == "MULTI HINCRBY");
    }
}
