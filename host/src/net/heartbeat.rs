//! Heartbeats for every connection of the host from one task, without waking the connections.
//!
//! Connections are spread over [`BUCKETS`] buckets; each tick of the sweeper (the interval
//! divided by the buckets: 100 ms at the default 3 s) visits one bucket. A client heard from
//! since its last visit is fine; a silent one gets a WebSocket ping written straight to its
//! socket; one silent for [`MAX_MISSED`] visits in a row is dropped. So beats stay spread over
//! the interval (Colyseus pings every socket in one loop), the process wakes ten times a second
//! for all of them, and an idle connection's task only wakes to read its pong.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::wire::Wire;

/// How many groups the connections are spread over.
const BUCKETS: usize = 30;
/// A client silent for this many heartbeats in a row is dropped.
pub(crate) const MAX_MISSED: u8 = 2;

/// The host's heartbeat registry.
pub struct Heartbeats {
    buckets: Vec<Mutex<Vec<Weak<Wire>>>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Heartbeats {
    /// Starts the sweeper on the current runtime; it ends when the registry is dropped.
    pub fn start(interval: Duration) -> Arc<Self> {
        let this = Arc::new(Self {
            buckets: (0..BUCKETS).map(|_| Mutex::new(Vec::new())).collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
        });
        let weak = Arc::downgrade(&this);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval / BUCKETS as u32);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut bucket = 0;
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                this.sweep(bucket);
                bucket = (bucket + 1) % BUCKETS;
            }
        });
        this
    }

    /// Adds a connection; it leaves by itself once its wire is dropped.
    pub fn register(&self, wire: &Arc<Wire>) {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % BUCKETS;
        self.buckets[i].lock().unwrap_or_else(|e| e.into_inner()).push(Arc::downgrade(wire));
    }

    fn sweep(&self, bucket: usize) {
        let mut wires = self.buckets[bucket].lock().unwrap_or_else(|e| e.into_inner());
        wires.retain(|w| match w.upgrade() {
            Some(wire) => {
                wire.beat();
                wire.is_open()
            }
            None => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::wire::WireLimits;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test(start_paused = false)]
    async fn silent_clients_are_pinged_then_dropped_and_heard_ones_are_left_alone() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let wire = Arc::new(Wire::new(Arc::new(server), WireLimits::default()));
        let hb = Heartbeats { buckets: vec![Mutex::new(Vec::new())], next: Default::default() };
        hb.register(&wire);
        // New connections count as heard: the first visit sends nothing.
        hb.sweep(0);
        // Silent since: a ping.
        hb.sweep(0);
        let mut ping = [0u8; 2];
        client.read_exact(&mut ping).await.unwrap();
        assert_eq!(ping, [0x89, 0x00]);
        // Heard (the pong): fine again.
        wire.heard();
        hb.sweep(0);
        assert!(wire.is_open());
        hb.sweep(0);
        assert!(wire.is_open(), "one missed beat is not enough");
        hb.sweep(0);
        assert!(!wire.is_open(), "two missed beats in a row drop the client");
        assert_eq!(hb.buckets[0].lock().unwrap().len(), 0, "a dropped client leaves the registry");
    }
}
