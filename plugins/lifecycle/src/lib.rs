//! The `lifecycle` room: exercises the host's clock and room settings (simulation ticks, timeouts,
//! intervals, messages held until after the next patch, private rooms, metadata, disconnect), so
//! the end-to-end suite can check them. Build it with `just plugins`.
//!
//! | message | answer |
//! |---|---|
//! | `ticks` | `ticks {count}`: simulation ticks so far |
//! | `timeout {ms}` | `timeout {elapsed}` once, `ms` later |
//! | `interval {ms, times}` | `interval {n}` for n = 1..=times, every `ms`, then the interval is cleared |
//! | `after-patch` | `immediate {}` now, then `after-patch {}` after the next patch |
//! | `private {value}` | makes the room private (or public), answers `private {value}` |
//! | `metadata {…}` | merges the payload into the room's metadata, answers `metadata {}` |
//! | `disconnect {code}` | closes every client with `code` and disposes the room |
//! | `now` | `now {now}`: the host clock in milliseconds |
//!
//! Creation options: `{tickMs, patchMs}` (no ticks and a 50 ms patch rate by default).
//! Matchmaking offers the lifecycle room with the most clients first (`sortBy`).

use std::collections::HashMap;

use odeon_guest::prelude::*;
use serde::{Deserialize, Serialize};

/// The lifecycle room.
#[derive(Default)]
pub struct Lifecycle {
    ticks: u64,
    timeouts: HashMap<TimerId, (String, u64)>,
    intervals: HashMap<TimerId, (String, u32, u32)>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Options {
    tick_ms: Option<u32>,
    patch_ms: Option<u32>,
}

#[derive(Deserialize)]
struct Every {
    ms: u64,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
struct Flag {
    value: bool,
}

#[derive(Deserialize)]
struct Code {
    code: u16,
}

#[derive(Serialize)]
struct Empty {}

impl Room for Lifecycle {
    const NAME: &'static str = "lifecycle";
    type State = ();
    type UserData = ();
    /// Matchmaking offers the fullest room first (`sortBy: {clients: -1}`).
    const SORT_BY: &'static [(&'static str, i8)] = &[("clients", -1)];

    fn on_create(ctx: &mut Ctx, options: Payload) -> Result<Self, RoomError> {
        let options: Options = options.decode()?;
        if let Some(ms) = options.tick_ms {
            ctx.set_simulation_interval(ms);
        }
        ctx.set_patch_rate(options.patch_ms.unwrap_or(50));
        Ok(Self::default())
    }

    fn on_tick(&mut self, _ctx: &mut Ctx, _dt_ms: f64) {
        self.ticks += 1;
    }

    fn on_timer(&mut self, ctx: &mut Ctx, timer: TimerId) {
        if let Some((sid, started)) = self.timeouts.remove(&timer) {
            if let Some(client) = ctx.client(&sid).cloned() {
                ctx.send(&client, "timeout", &Elapsed { elapsed: ctx.now().saturating_sub(started) });
            }
        } else if let Some((sid, n, times)) = self.intervals.get_mut(&timer) {
            *n += 1;
            let (n, done) = (*n, *n >= *times);
            if let Some(client) = ctx.client(sid).cloned() {
                ctx.send(&client, "interval", &Nth { n });
            }
            if done {
                self.intervals.remove(&timer);
                ctx.clear_timer(timer);
            }
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx, client: &Client, message: Message) {
        let sid = client.session_id().to_string();
        match message.kind.as_str() {
            Some("ticks") => ctx.send(client, "ticks", &Count { count: self.ticks }),
            Some("timeout") => {
                if let Ok(every) = message.payload.decode::<Every>() {
                    let timer = ctx.set_timeout(every.ms);
                    self.timeouts.insert(timer, (sid, ctx.now()));
                }
            }
            Some("interval") => {
                if let Ok(every) = message.payload.decode::<Every>() {
                    let timer = ctx.set_interval(every.ms);
                    self.intervals.insert(timer, (sid, 0, every.times));
                }
            }
            Some("after-patch") => {
                ctx.send_after_patch(client, "after-patch", &Empty {});
                ctx.send(client, "immediate", &Empty {});
            }
            Some("private") => {
                if let Ok(flag) = message.payload.decode::<Flag>() {
                    ctx.set_private(flag.value);
                    ctx.send(client, "private", &Value::Map(vec![("value".into(), flag.value.into())]));
                }
            }
            Some("metadata") => {
                if let Ok(value) = message.payload.value() {
                    ctx.set_metadata(&value);
                    ctx.send(client, "metadata", &Empty {});
                }
            }
            Some("disconnect") => {
                if let Ok(code) = message.payload.decode::<Code>() {
                    ctx.disconnect(code.code);
                }
            }
            Some("now") => ctx.send(client, "now", &Now { now: ctx.now() as f64 }),
            _ => ctx.debug(format_args!("ignoring message {:?}", message.kind)),
        }
    }
}

#[derive(Serialize)]
struct Count {
    count: u64,
}

#[derive(Serialize)]
struct Elapsed {
    elapsed: u64,
}

#[derive(Serialize)]
struct Nth {
    n: u32,
}

/// Timestamps go out as `f64`: JavaScript decodes a MessagePack uint64 as a BigInt, while a
/// double is a plain number, exactly like `Date.now()`.
#[derive(Serialize)]
struct Now {
    now: f64,
}

export_room!(Lifecycle);

#[cfg(test)]
mod tests {
    use super::*;
    use odeon_guest::testing::TestRoom;
    use serde_json::{Value as Json, json};

    fn room() -> TestRoom<Lifecycle> {
        let mut room = TestRoom::<Lifecycle>::create(json!({"tickMs": 20})).unwrap();
        room.join("a", json!({})).unwrap();
        room.take_effects();
        room
    }

    #[test]
    fn ticks_are_counted() {
        let mut room = room();
        assert_eq!(room.simulation_interval(), Some(20));
        room.tick(20.0);
        room.tick(20.0);
        room.message("a", "ticks", &());
        assert_eq!(room.sent_to::<Json>("a", "ticks"), [json!({"count": 2})]);
    }

    #[test]
    fn timeouts_and_intervals_fire_on_the_clock() {
        let mut room = room();
        room.message("a", "timeout", &json!({"ms": 100}));
        room.message("a", "interval", &json!({"ms": 30, "times": 3}));
        room.advance(99);
        assert!(room.sent_to::<Json>("a", "timeout").is_empty());
        room.advance(1);
        assert_eq!(room.sent_to::<Json>("a", "timeout"), [json!({"elapsed": 100})]);
        room.advance(200);
        assert_eq!(
            room.sent_to::<Json>("a", "interval"),
            [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]
        );
        assert_eq!(room.pending_timers(), 0, "the interval is cleared after `times` fires");
    }

    #[test]
    fn settings_messages() {
        let mut room = room();
        room.message("a", "private", &json!({"value": true}));
        assert!(room.is_private());
        room.message("a", "metadata", &json!({"level": 3}));
        assert_eq!(room.metadata::<Json>(), Some(json!({"level": 3})));
        room.message("a", "disconnect", &json!({"code": 4001}));
        assert_eq!(room.disconnected(), Some(4001));
    }
}
