//! The `faults` room: misbehaves on request, so the host's tests can check that a broken room is
//! contained (a panic traps, a busy loop hits its deadline, runaway allocation hits the memory
//! limit) while the host and other rooms carry on.
//!
//! Build it with `just plugins` (or `cargo build --target wasm32-wasip1 --profile wasm -p faults`,
//! which writes `target/wasm32-wasip1/wasm/faults.wasm`).
//!
//! | message | effect |
//! |---|---|
//! | `echo` | `echo` to the sender, with the same payload bytes: the room is alive |
//! | `panic` | panics with `requested panic` |
//! | `loop` | spins forever |
//! | `oom` | allocates 1 MiB chunks forever |
//! | `timers` n | sets n one-hour timeouts (the host allows 10 000 pending per room) |
//! | `broadcasts` n | n broadcasts to everyone but the sender, in one call (the host allows 65 536 effects per call) |
//! | `logs` n | logs n info lines (the host keeps a guest to bursts of 200 lines, then 50 a second) |
//! | `alloc` n | allocates and keeps n more MiB (touched), then answers `alloc` with the total |
//! | `busy` n | runs for n ms of wall-clock time, then answers `busy` |
//!
//! A room created with `{fault, hook}` misbehaves in that hook instead: `fault` is one of
//! `panic`, `trap` (abort), `loop`, `oom`, `stack` (unbounded recursion) or `flood` (70 000
//! effects in one call), and `hook` is where:
//!
//! | hook | when |
//! |---|---|
//! | `auth` | matchmaking asks the static auth hook (no `flood` there: it returns no effects) |
//! | `create` | the room is created |
//! | `join` | a second client joins |
//! | `leave` | a client leaves for good |
//! | `drop` | a client's connection drops |
//! | `message` | a client sends `go` |
//! | `request` | a client sends the request `go` (0.18 `room.request`) |
//! | `tick` | the first simulation tick after a client sends `arm` |
//! | `timer` | a timer a client set with `arm` fires (after 20 ms) |
//! | `encode` | the SDK reads the state for its next patch after a client sent `arm` (a field type whose encoding faults; no `flood` there) |
//!
//! The state is `{wire: string}`; `wire` is a custom field type, as a room author might write.

use odeon_guest::prelude::*;
use odeon_guest::schema;
use serde::Deserialize;

/// A string field whose encoding strikes its fault once armed: a custom field type with a bug,
/// so the fault happens inside state encoding.
#[derive(Default, PartialEq)]
struct Tripwire {
    armed: Option<String>,
    label: String,
}

impl schema::Field for Tripwire {
    fn describe(_: &mut schema::__private::Registry) -> schema::__private::FieldType {
        schema::__private::FieldType::Primitive(<String as schema::Primitive>::TYPE)
    }
    fn view(&self) -> schema::__private::FieldRef<'_> {
        if let Some(fault) = &self.armed {
            strike(fault, None);
        }
        schema::__private::FieldRef::Prim(Some(schema::Primitive::prim(&self.label)))
    }
    fn unchanged(&self, new: &Self) -> bool {
        self == new
    }
}

/// The synchronised state: one tripwire.
#[derive(Schema, Default)]
pub struct FaultsState {
    wire: Tripwire,
}

/// The faults room: what `alloc` asked it to hold, and the fault it is armed with.
pub struct Faults {
    hoard: Vec<Vec<u8>>,
    armed: Option<Armed>,
    /// A client sent `arm`: the tick hook faults at its next run.
    ticking_armed: bool,
    joins: u32,
}

/// A fault and the hook it strikes in (`{fault, hook}` in the creation or join options).
#[derive(Debug, Clone, Deserialize)]
struct Armed {
    fault: String,
    hook: String,
}

fn armed(options: &Payload) -> Option<Armed> {
    options.decode::<Armed>().ok()
}

impl Room for Faults {
    const NAME: &'static str = "faults";
    type State = FaultsState;
    type UserData = ();
    const AUTH: bool = true;

    fn on_auth(auth: &AuthContext) -> Auth {
        if let Some(a) = armed(&auth.options).filter(|a| a.hook == "auth") {
            strike(&a.fault, None);
        }
        Auth::Accept
    }

    fn on_create(ctx: &mut Ctx<FaultsState>, options: Payload) -> Result<Self, RoomError> {
        let armed = armed(&options);
        match armed.as_ref().map(|a| a.hook.as_str()) {
            Some("create") => strike(&armed.as_ref().expect("matched").fault, Some(ctx)),
            Some("tick") => ctx.set_simulation_interval(20),
            _ => {}
        }
        Ok(Faults { hoard: Vec::new(), armed, ticking_armed: false, joins: 0 })
    }

    fn on_join(
        &mut self,
        ctx: &mut Ctx<FaultsState>,
        _client: &Client,
        _options: Payload,
        _auth: Payload,
    ) -> Result<(), RoomError> {
        self.joins += 1;
        if self.joins >= 2 {
            self.strike_in("join", ctx);
        }
        Ok(())
    }

    fn on_leave(&mut self, ctx: &mut Ctx<FaultsState>, _client: &Client, _code: u16) {
        self.strike_in("leave", ctx);
    }

    fn on_drop(&mut self, ctx: &mut Ctx<FaultsState>, _client: &Client, _code: u16) {
        self.strike_in("drop", ctx);
    }

    fn on_tick(&mut self, ctx: &mut Ctx<FaultsState>, _dt_ms: f64) {
        if self.ticking_armed {
            self.strike_in("tick", ctx);
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<FaultsState>, _timer: TimerId) {
        self.strike_in("timer", ctx);
    }

    fn on_request(&mut self, ctx: &mut Ctx<FaultsState>, _client: &Client, request: Message) -> Answer {
        if request.is("go") {
            self.strike_in("request", ctx);
            return Answer::empty();
        }
        Answer::NoHandler
    }

    fn on_message(&mut self, ctx: &mut Ctx<FaultsState>, client: &Client, message: Message) {
        match message.kind.as_str() {
            Some("echo") => ctx.send_payload(client, "echo", &message.payload),
            Some("go") => self.strike_in("message", ctx),
            Some("arm") => {
                self.ticking_armed = true;
                match self.armed.as_ref().map(|a| (a.hook.as_str(), a.fault.clone())) {
                    Some(("timer", _)) => {
                        ctx.set_timeout(20);
                    }
                    Some(("encode", fault)) => {
                        ctx.state.wire = Tripwire { armed: Some(fault), label: "armed".into() };
                    }
                    _ => {}
                }
            }
            Some("panic") => panic!("requested panic"),
            Some("loop") => spin_forever(),
            Some("oom") => allocate_forever(),
            Some("timers") => {
                for _ in 0..count(&message) {
                    ctx.set_timeout(3_600_000);
                }
            }
            Some("broadcasts") => {
                for _ in 0..count(&message) {
                    ctx.broadcast_except("b", &0u8, client);
                }
            }
            Some("alloc") => {
                for _ in 0..count(&message) {
                    self.hoard.push(vec![0xa5; 1 << 20]);
                }
                std::hint::black_box(&mut self.hoard);
                ctx.send(client, "alloc", &(self.hoard.len() as u64));
            }
            Some("busy") => {
                let until = std::time::Instant::now() + std::time::Duration::from_millis(count(&message));
                let mut spins = 0u64;
                while std::time::Instant::now() < until {
                    spins = std::hint::black_box(spins.wrapping_add(1));
                }
                ctx.send(client, "busy", &count(&message));
            }
            Some("logs") => {
                for i in 0..count(&message) {
                    ctx.info(format_args!("log line {i}"));
                }
            }
            _ => ctx.debug(format_args!("ignoring message {:?}", message.kind)),
        }
    }
}

export_room!(Faults);

impl Faults {
    /// Strikes if the room is armed for `hook`.
    fn strike_in(&self, hook: &str, ctx: &mut Ctx<FaultsState>) {
        if let Some(a) = self.armed.as_ref().filter(|a| a.hook == hook) {
            strike(&a.fault, Some(ctx));
        }
    }
}

/// Misbehaves as `fault` says; an unknown fault does nothing.
fn strike(fault: &str, ctx: Option<&mut Ctx<FaultsState>>) {
    match fault {
        "panic" => panic!("requested panic"),
        "trap" => std::process::abort(),
        "loop" => spin_forever(),
        "oom" => allocate_forever(),
        "stack" => {
            recurse(0);
        }
        "flood" => {
            if let Some(ctx) = ctx {
                for _ in 0..70_000 {
                    ctx.lock();
                }
            }
        }
        _ => {}
    }
}

/// Recurses until the guest's stack is exhausted; `black_box` keeps it a real recursion (the
/// exit condition never holds, but the compiler cannot know).
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    if std::hint::black_box(depth) == u64::MAX {
        return frame[0];
    }
    recurse(std::hint::black_box(depth + 1)).wrapping_add(frame[0])
}

/// The count a flood message carries as its payload (0 if it is not a number).
fn count(message: &Message) -> u64 {
    message.payload.value().ok().and_then(|v| v.as_u64()).unwrap_or(0)
}

/// Burns CPU until the host interrupts the call; `black_box` keeps the optimiser from proving the
/// loop does nothing.
fn spin_forever() -> ! {
    let mut counter = 0u64;
    loop {
        std::hint::black_box(&mut counter);
        counter = counter.wrapping_add(1);
    }
}

/// Allocates until the host's memory limit stops the room. The chunks are filled with a non-zero
/// byte so the memory is really touched, and kept alive (and opaque to the optimiser) so no
/// allocation can be elided.
fn allocate_forever() -> ! {
    const MIB: usize = 1 << 20;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![0xa5; MIB]);
        std::hint::black_box(&mut hoard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use odeon_guest::testing::TestRoom;

    #[test]
    fn echo_proves_the_room_is_alive() {
        let mut room = TestRoom::<Faults>::create(()).unwrap();
        assert!(room.room().armed.is_none());
        room.join("a", ()).unwrap();
        room.message("a", "echo", &[1, 2, 3]);
        room.message_empty("a", "echo");
        room.message_empty("a", "unknown");
        assert_eq!(room.raw_sent_to("a", "echo"), [Some(vec![0x93, 1, 2, 3]), None]);
    }
}
