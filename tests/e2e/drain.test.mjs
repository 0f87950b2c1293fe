// Draining a host (issue 17): `POST /odeon/admin/drain` or SIGTERM marks the host draining in the
// registry, so no host and no odeon-proxy places a new room or seat on it, and moves each of its
// rooms to another live host under the same room id (the guest's memory, seats, timers and
// listing). Behind the proxy, clients follow without a sign (handover.test.mjs checks it for
// each SDK generation); a client connected directly is closed with 4010 and the SDK reconnects
// by itself, through the restarted host, to where the room runs now, with its state intact. The host exits once it holds no room; a room
// with nowhere to go (no peer, a full peer, a peer running another version) stays until
// `--drain-timeout-secs`; a move the peer does not answer is abandoned and tried again then.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, renameSync } from "node:fs";
import { join, resolve } from "node:path";
import { PLUGIN_VARIANTS_DIR, hostTest, positions, sleep, uniq } from "./harness.mjs";
import * as drains from "./drains.mjs";
import { SDK18 as sdk } from "./sdks.mjs";
import { startDeployment } from "./proxy.mjs";

const TOKEN = "dr4in-7e5t-t0ken-5b3c81e0";

const drain = (host) => drains.drain(host, TOKEN);
const health = async (host) => (await fetch(`${host.http}/odeon/health`)).json();
const processOf = (peer) => drains.processOf(sdk, peer);
const whereRuns = (host, roomId) => drains.whereRuns(host, TOKEN, roomId);

async function until(what, predicate, ms = 8000) {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
        if (predicate()) return;
        await sleep(20);
    }
    assert.fail(`timed out waiting for ${what}`);
}

describe("draining hosts behind odeon-proxy: rooms move (3 hosts, @colyseus/sdk 0.18)", () => {
    let d, proxy, hosts;
    before(async () => {
        d = await startDeployment({ hosts: 3, label: "drain", hostArgs: ["--admin-token", TOKEN] });
        hosts = d.hosts.slice();
        proxy = d.proxies[0];
    });
    after(async () => { await d?.stop(); });
    const test = (name, fn, opts) => hostTest(() => proxy, `[drain] ${name}`, fn, { timeout: 60000, ...opts });

    const roomOn = (s, host, name, options) => drains.roomOn(s, sdk, host, name, options);

    test("the peer import refuses a caller without the host's peer key, before reading its body", async () => {
        for (const headers of [{}, { "x-odeon-peer": "not-the-key" }]) {
            const res = await fetch(`${hosts[0].http}/odeon/peer/import`, { method: "POST", headers, body: "x".repeat(1000) });
            assert.equal(res.status, 403);
            assert.match((await res.json()).error, /not a host of this deployment/);
        }
        // The host still serves.
        assert.equal((await health(hosts[0])).status, "ok");
    });

    /** Behind the proxy a peer does not see its room move: no drop, no reconnection, same room. */
    async function followedTheMove(peer, roomId, sessionId) {
        await peer.noKind("drop", 300);
        await peer.noKind("reconnect", 0);
        assert.equal(peer.room.roomId, roomId);
        assert.equal(peer.room.sessionId, sessionId);
    }

    test("POST /odeon/admin/drain moves every room to the other hosts; clients follow unaware; the host exits", async (s) => {
        const victim = hosts[2];
        const a = await roomOn(s, victim, "echo", { mode: uniq("drain") });
        await a.nextMsg("welcome");
        const b = await s.join(sdk, "joinById", a.roomId, {}, { label: "B" });
        await b.nextMsg("welcome");
        const p = await roomOn(s, victim, "arena");
        await until("P has state", () => p.room.state?.players);
        const q = await s.join(sdk, "joinById", p.roomId, {}, { label: "Q" });
        await until("Q has state", () => q.room.state?.players);
        p.send("move", { x: 11, y: -3 });
        q.send("move", { x: 2.5, y: 7 });
        const expected = { [p.sessionId]: { x: 11, y: -3 }, [q.sessionId]: { x: 2.5, y: 7 } };
        for (const peer of [p, q]) await until(`${peer.label} converges`, () => JSON.stringify(positions(peer.room)) === JSON.stringify(expected));
        // A board room (pub/sub between rooms) on the victim, and one elsewhere.
        const c = await roomOn(s, victim, "board");
        await c.nextMsg("visits");
        let other;
        for (let i = 0; i < 12 && !other; i++) {
            const o = await s.join(sdk, "create", "board", {}, { label: `board elsewhere ${i}` });
            if (processOf(o) !== victim.processId) other = o;
        }
        assert.ok(other, "a board room on another host");
        // A room with timers running across the move: an interval and a timeout.
        const t = await roomOn(s, victim, "lifecycle");
        const intervals = [];
        t.room.onMessage("interval", (m) => intervals.push(m.n));
        t.send("interval", { ms: 200, times: 12 });
        t.send("timeout", { ms: 1200 });
        await until("the interval runs", () => intervals.length >= 2);
        for (const peer of [a, b, p, q, c, t]) sdk.setMinUptime(peer.room, 0);
        const ids = new Map([a, b, p, q, c, t].map((x) => [x, [x.roomId, x.sessionId]]));

        const answer = await drain(victim);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.deepEqual(answer.body.stayed, [], JSON.stringify(answer.body));
        const movedIds = answer.body.moved.map((m) => m.roomId);
        assert.ok(movedIds.includes(a.roomId) && movedIds.includes(p.roomId), JSON.stringify(answer.body));
        for (const m of answer.body.moved) assert.notEqual(m.to, victim.processId);
        // Host to host, with no hop through Redis in the room's pause.
        for (const m of answer.body.moved) assert.equal(m.via, "direct", JSON.stringify(m));

        await Promise.all([a, b, p, q, c, t].map((x) => followedTheMove(x, ...ids.get(x))));
        // The timers fired on: each once, the interval to its end, then nothing more.
        const fired = await t.nextMsg("timeout", 5000);
        assert.ok(fired.elapsed >= 1100, `the timeout kept its delay: ${JSON.stringify(fired)}`);
        await until("the interval's last firing", () => intervals.includes(12), 8000);
        assert.deepEqual([...intervals].sort((x, y) => x - y), intervals, "in order");
        assert.equal(new Set(intervals).size, intervals.length, `no firing twice: ${intervals}`);
        await t.noMsg("timeout", 500);
        // The moved board room is still subscribed: a post from another host's board room
        // reaches it, and its own posts reach the others.
        other.send("post", { text: "to the moved room" });
        assert.deepEqual(await c.nextMsg("posted"), { from: other.sessionId, text: "to the moved room" });
        c.send("post", { text: "from the moved room" });
        const heard = await other.nextMsg("posted");
        while (heard.text !== "from the moved room") Object.assign(heard, await other.nextMsg("posted"));
        assert.equal(heard.from, c.sessionId);
        // The echo room plays on with both clients, elsewhere.
        assert.deepEqual(await a.roundTrip("echo", "moved"), "moved");
        assert.deepEqual(await b.roundTrip("count"), { clients: 2 });
        const now = await whereRuns(hosts[0], a.roomId);
        assert.ok(now && now !== victim.processId, `the echo room runs on ${now}`);
        // The arena room kept every position, and moves go on.
        for (const peer of [p, q]) await until(`${peer.label} has the positions back`, () => JSON.stringify(positions(peer.room)) === JSON.stringify(expected));
        q.send("move", { x: -1, y: -1 });
        expected[q.sessionId] = { x: -1, y: -1 };
        for (const peer of [p, q]) await until(`${peer.label} converges after the move`, () => JSON.stringify(positions(peer.room)) === JSON.stringify(expected));
        for (const peer of [a, b, p, q, c, t]) {
            assert.deepEqual(peer.inbox.items.filter((it) => ["leave", "error"].includes(it.kind)), [], `${peer.label} saw no leave or error`);
        }
        // New rooms never land on the drained host, which exits by itself once empty.
        for (let i = 0; i < 4; i++) {
            const n = await s.join(sdk, "create", "echo", { mode: uniq("after") }, { label: `new ${i}` });
            assert.notEqual(processOf(n), victim.processId);
            await n.room.leave();
        }
        const exited = await Promise.race([victim.exitPromise, sleep(10000).then(() => null)]);
        assert.deepEqual(exited && { code: exited.code, signal: exited.signal }, { code: 0, signal: null }, victim.logTail(30));
        assert.match(victim.logTail(60), /room moved/);
    });

    test("SIGTERM moves the host's rooms too: its clients follow them unaware", async (s) => {
        const victim = hosts[1];
        assert.ok(victim.alive);
        const a = await roomOn(s, victim, "echo", { mode: uniq("term") });
        await a.nextMsg("welcome");
        sdk.setMinUptime(a.room, 0);
        const [roomId, sessionId] = [a.roomId, a.sessionId];
        victim.child.kill("SIGTERM");
        await followedTheMove(a, roomId, sessionId);
        assert.equal(await whereRuns(hosts[0], roomId), hosts[0].processId);
        assert.deepEqual(await a.roundTrip("echo", "after sigterm"), "after sigterm");
        const exited = await Promise.race([victim.exitPromise, sleep(10000).then(() => null)]);
        assert.equal(exited?.code, 0, victim.logTail(30));
    });
});

describe("a host restarted on its port (as PM2 does) without a proxy (3 hosts, @colyseus/sdk 0.18)", () => {
    let d, hosts;
    before(async () => {
        d = await startDeployment({ hosts: 3, proxies: 0, label: "drain direct" });
        hosts = d.hosts.slice();
    });
    after(async () => { await d?.stop(); });

    hostTest(() => hosts[1], "[drain] SIGTERM moves the room; its direct client reconnects through the restarted host to the room's new host", async (s) => {
        const victim = hosts[1];
        let a;
        for (let i = 0; i < 12 && !a; i++) {
            const p = await s.join(sdk, "create", "echo", { mode: uniq("direct") }, { label: `direct ${i}` });
            await p.nextMsg("welcome");
            if (processOf(p) === victim.processId) a = p;
        }
        assert.ok(a, "a room on host 2, joined through host 2");
        sdk.setMinUptime(a.room, 0);
        const [roomId, sessionId, oldProcess] = [a.roomId, a.sessionId, victim.processId];
        victim.child.kill("SIGTERM");
        await victim.exitPromise;
        await a.next("drop", 5000);
        // PM2 starts the process again on its port, under a new process id.
        victim.reusePort = true;
        await victim.start();
        assert.notEqual(victim.processId, oldProcess);
        await a.next("reconnect", 20000);
        assert.equal(a.room.roomId, roomId);
        assert.equal(a.room.sessionId, sessionId);
        assert.deepEqual(await a.roundTrip("echo", "after the restart"), "after the restart");
        assert.deepEqual(a.inbox.items.filter((it) => ["leave", "error"].includes(it.kind)), []);
    }, { timeout: 40000 });
});

describe("draining a host with nowhere else to go (1 host, --drain-timeout-secs 2)", () => {
    let d, host;
    before(async () => {
        d = await startDeployment({ hosts: 1, proxies: 0, label: "drain alone", hostArgs: ["--admin-token", TOKEN, "--drain-timeout-secs", "2"] });
        host = d.hosts[0];
    });
    after(async () => { await d?.stop(); });

    hostTest(() => host, "[drain] the rooms stay until the drain timeout; then their clients are closed and the host exits", async (s) => {
        const p = await s.join(sdk, "create", "echo", { mode: uniq("alone") }, { label: "alone" });
        await p.nextMsg("welcome");
        assert.equal((await drain(host)).status, 200);
        await assert.rejects(s.join(sdk, "create", "echo", { mode: uniq("refused") }), /draining/);
        assert.deepEqual(await p.roundTrip("echo", "playing"), "playing");
        const t0 = Date.now();
        const exited = await Promise.race([host.exitPromise, sleep(10000).then(() => null)]);
        assert.equal(exited?.code, 0, host.logTail(20));
        assert.ok(Date.now() - t0 >= 1000, "it waited for the drain timeout");
        const closed = p.inbox.items.find((it) => it.kind === "leave" || it.kind === "drop");
        assert.ok(closed, `the client was closed: ${p.inbox.describe()}`);
    }, { timeout: 30000 });
});

describe("draining a host whose peer refuses its rooms (2 hosts, the other at --max-rooms 1, --drain-timeout-secs 3)", () => {
    let d, proxy, victim, full;
    before(async () => {
        d = await startDeployment({ hosts: 1, label: "drain refused", hostArgs: ["--admin-token", TOKEN, "--drain-timeout-secs", "3"] });
        victim = d.hosts[0];
        full = await d.addHost("host 2 (drain refused, full)", ["--admin-token", TOKEN, "--max-rooms", "1"]);
        proxy = d.proxies[0];
        await proxy.waitForProcesses(d.hosts.map((h) => h.processId));
    });
    after(async () => { await d?.stop(); });

    hostTest(() => proxy, "[drain] refused rooms play on; at the timeout the one with a place now moves unnoticed, the other is closed with 4001", async (s) => {
        const processOf = (peer) => sdk.ws(peer.room).url.split("/")[3];
        // The full host's one room.
        let filler;
        for (let i = 0; i < 12 && !filler; i++) {
            const p = await s.join(sdk, "create", "echo", { mode: uniq("filler") }, { label: `filler ${i}` });
            if (processOf(p) === full.processId) {
                filler = p;
            } else {
                await p.room.leave(true);
                s.peers.splice(s.peers.indexOf(p), 1);
            }
        }
        // The rooms left on the victim dispose before the drain counts its rooms.
        const deadline = Date.now() + 5000;
        while ((await health(victim)).rooms > 0 && Date.now() < deadline) await sleep(50);
        assert.equal((await health(victim)).rooms, 0);
        assert.ok(filler, "a room on the full host");
        const a = await s.join(sdk, "create", "echo", { mode: uniq("a") }, { label: "A" });
        const b = await s.join(sdk, "create", "echo", { mode: uniq("b") }, { label: "B" });
        for (const p of [a, b]) {
            assert.equal(processOf(p), victim.processId, "the other host is full");
            await p.nextMsg("welcome");
        }
        const answer = await drain(victim);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.deepEqual(answer.body.moved, []);
        assert.deepEqual(answer.body.stayed.map((x) => x.roomId).sort(), [a.roomId, b.roomId].sort());
        for (const x of answer.body.stayed) assert.match(x.reason, /no other live host can take it/, JSON.stringify(x));
        // They play on where they are.
        assert.deepEqual(await a.roundTrip("echo", "still here"), "still here");
        assert.deepEqual(await b.roundTrip("echo", "still here"), "still here");
        // The full host's room ends: at the drain timeout one of the two has a place to go.
        await filler.room.leave(true);
        s.peers.splice(s.peers.indexOf(filler), 1);
        const exited = await Promise.race([victim.exitPromise, sleep(15000).then(() => null)]);
        assert.equal(exited?.code, 0, victim.logTail(30));
        const left = [a, b].filter((p) => p.inbox.items.some((it) => it.kind === "leave"));
        const stayed = [a, b].filter((p) => !left.includes(p));
        assert.equal(left.length, 1, `one room could not move: A ${a.inbox.describe()} / B ${b.inbox.describe()}`);
        assert.equal(left[0].inbox.items.find((it) => it.kind === "leave").code, 4001);
        const [moved] = stayed;
        assert.deepEqual(await moved.roundTrip("echo", "moved at the timeout"), "moved at the timeout");
        assert.deepEqual(moved.inbox.items.filter((it) => ["leave", "drop", "error", "reconnect"].includes(it.kind)), []);
        assert.equal(await whereRuns(full, moved.roomId), full.processId);
    }, { timeout: 40000 });
});

describe("a peer that cannot be reached directly gets the room through Redis (2 hosts, no proxy)", () => {
    let d, victim, target;
    before(async () => {
        d = await startDeployment({ hosts: 1, proxies: 0, label: "drain via redis", hostArgs: ["--admin-token", TOKEN] });
        victim = d.hosts[0];
        // Its registry entry names an endpoint nothing listens on: the mover's direct link fails.
        target = await d.addHost("host 2 (drain via redis, no endpoint)", ["--admin-token", TOKEN, "--internal-address", "127.0.0.1:9"]);
    });
    after(async () => { await d?.stop(); });

    hostTest(() => victim, "[drain] the move falls back to the Redis call and the room plays on there", async (s) => {
        const a = await s.join(sdk, "create", "echo", { mode: uniq("via-redis") }, { label: "A" });
        await a.nextMsg("welcome");
        assert.equal(processOf(a), victim.processId);
        const answer = await drain(victim);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.deepEqual(answer.body.moved.map((m) => [m.roomId, m.to, m.via]), [[a.roomId, target.processId, "redis"]]);
        assert.match(victim.logTail(40), /no direct link for a move/);
        // The room runs on the target: a client that joins it there plays.
        assert.equal(await whereRuns(target, a.roomId), target.processId);
        s.host = target;
        const b = await s.join(sdk, "joinById", a.roomId, {}, { label: "B" });
        await b.nextMsg("welcome");
        assert.deepEqual(await b.roundTrip("echo", "arrived through redis"), "arrived through redis");
    }, { timeout: 30000 });
});

describe("a move the target does not answer is abandoned (2 hosts, the target stopped, --drain-timeout-secs 8)", () => {
    let d, proxy, victim, target;
    before(async () => {
        d = await startDeployment({ hosts: 1, label: "drain abandoned", hostArgs: ["--admin-token", TOKEN, "--drain-timeout-secs", "8"] });
        victim = d.hosts[0];
        proxy = d.proxies[0];
    });
    after(async () => {
        if (target?.child) try { target.child.kill("SIGCONT"); } catch { /* gone */ }
        await d?.stop();
    });

    hostTest(() => proxy, "[drain] the room stays and plays on, the target drops its late copy, and the retry moves it", async (s) => {
        const a = await s.join(sdk, "create", "echo", { mode: uniq("abandoned") }, { label: "A" });
        await a.nextMsg("welcome");
        assert.equal(processOf(a), victim.processId);
        sdk.setMinUptime(a.room, 0);
        target = await d.addHost("host 2 (drain abandoned, stopped)", ["--admin-token", TOKEN]);
        await proxy.waitForProcesses([victim.processId, target.processId]);
        // The target takes the connection (the kernel does) but answers nothing.
        target.child.kill("SIGSTOP");
        const started = Date.now();
        const answer = await drain(victim);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.deepEqual(answer.body.moved, [], JSON.stringify(answer.body));
        assert.deepEqual(answer.body.stayed.map((x) => x.roomId), [a.roomId]);
        assert.match(answer.body.stayed[0].reason, /did not answer/);
        // The room was held, then resumed where it is: the client saw nothing.
        assert.deepEqual(await a.roundTrip("echo", "still on host 1"), "still on host 1");
        // The target wakes up to the import and to its abandonment, in either order: its copy goes.
        target.child.kill("SIGCONT");
        await until("the target drops its copy", () => /dropping the copy of a room whose move was not confirmed|the mover gave up/.test(target.logTail(80)), 10000)
            .catch((e) => assert.fail(`${e.message}\n--- target ---\n${target.logTail(60)}\n--- victim ---\n${victim.logTail(60)}`));
        assert.equal(await whereRuns(victim, a.roomId), victim.processId, `--- target ---\n${target.logTail(30)}\n--- victim ---\n${victim.logTail(30)}`);
        assert.deepEqual(await a.roundTrip("echo", "still here"), "still here");
        // At the drain timeout the room is moved again, a new attempt the target takes.
        const exited = await Promise.race([victim.exitPromise, sleep(20000).then(() => null)]);
        assert.equal(exited?.code, 0, victim.logTail(40));
        assert.ok(Date.now() - started >= 7000, "the retry came at the drain timeout");
        assert.equal(await whereRuns(target, a.roomId), target.processId);
        assert.deepEqual(await a.roundTrip("echo", "on host 2"), "on host 2");
        assert.deepEqual(a.inbox.items.filter((it) => ["leave", "drop", "error", "reconnect"].includes(it.kind)), []);
        assert.equal((await health(target)).rooms, 1);
    }, { timeout: 50000 });
});

describe("a restore the other host refuses: it runs another version (2 hosts, --drain-timeout-secs 3)", () => {
    let d, proxy, victim, target;
    before(async () => {
        d = await startDeployment({ hosts: 1, label: "drain other version", ownPlugins: true, hostArgs: ["--admin-token", TOKEN, "--drain-timeout-secs", "3"] });
        victim = d.hosts[0];
        proxy = d.proxies[0];
    });
    after(async () => { await d?.stop(); });

    hostTest(() => proxy, "[drain] the room stays and plays on until the drain timeout, then its client is closed and the host exits", async (s) => {
        const a = await s.join(sdk, "create", "echo", { mode: uniq("other-version") }, { label: "A" });
        await a.nextMsg("welcome");
        assert.equal(processOf(a), victim.processId);
        target = await d.addHost("host 2 (drain other version)", ["--admin-token", TOKEN]);
        await proxy.waitForProcesses([victim.processId, target.processId]);
        // Host 2 hot-loads another build of echo: it can run echo rooms, not this one's version.
        const tmp = join(target.pluginsDir, ".echo.wasm.tmp");
        copyFileSync(resolve(PLUGIN_VARIANTS_DIR, "echo-v2.wasm"), tmp);
        renameSync(tmp, join(target.pluginsDir, "echo.wasm"));
        await until("host 2 loads echo v2", () => /loaded new plugin version; running rooms keep theirs room_type=echo/.test(target.logTail(20)), 15000);
        const started = Date.now();
        const answer = await drain(victim);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.deepEqual(answer.body.moved, [], JSON.stringify(answer.body));
        assert.deepEqual(answer.body.stayed.map((x) => x.roomId), [a.roomId]);
        assert.match(answer.body.stayed[0].reason, /does not run version/);
        // It plays on where it is, unaware.
        assert.deepEqual(await a.roundTrip("echo", "still here"), "still here");
        assert.deepEqual(a.inbox.items.filter((it) => ["leave", "drop", "error", "reconnect"].includes(it.kind)), []);
        // At the drain timeout it still cannot move: its client is closed, and the host exits.
        const exited = await Promise.race([victim.exitPromise, sleep(20000).then(() => null)]);
        assert.equal(exited?.code, 0, victim.logTail(40));
        assert.ok(Date.now() - started >= 2500, "the host waited for the drain timeout");
        // Nowhere holds the room or a seat of it: the close is final (4001), not "reconnect" (4010).
        await a.next("leave", 5000);
        assert.equal(a.inbox.items.find((it) => it.kind === "leave").code, 4001);
    }, { timeout: 40000 });
});

describe("a direct client's frames that reach the drained host while its room moves (2 hosts, no proxy)", () => {
    let d, victim, target;
    before(async () => {
        // No message-rate limit: the client below sends several moves a millisecond.
        d = await startDeployment({ hosts: 1, proxies: 0, label: "drain forward", hostArgs: ["--admin-token", TOKEN, "--max-messages-per-sec", "0"] });
        victim = d.hosts[0];
    });
    after(async () => { await d?.stop(); });

    hostTest(() => victim, "[drain] go to the room's new host and are applied there: nothing sent in between is lost", async (s) => {
        const p = await s.join(sdk, "create", "arena", {}, { label: "P" });
        await until("P has state", () => p.room.state?.players?.has?.(p.sessionId));
        assert.equal(processOf(p), victim.processId);
        target = await d.addHost("host 2 (drain forward)", ["--admin-token", TOKEN, "--max-messages-per-sec", "0"]);
        sdk.setMinUptime(p.room, 0);
        // P moves five times a millisecond while its socket is open, until the 4010 after the
        // move closes it: the last moves go out while the room is frozen or already gone from
        // this host. (Once the Close has arrived the socket is CLOSING and sends nothing.)
        let x = 0;
        const open = () => sdk.ws(p.room)?.readyState === 1 && !p.inbox.items.some((it) => it.kind === "drop");
        const timer = setInterval(() => {
            for (let i = 0; i < 5 && open(); i++) p.send("move", { x: ++x, y: 1 });
        }, 1);
        s.onClose(() => clearInterval(timer));
        await sleep(100);
        const answer = await drain(victim);
        assert.deepEqual(answer.body.moved.map((m) => m.to), [target.processId], JSON.stringify(answer.body));
        await p.next("drop", 5000);
        clearInterval(timer);
        const last = x;
        // The drained host exits; started again on its port (as PM2 does), it relays P's
        // reconnection to the room's new host.
        await victim.exitPromise;
        assert.match(victim.logTail(40), /frames that came while the room moved go to its new host/, "some moves reached the old host in between");
        victim.reusePort = true;
        await victim.start();
        await p.next("reconnect", 15000);
        await until(`P's position is its last move (${last})`, () => positions(p.room)[p.sessionId]?.x === last, 5000)
            .catch(() => assert.fail(`P is at ${JSON.stringify(positions(p.room)[p.sessionId])}, its last move was x=${last}\n${target.logTail(20)}`));
        assert.match(target.logTail(40), /applied frames forwarded from the room's old host/);
    }, { timeout: 40000 });
});
