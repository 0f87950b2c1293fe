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
    /// A copy of a room that runs elsewhere (its move was abandoned): write the listing whole
    /// as that host has it, then stop without removing it.
    GiveBack(Box<RoomListing>),
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

    /// This copy's move was abandoned: the room runs as `listing` says (on the host it came
    /// from), which this copy's arrival overwrote.
    pub(super) fn give_back(&self, listing: &RoomListing) {
        self.tx.send_replace(Latest::GiveBack(Box::new(listing.clone())));
    }

    /// The room moved to another host, which wrote the listing under its own process id.
    pub(super) fn hand_over(&self) {
        self.tx.send_replace(Latest::HandedOver);
    }
}

impl Drop for ListingPublisher {
    fn drop(&mut self) {
        self.tx.send_if_modified(|latest| {
            // Handed over or given back: the listing is another host's to keep.
            if matches!(latest, Latest::HandedOver | Latest::GiveBack(_)) {
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
        // Taken out of the channel first: its guard is not held across a write.
        let latest = match &*rx.borrow_and_update() {
            Latest::Listing(l) => Ok((**l).clone()),
            Latest::Rewrite(l) => {
                healthy = false;
                Ok((**l).clone())
            }
            Latest::Removed => break,
            Latest::HandedOver => return,
            Latest::GiveBack(l) => Err((**l).clone()),
        };
        let listing = match latest {
            Ok(listing) => listing,
            Err(given_back) => return give_back(&*driver, &presence, given_back).await,
        };
        let result = if healthy {
            driver.update(&room_id, &listing.process_id, update_of(&listing)).await
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
    // Announced even if the driver never took it: lobbies drop the room either way.
    last_write(&room_id, "removed", || driver.remove(&room_id)).await;
    announce(&presence, &room_id, true).await;
}

/// Writes `listing` whole (an abandoned copy's last word).
async fn give_back(driver: &dyn Driver, presence: &Arc<dyn Presence>, listing: RoomListing) {
    let room_id = listing.room_id.clone();
    if last_write(&room_id, "given back", || driver.insert(listing.clone())).await {
        announce(presence, &room_id, false).await;
    }
}

/// A room's last listing write, retried with backoff for [`REMOVE_FOR`] while the driver
/// fails; whether it went through.
async fn last_write<F, Fut>(room_id: &str, what: &str, mut write: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::driver::DriverError>>,
{
    let until = tokio::time::Instant::now() + REMOVE_FOR;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match write().await {
            Ok(()) => return true,
            Err(e) if tokio::time::Instant::now() < until => {
                tracing::debug!(room = %room_id, "listing not {what} yet: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                tracing::warn!(room = %room_id, "listing not {what}: {e}");
                return false;
            }
        }
    }
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
