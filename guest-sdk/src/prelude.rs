//! Everything a room needs: `use odeon_guest::prelude::*;`.
//!
//! That includes serde's `Serialize` and `Deserialize` (trait and derive), for payloads and
//! answers; the derives' code names the `serde` crate, so a room depends on `serde` itself, as
//! the `just new-room` starter does.

pub use crate::export_room;
pub use crate::migration::{self, Migration};
pub use crate::{
    Answer, Auth, AuthContext, BroadcastOptions, Client, Ctx, Handlers, Inputs, Key, KeyExt, Level, Listing,
    Message, MessageType, MessageTypeExt, OpId, Payload, PresenceValue, PresenceValueExt, Reject, Room,
    RoomError, Step, TimerId, Value,
};
pub use crate::{ArraySchema, MapSchema, Schema, Shared};
pub use serde::{Deserialize, Serialize};
