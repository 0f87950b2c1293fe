// The `tictactoe` room of plugins/tictactoe/src/lib.rs for Colyseus 0.18 (@colyseus/core
// 0.18.17, @colyseus/schema 5), the same behaviour written as a Colyseus user would, to compare
// their length (README.md, "Writing a room"). It is not built or run.

import { Client, type MessageContext, Room } from "@colyseus/core";
import { ArraySchema, MapSchema, Schema, type } from "@colyseus/schema";

export const NOT_YOUR_TURN = 4101;
export const CELL_TAKEN = 4102;
export const NO_SUCH_CELL = 4103;
export const GAME_OVER = 4104;
export const NOT_STARTED = 4105;
export const NOT_OVER = 4106;
const INVALID_PAYLOAD = 4217;

const RECONNECT_SECS = 20;
const LINES = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6]];

export class Game extends Schema {
  @type(["uint8"]) board = new ArraySchema<number>(0, 0, 0, 0, 0, 0, 0, 0, 0);
  @type("string") turn = "";
  @type("string") winner = "";
  @type({ map: "uint8" }) players = new MapSchema<number>();
}

// A refusal: an error frame to a plain `send`, REJECTED with {code, message} to a request.
function refuse(client: Client, ctx: MessageContext, code: number, message: string) {
  if (ctx.id === undefined) client.error(code, message);
  return ctx.reject({ code, message });
}

export class TicTacToeRoom extends Room<{ state: Game }> {
  maxClients = 2;
  state = new Game();
  // Who wants a rematch (a dropped player's Client, and so its userData, is gone until it
  // reconnects).
  wantsRematch = new Set<string>();

  messages = {
    move: (client: Client, payload: { index: number }, ctx: MessageContext) => {
      const game = this.state;
      const me = client.sessionId;
      const index = payload?.index;
      if (!Number.isInteger(index) || index < 0) {
        return refuse(client, ctx, INVALID_PAYLOAD, "move: invalid payload: expected {index}");
      }
      if (game.winner !== "") return refuse(client, ctx, GAME_OVER, "the game is over");
      if (game.turn === "") return refuse(client, ctx, NOT_STARTED, "waiting for a second player");
      if (game.turn !== me) return refuse(client, ctx, NOT_YOUR_TURN, "not your turn");
      if (index > 8) return refuse(client, ctx, NO_SUCH_CELL, `no cell ${index}: cells are 0 to 8`);
      if (game.board[index] !== 0) return refuse(client, ctx, CELL_TAKEN, `cell ${index} is taken`);
      const mark = game.players.get(me);
      game.board[index] = mark;
      if (LINES.some((line) => line.every((i) => game.board[i] === mark))) {
        game.winner = me;
      } else if (game.board.every((cell) => cell !== 0)) {
        game.winner = "draw";
      }
      game.turn = game.winner === "" ? [...game.players.keys()].find((id) => id !== me) ?? "" : "";
    },

    rematch: (client: Client, _payload: unknown, ctx: MessageContext) => {
      if (this.state.winner === "") return refuse(client, ctx, NOT_OVER, "the game is not over");
      this.wantsRematch.add(client.sessionId);
      const players = [...this.state.players.keys()];
      const started = players.length === 2 && players.every((id) => this.wantsRematch.has(id));
      if (started) {
        this.wantsRematch.clear();
        this.state.players.forEach((mark, id) => this.state.players.set(id, 3 - mark));
        this.start();
      }
      return started;
    },
  };

  onJoin(client: Client) {
    const mark = [...this.state.players.values()].includes(1) ? 2 : 1;
    this.state.players.set(client.sessionId, mark);
    this.start();
  }

  onDrop(client: Client) {
    this.allowReconnection(client, RECONNECT_SECS);
  }

  onLeave(client: Client) {
    const game = this.state;
    game.players.delete(client.sessionId);
    this.wantsRematch.delete(client.sessionId);
    if (game.turn !== "") {
      game.winner = [...game.players.keys()][0] ?? "";
      game.turn = "";
    }
  }

  start() {
    const game = this.state;
    for (let i = 0; i < game.board.length; i++) game.board[i] = 0;
    game.winner = "";
    const first = [...game.players.entries()].find(([, mark]) => mark === 1);
    game.turn = game.players.size === 2 ? first?.[0] ?? "" : "";
  }
}
