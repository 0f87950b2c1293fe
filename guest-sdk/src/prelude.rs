//! Everything a room needs: `use odeon_guest::prelude::*;`.

pub use crate::export_room;
pub use crate::{ArraySchema, MapSchema, Schema, Shared, StateEncoder, SyncedState};
pub use crate::{
    Auth, AuthContext, BroadcastOptions, Client, Ctx, Key, KeyExt, Level, Listing, Message, MessageType,
    MessageTypeExt, OpId, Payload, PresenceValue, PresenceValueExt, Room, RoomError, TimerId, Value,
};
