// Checks a running arena server with the official client (@colyseus/sdk 0.18.4): joins `arena`,
// sends `move {x: 3, y: 4}` and exits 0 once its own player in the state shows x == 3.
// It starts nothing itself: `PORT=2567 node smoke.mjs` against `node server.mjs` (or an Odeon
// host) on 127.0.0.1. Exits 1 on any failure, and after 5 s at the latest.

import { Client, getStateCallbacks } from "@colyseus/sdk";

const PORT = Number(process.env.PORT ?? 2567);
const TIMEOUT_MS = 5000;

const timer = setTimeout(() => {
  console.error(`smoke: no move seen within ${TIMEOUT_MS} ms`);
  process.exit(1);
}, TIMEOUT_MS);

try {
  const started = performance.now();
  const client = new Client(`ws://127.0.0.1:${PORT}`);
  const room = await client.joinOrCreate("arena");
  const $ = getStateCallbacks(room);
  const moved = new Promise((resolve) => {
    $(room.state).players.onAdd((player, sessionId) => {
      if (sessionId !== room.sessionId) return;
      $(player).listen("x", (x) => {
        if (x === 3) resolve(player);
      });
    });
  });
  room.send("move", { x: 3, y: 4 });
  const player = await moved;
  const ms = (performance.now() - started).toFixed(1);
  console.log(
    `smoke: ok, room ${room.roomId} session ${room.sessionId} at (${player.x}, ${player.y}), ` +
      `${room.state.players.size} player(s), ${ms} ms`,
  );
  await room.leave();
  clearTimeout(timer);
  process.exit(player.y === 4 ? 0 : 1);
} catch (err) {
  console.error(`smoke: ${err?.stack ?? err}`);
  process.exit(1);
}
