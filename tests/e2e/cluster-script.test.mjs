// `just cluster N` (scripts/cluster.sh): redis-server, SecantusDB, N hosts and odeon-proxy in
// front of them on one machine; clients know only the proxy's address. A freshly started cluster
// serves its first joinOrCreate without waiting out a timeout; a host killed with -9 is reported
// and started again on its port while the others keep serving, and so is the proxy; Ctrl-C stops
// every process it started.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { TESTS_DIR, HOST_BIN, PLUGINS_DIR, cleanEnv, freePort, sleep, spawnGroup, waitFor } from "./harness.mjs";
import { SDK18 } from "./sdks.mjs";
import { PROXY_BIN } from "./proxy.mjs";

const sdk18Url = (room) => SDK18.ws(room).url;

const alive = (pid) => {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
};

async function health(port) {
    try {
        const res = await fetch(`http://127.0.0.1:${port}/odeon/health`, { signal: AbortSignal.timeout(1000) });
        return res.ok ? await res.json() : null;
    } catch {
        return null;
    }
}

describe("just cluster (scripts/cluster.sh)", () => {
    let child;
    let exited = null;
    let out = "";
    after(async () => {
        if (!child || exited) return;
        // The script starts each service with setsid (a group of its own), so killing the
        // script's group would leave them running: TERM lets its clean-up stop them all (it
        // takes at most ~10 s); the group is killed only if that hangs.
        process.kill(child.pid, "SIGTERM");
        const deadline = Date.now() + 15000;
        while (!exited && Date.now() < deadline) await sleep(100);
        if (!exited) process.kill(-child.pid, "SIGKILL");
    });

    const until = async (what, predicate, ms) => {
        const deadline = Date.now() + ms;
        while (Date.now() < deadline) {
            if (await predicate()) return;
            if (exited) assert.fail(`cluster.sh exited (${JSON.stringify(exited)}) while waiting for ${what}:\n${out.slice(-3000)}`);
            await sleep(100);
        }
        assert.fail(`timed out waiting for ${what}:\n${out.slice(-3000)}`);
    };

    it("serves the first join at once, restarts a killed host, and stops everything on Ctrl-C", { timeout: 180000 }, async (t) => {
        // Three consecutive free ports for the hosts.
        let base;
        for (let tries = 0; tries < 20 && base === undefined; tries++) {
            const p = await freePort();
            if (p < 65000) base = p;
        }
        const proxyPort = await freePort();
        const env = cleanEnv({
            ODEON_HOST_BIN: HOST_BIN, ODEON_PROXY_BIN: PROXY_BIN, ODEON_PLUGINS_DIR: PLUGINS_DIR,
            ODEON_CLUSTER_PORT: String(base), ODEON_PROXY_PORT: String(proxyPort),
        });
        for (const k of ["SECANTUSD_PY", "ODEON_REDIS_SERVER"]) if (process.env[k]) env[k] = process.env[k];
        child = spawnGroup("bash", [resolve(TESTS_DIR, "../scripts/cluster.sh"), "3"], { stdio: ["ignore", "pipe", "pipe"], env });
        child.stdout.on("data", (c) => { out += c.toString(); });
        child.stderr.on("data", (c) => { out += c.toString(); });
        const exit = new Promise((r) => child.on("exit", (code, signal) => { exited = { code, signal }; r(exited); }));

        await until("the cluster to be up", () => out.includes("Ctrl-C stops them all."), 120000);
        const hosts = [...out.matchAll(/host (\d)\s+ws:\/\/127\.0\.0\.1:(\d+)\s+processId (\S+)\s+pid (\d+)/g)]
            .map((m) => ({ n: Number(m[1]), port: Number(m[2]), processId: m[3], pid: Number(m[4]) }));
        assert.equal(hosts.length, 3, out);
        const services = [...out.matchAll(/(?:redis|mongodb)\s+\S+\s+pid (\d+)/g)].map((m) => Number(m[1]));
        assert.equal(services.length, 2, out);
        const proxyPid = Number(out.match(new RegExp(`proxy\\s+http://127\\.0\\.0\\.1:${proxyPort}\\s+pid (\\d+)`))?.[1]);
        assert.ok(proxyPid, out);
        assert.ok(out.includes(`Clients use the proxy: ws://127.0.0.1:${proxyPort}`), out);
        const processOf = (room) => new URL(sdk18Url(room)).pathname.split("/")[1];

        // The first joinOrCreate after the start, through the proxy: no timeout waited out (the
        // SDK gives up at 3 s).
        const client = new SDK18.Client(`ws://127.0.0.1:${proxyPort}`);
        const t0 = Date.now();
        const room = await waitFor(client.joinOrCreate("echo", { mode: "first" }), 5000, "first joinOrCreate");
        const firstJoinMs = Date.now() - t0;
        assert.ok(firstJoinMs < 1500, `the first join took ${firstJoinMs} ms`);
        room.onMessage("*", () => {});
        // The next room goes to a host with no room yet: the first call between two processes.
        const t1 = Date.now();
        const remote = await waitFor(client.joinOrCreate("echo", { mode: "second" }), 5000, "second joinOrCreate");
        const remoteJoinMs = Date.now() - t1;
        remote.onMessage("*", () => {});
        assert.ok(sdk18Url(remote).startsWith(`ws://127.0.0.1:${proxyPort}/`), sdk18Url(remote));
        assert.ok(hosts.some((h) => h.processId === processOf(remote)), sdk18Url(remote));
        assert.notEqual(processOf(remote), processOf(room), `the second room runs on another host (${sdk18Url(remote)})`);
        assert.ok(remoteJoinMs < 1500, `the first cross-process join took ${remoteJoinMs} ms`);
        t.diagnostic(`first join ${firstJoinMs} ms, first cross-process join ${remoteJoinMs} ms`);
        await waitFor(room.leave(), 5000, "leave");
        await waitFor(remote.leave(), 5000, "leave");

        // kill -9 of host 2: reported, the others keep serving, and it comes back on its port.
        const victim = hosts[1];
        process.kill(victim.pid, "SIGKILL");
        await until("the death to be reported", () => out.includes(`host 2 (port ${victim.port}, pid ${victim.pid}) exited`), 5000);
        for (const h of [hosts[0], hosts[2]]) assert.ok(await health(h.port), `host ${h.n} still serves`);
        await until("host 2 to be restarted", () => /host 2 restarted: ws:\/\/127\.0\.0\.1:\d+\s+pid \d+/.test(out), 10000);
        const newPid = Number(out.match(/host 2 restarted: ws:\/\/127\.0\.0\.1:\d+\s+pid (\d+)/)[1]);
        assert.notEqual(newPid, victim.pid);
        let back = null;
        await until("host 2 to answer again", async () => (back = await health(victim.port)) !== null, 30000);
        assert.notEqual(back.processId, victim.processId, "a new process");
        const proxyRoutes = async () => {
            try {
                return (await (await fetch(`http://127.0.0.1:${proxyPort}/health`)).json()).processes;
            } catch {
                return [];
            }
        };
        await until("the proxy to route to the restarted host", async () => (await proxyRoutes()).includes(back.processId), 5000);
        assert.ok(!(await proxyRoutes()).includes(victim.processId), "the dead process's route is gone");
        const again = new SDK18.Client(`ws://127.0.0.1:${proxyPort}`);
        const room2 = await waitFor(again.joinOrCreate("echo", { mode: "after-restart" }), 5000, "join after the restart");
        room2.onMessage("*", () => {});
        await waitFor(room2.leave(), 5000, "leave");

        // kill -TERM of host 3 (a restart): its room moves to another host and plays on, its
        // client behind the proxy unaware; the script starts host 3 again on its port.
        const stopped = hosts[2];
        let game;
        for (let i = 0; i < 12 && !game; i++) {
            const r = await waitFor(new SDK18.Client(`ws://127.0.0.1:${proxyPort}`).create("echo", { mode: `term-${i}` }), 5000, "create");
            r.onMessage("*", () => {});
            if (processOf(r) === stopped.processId) game = r;
            else await waitFor(r.leave(), 5000, "leave");
        }
        assert.ok(game, "a room on host 3");
        const noticed = [];
        game.onDrop(() => noticed.push("drop"));
        game.onReconnect(() => noticed.push("reconnect"));
        game.onLeave((code) => noticed.push(`leave ${code}`));
        process.kill(stopped.pid, "SIGTERM");
        await until("host 3 to stop and be restarted", () => /host 3 restarted: ws:\/\/127\.0\.0\.1:\d+\s+pid \d+/.test(out), 30000);
        const echoed = new Promise((r) => game.onMessage("echo", r));
        game.send("echo", { after: "sigterm" });
        assert.deepEqual(await waitFor(echoed, 5000, "echo after the restart"), { after: "sigterm" });
        assert.deepEqual(noticed, [], "the client noticed nothing");
        assert.match(out, /exited with status 0/, "host 3 stopped by itself, after its rooms moved");
        await waitFor(game.leave(), 5000, "leave");

        // The proxy killed with -9 is restarted too, and routes again.
        process.kill(proxyPid, "SIGKILL");
        await until("the proxy to be restarted", () => /proxy restarted: http:\/\/127\.0\.0\.1:\d+\s+pid \d+/.test(out), 10000);
        const newProxyPid = Number(out.match(/proxy restarted: http:\/\/127\.0\.0\.1:\d+\s+pid (\d+)/)[1]);
        await until("the restarted proxy to route to the three hosts", async () => (await proxyRoutes()).length === 3, 10000);
        const room3 = await waitFor(new SDK18.Client(`ws://127.0.0.1:${proxyPort}`).joinOrCreate("echo", { mode: "after-proxy" }), 5000, "join after the proxy restart");
        room3.onMessage("*", () => {});
        await waitFor(room3.leave(), 5000, "leave");

        // Ctrl-C: everything it started is stopped.
        process.kill(child.pid, "SIGINT");
        const { code } = await waitFor(exit, 20000, "cluster.sh to exit");
        assert.equal(code, 0, out.slice(-2000));
        for (const pid of [...services, hosts[0].pid, hosts[2].pid, newPid, newProxyPid]) assert.ok(!alive(pid), `pid ${pid} still runs`);
    });
});
