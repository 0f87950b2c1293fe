//! The `pilot` room: Colyseus 0.18 inputs on a fixed timestep, the input room of the 0.18 spec.
//!
//! State `{players: map<Player{x: number, y: number}>}` keyed by session id; a join adds a player
//! at (0, 0), a leave removes it. Clients send inputs `{dx, dy}` with `room.input()`; every 50 ms
//! step applies at most one input per client, the oldest not yet applied, as `x += dx; y += dy`,
//! and nothing moves without input. Patches every 50 ms; at most 16 clients; a dropped client
//! leaves at once unless the room was created with `{reconnectSecs: n}`, which keeps its seat
//! `n` seconds. `build` answers which build runs (`"v2"` with the `v2` feature, the test build
//! `just plugins` writes to `target/plugin-variants/pilot-v2.wasm`); both migrate live.

use odeon_guest::prelude::*;
use serde::{Deserialize, Serialize};

/// What `build` answers.
const BUILD: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };

/// A player's position.
#[derive(Schema, Default, Serialize, Deserialize)]
pub struct Player {
    x: f64,
    y: f64,
}

/// The synchronised state.
#[derive(Schema, Default, Serialize, Deserialize)]
pub struct PilotState {
    players: MapSchema<Player>,
}

/// What a client steers with.
#[derive(Schema, Default, Deserialize)]
pub struct PilotInput {
    dx: f64,
    dy: f64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Options {
    #[serde(default)]
    reconnect_secs: u32,
}

/// The pilot room.
pub struct Pilot {
    reconnect_secs: u32,
}

impl Room for Pilot {
    const NAME: &'static str = "pilot";
    type State = PilotState;
    type UserData = ();
    const VERSION: u32 = if cfg!(feature = "v2") { 2 } else { 1 };

    fn inputs() -> Option<Inputs> {
        Some(Inputs::of::<PilotInput>(20))
    }

    fn on_create(ctx: &mut Ctx<PilotState>, options: Payload) -> Result<Self, RoomError> {
        let options: Options = if options.is_empty() { Options::default() } else { options.decode()? };
        ctx.set_max_clients(16);
        ctx.set_patch_rate(50);
        Ok(Pilot { reconnect_secs: options.reconnect_secs })
    }

    fn handlers(on: &mut Handlers<Self>) {
        on.message(
            "build",
            |_: &mut Self, ctx: &mut Ctx<PilotState>, client: &Client, (): ()| -> Result<(), Reject> {
                ctx.send(client, "build", &BUILD);
                Ok(())
            },
        );
    }

    fn on_join(
        &mut self,
        ctx: &mut Ctx<PilotState>,
        client: &Client,
        _options: Payload,
        _auth: Payload,
    ) -> Result<(), RoomError> {
        ctx.state.players.insert(client.session_id(), Player::default());
        Ok(())
    }

    fn on_drop(&mut self, ctx: &mut Ctx<PilotState>, client: &Client, _code: u16) {
        if self.reconnect_secs > 0 {
            ctx.allow_reconnection(client, self.reconnect_secs);
        }
    }

    fn on_leave(&mut self, ctx: &mut Ctx<PilotState>, client: &Client, _code: u16) {
        ctx.state.players.remove(client.session_id());
    }

    fn migrate_out(&mut self, ctx: &Ctx<PilotState>) -> Result<Vec<u8>, RoomError> {
        migration::encode(&(&ctx.state, self.reconnect_secs))
    }

    fn migrate_in(ctx: &mut Ctx<PilotState>, from: Migration) -> Result<Self, RoomError> {
        let reconnect_secs;
        (ctx.state, reconnect_secs) = from.decode::<(PilotState, u32)>()?;
        Ok(Pilot { reconnect_secs })
    }

    fn on_step(&mut self, ctx: &mut Ctx<PilotState>, step: Step) {
        for (client, PilotInput { dx, dy }) in step.decoded::<PilotInput>() {
            if let Some(mut player) = ctx.state.players.get_mut(client.session_id()) {
                player.x += dx;
                player.y += dy;
            }
        }
    }
}

export_room!(Pilot);

#[cfg(test)]
mod tests {
    use super::*;
    use odeon_guest::testing::TestRoom;
    use serde_json::json;

    #[test]
    fn declares_its_inputs_and_timestep() {
        let room = TestRoom::<Pilot>::create(()).unwrap();
        let decl = room.inputs().expect("pilot takes inputs");
        assert_eq!(decl.tick_rate_hz, 20);
        assert_eq!(
            decl.fields,
            [("dx".to_string(), "number".to_string()), ("dy".to_string(), "number".to_string())]
        );
        assert_eq!(room.max_clients(), Some(16));
    }

    #[test]
    fn each_step_applies_at_most_one_input_per_client_in_order() {
        let mut room = TestRoom::<Pilot>::create(()).unwrap();
        room.join("a", ()).unwrap();
        room.join("b", ()).unwrap();
        for dx in [1, 1, 2, 4] {
            room.input("a", &json!({"dx": dx, "dy": 0}));
        }
        room.step();
        assert_eq!(room.state_json(), r#"{"players":{"a":{"x":1,"y":0},"b":{"x":0,"y":0}}}"#);
        assert_eq!((room.acked("a"), room.pending_inputs("a"), room.acked("b")), (1, 3, 0));
        for _ in 0..3 {
            room.step();
        }
        assert_eq!(room.state_json(), r#"{"players":{"a":{"x":8,"y":0},"b":{"x":0,"y":0}}}"#);
        // No input, no movement.
        room.step();
        room.step();
        assert_eq!(room.state_json(), r#"{"players":{"a":{"x":8,"y":0},"b":{"x":0,"y":0}}}"#);
        assert_eq!(room.acked("a"), 4);
        room.leave("a", 4000);
        assert_eq!(room.state_json(), r#"{"players":{"b":{"x":0,"y":0}}}"#);
        assert_eq!(room.client_state("b"), room.state_json());
    }

    #[test]
    fn a_drop_is_a_leave_unless_created_with_a_window() {
        let mut room = TestRoom::<Pilot>::create(()).unwrap();
        room.join("a", ()).unwrap();
        room.drop_client("a", 1006);
        assert_eq!(room.allowed_reconnection("a"), None);
        let mut room = TestRoom::<Pilot>::create(json!({"reconnectSecs": 10})).unwrap();
        room.join("a", ()).unwrap();
        room.drop_client("a", 1006);
        assert_eq!(room.allowed_reconnection("a"), Some(10));
    }
}
