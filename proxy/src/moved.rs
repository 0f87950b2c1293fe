//! Where rooms that moved off a host run now (a drain): the host that took a room writes its
//! process id under [`odeon_protocol::registry::moved_key`], and the proxy reads it when a
//! client comes back by a path whose process is gone or draining.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

/// The longest a lookup may take; past it the client's path is used as it is.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);

/// Lookups of moved rooms, on a connection of their own.
pub struct MovedRooms {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl MovedRooms {
    /// Lookups through `client`.
    pub fn new(client: redis::Client) -> Self {
        Self { client, connection: Mutex::new(None) }
    }

    /// The process the room `room_id` moved to, if it did.
    pub async fn find(&self, room_id: &str) -> Option<String> {
        let lookup = async {
            let mut con = {
                let mut slot = self.connection.lock().await;
                match slot.as_ref() {
                    Some(con) => con.clone(),
                    None => {
                        let con = self.client.get_multiplexed_async_connection().await.ok()?;
                        *slot = Some(con.clone());
                        con
                    }
                }
            };
            let found: Result<Option<String>, _> =
                con.get(odeon_protocol::registry::moved_key(room_id)).await;
            if found.is_err() {
                *self.connection.lock().await = None;
            }
            found.ok().flatten()
        };
        tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await.ok().flatten()
    }
}
