//! The runtime's side of a live migration: the snapshot the old code writes and the room the
//! new code rebuilds from it (see [`crate::migration`]).

use odeon_protocol::abi::{self, Effects, InputDecl, MigrateIn, MigrateInResult, MigrateOut};
use odeon_schema::StateCarry;
use serde::{Deserialize, Serialize};

use super::{Phase, Runtime};
use crate::ctx::CtxCarry;
use crate::migration::Migration;
use crate::state::{Synced, is_synced};
use crate::{Room, RoomCtx};

/// The snapshot's layout version; a runtime refuses layouts it does not know.
const FORMAT: u32 = 1;

/// What moves from the old code to the new one, besides what the host keeps.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    format: u32,
    /// The old code's `Room::VERSION`.
    version: u32,
    ctx: CtxCarry,
    /// What the old code's `migrate_out` wrote.
    #[serde(with = "serde_bytes")]
    room: Vec<u8>,
    /// What the clients hold of the schema state, if the room has one.
    state: Option<StateCarry>,
    /// The old code's inputs declaration: the host keeps buffering by it.
    inputs: Option<InputDecl>,
}

impl<R: Room> Runtime<R> {
    /// The live room's snapshot for another version of its code, or why it cannot move.
    pub fn migrate_out(&mut self) -> MigrateOut {
        let (Phase::Live, Some(room)) = (self.phase, self.room.as_mut()) else {
            return MigrateOut::Refused(format!("the room is not live ({:?})", self.phase));
        };
        let state = match self.synced.as_mut().map(|s| s.with(&mut self.ctx.state, |e| e.carry())) {
            None => None,
            Some(Ok(carry)) => Some(carry),
            Some(Err(e)) => return MigrateOut::Refused(e.to_string()),
        };
        let bytes = match room.migrate_out(&self.ctx) {
            Ok(bytes) => bytes,
            Err(e) => return MigrateOut::Refused(e.message),
        };
        // The hook only reads; anything it asked of the world is not part of a snapshot.
        self.ctx.take_effects();
        let snapshot = Snapshot {
            format: FORMAT,
            version: R::VERSION,
            ctx: self.ctx.carry(),
            room: bytes,
            state,
            inputs: R::inputs().map(crate::request::Inputs::into_decl),
        };
        MigrateOut::Ready(abi::encode(&snapshot))
    }

    /// Rebuilds the room on this (fresh) runtime from another version's snapshot.
    pub fn migrate_in(&mut self, input: MigrateIn) -> MigrateInResult {
        if self.phase != Phase::Pending {
            return MigrateInResult::Refused("the runtime already holds a room".into());
        }
        match self.adopt(input) {
            Ok(effects) => MigrateInResult::Adopted(effects),
            Err(reason) => {
                self.phase = Phase::Failed;
                MigrateInResult::Refused(reason)
            }
        }
    }

    fn adopt(&mut self, input: MigrateIn) -> Result<Effects, String> {
        let snapshot: Snapshot =
            abi::decode(&input.snapshot).map_err(|e| format!("the snapshot does not decode: {e}"))?;
        if snapshot.format != FORMAT {
            return Err(format!(
                "snapshot layout {} is not {FORMAT}: rebuild the room with this SDK",
                snapshot.format
            ));
        }
        let inputs = R::inputs().map(crate::request::Inputs::into_decl);
        if inputs != snapshot.inputs {
            return Err("the room's inputs declaration changed: clients keep the one they joined with".into());
        }
        let mut ctx = RoomCtx::<R>::from_carry(snapshot.ctx, input.now_ms);
        let from = Migration::new(snapshot.version, input.from_hash, snapshot.room);
        let room = R::migrate_in(&mut ctx, from).map_err(|e| e.message)?;
        self.synced = match (is_synced::<R::State>(), &snapshot.state) {
            (false, None) => None,
            (true, Some(carry)) => Some(Synced::adopt(&mut ctx.state, carry)?),
            (true, None) => return Err("the new code has schema state and the old one had none".into()),
            (false, Some(_)) => return Err("the new code has no schema state and the old one had".into()),
        };
        self.ctx = ctx;
        self.room = Some(room);
        self.phase = Phase::Live;
        Ok(Effects { effects: self.ctx.take_effects() })
    }

    /// [`Runtime::migrate_out`], encoded.
    pub fn migrate_out_encoded(&mut self) -> Vec<u8> {
        abi::encode(&self.migrate_out())
    }

    /// [`Runtime::migrate_in`] on an encoded [`MigrateIn`], encoded.
    pub fn migrate_in_encoded(&mut self, input: &[u8]) -> Vec<u8> {
        let result = match abi::decode::<MigrateIn>(input) {
            Ok(input) => self.migrate_in(input),
            Err(e) => MigrateInResult::Refused(format!("malformed migration input: {e}")),
        };
        abi::encode(&result)
    }
}
