//! Logging through the host, which tags every line with the room's id.
//!
//! Inside a hook, prefer the [`Ctx`](crate::Ctx) helpers (`ctx.info(..)`); these free functions
//! exist for [`Room::on_auth`](crate::Room::on_auth), which runs without a room. Lines are written
//! immediately, not queued as effects, so they survive a later panic.

use std::fmt::Display;

use crate::Level;

/// Writes `message` at `level`.
pub fn log(level: Level, message: impl Display) {
    crate::sys::log(level, &message.to_string());
}

/// Writes `message` at [`Level::Debug`].
pub fn debug(message: impl Display) {
    log(Level::Debug, message);
}

/// Writes `message` at [`Level::Info`].
pub fn info(message: impl Display) {
    log(Level::Info, message);
}

/// Writes `message` at [`Level::Warn`].
pub fn warn(message: impl Display) {
    log(Level::Warn, message);
}

/// Writes `message` at [`Level::Error`].
pub fn error(message: impl Display) {
    log(Level::Error, message);
}
