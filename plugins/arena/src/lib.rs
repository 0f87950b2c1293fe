//! The `arena` room: the benchmark room for state sync, kept exactly like this.
//!
//! State `{players: map<Player{x: number, y: number}>}` keyed by session id. A join adds a player
//! at (0, 0), a leave removes it, and `move {x, y}` sets the sender's position. Patches and
//! simulation ticks every 50 ms; at most 50 clients. Build it with `just plugins`.

use odeon_guest::prelude::*;
use serde::Deserialize;

/// A player's position.
#[derive(Schema, Default)]
pub struct Player {
    x: f64,
    y: f64,
}

/// The synchronised state.
#[derive(Schema, Default)]
pub struct ArenaState {
    players: MapSchema<Player>,
}

/// The arena room.
pub struct Arena {
    state: StateEncoder<ArenaState>,
}

#[derive(Deserialize)]
struct Move {
    x: f64,
    y: f64,
}

impl Room for Arena {
    const NAME: &'static str = "arena";

    fn on_create(ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
        ctx.set_max_clients(50);
        ctx.set_patch_rate(50);
        ctx.set_simulation_interval(50);
        Ok(Arena { state: StateEncoder::default() })
    }

    fn on_join(
        &mut self,
        _ctx: &mut Ctx,
        client: &Client,
        _options: Payload,
        _auth: Payload,
    ) -> Result<(), RoomError> {
        self.state.state_mut().players_mut().insert(client.session_id(), Player::default());
        Ok(())
    }

    fn on_leave(&mut self, _ctx: &mut Ctx, client: &Client, _code: u16) {
        self.state.state_mut().players_mut().remove(client.session_id());
    }

    fn on_message(&mut self, _ctx: &mut Ctx, client: &Client, message: Message) {
        if !message.is("move") {
            return;
        }
        let Ok(Move { x, y }) = message.payload.decode() else { return };
        if let Some(player) = self.state.state().players.get(client.session_id()) {
            let mut player = player.borrow_mut();
            player.set_x(x);
            player.set_y(y);
        }
    }

    fn state(&mut self) -> Option<&mut dyn SyncedState> {
        Some(&mut self.state)
    }
}

export_room!(Arena);

#[cfg(test)]
mod tests {
    use super::*;
    use odeon_guest::testing::TestRoom;
    use serde_json::json;

    #[test]
    fn players_join_move_and_leave() {
        let mut room = TestRoom::<Arena>::create(json!({})).unwrap();
        assert_eq!(room.max_clients(), Some(50));
        assert_eq!(room.simulation_interval(), Some(50));
        room.join("a", json!({})).unwrap();
        room.join("b", json!({})).unwrap();
        room.message("a", "move", &json!({"x": 1.5, "y": -2}));
        assert_eq!(room.room().state.to_json(), r#"{"players":{"a":{"x":1.5,"y":-2},"b":{"x":0,"y":0}}}"#);
        room.leave("b", 4000);
        assert_eq!(room.room().state.to_json(), r#"{"players":{"a":{"x":1.5,"y":-2}}}"#);
    }
}
