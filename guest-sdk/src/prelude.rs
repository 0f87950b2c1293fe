//! Everything a room needs: `use odeon_guest::prelude::*;`.

pub use crate::export_room;
pub use crate::migration::{self, Migration};
pub use crate::{
    Answer, Auth, AuthContext, BroadcastOptions, Client, Ctx, Handlers, Inputs, Key, KeyExt, Level, Listing,
    Message, MessageType, MessageTypeExt, OpId, Payload, PresenceValue, PresenceValueExt, Reject, Room,
    RoomError, Step, TimerId, Value,
};
pub use crate::{ArraySchema, MapSchema, Schema, Shared};
