// The README's promise: after `just run`, a script using the official 0.18 SDK joins `echo` and
// gets its echo back, joins `arena` with live state, and uses 0.18's `room.request()` (echo) and
// `room.input()` (pilot). Runs the real recipe (plugins build + host) on a free port.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { TESTS_DIR, freePort, sleep, waitFor } from "./harness.mjs";
import { SDK18 } from "./sdks.mjs";

describe("just run", () => {
    let child;
    let exited = null;
    const logs = [];
    after(async () => {
        if (!child || exited) return;
        // `just` starts cargo, which starts the host: signal the whole process group, by its id.
        process.kill(-child.pid, "SIGTERM");
        for (let i = 0; i < 30 && !exited; i++) await sleep(100);
        if (!exited) process.kill(-child.pid, "SIGKILL");
    });

    it("serves echo to @colyseus/sdk 0.18 on the embedded default", { timeout: 300000 }, async () => {
        const port = await freePort();
        child = spawn("just", ["run", "--port", String(port)], {
            cwd: resolve(TESTS_DIR, ".."),
            detached: true,
            stdio: ["ignore", "pipe", "pipe"],
            // The toolchain's environment, without what would change the host's configuration.
            env: Object.fromEntries(Object.entries({ ...process.env, NO_COLOR: "1" })
                .filter(([k]) => !["REDIS_URL", "MONGO_URI", "NODE_APP_INSTANCE", "PORT", "RUST_LOG"].includes(k) && !k.startsWith("ODEON_"))),
        });
        child.stdout.on("data", (c) => logs.push(c.toString()));
        child.stderr.on("data", (c) => logs.push(c.toString()));
        child.on("exit", (code, signal) => { exited = { code, signal }; });

        const deadline = Date.now() + 280000;
        let health = null;
        while (!health && !exited && Date.now() < deadline) {
            try {
                const res = await fetch(`http://127.0.0.1:${port}/odeon/health`, { signal: AbortSignal.timeout(1000) });
                if (res.ok) health = await res.json();
            } catch { await sleep(250); }
        }
        assert.ok(health, `just run never answered on port ${port} (exit ${JSON.stringify(exited)}):\n${logs.join("").slice(-4000)}`);
        assert.ok(health.roomTypes.some((t) => t.name === "echo"), "echo is served");

        const client = new SDK18.Client(`ws://127.0.0.1:${port}`);
        const room = await waitFor(client.joinOrCreate("echo"), 8000, "joinOrCreate(echo)");
        const reply = new Promise((r) => room.onMessage("echo", r));
        room.onMessage("*", () => {});
        room.send("echo", { hello: "world" });
        assert.deepEqual(await waitFor(reply, 5000, "echo reply"), { hello: "world" });
        assert.equal(await waitFor(room.leave(), 5000, "leave"), 4000);

        // ... and serves arena with live state.
        const arena = await waitFor(client.joinOrCreate("arena"), 8000, "joinOrCreate(arena)");
        const $ = SDK18.getStateCallbacks(arena);
        const moved = new Promise((resolveMoved) => {
            $(arena.state).players.onAdd((player, key) => {
                if (key !== arena.sessionId) return;
                $(player).listen("x", (x) => { if (x === 42) resolveMoved(player.y); });
            });
        });
        arena.send("move", { x: 42, y: -1 });
        assert.equal(await waitFor(moved, 5000, "own move through state"), -1);
        await waitFor(arena.leave(), 5000, "leave arena");

        // ... and 0.18's round trips and inputs: room.request() on echo, room.input() on pilot.
        const echo = await waitFor(client.joinOrCreate("echo"), 8000, "joinOrCreate(echo) again");
        echo.onMessage("*", () => {});
        assert.deepEqual(await waitFor(echo.request("add", { a: 2, b: 3 }), 5000, "request add"), { sum: 5 });
        await waitFor(echo.leave(), 5000, "leave echo");
        const pilot = await waitFor(client.joinOrCreate("pilot"), 8000, "joinOrCreate(pilot)");
        const input = pilot.input();
        for (let i = 0; i < 3; i++) {
            input.data.dx = 1;
            input.send();
        }
        const inputsBy = Date.now() + 5000;
        while (input.lastProcessed < 3 && Date.now() < inputsBy) await sleep(20);
        assert.equal(input.lastProcessed, 3, "three inputs acked");
        while (pilot.state.players.get(pilot.sessionId)?.x !== 3 && Date.now() < inputsBy) await sleep(20);
        assert.equal(pilot.state.players.get(pilot.sessionId)?.x, 3, "the inputs moved the player");
        await waitFor(pilot.leave(), 5000, "leave pilot");
    });
});
