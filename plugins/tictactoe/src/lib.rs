//! The `tictactoe` room: two players, the README's example of a room on the guest SDK, and
//! shorter than the same room for Colyseus (`colyseus/TicTacToeRoom.ts`).
//!
//! State: `{board: array<uint8>, turn: string, winner: string, players: map<uint8>}`. `board`
//! holds 9 cells row by row (0 empty, 1 or 2 a player's mark), `turn` the session id of the
//! player to move ("" until two players are in, and once the game is over), `winner` "" while
//! the game goes on, then the winner's session id or "draw", and `players` each player's mark.
//! The first player to join is 1, the second 2; a game starts when both are in, mark 1 first.
//! A rematch swaps the marks, so the other player starts it.
//!
//! | from a client | what the room does |
//! |---|---|
//! | `move {index}` (0 to 8) | marks the cell and passes the turn, or ends the game; a move out of turn ([`NOT_YOUR_TURN`]), on a taken cell ([`CELL_TAKEN`]), off the board ([`NO_SUCH_CELL`]), after the end ([`GAME_OVER`]) or before a second player ([`NOT_STARTED`]) is refused to the sender |
//! | `rematch` | once the game is over, the sender wants another; when both do, the marks swap and a new game starts. Answers whether it started (`true`/`false`); before the end it is refused ([`NOT_OVER`]) |
//!
//! Refusals reach a `send`er as `room.onError(code, message)` and reject a `request` with
//! `err.reason` = `{code, message}`. A player whose connection drops keeps the seat 20 seconds
//! (the SDK reconnects by itself); one who leaves for good forfeits a game under way.

use odeon_guest::prelude::*;

/// A move by the player whose turn it is not.
pub const NOT_YOUR_TURN: u32 = 4101;
/// A move on a cell already marked.
pub const CELL_TAKEN: u32 = 4102;
/// A move off the board.
pub const NO_SUCH_CELL: u32 = 4103;
/// A move once the game is over.
pub const GAME_OVER: u32 = 4104;
/// A move before the second player is in.
pub const NOT_STARTED: u32 = 4105;
/// A rematch while the game goes on.
pub const NOT_OVER: u32 = 4106;

/// The cells of every winning line.
const LINES: [[usize; 3]; 8] =
    [[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6]];

/// The synchronised state: `room.state` on both clients.
#[derive(Schema, Default)]
pub struct Game {
    board: ArraySchema<u8>,
    turn: String,
    winner: String,
    players: MapSchema<u8>,
}

/// What the room's hooks get: the game as the state, and for each player whether it wants a
/// rematch as its user data.
type Cx = Ctx<Game, bool>;

/// The room: everything it has is in its context.
pub struct TicTacToe;

#[derive(Deserialize)]
struct Move {
    index: usize,
}

impl Room for TicTacToe {
    const NAME: &'static str = "tictactoe";
    const RECONNECT_SECS: u32 = 20;
    type State = Game;
    type UserData = bool;

    fn on_create(ctx: &mut Cx, _options: Payload) -> Result<Self, RoomError> {
        ctx.set_max_clients(2);
        ctx.state.board.extend([0u8; 9]);
        Ok(TicTacToe)
    }

    fn handlers(on: &mut Handlers<Self>) {
        on.message("move", play).message("rematch", rematch);
    }

    fn on_join(&mut self, ctx: &mut Cx, client: &Client, _: Payload, _: Payload) -> Result<(), RoomError> {
        let mark = if ctx.state.players.values().any(|&m| m == 1) { 2 } else { 1 };
        ctx.state.players.insert(client.session_id(), mark);
        start(&mut ctx.state);
        Ok(())
    }

    /// A player who leaves for good forfeits a game under way.
    fn on_leave(&mut self, ctx: &mut Cx, client: &Client, _code: u16) {
        ctx.state.players.remove(client.session_id());
        if !ctx.state.turn.is_empty() {
            ctx.state.winner = ctx.state.players.keys().next().unwrap_or_default().to_owned();
            ctx.state.turn.clear();
        }
    }
}

/// `move {index}`: the sender's mark on the cell.
fn play(_: &mut TicTacToe, ctx: &mut Cx, client: &Client, Move { index }: Move) -> Result<(), Reject> {
    let (game, me) = (&mut ctx.state, client.session_id());
    Reject::unless(game.winner.is_empty(), GAME_OVER, "the game is over")?;
    Reject::unless(!game.turn.is_empty(), NOT_STARTED, "waiting for a second player")?;
    Reject::unless(game.turn == me, NOT_YOUR_TURN, "not your turn")?;
    Reject::unless(index < 9, NO_SUCH_CELL, format!("no cell {index}: cells are 0 to 8"))?;
    Reject::unless(game.board[index] == 0, CELL_TAKEN, format!("cell {index} is taken"))?;
    let mark = game.players.get(me).copied().unwrap_or_default();
    game.board[index] = mark;
    if LINES.iter().any(|line| line.iter().all(|&i| game.board[i] == mark)) {
        game.winner = me.to_owned();
    } else if game.board.iter().all(|&cell| cell != 0) {
        game.winner = "draw".to_owned();
    }
    game.turn = game.players.keys().find(|&id| id != me && game.winner.is_empty()).unwrap_or_default().into();
    Ok(())
}

/// `rematch`: another game once both players want one, with their marks swapped; answers
/// whether it started.
fn rematch(_: &mut TicTacToe, ctx: &mut Cx, client: &Client, (): ()) -> Result<bool, Reject> {
    Reject::unless(!ctx.state.winner.is_empty(), NOT_OVER, "the game is not over")?;
    *ctx.user_data_mut(client) = true;
    let players: Vec<String> = ctx.state.players.keys().map(str::to_owned).collect();
    let started = players.iter().filter(|&id| ctx.user_data(id) == Some(&true)).count() == 2;
    if started {
        players.iter().for_each(|id| *ctx.user_data_mut(id) = false);
        ctx.state.players.values_mut().for_each(|mark| *mark = 3 - *mark);
        start(&mut ctx.state);
    }
    Ok(started)
}

/// A new game on a clear board, mark 1 first, once there are two players.
fn start(game: &mut Game) {
    game.board.iter_mut().for_each(|cell| *cell = 0);
    game.winner.clear();
    let first = game.players.iter().find(|p| *p.1 == 1).filter(|_| game.players.len() == 2);
    game.turn = first.map(|p| p.0).unwrap_or_default().into();
}

export_room!(TicTacToe);
