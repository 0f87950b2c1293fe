//! Write Odeon rooms in safe Rust.
//!
//! A room type is a plugin: a `wasm32-wasip1` module the host loads and runs one instance of per
//! room. This crate owns everything between the room's code and the guest ABI
//! ([`odeon_protocol::abi`]), so room authors never write `unsafe`, `extern` or pointers:
//!
//! - [`Room`]: the room's state and per-client data types, and its lifecycle hooks (create,
//!   auth, join, leave, drop, reconnect, messages, ticks, timers, dispose), mirroring Colyseus
//!   0.17, and 0.18's requests ([`Answer`]) and inputs on a fixed timestep ([`Inputs`],
//!   [`Step`]).
//! - [`Ctx`]: what a hook may do. Every action is queued as an effect and carried out by the host
//!   after the hook returns.
//! - [`Payload`] and [`Message`]: MessagePack from clients, decoded on demand with serde.
//! - [`Presence`] (from [`Ctx::presence`]) and [`Ctx::query_rooms`]: shared state, pub/sub and
//!   room listings. Nothing blocks: each request returns an [`OpId`] and its answer arrives in a
//!   later hook ([`Room::on_presence`], [`Room::on_rooms`], [`Room::on_presence_message`]).
//! - `#[derive(Schema)]`: room state in plain Rust structs, declared as [`Room::State`], kept by
//!   the SDK in [`Ctx::state`] and synchronised to clients as `room.state`.
//! - [`Handlers`]: typed message handlers whose `Result` is the sender's answer ([`Reject`]).
//! - [`export_room!`]: generates the module's exports for a room type.
//! - [`testing`]: a native test host, so room logic is tested with `cargo test`.
//!
//! ```
//! use odeon_guest::prelude::*;
//! use serde::Serialize;
//!
//! pub struct Chat;
//!
//! #[derive(Serialize)]
//! struct Said<'a> {
//!     from: &'a str,
//!     text: String,
//! }
//!
//! impl Room for Chat {
//!     const NAME: &'static str = "chat";
//!     type State = ();
//!     type UserData = ();
//!
//!     fn on_create(_ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
//!         Ok(Chat)
//!     }
//!
//!     fn on_message(&mut self, ctx: &mut Ctx, client: &Client, message: Message) {
//!         if message.is("say") {
//!             let text: String = message.payload.decode().unwrap_or_default();
//!             ctx.broadcast("said", &Said { from: client.session_id(), text });
//!         }
//!     }
//! }
//!
//! export_room!(Chat);
//! ```
//!
//! Internally the crate has three layers: a private `sys` module with the host imports (native
//! stand-ins off `wasm32`), the safe API above, and the hidden `rt` module the export macro calls.
#![deny(missing_docs)]

mod ctx;
pub mod handler;
pub mod log;
mod message;
pub mod migration;
mod payload;
pub mod prelude;
mod presence;
mod request;
mod room;
#[doc(hidden)]
pub mod rt;
mod state;
mod sys;
pub mod testing;

pub use ctx::{BroadcastOptions, Ctx, TimerId};
pub use handler::{FromPayload, Handlers, INVALID_PAYLOAD, Reject};
pub use message::{IntoMessageType, Message, MessageTypeExt};
pub use migration::Migration;
/// A presence key or topic: build one with [`KeyExt`] (`Key::global("visits")`), or pass a
/// `&str` for a name scoped to the room type.
pub use odeon_protocol::abi::Key;
/// A room listing, the answer to [`Ctx::query_rooms`] in [`Room::on_rooms`].
///
/// Its `metadata` is a MessagePack map: `Payload::new(listing.metadata.clone()).decode()`.
pub use odeon_protocol::abi::Listing;
/// A log level for [`Ctx::log`] and [`log::log`].
pub use odeon_protocol::abi::LogLevel as Level;
/// A client message type: `MessageType::Str("chat")` or `MessageType::Num(7.0)`.
///
/// Methods that take a type accept anything [`IntoMessageType`], so `"chat"` and `7` work too.
pub use odeon_protocol::abi::MessageType;
/// A presence operation, as [`Presence::run`] takes it and tests inspect it.
pub use odeon_protocol::abi::PresenceOp;
/// A presence answer, read with [`PresenceValueExt`]: `value.as_int()`.
pub use odeon_protocol::abi::PresenceValue;
/// The schema library itself, for what the prelude leaves out.
pub use odeon_schema as schema;
/// Derives [`Schema`](trait@Schema) for a state struct; see [`odeon_schema`]'s docs. The
/// generated code reaches the schema library through this crate (`odeon_guest::schema`), so a
/// room needs no other dependency.
pub use odeon_schema_derive::GuestSchema as Schema;
pub use schema_items::*;

/// The schema items, as one glob: a glob import yields to the explicit import of the derive
/// above, so `Schema` is odeon-schema's trait and this crate's derive.
mod schema_items {
    /// Synchronised state: derive [`Schema`] on plain structs and declare the root as
    /// [`Room::State`](crate::Room::State); every official client sees it as `room.state`.
    pub use odeon_schema::{ArraySchema, MapSchema, Schema, Shared, StateEncoder};
}
pub use payload::{Payload, PayloadError};
pub use presence::{IntoKey, KeyExt, OpId, Presence, PresenceValueExt};
pub use request::{Answer, Inputs, Step};
pub use rmpv::Value;
pub(crate) use room::RoomCtx;
pub use room::{Auth, AuthContext, Client, Room, RoomError};

/// The host's wall clock, in milliseconds since the Unix epoch, read now.
///
/// Prefer [`Ctx::now`], which is fixed for a batch of events and controlled by tests.
pub fn wall_clock_ms() -> u64 {
    sys::now_ms()
}
