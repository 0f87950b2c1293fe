//! Protocol profiles: one per generation of official client SDK.
//!
//! A server cannot tell the generations apart from their requests, so a listener speaks exactly one
//! profile, chosen by configuration. The differences are small and all live here.

use std::fmt;
use std::str::FromStr;

/// The client generation a listener speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// colyseus.js 0.16: nested seat reservation, errors as HTTP 200 with codes 4210–4217, no PING.
    V0_16,
    /// @colyseus/sdk 0.17: flat reservation, HTTP status = code 520–526, PING.
    V0_17,
    /// @colyseus/sdk 0.18: as 0.17, plus JOIN_ROOM with a length-prefixed reflection and tagged sections.
    #[default]
    V0_18,
}

/// Matchmaking failures, named as Colyseus names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Unknown method or room name.
    NoHandler,
    /// `join` found no room.
    InvalidCriteria,
    /// `joinById`/`reconnect` on a missing or locked room.
    InvalidRoomId,
    /// Anything else: creation errors, missing reconnection token.
    Unhandled,
    /// Expired seat or reconnection token.
    Expired,
    /// The static auth hook refused.
    AuthFailed,
    /// The room's join hook failed.
    ApplicationError,
}

impl Profile {
    /// Every profile, oldest first.
    pub const ALL: [Profile; 3] = [Profile::V0_16, Profile::V0_17, Profile::V0_18];

    /// The numeric code of a matchmaking error in this profile.
    pub fn error_code(self, code: ErrorCode) -> u32 {
        let offset = match code {
            ErrorCode::NoHandler => 0,
            ErrorCode::InvalidCriteria => 1,
            ErrorCode::InvalidRoomId => 2,
            ErrorCode::Unhandled => 3,
            ErrorCode::Expired => 4,
            ErrorCode::AuthFailed => 5,
            ErrorCode::ApplicationError => 6,
        };
        match self {
            Profile::V0_16 => 4210 + offset,
            _ => 520 + offset,
        }
    }

    /// The HTTP status of a matchmaking error: 0.16 answers 200 with the error in the body.
    pub fn error_status(self, code: ErrorCode) -> u16 {
        match self {
            Profile::V0_16 => 200,
            _ => self.error_code(code) as u16,
        }
    }

    /// The ERROR code sent before closing a WebSocket that holds no seat.
    pub fn expired_seat_code(self) -> u32 {
        match self {
            Profile::V0_16 => 0,
            _ => self.error_code(ErrorCode::Expired),
        }
    }

    /// Whether the server answers `[18]` with `[18]`.
    pub fn answers_ping(self) -> bool {
        self != Profile::V0_16
    }

    /// Whether the seat reservation nests the listing under `room`.
    pub fn nested_reservation(self) -> bool {
        self == Profile::V0_16
    }

    /// Whether filterBy values are matched against the room's metadata (0.17+) rather than the
    /// creator's options stored on the listing (0.16).
    pub fn filters_on_metadata(self) -> bool {
        self != Profile::V0_16
    }

    /// Whether clients send requests and inputs (0.18); older servers ignore those codes.
    pub fn has_requests(self) -> bool {
        matches!(self, Self::V0_18)
    }

    /// Whether JOIN_ROOM's handshake is length-prefixed and followed by sections (0.18).
    pub fn length_prefixed_join(self) -> bool {
        self == Profile::V0_18
    }

    /// The `Access-Control-Allow-Methods` this generation's server sends.
    pub fn cors_methods(self) -> &'static str {
        match self {
            Profile::V0_16 => "OPTIONS, POST, GET",
            _ => "GET,HEAD,PUT,PATCH,POST,DELETE",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::V0_16 => "0.16",
            Profile::V0_17 => "0.17",
            Profile::V0_18 => "0.18",
        })
    }
}

/// A profile name that is not one of `0.16`, `0.17`, `0.18`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol profile {0:?} (expected 0.16, 0.17 or 0.18)")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "0.16" | "16" => Ok(Profile::V0_16),
            "0.17" | "17" => Ok(Profile::V0_17),
            "0.18" | "18" => Ok(Profile::V0_18),
            other => Err(UnknownProfile(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_generation() {
        assert_eq!(Profile::V0_16.error_code(ErrorCode::AuthFailed), 4215);
        assert_eq!(Profile::V0_17.error_code(ErrorCode::AuthFailed), 525);
        assert_eq!(Profile::V0_16.error_status(ErrorCode::NoHandler), 200);
        assert_eq!(Profile::V0_18.error_status(ErrorCode::InvalidRoomId), 522);
        assert_eq!(Profile::V0_16.expired_seat_code(), 0);
        assert_eq!(Profile::V0_17.expired_seat_code(), 524);
    }

    #[test]
    fn parses_names() {
        for p in Profile::ALL {
            assert_eq!(p.to_string().parse::<Profile>().unwrap(), p);
        }
        assert!("0.15".parse::<Profile>().is_err());
    }
}
