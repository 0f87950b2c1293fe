//! The guest ABI: the contract between the host and a room plugin compiled to `wasm32-wasip1`.
//!
//! Room authors never see this module: `odeon-guest`'s `export_room!` generates the exports and
//! hides the imports. The host validates a module against it before it runs any of its code.
//!
//! # Exports (guest → host), checked by name and exact signature at load
//!
//! | export | signature | meaning |
//! |---|---|---|
//! | `memory` | memory | the guest's linear memory |
//! | `odeon_abi_version` | `() -> i32` | must return [`ABI_VERSION`] |
//! | `odeon_alloc` | `(len: i32) -> i32` | a guest buffer of `len` bytes the host fills before a call; the callee takes ownership |
//! | `odeon_manifest` | `() -> i64` | packed buffer holding a [`Manifest`] |
//! | `odeon_auth` | `(ptr: i32, len: i32) -> i64` | [`AuthRequest`] in, packed [`AuthDecision`] out |
//! | `odeon_events` | `(ptr: i32, len: i32) -> i64` | a [`Batch`] of events in, packed [`Effects`] out |
//! | `odeon_migrate_out` | `() -> i64` | optional: packed [`MigrateOut`], the live room's snapshot |
//! | `odeon_migrate_in` | `(ptr: i32, len: i32) -> i64` | optional: [`MigrateIn`] in, packed [`MigrateInResult`] out |
//!
//! A packed buffer is `(ptr << 32) | len`, owned by the guest and valid until the next call into it;
//! `0` means "empty".
//!
//! # Imports (host → guest), all in the module [`IMPORT_MODULE`]
//!
//! | import | signature | meaning |
//! |---|---|---|
//! | `log` | `(level: i32, ptr: i32, len: i32)` | a UTF-8 log line, tagged by the host with the room id |
//! | `now_ms` | `() -> i64` | the host's wall clock in milliseconds since the Unix epoch |
//!
//! 0.18's request/response and inputs are records too: [`Event::Request`] answered by
//! [`Effect::Respond`], and a room that announces [`Effect::SetInputs`] gets [`Event::Step`]s on
//! its fixed timestep. They were added without an ABI bump: older plugins never emit them.
//!
//! Everything a room does to the world (send, broadcast, lock, timers, presence…) is an [`Effect`]
//! returned from `odeon_events`, so one guest call serves a whole batch of events. Operations that
//! need an answer (presence, room queries) carry an id chosen by the guest, and the answer comes
//! back later as an [`Event`] with that id: slow services never run inside a guest call.
//!
//! # Traps
//! The host traps the guest (and disposes the room) when an import is given a pointer or length
//! outside the guest's memory, or a log line that is not UTF-8.
//!
//! All records are MessagePack (`rmp-serde`, compact arrays), encoded and decoded by this crate on
//! both sides, so both always agree on the layout.

use serde::{Deserialize, Serialize};

mod migrate;
mod services;

pub use migrate::{MigrateIn, MigrateInResult, MigrateOut};
pub use services::{Key, Listing, PresenceOp, PresenceValue};

/// The ABI version this crate describes; a guest exporting another version is refused.
pub const ABI_VERSION: u32 = 1;

/// The wasm import module of every host function; the ABI version is part of the name, so a guest
/// built for another version fails the import check with a readable reason.
pub const IMPORT_MODULE: &str = "odeon_room_v1";

/// Export names, in one place for the host's validator and the guest's macro.
pub mod exports {
    /// `() -> i32`.
    pub const ABI_VERSION: &str = "odeon_abi_version";
    /// `(i32) -> i32`.
    pub const ALLOC: &str = "odeon_alloc";
    /// `() -> i64`.
    pub const MANIFEST: &str = "odeon_manifest";
    /// `(i32, i32) -> i64`.
    pub const AUTH: &str = "odeon_auth";
    /// `(i32, i32) -> i64`.
    pub const EVENTS: &str = "odeon_events";
    /// `() -> i64`, optional.
    pub const MIGRATE_OUT: &str = "odeon_migrate_out";
    /// `(i32, i32) -> i64`, optional.
    pub const MIGRATE_IN: &str = "odeon_migrate_in";
}

/// Import names inside [`IMPORT_MODULE`].
pub mod imports {
    /// `(level: i32, ptr: i32, len: i32)`.
    pub const LOG: &str = "log";
    /// `() -> i64`.
    pub const NOW_MS: &str = "now_ms";
}

/// Log levels passed to the `log` import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum LogLevel {
    /// Very detailed output.
    Trace = 0,
    /// Developer output.
    Debug = 1,
    /// Normal output.
    Info = 2,
    /// Something odd.
    Warn = 3,
    /// Something failed; panics are logged at this level.
    Error = 4,
}

impl LogLevel {
    /// Decodes a level, clamping unknown values to `Error`.
    pub fn from_u32(v: u32) -> Self {
        match v {
            0 => Self::Trace,
            1 => Self::Debug,
            2 => Self::Info,
            3 => Self::Warn,
            _ => Self::Error,
        }
    }
}

/// Packs a guest pointer and length into the `i64` return value of an export.
pub fn pack(ptr: u32, len: u32) -> i64 {
    (((ptr as u64) << 32) | len as u64) as i64
}

/// Splits a packed `i64` into pointer and length.
pub fn unpack(v: i64) -> (u32, u32) {
    let v = v as u64;
    ((v >> 32) as u32, v as u32)
}

/// What a plugin declares about its room type, read once at load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The room type name clients matchmake with (`joinOrCreate("echo")`).
    pub name: String,
    /// Option keys that partition rooms (`filterBy`).
    pub filter_by: Vec<String>,
    /// Listing fields to sort candidate rooms by, e.g. `[("clients", -1)]` (`sortBy`).
    pub sort_by: Vec<(String, i8)>,
    /// MessagePack map merged under the client's options at creation (`define(name, Room, defaults)`).
    #[serde(with = "serde_bytes")]
    pub default_options: Vec<u8>,
    /// Whether the plugin has a static auth hook the host must run at matchmaking.
    pub has_auth: bool,
}

/// Input of the static auth hook, run at matchmaking before any room is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthRequest {
    /// The client's join options, MessagePack.
    #[serde(with = "serde_bytes")]
    pub options: Vec<u8>,
    /// The bearer token from the `Authorization` header, if any.
    pub token: Option<String>,
    /// The client's address as the host saw it.
    pub ip: String,
}

/// Result of the static auth hook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AuthDecision {
    /// Let the client in without auth data.
    Accept,
    /// Let the client in; `auth` (MessagePack) reaches `on_join`, and `session_id`, if given,
    /// becomes the client's session id.
    AcceptWith {
        /// Auth data, MessagePack.
        #[serde(with = "serde_bytes")]
        auth: Vec<u8>,
        /// Forced session id.
        session_id: Option<String>,
        /// The hook verified that the client owns `session_id` (a signed token, say): a live
        /// connection of that session is replaced by this one. Without it, a seat for a session
        /// that is connected is refused, so a name taken from what a client merely claims can
        /// never take over another player's connection.
        #[serde(default)]
        proven: bool,
    },
    /// Refuse the client: matchmaking answers AUTH_FAILED with this message.
    Reject {
        /// Human-readable reason.
        message: String,
    },
}

/// A batch of events delivered in one guest call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Host wall clock in milliseconds when the batch was built.
    pub now_ms: u64,
    /// Events in arrival order.
    pub events: Vec<Event>,
}

/// A message type: Colyseus allows strings and numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MessageType {
    /// A string type, the common case.
    Str(String),
    /// A numeric type.
    Num(f64),
}

/// Something that happened to a room, delivered to the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// The room is created; always the first event of a room.
    Create {
        /// The room's id.
        room_id: String,
        /// The room type name.
        room_name: String,
        /// Merged creation options (defaults, then the creator's options), MessagePack.
        #[serde(with = "serde_bytes")]
        options: Vec<u8>,
    },
    /// A client consumed its seat reservation and joined.
    Join {
        /// The client's session id.
        session_id: String,
        /// The client's join options, MessagePack.
        #[serde(with = "serde_bytes")]
        options: Vec<u8>,
        /// Auth data from the static auth hook, MessagePack, empty if none.
        #[serde(with = "serde_bytes")]
        auth: Vec<u8>,
    },
    /// A client left for good (consented leave with code 4000, or a drop that was not reconnected).
    Leave {
        /// The client's session id.
        session_id: String,
        /// The close code.
        code: u16,
    },
    /// A client's connection closed without its consent. The room may answer with
    /// [`Effect::AllowReconnection`] in the same call; if it does not, the SDK runs the room's
    /// leave hook with this code in that same call and the host forgets the client. If the
    /// reconnection window passes, the host sends [`Event::Leave`] with this code.
    Drop {
        /// The client's session id.
        session_id: String,
        /// The close code.
        code: u16,
    },
    /// A dropped client came back within its reconnection window.
    Reconnect {
        /// The client's session id.
        session_id: String,
    },
    /// A client message with a MessagePack payload (already normalised: no msgpackr records).
    Message {
        /// Sender.
        session_id: String,
        /// The message type.
        kind: MessageType,
        /// The payload, MessagePack, empty when the client sent none.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// A client bytes message (`sendBytes`).
    Bytes {
        /// Sender.
        session_id: String,
        /// The message type.
        kind: MessageType,
        /// Raw bytes.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// A simulation tick, at the interval the room set.
    Tick {
        /// Milliseconds since the previous tick.
        dt_ms: f64,
    },
    /// A timer the room set fired.
    Timer {
        /// The timer id the room chose.
        id: u64,
    },
    /// The room is being disposed; its last event.
    Dispose,
    /// The answer to an [`Effect::Presence`] with the same `op_id`.
    PresenceResult {
        /// The id the room gave the operation.
        op_id: u64,
        /// The value, or why the operation failed.
        result: Result<PresenceValue, String>,
    },
    /// A message published on a topic the room subscribed to.
    PresenceMessage {
        /// The topic, as the room named it.
        topic: String,
        /// The message.
        message: String,
    },
    /// The host needs the full state (a client acked its join): answer with [`Effect::FullState`].
    FullState,
    /// A patch interval elapsed after [`Effect::StateChanged`]: answer with [`Effect::StatePatch`]
    /// holding the changes since the last patch (none if nothing changed after all).
    Patch,
    /// The answer to an [`Effect::QueryRooms`] with the same `op_id`.
    Rooms {
        /// The id the room gave the query.
        op_id: u64,
        /// The listings, or why the query failed.
        result: Result<Vec<Listing>, String>,
    },
    /// A client request (0.18 `room.request()`): answer with [`Effect::Respond`] carrying the
    /// same `request_id`, in this call.
    Request {
        /// Sender.
        session_id: String,
        /// The client's request id.
        request_id: f64,
        /// The request type.
        kind: MessageType,
        /// The payload, MessagePack (normalised), empty when the client sent none.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// A fixed-timestep step of a room that declared inputs ([`Effect::SetInputs`]): at most
    /// one buffered input per client, the oldest, in join order.
    Step {
        /// The step length in milliseconds (the fixed timestep).
        dt_ms: f64,
        /// The inputs consumed by this step.
        inputs: Vec<StepInput>,
    },
}

/// One client's input consumed by a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInput {
    /// The client.
    pub session_id: String,
    /// The input's values, a MessagePack map from field name to value.
    #[serde(with = "serde_bytes")]
    pub values: Vec<u8>,
}

/// How a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestStatus {
    /// Answered with a value (or none).
    Ok,
    /// Refused on purpose; the payload is the reason.
    Rejected,
    /// Failed; the payload is `{name, message, code?}`.
    Error,
}

/// What a room declares about its inputs, once, at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputDecl {
    /// The input type's reflection in the @colyseus/schema v5 layout.
    #[serde(with = "serde_bytes")]
    pub reflection_v5: Vec<u8>,
    /// Its fields in index order: name and schema primitive type (`"number"`, `"string"`…).
    pub fields: Vec<(String, String)>,
    /// Steps per second.
    pub tick_rate_hz: u32,
    /// Sub-steps per step the room runs (advertised to clients; 1 for none).
    pub sub_steps: u32,
}

/// Something the room asks the host to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    /// Send a message to one client.
    Send {
        /// Recipient.
        to: String,
        /// The message.
        message: Outbound,
    },
    /// Send a message to every joined client.
    Broadcast {
        /// The message.
        message: Outbound,
        /// Session ids that do not get it.
        except: Vec<String>,
    },
    /// Send an ERROR frame to one client; its connection stays open.
    Error {
        /// Recipient.
        to: String,
        /// The error code.
        code: u32,
        /// The error message.
        message: String,
    },
    /// Close one client's connection; `None` closes without a status code (the client sees 1005).
    Leave {
        /// The client.
        session_id: String,
        /// The close code.
        code: Option<u16>,
    },
    /// Reject a join during `on_join`: the client gets ERROR(code, message) and close 4002.
    RejectJoin {
        /// The client.
        session_id: String,
        /// The error code (526 by default).
        code: u32,
        /// The error message.
        message: String,
    },
    /// Creation failed: matchmaking answers with this code and message and the room is dropped.
    CreateFailed {
        /// The error code (523 by default).
        code: u32,
        /// The error message.
        message: String,
    },
    /// Lock the room: matchmaking no longer offers it.
    Lock,
    /// Unlock the room.
    Unlock,
    /// Merge this MessagePack map into the room's listing metadata.
    SetMetadata(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Hide or show the room from matchmaking by name.
    SetPrivate(bool),
    /// Set the maximum number of clients (0 = unlimited).
    SetMaxClients(u32),
    /// Set the patch interval in milliseconds (0 disables patches).
    SetPatchRate(u32),
    /// Set the simulation interval in milliseconds (0 stops ticks).
    SetSimulationInterval(u32),
    /// Whether the room disposes when its last client leaves (default true).
    SetAutoDispose(bool),
    /// Keep a dropped client's seat for this many seconds.
    AllowReconnection {
        /// The dropped client.
        session_id: String,
        /// Seconds to wait.
        seconds: u32,
    },
    /// Close every client with this code and dispose the room.
    Disconnect {
        /// The close code.
        code: u16,
    },
    /// Start a timer; `repeat` makes it an interval.
    SetTimer {
        /// Id chosen by the guest, echoed in [`Event::Timer`].
        id: u64,
        /// Delay in milliseconds.
        delay_ms: u64,
        /// Fire every `delay_ms` until cleared.
        repeat: bool,
    },
    /// Cancel a timer.
    ClearTimer {
        /// The timer's id.
        id: u64,
    },
    /// Run a presence operation; the answer arrives as [`Event::PresenceResult`].
    Presence {
        /// Id chosen by the guest, echoed in the answer.
        op_id: u64,
        /// The operation.
        op: PresenceOp,
    },
    /// The room has schema state: clients get the "schema" serializer with this reflection
    /// (v4 layout for the 0.16 and 0.17 profiles, v5 for 0.18). Sent once, at creation.
    SetSerializer {
        /// Reflection bytes in the @colyseus/schema v3/v4 layout.
        #[serde(with = "serde_bytes")]
        reflection_v4: Vec<u8>,
        /// Reflection bytes in the @colyseus/schema v5 layout.
        #[serde(with = "serde_bytes")]
        reflection_v5: Vec<u8>,
    },
    /// The state changed during this call; the host asks for a patch at the next patch interval.
    StateChanged,
    /// The full state (ROOM_STATE body), answering [`Event::FullState`].
    FullState(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A state patch (ROOM_STATE_PATCH body), answering [`Event::Patch`].
    StatePatch(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Query room listings (all types when `name` is `None`); the answer arrives as
    /// [`Event::Rooms`].
    QueryRooms {
        /// Id chosen by the guest, echoed in the answer.
        op_id: u64,
        /// Room type to list.
        name: Option<String>,
    },
    /// The room has no `on_tick` of its own: the host stops delivering ticks, so a simulation
    /// interval costs no guest calls. Emitted by the SDK's default hook; added without an ABI
    /// bump because a host that ignores it only keeps ticking.
    TicksUnhandled,
    /// Answer a client's request ([`Event::Request`]); sent at once (held until the client
    /// acks its join, like any message).
    Respond {
        /// The client.
        to: String,
        /// The client's request id.
        request_id: f64,
        /// The outcome.
        status: RequestStatus,
        /// MessagePack payload; `None` sends none.
        payload: Option<serde_bytes::ByteBuf>,
    },
    /// The room takes inputs on a fixed timestep (0.18). Sent once, at creation: the host
    /// buffers each client's inputs and delivers [`Event::Step`]s, and state frames to clients
    /// become TIMED.
    SetInputs(InputDecl),
}

/// A room message on its way to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outbound {
    /// The message type.
    pub kind: MessageType,
    /// MessagePack payload (ROOM_DATA) or raw bytes (ROOM_DATA_BYTES); `None` sends no payload.
    pub payload: Option<serde_bytes::ByteBuf>,
    /// Raw bytes frame instead of MessagePack.
    pub bytes: bool,
    /// Hold the message until after the room's next state patch.
    pub after_patch: bool,
}

/// The effects of one guest call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Effects {
    /// Effects in the order the room produced them.
    pub effects: Vec<Effect>,
}

/// Decodes one call's effects, refusing more than `max` of them before decoding any: the count
/// is the array header, so a guest cannot make the host allocate a record per byte of its
/// memory. `Err` says why (the count, or what did not decode).
pub fn decode_effects(bytes: &[u8], max: usize) -> Result<Effects, String> {
    let mut rd = bytes;
    // `Effects` is a one-field struct: `[ [effect, …] ]`.
    let count = rmp::decode::read_array_len(&mut rd)
        .ok()
        .filter(|&n| n == 1)
        .and_then(|_| rmp::decode::read_array_len(&mut rd).ok());
    if let Some(n) = count
        && n as usize > max
    {
        return Err(format!("{n} effects in one call, over the limit of {max}"));
    }
    decode(bytes).map_err(|e| format!("undecodable effects: {e}"))
}

/// Encodes an ABI record.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec(value).expect("ABI records always serialize")
}

/// Decodes an ABI record.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_over_the_limit_are_refused_by_their_count() {
        let effects = Effects { effects: vec![Effect::Lock; 10] };
        let bytes = encode(&effects);
        assert_eq!(decode_effects(&bytes, 10).unwrap(), effects);
        let err = decode_effects(&bytes, 9).unwrap_err();
        assert!(err.contains("10 effects in one call, over the limit of 9"), "{err}");
        assert!(decode_effects(&[0xc1], 10).unwrap_err().contains("undecodable"));
    }

    #[test]
    fn pack_round_trips() {
        assert_eq!(unpack(pack(0xdead_beef, 7)), (0xdead_beef, 7));
        assert_eq!(unpack(0), (0, 0));
    }

    #[test]
    fn batch_round_trips() {
        let batch = Batch {
            now_ms: 42,
            events: vec![
                Event::Create { room_id: "r".into(), room_name: "echo".into(), options: vec![0x80] },
                Event::Message { session_id: "s".into(), kind: MessageType::Num(3.0), payload: vec![1, 2] },
            ],
        };
        assert_eq!(decode::<Batch>(&encode(&batch)).unwrap(), batch);
    }
}
