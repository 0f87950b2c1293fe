//! Everything a room needs: `use odeon_guest::prelude::*;`.

pub use crate::export_room;
pub use crate::{
    Auth, AuthContext, BroadcastOptions, Client, Ctx, Level, Message, MessageType, MessageTypeExt, Payload,
    Room, RoomError, TimerId, Value,
};
