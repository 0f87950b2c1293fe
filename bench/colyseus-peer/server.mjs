// The real Colyseus 0.18 server with the `arena` room, Odeon's benchmark baseline.
//
// The room matches plugins/arena/src/lib.rs: state `{players: map<Player{x, y: number}>}` keyed
// by session id, a join adds a player at (0, 0), a leave removes it, `move {x, y}` sets the
// sender's position; patches and simulation ticks every 50 ms; at most 50 clients.
// Everything else is Colyseus's default: in-memory presence and driver, the ws transport with its
// own heartbeat (pingInterval 3 s, pingMaxRetries 2), no devMode.
//
// `PORT=2567 node server.mjs` listens on 127.0.0.1 and prints `listening` once it accepts
// connections; SIGTERM or SIGINT shut it down (exit 0).

import { Room, Server } from "@colyseus/core";
import { schema, t } from "@colyseus/schema";
import { WebSocketTransport } from "@colyseus/ws-transport";

const HOST = "127.0.0.1";
const PORT = Number(process.env.PORT ?? 2567);

export const Player = schema({ x: t.number(), y: t.number() }, "Player");
export const ArenaState = schema({ players: t.map(Player) }, "ArenaState");

export class ArenaRoom extends Room {
  maxClients = 50;
  patchRate = 50;
  state = new ArenaState();

  onCreate() {
    this.setSimulationInterval(() => {}, 50);
    this.onMessage("move", (client, message) => {
      // Like the Rust room, a move without two numbers is ignored.
      const x = message?.x;
      const y = message?.y;
      if (typeof x !== "number" || typeof y !== "number") return;
      const player = this.state.players.get(client.sessionId);
      if (player) {
        player.x = x;
        player.y = y;
      }
    });
  }

  onJoin(client) {
    this.state.players.set(client.sessionId, new Player({ x: 0, y: 0 }));
  }

  onLeave(client) {
    this.state.players.delete(client.sessionId);
  }
}

// `greet: false` only drops the start-up banner from stdout, so `listening` is the one line a
// harness waits for. Colyseus registers its own SIGINT/SIGTERM handlers (gracefully shutting down,
// then `process.exit(0)`); the timer below only bounds that shutdown.
const transport = new WebSocketTransport();
const server = new Server({ transport, greet: false });
server.define("arena", ArenaRoom);

// Colyseus only logs an HTTP server error (a taken port, say) and would then wait forever.
let listening = false;
const failed = (err) => {
  console.error(`colyseus-peer: cannot listen on ${HOST}:${PORT}: ${err?.message ?? err}`);
  process.exit(1);
};
transport.server.on("error", (err) => {
  if (!listening) failed(err);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => setTimeout(() => process.exit(0), 5000).unref());
}

try {
  await server.listen(PORT, HOST);
} catch (err) {
  failed(err);
}
listening = true;
process.stdout.write("listening\n");
