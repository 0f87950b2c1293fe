// State sync end to end: the `arena` room's schema state reaches every official SDK generation as
// `room.state`, with its callbacks (onAdd, onRemove, listen), and converges after moves; a late
// joiner gets the full state. Raw checks pin the JOIN_ROOM handshake and ROOM_STATE bytes of the
// reference transcript.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Host, hostTest, positions, sleep, hex } from "./harness.mjs";
import { SDK_BY_PROFILE } from "./sdks.mjs";
import * as sdk16 from "colyseus.js";
import * as sdk17 from "sdk17";
import * as sdk18 from "sdk18";

const CALLBACKS = { "0.16": sdk16.getStateCallbacks, "0.17": sdk17.getStateCallbacks, "0.18": sdk18.getStateCallbacks };

/** Follows a room's players through the SDK's state callbacks. */
function watchPlayers(room, profile) {
    const $ = CALLBACKS[profile](room);
    const seen = { added: [], removed: [], listened: new Map() };
    $(room.state).players.onAdd((player, key) => {
        seen.added.push(key);
        $(player).listen("x", (value) => {
            const pos = seen.listened.get(key) ?? {};
            seen.listened.set(key, { ...pos, x: value });
        });
        $(player).listen("y", (value) => {
            const pos = seen.listened.get(key) ?? {};
            seen.listened.set(key, { ...pos, y: value });
        });
    });
    $(room.state).players.onRemove((_player, key) => seen.removed.push(key));
    return seen;
}

async function until(what, predicate, ms = 3000) {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
        if (predicate()) return;
        await sleep(10);
    }
    assert.fail(`timed out waiting for ${what}`);
}

async function joinWatched(s, sdk, profile, method, target, label) {
    const peer = await s.join(sdk, method, target, {}, { label });
    await until(`${label} has state`, () => peer.room.state && peer.room.state.players);
    peer.seen = watchPlayers(peer.room, profile);
    return peer;
}

for (const profile of ["0.16", "0.17", "0.18"]) {
    const sdk = SDK_BY_PROFILE[profile];
    describe(`arena state sync (odeon-host --protocol ${profile}, ${sdk.label})`, () => {
        const host = new Host({ profile, label: `host ${profile} (arena)` });
        before(async () => { await host.start(); });
        after(async () => { await host.stop(); });
        const test = (name, fn) => hostTest(() => host, `[arena / ${sdk.id}] ${name}`, fn);

        test("players appear through onAdd, converge after moves, and leave through onRemove", async (s) => {
            const a = await joinWatched(s, sdk, profile, "create", "arena", "A");
            await until("A sees itself", () => a.seen.added.includes(a.sessionId));
            const b = await joinWatched(s, sdk, profile, "joinById", a.roomId, "B");
            await until("B sees both", () => b.seen.added.includes(a.sessionId) && b.seen.added.includes(b.sessionId));
            await until("A sees B", () => a.seen.added.includes(b.sessionId));
            assert.deepEqual(positions(b.room)[a.sessionId], { x: 0, y: 0 });

            a.send("move", { x: 10, y: 20 });
            b.send("move", { x: -5.5, y: 3 });
            const expected = { [a.sessionId]: { x: 10, y: 20 }, [b.sessionId]: { x: -5.5, y: 3 } };
            for (const peer of [a, b]) {
                await until(`${peer.label} converges`, () => JSON.stringify(positions(peer.room)) === JSON.stringify(positions(peer.room)) &&
                    Object.entries(expected).every(([k, v]) => {
                        const p = positions(peer.room)[k];
                        return p && p.x === v.x && p.y === v.y;
                    }));
                assert.deepEqual(peer.seen.listened.get(a.sessionId), { x: 10, y: 20 }, `${peer.label} listen() saw A's move`);
            }

            const c = await joinWatched(s, sdk, profile, "joinById", a.roomId, "late");
            await until("the late joiner has every player", () => c.room.state.players.size === 3);
            assert.deepEqual(positions(c.room)[a.sessionId], { x: 10, y: 20 }, "full state carries current positions");
            assert.deepEqual(positions(c.room)[b.sessionId], { x: -5.5, y: 3 });

            await b.room.leave(true);
            for (const peer of [a, c]) {
                await until(`${peer.label} sees B leave`, () => peer.seen.removed.includes(b.sessionId));
                assert.equal(peer.room.state.players.size, 2);
            }
        });

        test("many moves converge on the last position", async (s) => {
            const a = await joinWatched(s, sdk, profile, "create", "arena", "A");
            const b = await joinWatched(s, sdk, profile, "joinById", a.roomId, "B");
            for (let i = 1; i <= 40; i++) a.send("move", { x: i, y: -i * 0.25 });
            await until("B holds A's last move", () => {
                const p = positions(b.room)[a.sessionId];
                return p && p.x === 40 && p.y === -10;
            });
        });
    });
}

describe("arena handshake bytes (odeon-host --protocol 0.18)", () => {
    const host = new Host({ profile: "0.18", label: "host 0.18 (arena raw)" });
    before(async () => { await host.start(); });
    after(async () => { await host.stop(); });

    // The reflection of State{players: map<Player{x: number, y: number}>} in the v5 layout, as the
    // reference transcript recorded it from a real 0.18 server.
    const REFLECTION_V5 = "4f 80 01 ff 01 80 00 02 80 01 05 ff 02 80 00 82 03 ff 03 80 00 04 ff 04 80 a7 70 6c 61 79 65 72 73 " +
        "81 a3 6d 61 70 82 01 ff 05 80 01 82 06 ff 06 80 00 07 80 01 08 ff 07 80 a1 78 81 a6 6e 75 6d 62 65 " +
        "72 ff 08 80 a1 79 81 a6 6e 75 6d 62 65 72";

    hostTest(() => host, "[arena / raw] JOIN_ROOM names the schema serializer with the v5 reflection; ROOM_STATE follows the ack", async (s) => {
        const raw = await s.raw("create", "arena", {}, { ack: false });
        const join = await raw.nextFrame(3000, "JOIN_ROOM");
        assert.equal(join[0], 10);
        const token = join.subarray(2, 2 + join[1]);
        const rest = join.subarray(2 + join[1]);
        assert.equal(hex(rest.subarray(0, 7)), hex(Buffer.from([0x06, ...Buffer.from("schema")])));
        assert.equal(hex(rest.subarray(7)), REFLECTION_V5);
        assert.equal(token.length, 9);
        raw.send([10]);
        const state = await raw.nextFrame(3000, "ROOM_STATE");
        const sid = Buffer.from(raw.sessionId);
        assert.equal(hex(state), hex(Buffer.concat([
            Buffer.from([0x0e, 0x80, 0x01, 0xff, 0x01, 0x80, 0x00, 0xa0 | sid.length]), sid,
            Buffer.from([0x02, 0xff, 0x02, 0x80, 0x00, 0x81, 0x00]),
        ])), "the appendix's ROOM_STATE for a lone player");
        raw.leave();
    });
});
