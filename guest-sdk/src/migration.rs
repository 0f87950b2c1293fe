//! Live migration: a running room moves to a new version of its code without its clients
//! noticing, the way Erlang's `code_change` moves a process.
//!
//! When an operator deploys with `?migrate=1`, the host freezes each running room of the type
//! between two calls, asks the old code for [`Room::migrate_out`](crate::Room::migrate_out) (the room's own data as
//! bytes), starts the new code and calls its [`Room::migrate_in`](crate::Room::migrate_in) with those bytes and the old
//! code's identity ([`Migration`]). The SDK carries everything else: the clients, timers,
//! outstanding presence operations and, for schema state, the reference ids and map indexes
//! the clients hold, so `room.state` keeps its objects and callbacks on every client. The host
//! carries seats, reconnection windows, the patch clock, input acks, the listing and the
//! sockets. The state's value ([`Ctx::state`](crate::Ctx::state)) is the room's to carry, like
//! its own fields: `migrate_out` writes it, and `migrate_in` puts it back into `ctx.state`
//! (below). So is the clients' [user data](crate::Ctx::user_data), which the new code starts
//! without.
//!
//! ```
//! use odeon_guest::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Schema, Default, Serialize, Deserialize)]
//! pub struct Score {
//!     points: u32,
//! }
//!
//! pub struct Game {
//!     rounds: u32,
//! }
//!
//! impl Room for Game {
//!     const NAME: &'static str = "game";
//!     type State = Score;
//!     type UserData = ();
//!     const VERSION: u32 = 2;
//!
//!     fn on_create(_ctx: &mut Ctx<Score>, _options: Payload) -> Result<Self, RoomError> {
//!         Ok(Game { rounds: 0 })
//!     }
//!
//!     fn migrate_out(&mut self, ctx: &Ctx<Score>) -> Result<Vec<u8>, RoomError> {
//!         migration::encode(&(&ctx.state, self.rounds))
//!     }
//!
//!     fn migrate_in(ctx: &mut Ctx<Score>, from: Migration) -> Result<Self, RoomError> {
//!         // Version 1 kept no round count.
//!         let rounds;
//!         (ctx.state, rounds) = match from.version() {
//!             1 => (from.decode::<Score>()?, 0),
//!             _ => from.decode::<(Score, u32)>()?,
//!         };
//!         Ok(Game { rounds })
//!     }
//! }
//! # export_room!(Game);
//! ```
//!
//! A room that fails to move (its hook returns an error or traps, runs past its deadline, or
//! rebuilds a state whose schema or content differs from what the clients hold) keeps running
//! on its old code, and the deploy reports why. The schema of the state cannot change in a
//! migration: clients keep decoding with the reflection they got when they joined. New rooms
//! get the new version either way.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::RoomError;

/// The reason a room without migration hooks gives.
pub(crate) const NO_HOOKS: &str = "the room type has no migration hooks (Room::migrate_out and Room::migrate_in): \
                                   it keeps its version until it disposes";

/// What [`Room::migrate_in`](crate::Room::migrate_in) receives from the room's previous code.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    version: u32,
    hash: String,
    bytes: Vec<u8>,
}

impl Migration {
    pub(crate) fn new(version: u32, hash: String, bytes: Vec<u8>) -> Self {
        Self { version, hash, bytes }
    }

    /// The previous code's [`Room::VERSION`](crate::Room::VERSION).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The content hash (SHA-256, hex) of the previous code's module, as the deploy state
    /// shows it.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The bytes the previous code's [`Room::migrate_out`](crate::Room::migrate_out) wrote.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes as a value written with [`encode`].
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, RoomError> {
        rmp_serde::from_slice(&self.bytes).map_err(|e| {
            RoomError::new(format!("migration data from version {} does not decode: {e}", self.version))
        })
    }
}

/// Writes `value` for the next version's [`Migration::decode`] (MessagePack, with field names,
/// so a struct may gain optional fields between versions).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, RoomError> {
    rmp_serde::to_vec_named(value).map_err(|e| RoomError::new(format!("migration data does not encode: {e}")))
}
