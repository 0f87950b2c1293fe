//! Property tests over everything a client or a guest can hand the host: client frames, msgpackr
//! payloads, matchmaking bodies and guest ABI records. Whatever the bytes, the decoders answer `Ok` or `Err`; they
//! never panic, never loop and never produce more than their bound. A bounded run (a few thousand
//! cases per property) is part of `just test`; the cargo-fuzz targets in `fuzz/` run the same
//! decoders without a bound.

use odeon_protocol::abi::{self, Batch, Effect, Effects, Event};
use odeon_protocol::frame::{self, ClientFrame};
use odeon_protocol::msgpackr;
use odeon_protocol::profile::Profile;
use proptest::prelude::*;

const PROFILES: [Profile; 3] = [Profile::V0_16, Profile::V0_17, Profile::V0_18];

fn config() -> ProptestConfig {
    ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() }
}

/// Valid records to start mutations from, so the cases reach past the first byte.
fn seeds() -> Vec<Vec<u8>> {
    vec![
        abi::encode(&Effects {
            effects: vec![Effect::Lock, Effect::StateChanged, Effect::ClearTimer { id: 7 }],
        }),
        abi::encode(&Batch { now_ms: 1, events: vec![Event::FullState, Event::Dispose] }),
        // A msgpackr record definition and two references to it.
        vec![0x92, 0xd4, 0x72, 0x40, 0x91, 0xa1, b'x', 0x01, 0x40, 0x02],
        // ROOM_DATA "echo" with a map payload.
        vec![13, 0xa4, b'e', b'c', b'h', b'o', 0x81, 0xa1, b'a', 0x01],
    ]
}

/// A seed with up to 8 bytes replaced, or plain random bytes.
fn inputs() -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (0..seeds.len(), proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8)).prop_map(
            move |(i, edits)| {
                let mut bytes = seeds[i].clone();
                for (at, b) in edits {
                    let n = bytes.len();
                    bytes[at % n] = b;
                }
                bytes
            }
        ),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn client_frames_parse_or_fail_cleanly(bytes in inputs()) {
        for profile in PROFILES {
            if let Ok(ClientFrame::Data { payload, .. } | ClientFrame::Bytes { payload, .. }) =
                frame::parse_client(&bytes, profile)
            {
                prop_assert!(payload.len() <= bytes.len());
            }
        }
    }

    #[test]
    fn msgpackr_normalising_stays_within_its_bound(bytes in inputs(), max in 0usize..(1 << 16)) {
        // The documented bound: `max`, but never below MIN_OUTPUT_LIMIT.
        let bound = max.max(msgpackr::MIN_OUTPUT_LIMIT);
        if let Ok(out) = msgpackr::normalize_within(&bytes, max) {
            prop_assert!(out.len() <= bound, "{} bytes out, bound {bound}", out.len());
        }
    }

    #[test]
    fn record_bombs_stay_within_the_bound(key_len in 1usize..200, refs in 1usize..6000, max in 0usize..(1 << 18)) {
        // An array of `refs` references to one record whose key is `key_len` bytes long.
        let mut bytes = vec![0xdd];
        bytes.extend_from_slice(&(refs as u32).to_be_bytes());
        bytes.extend_from_slice(&[0xd4, 0x72, 0x40, 0x91, 0xd9, key_len as u8]);
        bytes.extend(std::iter::repeat_n(b'k', key_len));
        bytes.push(0x01);
        for _ in 1..refs {
            bytes.extend_from_slice(&[0x40, 0x01]);
        }
        // The documented bound: MAX_EXPANSION times the input, but always MIN_OUTPUT_LIMIT, and
        // never past `max` (unless that is below MIN_OUTPUT_LIMIT).
        let floor = msgpackr::MIN_OUTPUT_LIMIT;
        let bound = (bytes.len() * msgpackr::MAX_EXPANSION).max(floor).min(max.max(floor));
        match msgpackr::normalize_within(&bytes, max) {
            Ok(out) => prop_assert!(out.len() <= bound, "{} bytes out of {} in, bound {bound}", out.len(), bytes.len()),
            Err(e) => prop_assert!(matches!(e, msgpackr::MsgpackError::TooLarge(_)), "{e}"),
        }
    }

    #[test]
    fn guest_records_decode_or_fail_cleanly(bytes in inputs(), max in 0usize..64) {
        if let Ok(effects) = abi::decode_effects(&bytes, max) {
            prop_assert!(effects.effects.len() <= max);
        }
        let _ = abi::decode::<Batch>(&bytes);
        let _ = abi::decode::<abi::Manifest>(&bytes);
        let _ = abi::decode::<abi::AuthDecision>(&bytes);
    }

    #[test]
    fn matchmaking_bodies_are_options_or_an_error(bytes in inputs(), text in ".{0,64}") {
        let _ = odeon_protocol::matchmake::options(&bytes);
        let _ = odeon_protocol::matchmake::options(text.as_bytes());
        let object = format!("{{\"k\":{}}}", serde_json::Value::String(text));
        prop_assert!(odeon_protocol::matchmake::options(object.as_bytes()).is_ok());
    }

    #[test]
    fn effects_round_trip(ids in proptest::collection::vec(any::<u64>(), 0..64)) {
        let effects = Effects { effects: ids.iter().map(|&id| Effect::ClearTimer { id }).collect() };
        let decoded = abi::decode_effects(&abi::encode(&effects), ids.len()).unwrap();
        prop_assert_eq!(decoded, effects);
    }
}
