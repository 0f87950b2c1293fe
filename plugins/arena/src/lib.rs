//! The `arena` room: the benchmark room for state sync, kept exactly like this.
//!
//! State `{players: map<Player{x: number, y: number}>}` keyed by session id. A join adds a player
//! at (0, 0), a leave removes it, and `move {x, y}` sets the sender's position. Patches and
//! simulation ticks every 50 ms; at most 50 clients. `build` answers which build runs: `"v1"`,
//! or `"v2"` with the `v2` feature. Both migrate live (`?migrate=1`): the state moves as it is.
//! Build it with `just plugins`, which also writes the test builds to `target/plugin-variants/`:
//! `arena-v2.wasm`, `arena-v2-faulty.wasm` (a v2 whose `migrate_in` panics, as does its
//! `fault` message) and
//! `arena-v2-schema.wasm` (a v2 whose players gain a field `z`, which clients cannot follow).

use odeon_guest::prelude::*;
use serde::{Deserialize, Serialize};

/// What `build` answers.
const BUILD: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };

/// A player's position.
#[derive(Schema, Default, Serialize, Deserialize)]
pub struct Player {
    x: f64,
    y: f64,
    /// Only in the `schema-change` test build: a schema change clients cannot follow.
    #[cfg(feature = "schema-change")]
    #[serde(default)]
    z: f64,
}

/// The synchronised state.
#[derive(Schema, Default, Serialize, Deserialize)]
pub struct ArenaState {
    players: MapSchema<Player>,
}

/// The arena room: everything it has is in its state.
pub struct Arena;

#[derive(Deserialize)]
struct Move {
    x: f64,
    y: f64,
}

impl Room for Arena {
    const NAME: &'static str = "arena";
    type State = ArenaState;
    type UserData = ();
    const VERSION: u32 = if cfg!(feature = "v2") { 2 } else { 1 };

    fn on_create(ctx: &mut Ctx<ArenaState>, _options: Payload) -> Result<Self, RoomError> {
        ctx.set_max_clients(50);
        ctx.set_patch_rate(50);
        ctx.set_simulation_interval(50);
        Ok(Arena)
    }

    fn handlers(on: &mut Handlers<Self>) {
        on.message("move", Self::move_to).message("build", Self::build);
        if cfg!(feature = "faulty") {
            on.message(
                "fault",
                |_: &mut Self, _: &mut Ctx<ArenaState>, _: &Client, (): ()| -> Result<(), Reject> {
                    panic!("arena {BUILD} faults on purpose")
                },
            );
        }
    }

    fn on_join(
        &mut self,
        ctx: &mut Ctx<ArenaState>,
        client: &Client,
        _options: Payload,
        _auth: Payload,
    ) -> Result<(), RoomError> {
        ctx.state.players.insert(client.session_id(), Player::default());
        Ok(())
    }

    fn on_leave(&mut self, ctx: &mut Ctx<ArenaState>, client: &Client, _code: u16) {
        ctx.state.players.remove(client.session_id());
    }

    fn migrate_out(&mut self, ctx: &Ctx<ArenaState>) -> Result<Vec<u8>, RoomError> {
        migration::encode(&ctx.state)
    }

    fn migrate_in(ctx: &mut Ctx<ArenaState>, from: Migration) -> Result<Self, RoomError> {
        if cfg!(feature = "faulty") {
            panic!("arena {BUILD} cannot take state from version {}", from.version());
        }
        ctx.state = from.decode()?;
        Ok(Arena)
    }
}

impl Arena {
    /// `move {x, y}`: the sender's position.
    fn move_to(
        &mut self,
        ctx: &mut Ctx<ArenaState>,
        client: &Client,
        Move { x, y }: Move,
    ) -> Result<(), Reject> {
        let mut player = ctx.state.players.get_mut(client.session_id()).ok_or("not in the arena")?;
        (player.x, player.y) = (x, y);
        Ok(())
    }

    /// `build`: which build runs, as a message to the sender (and a request's answer).
    fn build(&mut self, ctx: &mut Ctx<ArenaState>, client: &Client, (): ()) -> Result<&'static str, Reject> {
        ctx.send(client, "build", &BUILD);
        Ok(BUILD)
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
        assert_eq!(room.state_json(), r#"{"players":{"a":{"x":1.5,"y":-2},"b":{"x":0,"y":0}}}"#);
        room.leave("b", 4000);
        assert_eq!(room.state_json(), r#"{"players":{"a":{"x":1.5,"y":-2}}}"#);
        // What `a`'s client decoded from its frames is that state too.
        assert_eq!(room.client_state("a"), room.state_json());
    }

    #[test]
    fn build_names_the_build() {
        let mut room = TestRoom::<Arena>::create(json!({})).unwrap();
        room.join("a", json!({})).unwrap();
        room.message_empty("a", "build");
        assert_eq!(room.sent_to::<serde_json::Value>("a", "build"), [json!(BUILD)]);
    }

    #[cfg(not(any(feature = "faulty", feature = "schema-change")))]
    #[test]
    fn a_live_migration_keeps_players_and_their_positions() {
        let mut room = TestRoom::<Arena>::create(json!({})).unwrap();
        for sid in ["a", "b", "c"] {
            room.join(sid, json!({})).unwrap();
        }
        room.message("a", "move", &json!({"x": 1, "y": 2}));
        // A player who left leaves a gap in the map's indexes that the clients keep.
        room.leave("b", 4000);
        room.message("c", "move", &json!({"x": -3, "y": 4}));
        let mut room = room.migrate::<Arena>().expect("arena migrates");
        assert_eq!(room.state_json(), r#"{"players":{"a":{"x":1,"y":2},"c":{"x":-3,"y":4}}}"#);
        room.join("d", json!({})).unwrap();
        room.message("a", "move", &json!({"x": 5, "y": 6}));
        assert_eq!(
            room.state_json(),
            r#"{"players":{"a":{"x":5,"y":6},"c":{"x":-3,"y":4},"d":{"x":0,"y":0}}}"#
        );
    }
}
