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

use odeon_guest::prelude::*;

/// The faults room; it keeps no state of its own.
pub struct Faults;

impl Room for Faults {
    const NAME: &'static str = "faults";

    fn on_create(_ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
        Ok(Faults)
    }

    fn on_message(&mut self, ctx: &mut Ctx, client: &Client, message: Message) {
        match message.kind.as_str() {
            Some("echo") => ctx.send_payload(client, "echo", &message.payload),
            Some("panic") => panic!("requested panic"),
            Some("loop") => spin_forever(),
            Some("oom") => allocate_forever(),
            _ => ctx.debug(format_args!("ignoring message {:?}", message.kind)),
        }
    }
}

export_room!(Faults);

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
        room.join("a", ()).unwrap();
        room.message("a", "echo", &[1, 2, 3]);
        room.message_empty("a", "echo");
        room.message_empty("a", "unknown");
        assert_eq!(room.raw_sent_to("a", "echo"), [Some(vec![0x93, 1, 2, 3]), None]);
    }
}
