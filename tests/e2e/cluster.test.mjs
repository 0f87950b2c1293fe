// Several host processes as one deployment (the Colyseus scalability setup): Redis presence, a
// MongoDB driver (SecantusDB, a MongoDB-wire server) and three hosts. Clients matchmake through
// any host and play on the host that runs their room.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Host, hostTest, matchmake, uniq, sleep, RawClient, until, waitFor } from "./harness.mjs";
import { SDK18 as sdk } from "./sdks.mjs";
import { startRedis, startMongo } from "./services.mjs";

const TOKEN = "cluster-admin";

async function listings(host) {
    const res = await fetch(`${host.http}/odeon/admin/rooms`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    return (await res.json()).rooms;
}

describe("three hosts with Redis presence and a MongoDB driver (@colyseus/sdk 0.18.4)", () => {
    let redis, mongo;
    const hosts = [];
    before(async () => {
        redis = await startRedis();
        mongo = await startMongo();
        for (let i = 1; i <= 3; i++) {
            const host = new Host({
                profile: "0.18",
                label: `host ${i} (cluster)`,
                extraArgs: ["--redis-url", redis.url, "--mongo-uri", mongo.uri, "--admin-token", TOKEN],
            });
            await host.start();
            hosts.push(host);
        }
    });
    after(async () => {
        for (const h of hosts) await h.stop();
        await redis?.stop();
        await mongo?.stop();
    });
    const test = (name, fn, opts) => hostTest(() => hosts[0], `[cluster] ${name}`, fn, opts);

    test("every host sees the three processes", async () => {
        for (const h of hosts) {
            const health = await (await fetch(`${h.http}/odeon/health`)).json();
            assert.deepEqual(health.processes, hosts.map((x) => x.processId).sort());
        }
    });

    test("a client matchmaking through host 1 is seated in a room on host 2 and plays", async (s) => {
        const mode = uniq("x");
        // A creates the room through host 2; its reservation names host 2's process.
        const res = await matchmake(hosts[1], "create", "echo", { mode });
        assert.equal(res.status, 200, res.text);
        const room = JSON.parse(res.text);
        const onHost = hosts.find((h) => h.processId === room.processId);
        assert.ok(onHost, "the room runs on one of the hosts");
        assert.equal(room.publicAddress, `127.0.0.1:${onHost.port}`, "the reservation says where to connect");
        const a = await s.join(sdk, "joinById", room.roomId, {}, { label: "A" });
        await a.nextMsg("welcome");
        const other = hosts.find((h) => h !== onHost);
        // B matchmakes through another host and lands in the same room.
        const b = await s.join({ ...sdk, client: () => new sdk.Client(other.endpoint) }, "joinOrCreate", "echo", { mode }, { label: "B" });
        assert.equal(b.roomId, room.roomId);
        assert.match(sdk.ws(b.room).url, new RegExp(`:${onHost.port}/${room.processId}/`), "B's socket goes to the room's host");
        assert.deepEqual(await a.nextMsg("joined"), { sessionId: b.sessionId });
        assert.deepEqual(await b.roundTrip("echo", { via: "host" }), { via: "host" });
        assert.deepEqual(await b.roundTrip("count"), { clients: 2 });
        // The listing is visible from every host.
        for (const h of hosts) {
            const seen = (await listings(h)).find((l) => l.roomId === room.roomId);
            assert.equal(seen?.processId, room.processId, `host ${h.label} sees the listing`);
        }
        // joinById through a third host works too.
        const third = hosts.find((h) => h !== onHost && h !== other);
        const c = await s.join({ ...sdk, client: () => new sdk.Client(third.endpoint) }, "joinById", room.roomId, {}, { label: "C" });
        assert.deepEqual(await c.roundTrip("count"), { clients: 3 });
    });

    test("reconnection through another process: the room's process checks the token and the client returns to it", async (s) => {
        const mode = uniq("recon");
        const res = JSON.parse((await matchmake(hosts[1], "create", "echo", { mode })).text);
        const onHost = hosts.find((h) => h.processId === res.processId);
        const other = hosts.find((h) => h !== onHost);
        const a = await s.join(sdk, "joinById", res.roomId, {}, { label: "A" });
        const b = await s.join(sdk, "joinById", res.roomId, {}, { label: "B" });
        await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome")]);
        sdk.disableAutoReconnect(a.room);
        const { reconnectionToken, sessionId } = a.room;
        sdk.ws(a.room).terminate();
        await a.next("leave");
        // Through a host that does not run the room, retrying while the drop reaches the room.
        const client = new sdk.Client(other.endpoint);
        let room2;
        for (let attempt = 1; !room2; attempt++) {
            try {
                room2 = await waitFor(client.reconnect(reconnectionToken), 5000, "reconnect");
            } catch (e) {
                if (attempt >= 10) throw e;
                await sleep(100);
            }
        }
        a.replaceRoom(room2);
        assert.equal(room2.roomId, res.roomId);
        assert.equal(room2.sessionId, sessionId);
        assert.match(sdk.ws(room2).url, new RegExp(`:${onHost.port}/${res.processId}/`), "back on the room's host");
        assert.deepEqual(await a.roundTrip("echo", "back"), "back");
        assert.deepEqual(await b.roundTrip("count"), { clients: 2 });
    });

    test("200 concurrent joinOrCreate over three hosts fill exactly 20 rooms of 10, no seat lost", async () => {
        const mode = uniq("crowd");
        const results = await Promise.all(Array.from({ length: 200 }, (_, i) =>
            matchmake(hosts[i % 3], "joinOrCreate", "echo", { mode, maxClients: 10 })));
        for (const r of results) assert.equal(r.status, 200, r.text);
        const seats = results.map((r) => JSON.parse(r.text));
        const byRoom = new Map();
        for (const seat of seats) byRoom.set(seat.roomId, (byRoom.get(seat.roomId) ?? 0) + 1);
        assert.equal(byRoom.size, 20, `rooms: ${JSON.stringify([...byRoom])}`);
        for (const [id, n] of byRoom) assert.ok(n <= 10, `room ${id} has ${n} seats`);
        // Every seat is still reserved: each client connects and is admitted.
        const clients = seats.map((seat) => new RawClient(`ws://${seat.publicAddress}/${seat.processId}/${seat.roomId}?sessionId=${seat.sessionId}`));
        try {
            await Promise.all(clients.map(async (c) => {
                await c.opened;
                const first = await c.nextFrame(8000, "JOIN_ROOM");
                assert.equal(first[0], 10, "admitted, not an expired seat");
            }));
        } finally {
            for (const c of clients) c.terminate();
        }
    }, { timeout: 60000 });

    test("guest pub/sub reaches board rooms on different hosts", async (s) => {
        const a = await s.join(sdk, "create", "board", {}, { label: "A" });
        await a.nextMsg("visits");
        const aProcess = (await listings(hosts[0])).find((l) => l.roomId === a.roomId).processId;
        // Create board rooms until one lands on another process (least-loaded placement).
        let b;
        for (let i = 0; i < 5 && !b; i++) {
            const peer = await s.join(sdk, "create", "board", {}, { label: `B${i}` });
            await peer.nextMsg("visits");
            const p = (await listings(hosts[0])).find((l) => l.roomId === peer.roomId).processId;
            if (p !== aProcess) b = peer;
        }
        assert.ok(b, "a second board room on another host");
        a.send("post", { text: "across hosts" });
        assert.deepEqual(await b.nextMsg("posted"), { from: a.sessionId, text: "across hosts" });
        const rooms = await a.roundTrip("rooms");
        assert.ok(rooms.roomIds.includes(b.roomId), "room queries see rooms of every host");
    });

    test("the lobby lists rooms of every host, then + and - as rooms appear and go", async (s) => {
        // Rooms on two different hosts.
        const first = JSON.parse((await matchmake(hosts[0], "create", "echo", { mode: uniq("lobby") })).text);
        let second;
        for (let i = 0; i < 6 && !second; i++) {
            const r = JSON.parse((await matchmake(hosts[0], "create", "echo", { mode: uniq("lobby") })).text);
            if (r.processId !== first.processId) second = r;
        }
        assert.ok(second, "rooms on two hosts");
        // Join them, so they stay alive.
        const holders = [];
        for (const r of [first, second]) holders.push(await s.join(sdk, "joinById", r.roomId, {}));
        const lobby = await s.join(sdk, "joinOrCreate", "lobby", {}, { label: "lobby" });
        const rooms = await lobby.nextMsg("rooms");
        const ids = rooms.map((r) => r.roomId);
        assert.ok(ids.includes(first.roomId) && ids.includes(second.roomId), `rooms: ${JSON.stringify(ids)}`);
        const processes = new Set(rooms.filter((r) => [first.roomId, second.roomId].includes(r.roomId)).map((r) => r.processId));
        assert.equal(processes.size, 2, "from two processes");

        const mode = uniq("fresh");
        const fresh = await s.join(sdk, "create", "echo", { mode }, { label: "fresh" });
        await until("the lobby hears of the new room", () => lobby.inbox.items.some((it) =>
            it.kind === "msg" && it.type === "+" && it.payload[0] === fresh.roomId && it.payload[1].metadata.mode === mode));
        await fresh.room.leave(true);
        await until("the lobby hears the room go", () => lobby.inbox.items.some((it) =>
            it.kind === "msg" && it.type === "-" && it.payload === fresh.roomId));
    });

    test("Redis restarted mid-test: hosts reconnect and keep serving without a restart", async (s) => {
        await redis.restart();
        // The registry was in Redis: heartbeats bring every host back within a second or two.
        await until("all hosts registered again", async () => {
            const health = await (await fetch(`${hosts[0].http}/odeon/health`)).json();
            return health.processes.length === hosts.length;
        }, 8000);
        const mode = uniq("after-redis");
        const res = JSON.parse((await matchmake(hosts[1], "create", "echo", { mode })).text);
        const a = await s.join(sdk, "joinById", res.roomId, {}, { label: "A" });
        const other = hosts.find((h) => h.processId !== res.processId);
        // Calls between hosts work again (their subscriptions were renewed).
        const b = await s.join({ ...sdk, client: () => new sdk.Client(other.endpoint) }, "joinOrCreate", "echo", { mode }, { label: "B" });
        assert.equal(b.roomId, a.roomId);
        assert.deepEqual(await b.roundTrip("echo", "redis is back"), "redis is back");
    }, { timeout: 30000 });

    test("MongoDB-wire server restarted: matchmaking errors clearly while it is down and recovers by itself", async (s) => {
        await mongo.kill();
        const down = await matchmake(hosts[0], "joinOrCreate", "echo", { mode: uniq("down") });
        assert.equal(down.status, 523, down.text);
        assert.match(JSON.parse(down.text).error, /room listing store unavailable/);
        await mongo.restart();
        await until("matchmaking recovers", async () =>
            (await matchmake(hosts[0], "joinOrCreate", "echo", { mode: uniq("up") })).status === 200, 15000);
        const peer = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq("up") });
        assert.deepEqual(await peer.roundTrip("echo", "mongo is back"), "mongo is back");
    }, { timeout: 40000 });

    /** An arena player through `host` that moves every 20 ms; counts the patches it gets. */
    async function arenaPlayer(host) {
        const client = new sdk.Client(host.endpoint);
        const room = await waitFor(client.joinOrCreate("arena"), 8000, "join arena");
        const patches = [];
        room.onStateChange(() => patches.push(Date.now()));
        let x = 0;
        const timer = setInterval(() => room.send("move", { x: ++x, y: 0 }), 20);
        return {
            room,
            rate: (from, to) => patches.filter((t) => t >= from && t < to).length / ((to - from) / 1000),
            async stop() { clearInterval(timer); await room.leave().catch(() => {}); },
        };
    }

    /** Matchmaking through `host` every second for `ms`: each attempt's status and time. */
    async function attemptsFor(host, ms) {
        const attempts = [];
        const end = Date.now() + ms;
        while (Date.now() < end) {
            const t = Date.now();
            const r = await matchmake(host, "joinOrCreate", "echo", { mode: uniq("outage") }).catch((e) => ({ status: 0, text: String(e) }));
            attempts.push({ status: r.status, text: r.text, ms: Date.now() - t });
            await sleep(Math.max(0, 1000 - (Date.now() - t)));
        }
        return attempts;
    }

    /**
     * `service` down for 10 s under an arena room on host 1, with a joinOrCreate for a new room
     * every second: each must fail within `maxMs` with a JSON error matching `error`, the room must
     * keep its 20 patches/s, and after the restart matchmaking must recover by itself.
     */
    async function outage(s, { service, name, maxMs, error, recovered = async () => true }) {
        const player = await arenaPlayer(hosts[0]);
        try {
            await sleep(500);
            await service.kill();
            const t0 = Date.now();
            const attempts = await attemptsFor(hosts[0], 10000);
            const rate = player.rate(t0, Date.now());
            console.log(`# ${name} down 10 s: ${attempts.length} joins refused in at most ${Math.max(...attempts.map((a) => a.ms))} ms each; arena ${rate.toFixed(2)} patches/s`);
            for (const a of attempts) {
                assert.notEqual(a.status, 200, `a new room needs ${name}: ${a.text}`);
                assert.ok(a.ms < maxMs, `failed within ${maxMs} ms (${a.ms} ms)`);
                assert.match(JSON.parse(a.text).error, error);
            }
            assert.ok(rate >= 19, `the arena room kept its 20 patches/s without ${name} (${rate.toFixed(2)})`);
            await service.restart();
            await until(`${name} is used again`, recovered, 8000);
            await until("matchmaking recovers", async () =>
                (await matchmake(hosts[0], "joinOrCreate", "echo", { mode: uniq("up") })).status === 200, 15000);
            const peer = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq("up") });
            assert.deepEqual(await peer.roundTrip("echo", `${name} is back`), `${name} is back`);
        } finally {
            await player.stop();
        }
    }

    test("Redis down for 10 s: joins that need it fail fast and clearly, rooms keep ticking, all recovers by itself", (s) =>
        outage(s, {
            service: redis, name: "Redis", maxMs: 3000, error: /presence unavailable|redis/i,
            recovered: async () => (await (await fetch(`${hosts[0].http}/odeon/health`)).json()).processes.length === hosts.length,
        }), { timeout: 45000 });

    test("MongoDB down for 10 s: joins fail clearly, rooms keep ticking, all recovers by itself", (s) =>
        outage(s, { service: mongo, name: "MongoDB", maxMs: 7000, error: /./ }), { timeout: 60000 });

    test("a host frozen past its TTL is swept; when it resumes its listing comes back and joinOrCreate reuses its room", async (s) => {
        const mode = uniq("frozen");
        const a = await s.join(sdk, "create", "echo", { mode }, { label: "A" });
        await a.nextMsg("welcome");
        const listed = (await listings(hosts[0])).find((l) => l.roomId === a.roomId);
        const frozen = hosts.find((h) => h.processId === listed?.processId);
        assert.ok(frozen, "the room runs on one of the hosts");
        const observer = hosts.find((h) => h !== frozen);
        frozen.child.kill("SIGSTOP");
        try {
            await until("the frozen host is swept with its listing", async () =>
                !(await listings(observer)).some((l) => l.roomId === a.roomId), 8000);
        } finally {
            frozen.child.kill("SIGCONT");
        }
        // Its next heartbeat finds it was swept: it registers again and lists its rooms again.
        await until("the listing is back", async () =>
            (await listings(observer)).some((l) => l.roomId === a.roomId && l.processId === frozen.processId), 5000);
        const res = await matchmake(observer, "joinOrCreate", "echo", { mode });
        assert.equal(res.status, 200, res.text);
        assert.equal(JSON.parse(res.text).roomId, a.roomId, "no duplicate room for the same filter");
        assert.deepEqual(await a.roundTrip("echo", { after: "freeze" }), { after: "freeze" });
    }, { timeout: 40000 });

    test("kill -9 of one host: its listings and registry entry are gone within 5 s, later joins succeed", async (s) => {
        const victim = hosts[2];
        const res = await matchmake(victim, "create", "echo", { mode: uniq("doomed") });
        const created = JSON.parse(res.text);
        // Make sure the victim runs at least one room.
        let victimRoom = created.processId === victim.processId ? created.roomId : null;
        if (!victimRoom) {
            for (let i = 0; i < 10 && !victimRoom; i++) {
                const r = JSON.parse((await matchmake(hosts[0], "create", "echo", { mode: uniq("doomed") })).text);
                if (r.processId === victim.processId) victimRoom = r.roomId;
            }
        }
        assert.ok(victimRoom, "a room on the victim");
        victim.child.kill("SIGKILL");
        const t0 = Date.now();
        await until("the victim's listings are removed", async () =>
            !(await listings(hosts[0])).some((l) => l.processId === victim.processId), 5000);
        assert.ok(Date.now() - t0 <= 5000);
        await until("the victim leaves the process registry", async () => {
            const health = await (await fetch(`${hosts[0].http}/odeon/health`)).json();
            return !health.processes.includes(victim.processId);
        }, 5000 - (Date.now() - t0));
        for (let i = 0; i < 5; i++) {
            const peer = await s.join({ ...sdk, client: () => new sdk.Client(hosts[i % 2].endpoint) }, "joinOrCreate", "echo", { mode: uniq("after") });
            assert.deepEqual(await peer.roundTrip("echo", i), i);
        }
    }, { timeout: 30000 });

    test("a graceful shutdown leaves the registry at once, before its entry would expire", async () => {
        const leaving = hosts[1];
        const t0 = Date.now();
        leaving.child.kill("SIGTERM");
        await waitFor(leaving.exitPromise, 8000, "host exit");
        // The registry entry lives 3 s without heartbeats: gone sooner means it was removed.
        assert.ok(Date.now() - t0 < 2500, `shutdown took ${Date.now() - t0} ms`);
        const health = await (await fetch(`${hosts[0].http}/odeon/health`)).json();
        assert.ok(!health.processes.includes(leaving.processId), `still registered: ${JSON.stringify(health.processes)}`);
    });
});
