//! The one definition of Odeon's wire, shared by the host, the guest SDK and the tests.
//!
//! - [`frame`]: Colyseus WebSocket frame codes, close codes and frame builders.
//! - [`profile`]: the three protocol profiles (0.16, 0.17, 0.18) and their differences.
//! - [`input`]: 0.18 inputs: handshake sections, input deltas, the TIMED prefix.
//! - [`codec`]: the @colyseus/schema number and string codecs used inside frames.
//! - [`msgpackr`]: normalises msgpackr record payloads from the official SDKs into plain MessagePack.
//! - [`abi`]: the guest ABI (exports, imports, records).
//! - [`registry`]: the process registry in Redis, shared by the hosts and the proxy.
//!
//! Nothing here does I/O.

pub mod abi;
pub mod codec;
pub mod frame;
pub mod handover;
pub mod input;
pub mod matchmake;
pub mod msgpackr;
pub mod profile;
pub mod registry;
