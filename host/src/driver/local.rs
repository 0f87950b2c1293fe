//! The embedded driver: listings in this process's memory.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Driver, DriverError, ListingUpdate, Query, RoomListing};

/// The embedded driver: listings in this process's memory.
#[derive(Debug, Default)]
pub struct LocalDriver {
    rooms: Mutex<HashMap<String, RoomListing>>,
}

#[async_trait::async_trait]
impl Driver for LocalDriver {
    async fn insert(&self, listing: RoomListing) -> Result<(), DriverError> {
        self.rooms.lock().expect("listing lock").insert(listing.room_id.clone(), listing);
        Ok(())
    }

    async fn update(&self, room_id: &str, owner: &str, update: ListingUpdate) -> Result<(), DriverError> {
        let mut rooms = self.rooms.lock().expect("listing lock");
        if let Some(l) = rooms.get_mut(room_id).filter(|l| l.process_id == owner) {
            update.apply(l);
        }
        Ok(())
    }

    async fn remove(&self, room_id: &str) -> Result<(), DriverError> {
        self.rooms.lock().expect("listing lock").remove(room_id);
        Ok(())
    }

    async fn find_by_id(&self, room_id: &str) -> Result<Option<RoomListing>, DriverError> {
        Ok(self.rooms.lock().expect("listing lock").get(room_id).cloned())
    }

    async fn find_one(&self, query: &Query) -> Result<Option<RoomListing>, DriverError> {
        let rooms = self.rooms.lock().expect("listing lock");
        let best = rooms.values().filter(|l| query.matches(l)).min_by(|a, b| query.compare(a, b));
        Ok(best.cloned())
    }

    async fn query(&self, name: Option<&str>) -> Result<Vec<RoomListing>, DriverError> {
        let rooms = self.rooms.lock().expect("listing lock");
        let mut all: Vec<_> = rooms.values().filter(|l| name.is_none_or(|n| l.name == n)).cloned().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.room_id.cmp(&b.room_id)));
        Ok(all)
    }

    async fn cleanup(&self, process_id: &str) -> Result<u64, DriverError> {
        let mut rooms = self.rooms.lock().expect("listing lock");
        let before = rooms.len();
        rooms.retain(|_, l| l.process_id != process_id);
        Ok((before - rooms.len()) as u64)
    }
}
