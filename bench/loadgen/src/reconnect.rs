//! Getting back into a room that moved (`--reconnect-on-4010`): a drain closes the moved
//! room's sockets with 4010, and the 0.18 SDK then opens the room's WebSocket again at the
//! same URL with `&reconnectionToken=…&skipHandshake=1`. The host (or the proxy, through
//! `odeon:moved:<roomId>`) finds where the room runs now; that host sends JOIN_ROOM without the
//! schema reflection, and after the client's JOIN ack the full ROOM_STATE.
//!
//! A reconnection is timed from the close frame's arrival to that ROOM_STATE.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures_util::SinkExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Shared, Ws, connect, next_binary};
use crate::metrics::{Counters, Histogram};
use crate::schema::{Applied, ArenaTracker};
use crate::wire::{self, code};

/// Attempts per reconnection, the SDK's retries in short: 100 ms, then 200 ms … apart.
const ATTEMPTS: u32 = 4;

/// What a client needs to come back: the URL it joined by and its current token.
#[derive(Debug, Clone)]
pub struct Rejoin {
    /// The room WebSocket URL of the join (`…?sessionId=…`).
    pub url: String,
    /// The reconnection token of the last JOIN_ROOM.
    pub token: String,
    /// The client's session.
    pub session_id: String,
}

impl Rejoin {
    /// The URL of a reconnection, as the SDK builds it.
    pub fn url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}reconnectionToken={}&skipHandshake=1", self.url, self.token)
    }
}

/// Reconnection figures shared by every client.
#[derive(Debug)]
pub struct Reconnects {
    /// Whether clients reconnect after a 4010 close.
    pub enabled: bool,
    /// Close frame to ROOM_STATE on the new connection.
    pub took: Histogram,
    first_close_ms: AtomicU64,
    last_back_ms: AtomicU64,
    first_error: Mutex<Option<String>>,
    first_retry_reason: Mutex<Option<String>>,
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Reconnects {
    /// Figures for clients that reconnect (`enabled`) or not.
    pub fn new(enabled: bool) -> Self {
        Reconnects {
            enabled,
            took: Histogram::default(),
            first_close_ms: AtomicU64::new(u64::MAX),
            last_back_ms: AtomicU64::new(0),
            first_error: Mutex::new(None),
            first_retry_reason: Mutex::new(None),
        }
    }

    /// A 4010 close arrived now.
    pub fn closed(&self) {
        self.first_close_ms.fetch_min(unix_ms(), Relaxed);
    }

    /// Unix ms of the first 4010 close, if any.
    pub fn first_close_unix_ms(&self) -> Option<u64> {
        Some(self.first_close_ms.load(Relaxed)).filter(|&t| t != u64::MAX)
    }

    /// Unix ms of the last client back in its room, if any.
    pub fn last_back_unix_ms(&self) -> Option<u64> {
        Some(self.last_back_ms.load(Relaxed)).filter(|&t| t != 0)
    }

    /// The first reconnection's failure, if one failed.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().map_or(None, |e| e.clone())
    }

    /// Why the first attempt that was tried again failed, if one was.
    pub fn first_retry_reason(&self) -> Option<String> {
        self.first_retry_reason.lock().map_or(None, |e| e.clone())
    }
}

/// Reconnects a client whose socket the server closed with 4010 at `closed_at`, within the join
/// budget. On success the counters and the histogram have it; on failure the failure counter.
pub async fn reconnect(
    shared: &Shared,
    index: u32,
    rejoin: &mut Rejoin,
    closed_at: Instant,
) -> Option<(Ws, ArenaTracker)> {
    let r = &shared.reconnects;
    let tries = async {
        let mut last = anyhow!("no attempt");
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                Counters::bump(&shared.counters.reconnect_retries);
                tokio::time::sleep(Duration::from_millis(100) * attempt).await;
            }
            match once(shared, index, rejoin).await {
                Ok(back) => return Ok(back),
                Err(e) => {
                    if attempt + 1 < ATTEMPTS
                        && let Ok(mut first) = r.first_retry_reason.lock()
                    {
                        first.get_or_insert_with(|| format!("{e:#}"));
                    }
                    last = e.context(format!("attempt {}", attempt + 1));
                }
            }
        }
        Err(last)
    };
    let result = match tokio::time::timeout(shared.join_timeout, tries).await {
        Ok(r) => r,
        Err(_) => Err(anyhow!("reconnection timed out after {:?}", shared.join_timeout)),
    };
    match result {
        Ok(back) => {
            r.took.record(closed_at.elapsed());
            r.last_back_ms.fetch_max(unix_ms(), Relaxed);
            Counters::bump(&shared.counters.reconnections);
            Some(back)
        }
        Err(e) => {
            Counters::bump(&shared.counters.reconnect_failures);
            if let Ok(mut first) = r.first_error.lock() {
                first.get_or_insert_with(|| format!("{e:#}"));
            }
            None
        }
    }
}

/// One attempt: WebSocket, JOIN_ROOM (its token is the next one), ack, ROOM_STATE.
async fn once(shared: &Shared, index: u32, rejoin: &mut Rejoin) -> anyhow::Result<(Ws, ArenaTracker)> {
    let stream = connect(shared, index).await?;
    let url = rejoin.url();
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(shared.ws_config))
            .await
            .with_context(|| format!("WebSocket handshake {url}"))?;
    let frame = next_binary(&mut ws, "JOIN_ROOM").await?;
    let Some(token) = wire::join_room_token(&frame) else {
        bail!("expected JOIN_ROOM, got frame {:02x?}", &frame[..frame.len().min(16)]);
    };
    rejoin.token = token.to_owned();
    ws.send(Message::Binary(Bytes::from_static(&wire::JOIN_ACK))).await.context("sending JOIN ack")?;
    let mut tracker = ArenaTracker::new(&rejoin.session_id);
    loop {
        let frame = next_binary(&mut ws, "ROOM_STATE").await?;
        if frame.first() == Some(&code::ROOM_STATE) {
            let mut applied = Applied::default();
            if tracker.apply(&frame[1..], &mut applied).is_err() || tracker.own_ref().is_none() {
                Counters::bump(&shared.counters.decode_errors);
            }
            return Ok((ws, tracker));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_adds_the_token_and_skips_the_handshake() {
        let r = Rejoin {
            url: "ws://127.0.0.1:9/p1/r1?sessionId=s1".into(),
            token: "t0k".into(),
            session_id: "s1".into(),
        };
        assert_eq!(r.url(), "ws://127.0.0.1:9/p1/r1?sessionId=s1&reconnectionToken=t0k&skipHandshake=1");
    }

    #[test]
    fn first_close_and_last_return_are_kept() {
        let r = Reconnects::new(true);
        assert_eq!((r.first_close_unix_ms(), r.last_back_unix_ms()), (None, None));
        r.closed();
        let first = r.first_close_unix_ms().unwrap();
        r.closed();
        assert_eq!(r.first_close_unix_ms(), Some(first));
    }
}
