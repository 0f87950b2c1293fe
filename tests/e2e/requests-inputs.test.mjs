// Colyseus 0.18's round trips and inputs through @colyseus/sdk 0.18.4: `room.request()` against
// `echo`'s request handlers, and `room.input()` against `pilot` (a 50 ms fixed timestep, TIMED
// state frames with per-client acks). Raw frames check the wire (colyseus-018-requests-inputs.md).

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Code, RawClient, encodeSchemaString, hex, hostTest, matchmake, plainPackr, plainUnpackr, sleep, uniq, until, useHost } from "./harness.mjs";
import { SDK18 as sdk } from "./sdks.mjs";

const REQUEST = 0x15;
const RESPONSE = 0x16;
const INPUT = 0x13;

/** `[0x15][id][type][payload]` with a plain MessagePack payload. */
function requestFrame(id, type, payload) {
    const body = payload === undefined ? Buffer.alloc(0) : plainPackr.pack(payload);
    return Buffer.concat([Buffer.from([REQUEST, id]), encodeSchemaString(type), body]);
}

/** Reads the next frame whose first byte is `code` (others skipped). */
async function nextOf(raw, code, ms = 3000) {
    const deadline = Date.now() + ms;
    for (;;) {
        const f = await raw.nextFrame(Math.max(1, deadline - Date.now()), `frame ${code}`);
        if (f[0] === code) return f;
    }
}

/**
 * Records, after every TIMED state frame the SDK applies (a listener added after the SDK's own),
 * the client's own x and its input handle's ack, with the x the ack says it should have: `base`
 * plus the sum of the first `ack` values of `dxs`.
 */
function followInputs(p, dxs, base = 0) {
    const input = p.room.input();
    const prefix = dxs.reduce((acc, dx) => [...acc, acc.at(-1) + dx], [base]);
    const rows = [];
    sdk.ws(p.room).on("message", (data) => {
        const code = new Uint8Array(data)[0];
        if (code !== 0x8e && code !== 0x8f) return;
        const x = p.room.state.players?.get(p.sessionId)?.x;
        rows.push({ x, ack: input.lastProcessed, want: prefix[input.lastProcessed] });
    });
    return { input, rows, dxs };
}

/** Sends `dxs` as inputs; after input i waits `gaps[i % gaps.length]` ms (0: a burst). */
async function sendInputs({ input, dxs }, gaps) {
    for (const [i, dx] of dxs.entries()) {
        input.data.dx = dx;
        input.data.dy = 0;
        input.send();
        const gap = gaps[i % gaps.length];
        if (gap > 0) await sleep(gap);
    }
}

/** Every recorded frame had x where its ack says; the last shows every input. */
async function assertInStep(name, f) {
    await until(`${name}'s inputs all processed`, () => f.input.lastProcessed === f.dxs.length, 5000);
    const seen = f.rows.length;
    await until(`${name}: frames after the last ack`, () => f.rows.length >= seen + 3, 3000);
    const table = f.rows.map((r) => `${r.x}@${r.ack}`).join(" ");
    const bad = f.rows.filter((r) => r.x !== r.want);
    assert.deepEqual(bad, [], `${name}: x after each frame should be where the first lastProcessed inputs put it: ${table}`);
    assert.ok(new Set(f.rows.map((r) => r.ack)).size > f.dxs.length / 2, `${name}: too few acks seen: ${table}`);
    assert.equal(f.rows.at(-1).x, f.rows.at(-1).want, table);
}

describe("requests and inputs (odeon-host --protocol 0.18, @colyseus/sdk 0.18.4)", () => {
    const host = useHost({ before, after }, { profile: "0.18", label: "host 0.18 (requests, inputs)" });
    const test = (name, fn, opts) => hostTest(() => host, `[0.18 requests/inputs] ${name}`, fn, opts);

    test("room.request(): a value, a rejection with its reason, an error, no handler, and a handler with no return value", async (s) => {
        const p = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq("req") });
        await p.nextMsg("welcome");
        const room = p.room;
        assert.deepEqual(await room.request("add", { a: 2, b: 3 }), { sum: 5 });
        assert.deepEqual(await room.request("add", { a: 0.5, b: 0.25 }), { sum: 0.75 });

        const rejected = await room.request("reject-me", {}).then(() => null, (e) => e);
        assert.ok(rejected instanceof Error);
        assert.equal(rejected.name, "rejected");
        assert.equal(rejected.message, "request rejected");
        assert.equal(rejected.reason, "nope");
        assert.equal(rejected.code, undefined);

        const failed = await room.request("fail-me", {}).then(() => null, (e) => e);
        assert.equal(failed.name, "Error");
        assert.equal(failed.message, "boom");
        assert.equal(failed.reason, undefined);

        const none = await room.request("nobody", 1).then(() => null, (e) => e);
        assert.equal(none.name, "no_handler");
        assert.equal(none.message, 'room "echo" has no onMessage("nobody") handler to answer this request.');

        // A handler that returns nothing: its side effect (the echo message) first, then OK with
        // no payload: when the promise resolves, the message is already in the inbox.
        const answered = await room.request("echo", "x");
        assert.equal(answered, undefined);
        const echoed = p.inbox.items.filter((it) => it.kind === "msg" && it.type === "echo");
        assert.deepEqual(echoed.map((it) => it.payload), ["x"], "the echo arrived before the answer");
        echoed[0].consumed = true;

        // The socket survived every failure: messages still flow.
        assert.equal(sdk.ws(room).readyState, 1);
        assert.deepEqual(await p.roundTrip("echo", "still open"), "still open");
    });

    test("three concurrent requests get their own answers, and the send(type, payload, callback) form works", async (s) => {
        const p = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq("req3") });
        const answers = await Promise.all([1, 2, 3].map((n) => p.room.request("add", { a: n, b: n * 10 })));
        assert.deepEqual(answers, [{ sum: 11 }, { sum: 22 }, { sum: 33 }]);
        const viaCallback = await new Promise((resolve) => p.room.send("add", { a: 4, b: 5 }, (payload, error) => resolve({ payload, error })));
        assert.deepEqual(viaCallback, { payload: { sum: 9 }, error: undefined });
        const refused = await new Promise((resolve) => p.room.send("reject-me", {}, (payload, error) => resolve({ payload, error })));
        assert.equal(refused.payload, undefined);
        assert.equal(refused.error.reason, "nope");
    });

    test("raw ROOM_REQUEST/ROOM_RESPONSE frames, and replies held until the JOIN ack", async (s) => {
        const raw = s.trackRaw(await RawClient.join(host, "joinOrCreate", "echo", { mode: uniq("rawreq") }));
        raw.send(requestFrame(0, "add", { a: 2, b: 3 }));
        const sum = await nextOf(raw, RESPONSE);
        assert.deepEqual([...sum.subarray(0, 3)], [RESPONSE, 0x00, 0x00], hex(sum));
        assert.deepEqual(plainUnpackr.unpack(sum.subarray(3)), { sum: 5 });
        raw.send(requestFrame(1, "reject-me", {}));
        const rej = await nextOf(raw, RESPONSE);
        assert.deepEqual([...rej], [RESPONSE, 0x01, 0x01, 0xa4, ...Buffer.from("nope")]);
        // `echo` answers OK with no payload, exactly `16 05 00`, after its ROOM_DATA reply.
        raw.send(requestFrame(5, "echo", "x"));
        const first = await raw.nextFrame();
        assert.equal(first[0], Code.ROOM_DATA, hex(first));
        assert.deepEqual([...(await nextOf(raw, RESPONSE))], [RESPONSE, 0x05, 0x00]);
        // Two-byte ids come back as sent.
        raw.send(Buffer.concat([Buffer.from([REQUEST, 0xcc, 0xc8]), encodeSchemaString("nobody")]));
        const nobody = await nextOf(raw, RESPONSE);
        assert.deepEqual([...nobody.subarray(0, 4)], [RESPONSE, 0xcc, 0xc8, 0x02], hex(nobody));
        assert.equal(plainUnpackr.unpack(nobody.subarray(4)).name, "no_handler");
        // Undecodable payload: an ERROR answer, and the socket stays.
        raw.send(Buffer.concat([Buffer.from([REQUEST, 0x09]), encodeSchemaString("add"), Buffer.from([0x92, 0x01])]));
        const bad = await nextOf(raw, RESPONSE);
        assert.deepEqual([...bad.subarray(0, 3)], [RESPONSE, 0x09, 0x02]);
        assert.deepEqual((await raw.echo("alive")).payload, "alive");

        // Before the JOIN ack, a reply waits in the client's queue.
        const r = await matchmake(host, "joinOrCreate", "echo", { mode: uniq("early") });
        const early = s.trackRaw(await RawClient.fromReservation(host, r.body, { ack: false }));
        assert.equal((await early.nextFrame())[0], Code.JOIN_ROOM);
        early.send(requestFrame(3, "add", { a: 1, b: 1 }));
        await early.noFrame(300, "no reply before the JOIN ack");
        early.send([Code.JOIN_ROOM]);
        const held = await nextOf(early, RESPONSE);
        assert.deepEqual(plainUnpackr.unpack(held.subarray(3)), { sum: 2 });
    });

    test("pilot: inputs apply in order, one per step, acked per client; B sees A move and B's ack stays 0", async (s) => {
        const a = await s.join(sdk, "create", "pilot", {}, { label: "A" });
        const b = await s.join(sdk, "joinById", a.roomId, {}, { label: "B" });
        const input = a.room.input();
        assert.equal(input.tickRate, 20);
        assert.equal(input.stepMs, 50);
        assert.equal(input.patchRate, 50);
        assert.equal(input.mode, "reliable");
        const bInput = b.room.input();
        const seen = [];
        const $ = sdk.getStateCallbacks(b.room);
        $(b.room.state).players.onAdd((player, key) => {
            if (key === a.sessionId) $(player).onChange(() => seen.push(player.x));
        });
        for (const dx of [1, 1, 1, 1, 1, 2, 4, 8]) {
            input.data.dx = dx;
            input.data.dy = 0;
            input.send();
        }
        assert.equal(input.sentCount, 8);
        await until("A's inputs all processed", () => input.lastProcessed === 8, 5000);
        assert.equal(input.pendingCount, 0);
        await until("B sees A at 19", () => b.room.state.players.get(a.sessionId)?.x === 19);
        assert.equal(a.room.state.players.get(a.sessionId).x, 19);
        // One input per step: every intermediate position was seen (a patch can carry two steps).
        const increasing = seen.every((x, i) => i === 0 || x > seen[i - 1]);
        assert.ok(increasing && seen.at(-1) === 19 && seen.length >= 4, JSON.stringify(seen));
        // B sent nothing: its ack is untouched by A's inputs.
        assert.equal(bInput.lastProcessed, 0);
        assert.equal(b.room.state.players.get(b.sessionId).x, 0);
        // No input, no movement.
        await sleep(300);
        assert.equal(a.room.state.players.get(a.sessionId).x, 19);
    });

    test("pilot: after every state frame, each of two clients stands where the inputs its ack counts put it", async (s) => {
        // colyseus-018-requests-inputs.md, "Ack and state stay in step": the frame whose ack
        // first reaches n carries the state produced by input n. Checked after every TIMED frame
        // the SDK applies (a listener after the SDK's own), for two clients sending distinct dx
        // values in bursts and pauses, so an off-by-one cannot match by chance.
        const a = await s.join(sdk, "create", "pilot", {}, { label: "A" });
        const b = await s.join(sdk, "joinById", a.roomId, {}, { label: "B" });
        const fa = followInputs(a, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        const fb = followInputs(b, [101, 202, 303, 404, 505, 606, 707, 808, 909]);
        await Promise.all([sendInputs(fa, [0, 0, 130, 20, 0, 210, 60]), sendInputs(fb, [45, 0, 0, 170])]);
        await assertInStep("A", fa);
        await assertInStep("B", fb);
    });

    test("room.clock advances from the TIMED frames even when nothing changes", async (s) => {
        const p = await s.join(sdk, "create", "pilot", {});
        const clock = p.room.clock;
        assert.equal(clock.patchInterval(), 50);
        await until("a server time", () => clock.lastServerTime() > 0);
        const t0 = clock.lastServerTime();
        await sleep(400);
        const t1 = clock.lastServerTime();
        assert.ok(t1 - t0 >= 250 && t1 - t0 <= 700, `server time moved ${t1 - t0} ms in 400 ms`);
    });

    test("raw: JOIN_ROOM carries the input sections, state frames are TIMED, a heartbeat is 9 bytes, a body-less input repeats", async (s) => {
        const raw = s.trackRaw(await RawClient.join(host, "create", "pilot", {}));
        const join = raw.joinFrame;
        // ... 06 "schema" <reflection len> <reflection> 01 <len> <input reflection> 02 03 06 14 32
        assert.deepEqual([...join.subarray(-5)], [0x02, 0x03, 0x06, 0x14, 0x32], hex(join));
        assert.ok(hex(join).includes(Buffer.from("dx").toString("hex").replace(/(..)/g, "$1 ").trim()), hex(join));
        const full = await nextOf(raw, 0x8e);
        assert.deepEqual([...full.subarray(5, 9)], [0, 0, 0, 0], "ack 0 before any input");
        const beat = await nextOf(raw, 0x8f);
        assert.equal(beat.length, 9, hex(beat));
        const t = (f) => f.readUInt32LE(1);
        const next = await nextOf(raw, 0x8f);
        assert.ok(t(next) >= t(beat), "the room clock never goes back");
        // (3,7), then (3,7) again, then (3,1): the player ends at (9, 15) with ack 3.
        raw.send([INPUT, 0x80, 0x03, 0x81, 0x07]);
        raw.send([INPUT]);
        raw.send([INPUT, 0x81, 0x01]);
        let ack = 0;
        const deadline = Date.now() + 3000;
        while (ack < 3 && Date.now() < deadline) ack = (await nextOf(raw, 0x8f)).readUInt32LE(5);
        assert.equal(ack, 3);
        // Unreliable frames: every slot applies, duplicates are dropped, the ack is the seq.
        const unreliable = s.trackRaw(await RawClient.join(host, "create", "pilot", {}));
        unreliable.send([0x14, 0x0a, 0x02, 0x80, 0x01]);
        unreliable.send([0x14, 0x0a, 0x02, 0x80, 0x01, 0x00]);
        const acks = [];
        const until2 = Date.now() + 3000;
        while (!acks.includes(11) && Date.now() < until2) acks.push((await nextOf(unreliable, 0x8f)).readUInt32LE(5));
        assert.ok(acks.includes(10) && acks.includes(11) && !acks.some((a) => a > 11), JSON.stringify(acks));

        const r = await matchmake(host, "joinById", raw.roomId, {});
        const watcher = s.trackRaw(await RawClient.fromReservation(host, r.body));
        const state = await nextOf(watcher, 0x8e);
        assert.deepEqual([...state.subarray(5, 9)], [0, 0, 0, 0], "another client's ack is its own");
        assert.ok(state.length > 9);
    });

    test("a reconnection into a room with inputs keeps the input sections and restarts the acks", async (s) => {
        const p = await s.join(sdk, "create", "pilot", { reconnectSecs: 10 });
        sdk.setMinUptime(p.room, 0);
        const input = p.room.input();
        for (let i = 0; i < 3; i++) {
            input.data.dx = 1;
            input.send();
        }
        await until("three inputs processed", () => input.lastProcessed === 3);
        sdk.ws(p.room).terminate();
        await p.next("drop", 5000);
        await p.next("reconnect", 10000);
        // The SDK resets its handle; the server's count restarts at 0 with the new connection.
        assert.equal(input.sentCount, 0);
        // Acks restart at 0 and the state stays in step with them: x = 3 + the acked dx.
        const after = followInputs(p, [2, 5, 9], 3);
        await sendInputs(after, [0, 120]);
        await assertInStep("after the reconnection", after);
        assert.equal(p.room.input().tickRate, 20, "the input options survived skipHandshake");
        assert.equal(p.room.state.players.get(p.sessionId)?.x, 19);

        // On the wire: a skipHandshake reconnection's JOIN_ROOM still has both input sections.
        const r = await matchmake(host, "create", "pilot", { reconnectSecs: 10 });
        const raw = s.trackRaw(await RawClient.fromReservation(host, r.body));
        const token = raw.joinFrame.subarray(2, 2 + raw.joinFrame[1]).toString();
        raw.terminate();
        await sleep(300);
        const url = `${host.endpoint}/${r.body.processId}/${r.body.roomId}?sessionId=${r.body.sessionId}&reconnectionToken=${token}&skipHandshake=1`;
        const back = s.trackRaw(new RawClient(url));
        await back.opened;
        const join = await back.nextFrame();
        assert.equal(join[0], Code.JOIN_ROOM);
        assert.deepEqual([...join.subarray(-5)], [0x02, 0x03, 0x06, 0x14, 0x32], hex(join));
        assert.ok(join.includes(0x01), "the input reflection section");
    }, { timeout: 30000 });

    test("0.18 input frames sent to a room without inputs are ignored", async (s) => {
        const raw = s.trackRaw(await RawClient.join(host, "joinOrCreate", "echo", { mode: uniq("noinput") }));
        raw.send([INPUT, 0x80, 0x01]);
        raw.send([0x14, 0x01, 0x02, 0x80, 0x01]);
        assert.deepEqual((await raw.echo("fine")).payload, "fine");
    });
});
