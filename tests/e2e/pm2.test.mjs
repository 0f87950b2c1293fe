// deploy/ecosystem.config.js under the real PM2 (tests/node_modules/.bin/pm2): two instances in
// fork mode on PORT and PORT+1, sharing a real redis-server and a MongoDB-wire server
// (SecantusDB), each its own process; the official 0.18 SDK gets its echo back from the first.
//
// PM2 runs with PM2_HOME in a temporary directory, so it never touches a user's PM2, and is
// stopped with `pm2 kill` on that home. Redis and SecantusDB are this file's own children on free
// loopback ports, stopped by PID.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { HOST_BIN, PLUGINS_DIR, TESTS_DIR, cleanEnv, freePort, sleep, waitFor } from "./harness.mjs";
import { startMongo, startRedis } from "./services.mjs";
import { SDK18 } from "./sdks.mjs";

const PM2_BIN = resolve(TESTS_DIR, "node_modules/.bin/pm2");
const ECOSYSTEM = resolve(TESTS_DIR, "../deploy/ecosystem.config.js");
const INSTANCES = 2;

/** True when something accepts a TCP connection on the loopback port. */
function accepts(port) {
    return new Promise((r) => {
        const s = net.connect({ host: "127.0.0.1", port });
        s.setTimeout(500);
        s.once("connect", () => { s.destroy(); r(true); });
        s.once("timeout", () => { s.destroy(); r(false); });
        s.once("error", () => r(false));
    });
}

/** True if the PID is a live process (not gone, not a zombie waiting to be reaped). */
function alive(pid) {
    if (existsSync("/proc")) {
        try {
            const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
            return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
        } catch {
            return false;
        }
    }
    try { process.kill(pid, 0); return true; } catch { return false; }
}

/** A free loopback port whose successor is free too (PM2 instance 1 listens on PORT+1). */
async function freePortPair() {
    for (let i = 0; i < 20; i++) {
        const port = await freePort();
        if (port >= 65535) continue;
        const nextFree = await new Promise((r) => {
            const srv = net.createServer();
            srv.once("error", () => r(false));
            srv.listen(port + 1, "127.0.0.1", () => srv.close(() => r(true)));
        });
        if (nextFree) return port;
    }
    throw new Error("no pair of free consecutive loopback ports in 20 tries");
}

// ---------------------------------------------------------------------------

describe("PM2 ecosystem (deploy/ecosystem.config.js)", { timeout: 120000 }, () => {
    const dir = mkdtempSync(join(tmpdir(), "odeon-pm2-"));
    const pm2Home = join(dir, "pm2");
    let redis;
    let mongo;
    let basePort;
    let pm2Started = false;
    let hostPids = [];
    let daemonPid = null;

    /** Run the pm2 CLI with this file's PM2_HOME; resolves {code, stdout, stderr}. */
    function pm2(args, extraEnv = {}, ms = 20000) {
        const env = {
            ...cleanEnv(),
            PM2_HOME: pm2Home,
            // No phone-home to the version-check service from the daemon.
            PM2_DISABLE_VERSION_CHECK: "1",
            NO_COLOR: "1",
            FORCE_COLOR: "0",
            ...extraEnv,
        };
        return new Promise((r) => {
            execFile(PM2_BIN, args, { cwd: TESTS_DIR, env, timeout: ms, killSignal: "SIGKILL" }, (err, stdout, stderr) => {
                r({ code: err ? (err.code ?? err.signal ?? 1) : 0, stdout, stderr, killed: err?.killed ?? false });
            });
        });
    }

    /** pm2's own log and the instances' logs, for a failing assertion. */
    function pm2Logs() {
        const parts = [];
        const read = (p) => { try { return readFileSync(p, "utf8").split("\n").slice(-25).join("\n"); } catch { return ""; } };
        parts.push(`--- ${join(pm2Home, "pm2.log")} ---\n${read(join(pm2Home, "pm2.log"))}`);
        try {
            for (const f of readdirSync(join(pm2Home, "logs"))) parts.push(`--- ${f} ---\n${read(join(pm2Home, "logs", f))}`);
        } catch { /* no logs yet */ }
        return parts.join("\n");
    }

    before(async () => {
        for (const [what, p] of [["host binary", HOST_BIN], ["echo plugin", join(PLUGINS_DIR, "echo.wasm")], ["pm2", PM2_BIN]]) {
            if (!existsSync(p)) throw new Error(`${what} not found: ${p} (build the host and plugins, run npm ci in tests/)`);
        }
        // PM2 calls a version-check service the first time it sees a PM2_HOME (no `touch` file
        // there yet); an existing one keeps it quiet, and skips the banner.
        mkdirSync(pm2Home, { recursive: true });
        writeFileSync(join(pm2Home, "touch"), String(Date.now()));

        redis = await startRedis();
        mongo = await startMongo();
    }, { timeout: 35000 });

    after(async () => {
        if (pm2Started) {
            // The PIDs PM2 wrote down, in case the test stopped before it read them.
            const pidFile = (p) => { try { return Number(readFileSync(p, "utf8").trim()) || null; } catch { return null; } };
            daemonPid ??= pidFile(join(pm2Home, "pm2.pid"));
            try {
                for (const f of readdirSync(join(pm2Home, "pids"))) hostPids.push(pidFile(join(pm2Home, "pids", f)));
            } catch { /* none */ }
            await pm2(["kill"], {}, 15000);
        }
        // Whatever pm2 left behind: only the PIDs it reported, and only while they are still ours.
        const ours = (pid) => {
            try {
                const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
                return cmd.includes("odeon-host") || cmd.includes("PM2");
            } catch {
                return false;
            }
        };
        // The daemon first, so that it restarts none of the hosts killed after it.
        for (const pid of [daemonPid, ...hostPids].filter(Boolean)) {
            if (alive(pid) && ours(pid)) { try { process.kill(pid, "SIGKILL"); } catch { /* gone */ } }
        }
        await redis?.stop();
        await mongo?.stop();
        rmSync(dir, { recursive: true, force: true });
    }, { timeout: 30000 });

    it("runs one host per instance on PORT and PORT+1, serving the 0.18 SDK; pm2 reload keeps a room playing; pm2 kill stops them", { timeout: 110000 }, async () => {
        basePort = await freePortPair();
        const ports = Array.from({ length: INSTANCES }, (_, i) => basePort + i);
        const env = {
            ODEON_HOST_BIN: HOST_BIN,
            ODEON_PLUGINS: PLUGINS_DIR,
            ODEON_PM2_INSTANCES: String(INSTANCES),
            ODEON_BIND: "127.0.0.1",
            PORT: String(basePort),
            REDIS_URL: redis.url,
            MONGO_URI: mongo.uri,
        };
        pm2Started = true;
        const started = await pm2(["start", ECOSYSTEM], env, 20000);
        const context = () => `pm2 start: exit ${started.code}\n${started.stdout}\n${started.stderr}\n${pm2Logs()}`;
        assert.equal(started.code, 0, `pm2 start failed\n${context()}`);
        daemonPid = Number(readFileSync(join(pm2Home, "pm2.pid"), "utf8").trim()) || null;

        // Both instances answer on their own port, each a different process.
        const health = [];
        const deadline = Date.now() + 20000;
        for (const port of ports) {
            let body = null;
            let last = "no answer";
            while (!body && Date.now() < deadline) {
                try {
                    const res = await fetch(`http://127.0.0.1:${port}/odeon/health`, { signal: AbortSignal.timeout(1000) });
                    const text = await res.text();
                    if (res.status === 200) body = JSON.parse(text);
                    else last = `${res.status} ${text}`;
                } catch (e) {
                    last = e.message;
                    await sleep(200);
                }
            }
            assert.ok(body, `no health answer on port ${port} within 20 s of pm2 start (${last})\n${context()}`);
            assert.equal(body.status, "ok", `health on ${port}: ${JSON.stringify(body)}`);
            assert.equal(typeof body.processId, "string", `health on ${port}: ${JSON.stringify(body)}`);
            health.push(body);
        }
        assert.notEqual(health[0].processId, health[1].processId, "each instance is its own host process");

        // PM2's view: fork mode, the instance numbers 0 and 1 in NODE_APP_INSTANCE, one PORT for all.
        const jlist = await pm2(["jlist"]);
        assert.equal(jlist.code, 0, `pm2 jlist: ${jlist.stderr}`);
        const apps = JSON.parse(jlist.stdout.slice(jlist.stdout.indexOf("[")));
        assert.equal(apps.length, INSTANCES, `pm2 runs ${INSTANCES} processes: ${jlist.stdout}`);
        hostPids = apps.map((a) => a.pid);
        for (const app of apps) {
            assert.equal(app.name, "odeon");
            assert.equal(app.pm2_env.exec_mode, "fork_mode");
            assert.equal(app.pm2_env.status, "online");
            assert.equal(app.pm2_env.restart_time, 0, `instance ${app.pm2_env.NODE_APP_INSTANCE} was restarted\n${pm2Logs()}`);
        }
        assert.deepEqual(apps.map((a) => Number(a.pm2_env.NODE_APP_INSTANCE)).sort(), [0, 1]);
        if (existsSync("/proc")) {
            for (const pid of hostPids) {
                const environ = Object.fromEntries(readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").filter(Boolean)
                    .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
                assert.equal(environ.PORT, String(basePort), `PORT of host ${pid} (no increment_var)`);
                assert.match(environ.NODE_APP_INSTANCE ?? "", /^[01]$/, `NODE_APP_INSTANCE of host ${pid}`);
                assert.equal(environ.REDIS_URL, env.REDIS_URL);
                assert.equal(environ.MONGO_URI, env.MONGO_URI);
            }
        }

        // The official 0.18 SDK against the first instance.
        const client = new SDK18.Client(`ws://127.0.0.1:${ports[0]}`);
        const room = await waitFor(client.joinOrCreate("echo"), 8000, "joinOrCreate(echo) on instance 0");
        try {
            const reply = new Promise((r) => room.onMessage("echo", r));
            room.onMessage("*", () => {});
            room.send("echo", { hello: "pm2" });
            assert.deepEqual(await waitFor(reply, 5000, "echo reply"), { hello: "pm2" });
        } finally {
            if (room.reconnection) room.reconnection.enabled = false;
            await waitFor(room.leave(), 5000, "leave").catch(() => {});
        }

        // pm2 reload restarts the instances (SIGINT each): a host that stops moves its rooms to
        // the other, and the SDK's client follows its room by itself, into the same session.
        // The game runs on instance 0, which PM2 reloads first: its room moves to instance 1 and
        // back. (A room created through instance 0 may land on instance 1, whose socket instance 0
        // then relays: retry until it is instance 0's own.)
        const player = new SDK18.Client(`ws://127.0.0.1:${ports[0]}`);
        let game;
        for (let i = 0; i < 10 && !game; i++) {
            const r = await waitFor(player.create("echo", { mode: `reload-${i}` }), 8000, "create(echo) through instance 0");
            if (r.connection.transport.ws.url.includes(`/${health[0].processId}/`)) game = r;
            else await waitFor(r.leave(), 5000, "leave");
        }
        assert.ok(game, "an echo room on instance 0");
        game.reconnection.minUptime = 0;
        const seen = { drops: 0, reconnects: 0, left: null };
        game.onDrop(() => { seen.drops += 1; });
        game.onReconnect(() => { seen.reconnects += 1; });
        game.onLeave((code) => { seen.left = code; });
        game.onMessage("*", () => {});
        const [roomId, sessionId] = [game.roomId, game.sessionId];
        // One instance at a time, as the ecosystem file says, so the other can take its rooms.
        const reloaded = await pm2(["reload", "odeon"], { PM2_CONCURRENT_ACTIONS: "1" }, 60000);
        assert.equal(reloaded.code, 0, `pm2 reload: ${reloaded.stdout}\n${reloaded.stderr}`);
        const back = Date.now() + 20000;
        while (Date.now() < back && !(seen.drops >= 1 && seen.reconnects >= seen.drops)) await sleep(100);
        assert.ok(seen.drops >= 1 && seen.reconnects >= seen.drops, `the client followed its room: ${JSON.stringify(seen)}\n${pm2Logs()}`);
        assert.equal(seen.left, null, `the client never left: ${JSON.stringify(seen)}`);
        assert.deepEqual([game.roomId, game.sessionId], [roomId, sessionId]);
        const answer = new Promise((r) => game.onMessage("echo", r));
        game.send("echo", { after: "reload" });
        assert.deepEqual(await waitFor(answer, 5000, "echo after the reload"), { after: "reload" });
        game.reconnection.enabled = false;
        await waitFor(game.leave(), 5000, "leave").catch(() => {});
        hostPids = JSON.parse((await pm2(["jlist"])).stdout.replace(/^[^[]*/, "")).map((a) => a.pid);

        // pm2 kill stops the daemon and both hosts.
        const killed = await pm2(["kill"], {}, 15000);
        assert.equal(killed.code, 0, `pm2 kill: ${killed.stdout}\n${killed.stderr}`);
        pm2Started = false;
        const gone = Date.now() + 8000;
        while (Date.now() < gone && [...hostPids, daemonPid].some((p) => p && alive(p))) await sleep(100);
        assert.deepEqual(hostPids.filter(alive), [], "host processes still running after pm2 kill");
        if (daemonPid) assert.equal(alive(daemonPid), false, "PM2 daemon still running after pm2 kill");
        for (const port of ports) assert.equal(await accepts(port), false, `port ${port} still accepts connections`);
    });
});
