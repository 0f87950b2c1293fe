//! Publishes a room's listing from the side, so the room never waits for the driver.
//!
//! The room hands over the latest listing whenever something a matchmaker sees changes; a task
//! of its own writes it, keeping only the newest value while a write is in flight, retrying with
//! backoff while the driver is down, and rewriting the whole listing after a failure so the
//! listing heals after an outage. When the room ends, the task removes the listing (with the same
//! retries, for a bounded time) and tells lobbies.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::driver::{Driver, ListingUpdate, RoomListing};
use crate::presence::Presence;

/// The channel on which listing changes are announced.
pub const LOBBY_CHANNEL: &str = "$lobby";

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the removal of a disposed room's listing is retried.
const REMOVE_FOR: Duration = Duration::from_secs(60);

/// What the room last handed over.
enum Latest {
    /// The listing as it is now.
    Listing(Box<RoomListing>),
    /// The listing as it is now, to be written whole (it may be missing from the driver).
    Rewrite(Box<RoomListing>),
    Removed,
    /// The room moved to another host, which owns the listing now: stop without removing it.
    HandedOver,
}

/// The room's side of its publisher.
pub(super) struct ListingPublisher {
    tx: watch::Sender<Latest>,
    /// The listing as last handed over, to tell whether anything changed.
    published: RoomListing,
}

impl ListingPublisher {
    /// Starts publishing for a room whose listing `initial` is already in the driver.
    pub(super) fn start(driver: Arc<dyn Driver>, presence: Arc<dyn Presence>, initial: RoomListing) -> Self {
        let (tx, rx) = watch::channel(Latest::Listing(Box::new(initial.clone())));
        tokio::spawn(publish(driver, presence, initial.room_id.clone(), rx));
        Self { tx, published: initial }
    }

    /// Hands over `listing` if something a matchmaker sees changed.
    pub(super) fn update(&mut self, listing: &RoomListing) {
        let (l, p) = (listing, &self.published);
        let changed = (l.clients, l.locked, l.private, l.max_clients)
            != (p.clients, p.locked, p.private, p.max_clients)
            || l.metadata != p.metadata;
        if changed {
            self.published = listing.clone();
            self.tx.send_replace(Latest::Listing(Box::new(listing.clone())));
        }
    }

    /// Writes the whole listing again (after another process removed it).
    pub(super) fn rewrite(&mut self, listing: &RoomListing) {
        self.published = listing.clone();
        self.tx.send_replace(Latest::Rewrite(Box::new(listing.clone())));
    }

    /// The room is gone: remove its listing.
    pub(super) fn remove(&self) {
        self.tx.send_replace(Latest::Removed);
    }

    /// The room moved to another host, which wrote the listing under its own process id.
    pub(super) fn hand_over(&self) {
        self.tx.send_replace(Latest::HandedOver);
    }
}

impl Drop for ListingPublisher {
    fn drop(&mut self) {
        self.tx.send_if_modified(|latest| {
            if matches!(latest, Latest::HandedOver) {
                return false;
            }
            *latest = Latest::Removed;
            true
        });
    }
}

async fn publish(
    driver: Arc<dyn Driver>,
    presence: Arc<dyn Presence>,
    room_id: String,
    mut rx: watch::Receiver<Latest>,
) {
    let mut healthy = true;
    let mut backoff = FIRST_BACKOFF;
    // Each round publishes the newest value; a failed write is retried after a backoff, or at
    // once when a newer value arrives.
    while rx.changed().await.is_ok() {
        let listing = match &*rx.borrow_and_update() {
            Latest::Listing(l) => (**l).clone(),
            Latest::Rewrite(l) => {
                healthy = false;
                (**l).clone()
            }
            Latest::Removed => break,
            Latest::HandedOver => return,
        };
        let result = if healthy {
            driver.update(&room_id, update_of(&listing)).await
        } else {
            driver.insert(listing).await
        };
        match result {
            Ok(()) => {
                healthy = true;
                backoff = FIRST_BACKOFF;
                announce(&presence, &room_id, false).await;
            }
            Err(e) => {
                if healthy {
                    tracing::warn!(room = %room_id, "listing not updated, retrying: {e}");
                }
                healthy = false;
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = rx.changed() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                rx.mark_changed();
            }
        }
    }
    let until = tokio::time::Instant::now() + REMOVE_FOR;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match driver.remove(&room_id).await {
            Ok(()) => break,
            Err(e) if tokio::time::Instant::now() < until => {
                tracing::debug!(room = %room_id, "listing not removed yet: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                tracing::warn!(room = %room_id, "listing not removed: {e}");
                break;
            }
        }
    }
    announce(&presence, &room_id, true).await;
}

fn update_of(listing: &RoomListing) -> ListingUpdate {
    ListingUpdate {
        clients: Some(listing.clients),
        locked: Some(listing.locked),
        private: Some(listing.private),
        max_clients: Some(listing.max_clients),
        metadata: Some(listing.metadata.clone()),
    }
}

/// Tells lobbies on every process that a listing changed (`roomId,0`) or went away
/// (`roomId,1`), on the `$lobby` channel as Colyseus does.
pub(super) async fn announce(presence: &Arc<dyn Presence>, room_id: &str, removed: bool) {
    let message = format!("{room_id},{}", u8::from(removed));
    if let Err(e) = presence.publish(LOBBY_CHANNEL, &message).await {
        tracing::debug!(room = room_id, "lobby not told: {e}");
    }
}
