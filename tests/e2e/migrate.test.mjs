// Live migration and canary deploys (issue 16): three hosts on a real redis-server and the
// MongoDB-wire server behind odeon-proxy, official SDK clients of each generation playing
// through the proxy. `?migrate=1` moves running rooms to the new code in place: every player
// keeps its position and its `room.state` objects, no client sees a leave, a drop, an error or
// a second onAdd, and moves keep working on the new code. A migration the new code cannot take
// (a panicking hook, a schema clients cannot follow) leaves the room on its old code with its
// state; a rollback by hash moves rooms back; a message stream sent during the swap arrives
// whole and in order; a canary whose rooms fault reverts by itself.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { PLUGINS_DIR, PLUGIN_VARIANTS_DIR, hostTest, positions, sleep, uniq } from "./harness.mjs";
import { SDK_BY_PROFILE } from "./sdks.mjs";
import { startDeployment } from "./proxy.mjs";
import * as sdk16 from "colyseus.js";
import * as sdk17 from "sdk17";
import * as sdk18 from "sdk18";

const TOKEN = "m1gr4te-7e5t-t0ken-8c2d91";
const wasm = (dir, name) => readFileSync(resolve(dir, name));
const ARENA_V1 = wasm(PLUGINS_DIR, "arena.wasm");
const ARENA_V2 = wasm(PLUGIN_VARIANTS_DIR, "arena-v2.wasm");
const ARENA_FAULTY = wasm(PLUGIN_VARIANTS_DIR, "arena-v2-faulty.wasm");
const ARENA_SCHEMA = wasm(PLUGIN_VARIANTS_DIR, "arena-v2-schema.wasm");
const ECHO_V2 = wasm(PLUGIN_VARIANTS_DIR, "echo-v2.wasm");
const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
const CALLBACKS = { "0.16": sdk16.getStateCallbacks, "0.17": sdk17.getStateCallbacks, "0.18": sdk18.getStateCallbacks };

async function admin(host, path, method = "GET", body) {
    const res = await fetch(`${host.http}/odeon/admin/plugins${path}`, {
        method,
        headers: { Authorization: `Bearer ${TOKEN}` },
        body,
        signal: AbortSignal.timeout(30000),
    });
    return { status: res.status, body: await res.json() };
}

const activate = (host, name, hash, query = "") =>
    admin(host, `/${name}/activate${query}`, "POST", JSON.stringify({ hash }));

async function until(what, predicate, ms = 5000) {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
        if (predicate()) return;
        await sleep(10);
    }
    assert.fail(`timed out waiting for ${what}`);
}

const processOf = (sdk, peer) => peer.room.processId ?? sdk.ws(peer.room).url.split("/")[3];

for (const profile of ["0.16", "0.17", "0.18"]) {
    const sdk = SDK_BY_PROFILE[profile];
    describe(`live migration (3 hosts behind odeon-proxy, --protocol ${profile}, ${sdk.label})`, () => {
        let d, proxy, hosts;
        before(async () => {
            d = await startDeployment({
                profile,
                label: `migrate ${profile}`,
                hostArgs: ["--admin-token", TOKEN, "--canary-faults", "1"],
                ownPlugins: true,
            });
            hosts = d.hosts.slice();
            proxy = d.proxies[0];
            // The version the hosts loaded from their directory, stored so it can be activated.
            const v1 = await admin(hosts[0], "", "POST", ARENA_V1);
            assert.equal(v1.status, 200, JSON.stringify(v1.body));
        });
        after(async () => { await d?.stop(); });
        const test = (name, fn, opts) => hostTest(() => proxy, `[migrate ${profile}] ${name}`, fn, { timeout: 60000, ...opts });

        async function watched(s, method, target, label) {
            const peer = await s.join(sdk, method, target, {}, { label });
            await until(`${label} has state`, () => peer.room.state?.players);
            const $ = CALLBACKS[profile](peer.room);
            peer.added = [];
            peer.removed = [];
            $(peer.room.state).players.onAdd((_p, key) => peer.added.push(key));
            $(peer.room.state).players.onRemove((_p, key) => peer.removed.push(key));
            return peer;
        }

        /** Every peer of `room` sees every player at the expected position. */
        async function converged(room) {
            for (const peer of room.peers) {
                await until(`${peer.label} converges`, () =>
                    JSON.stringify(positions(peer.room)) === JSON.stringify(room.expected));
            }
        }

        async function build(room) {
            return room.peers[0].roundTrip("build");
        }

        function assertUndisturbed(room) {
            for (const peer of room.peers) {
                const bad = peer.inbox.items.filter((it) => ["leave", "drop", "error", "reconnect"].includes(it.kind));
                assert.deepEqual(bad, [], `${peer.label} saw no leave, drop, error or reconnection`);
                assert.deepEqual(peer.removed, [], `${peer.label} saw no onRemove`);
                assert.deepEqual([...peer.added].sort(), Object.keys(room.expected).sort(), `${peer.label} saw each player added once`);
            }
        }

        test("messages sent during the swap arrive complete and in order", async (s) => {
            const p = await s.join(sdk, "create", "echo", { mode: uniq("stream") }, { label: "streamer" });
            await p.nextMsg("welcome");
            assert.equal(await p.roundTrip("build"), "v1");
            const got = [];
            p.room.onMessage("echo", (m) => got.push(m.n));
            let sending = true;
            let sent = 0;
            const stream = (async () => {
                while (sending) {
                    for (let k = 0; k < 5; k++) p.send("echo", { n: ++sent });
                    await sleep(1);
                }
            })();
            await sleep(50);
            const up = await admin(hosts[1], "?migrate=1", "POST", ECHO_V2);
            assert.equal(up.status, 200, JSON.stringify(up.body));
            await sleep(50);
            sending = false;
            await stream;
            await until(`all ${sent} echoes`, () => got.length >= sent, 10000);
            assert.deepEqual(got, Array.from({ length: sent }, (_, k) => k + 1), "every message once, in order");
            const migrated = up.body.hosts.reduce((n, h) => n + (h.migration?.migrated ?? 0), 0);
            assert.ok(migrated >= 1, JSON.stringify(up.body));
            assert.equal(await p.roundTrip("build"), "v2", "the stream's room runs v2");
            const bad = p.inbox.items.filter((it) => ["leave", "drop", "error"].includes(it.kind));
            assert.deepEqual(bad, []);
        });

        test("?migrate=1 moves a running arena room on every host to v2 and back by hash; a migration the new code cannot take leaves it on v1; positions, state objects and sockets stay", async (s) => {
            // Arena rooms through the proxy until every host runs one, each with three players
            // watching the state.
            const rooms = [];
            for (let i = 0; i < 12 && new Set(rooms.map((r) => r.processId)).size < hosts.length; i++) {
                const a = await watched(s, "create", "arena", `room ${i} A`);
                const processId = processOf(sdk, a);
                if (rooms.some((r) => r.processId === processId)) {
                    await a.room.leave();
                    continue;
                }
                const b = await watched(s, "joinById", a.roomId, `room ${i} B`);
                const c = await watched(s, "joinById", a.roomId, `room ${i} C`);
                const room = { processId, peers: [a, b, c], expected: {} };
                room.peers.forEach((p, k) => {
                    const at = { x: 10 * (i + 1) + k, y: -k - 0.5 };
                    p.send("move", at);
                    room.expected[p.sessionId] = at;
                });
                await converged(room);
                assert.equal(await build(room), "v1");
                rooms.push(room);
            }
            assert.deepEqual(new Set(rooms.map((r) => r.processId)), new Set(hosts.map((h) => h.processId)), "a room on every host");
            // The client-side objects of every player, before.
            const objects = rooms.map((r) => r.peers.map((p) => new Map([...Object.keys(r.expected)].map((k) => [k, p.room.state.players.get(k)]))));

            const up = await admin(hosts[0], "?migrate=1", "POST", ARENA_V2);
            assert.equal(up.status, 200, JSON.stringify(up.body));
            assert.equal(up.body.hash, sha256(ARENA_V2));
            for (const h of hosts) {
                const answer = up.body.hosts.find((x) => x.processId === h.processId);
                assert.equal(answer?.status, "active", JSON.stringify(up.body));
                assert.equal(answer.migration.migrated, 1, `${h.processId}: ${JSON.stringify(answer)}`);
                assert.deepEqual(answer.migration.kept, []);
                assert.ok(answer.migration.pauseMaxUs > 0);
            }
            for (const [i, room] of rooms.entries()) {
                assert.equal(await build(room), "v2", `room on ${room.processId} runs v2`);
                await converged(room);
                room.peers.forEach((p, k) => {
                    for (const [key, obj] of objects[i][k]) {
                        assert.equal(p.room.state.players.get(key), obj, `${p.label} keeps the object of ${key}`);
                    }
                });
                // Moves keep working on the new code.
                const mover = room.peers[1];
                room.expected[mover.sessionId] = { x: 99, y: 98 };
                mover.send("move", room.expected[mover.sessionId]);
                await converged(room);
                assertUndisturbed(room);
            }
            const state = await admin(hosts[1], "");
            const arena = state.body.roomTypes.find((t) => t.name === "arena");
            assert.equal(arena.activeHash, sha256(ARENA_V2));
            const here = arena.hosts.find((h) => h.processId === hosts[1].processId);
            assert.equal(here.lastMigration?.migrated, 1, JSON.stringify(here));

            // Rollback by hash, with ?migrate=1: the rooms move back to v1.
            const back = await activate(hosts[2], "arena", sha256(ARENA_V1), "?migrate=1");
            assert.equal(back.status, 200, JSON.stringify(back.body));
            const migrated = back.body.hosts.reduce((n, h) => n + (h.migration?.migrated ?? 0), 0);
            assert.equal(migrated, rooms.length, JSON.stringify(back.body));
            for (const room of rooms) {
                assert.equal(await build(room), "v1");
                await converged(room);
                assertUndisturbed(room);
            }

            // A migration the new code cannot take leaves every room on its old code with its state.
            for (const [bytes, why] of [[ARENA_FAULTY, /panicked|trapped|unreachable/], [ARENA_SCHEMA, /schema/]]) {
                const up = await admin(hosts[0], "?migrate=1", "POST", bytes);
                assert.equal(up.status, 200, JSON.stringify(up.body));
                for (const h of up.body.hosts) {
                    assert.equal(h.status, "active");
                    assert.equal(h.migration.migrated, 0, JSON.stringify(h));
                    assert.equal(h.migration.kept.length, 1, JSON.stringify(h));
                    assert.match(h.migration.kept[0].reason, why);
                }
                for (const room of rooms) {
                    assert.equal(await build(room), "v1", "the room keeps its code");
                    const mover = room.peers[2];
                    room.expected[mover.sessionId] = { x: mover.sessionId.length, y: bytes.length % 97 };
                    mover.send("move", room.expected[mover.sessionId]);
                    await converged(room);
                    assertUndisturbed(room);
                }
            }
            // Back to v1 for new rooms.
            const restored = await activate(hosts[0], "arena", sha256(ARENA_V1));
            assert.equal(restored.status, 200, JSON.stringify(restored.body));
        });

        test("a canary takes a share of new rooms and reverts by itself once one of its rooms faults", async (s) => {
            const up = await admin(hosts[1], "?canary=50", "POST", ARENA_FAULTY);
            assert.equal(up.status, 200, JSON.stringify(up.body));
            assert.equal(up.body.canary, 50);
            let canaryPeer = null;
            const builds = { v1: 0, v2: 0 };
            for (let i = 0; i < 20 && !(canaryPeer && builds.v1 > 0); i++) {
                const p = await s.join(sdk, "create", "arena", {}, { label: `canary probe ${i}` });
                const b = await p.roundTrip("build");
                builds[b] += 1;
                if (b === "v2" && !canaryPeer) canaryPeer = p;
                else await p.room.leave();
            }
            assert.ok(canaryPeer && builds.v1 > 0, `new rooms split between the versions: ${JSON.stringify(builds)}`);
            let state = (await admin(hosts[0], "")).body.roomTypes.find((t) => t.name === "arena");
            assert.equal(state.canary?.status, "running", JSON.stringify(state.canary));
            assert.equal(state.activeHash, sha256(ARENA_V1));
            // One fault is this deployment's limit (--canary-faults 1).
            canaryPeer.send("fault");
            await canaryPeer.next("leave");
            const deadline = Date.now() + 5000;
            while (state.canary?.status !== "reverted") {
                assert.ok(Date.now() < deadline, `the canary is reverted: ${JSON.stringify(state.canary)}`);
                await sleep(100);
                state = (await admin(hosts[2], "")).body.roomTypes.find((t) => t.name === "arena");
            }
            assert.match(state.canary.reason, /1 of its rooms failed/);
            assert.equal(state.activeHash, sha256(ARENA_V1));
            for (let i = 0; i < 6; i++) {
                const p = await s.join(sdk, "create", "arena", {}, { label: `after revert ${i}` });
                assert.equal(await p.roundTrip("build"), "v1", "new rooms are back on v1 everywhere");
                await p.room.leave();
            }
        });
    });
}
