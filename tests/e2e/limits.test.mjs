// The host's limits, set to non-default values and each probed at its boundary: what is just
// inside works, what is just outside fails the way it should, and only there.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Host, hostTest, matchmake, roomData, plainPackr, sleep, uniq } from "./harness.mjs";
import { SDK18 as sdk } from "./sdks.mjs";

const MAX_ROOMS = 3;
const ROOM_MEMORY_MB = 16;
const CALL_DEADLINE_MS = 100;
const MAX_MESSAGE_BYTES = 4096;

/** A ROOM_DATA `echo` frame of exactly `size` bytes (a string payload padded to fit). */
function echoFrameOf(size) {
    const overhead = roomData("echo", plainPackr.pack("x".repeat(300))).length - 300;
    const frame = roomData("echo", plainPackr.pack("x".repeat(size - overhead)));
    assert.equal(frame.length, size);
    return frame;
}

/** The host log has a line naming `roomId` and matching `cause`. */
function assertLogged(host, roomId, cause) {
    const line = host.logTail(400).split("\n").find((l) => l.includes(roomId) && cause.test(l));
    assert.ok(line, `no log line names room ${roomId} and ${cause}:\n${host.logTail(20)}`);
}

describe("limits at their boundaries (non-default --max-rooms, --room-memory-mb, --call-deadline-ms, --max-message-bytes)", () => {
    const host = new Host({
        profile: "0.18",
        label: "host 0.18 (limits)",
        extraArgs: [
            "--max-rooms", String(MAX_ROOMS),
            "--room-memory-mb", String(ROOM_MEMORY_MB),
            "--call-deadline-ms", String(CALL_DEADLINE_MS),
            "--max-message-bytes", String(MAX_MESSAGE_BYTES),
        ],
    });
    before(async () => { await host.start(); });
    after(async () => { await host.stop(); });
    const test = (name, fn, opts) => hostTest(() => host, `[limits] ${name}`, fn, opts);

    test(`--max-rooms ${MAX_ROOMS}: ${MAX_ROOMS} rooms run, the next create is refused, and a freed slot is usable again`, async (s) => {
        const peers = [];
        for (let i = 0; i < MAX_ROOMS; i++) {
            peers.push(await s.join(sdk, "create", "echo", { mode: uniq("slot") }, { label: `R${i}` }));
        }
        const refused = await matchmake(host, "create", "echo", { mode: uniq("one-too-many") });
        assert.notEqual(refused.status, 200);
        assert.match(refused.body?.error ?? refused.text, new RegExp(`limit of ${MAX_ROOMS} rooms`));
        for (const p of peers) assert.deepEqual(await p.roundTrip("echo", "still"), "still");
        // One room goes away (its only client leaves): its slot serves a new room.
        await peers.pop().room.leave();
        const deadline = Date.now() + 5000;
        let again;
        while (Date.now() < deadline) {
            again = await matchmake(host, "create", "echo", { mode: uniq("freed") });
            if (again.status === 200) break;
            await sleep(100);
        }
        assert.equal(again.status, 200, again.text);
    });

    test(`--room-memory-mb ${ROOM_MEMORY_MB}: a room may hold 12 MiB; growing to 16 MiB disposes only it`, async (s) => {
        const echo = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq("mem-bystander") });
        const f = await s.join(sdk, "create", "faults", {}, { label: "F" });
        sdk.disableAutoReconnect(f.room);
        assert.equal(await f.roundTrip("alloc", 12), 12);
        assert.deepEqual(await f.roundTrip("echo", "alive"), "alive");
        f.send("alloc", 4);
        assert.equal((await f.next("leave", 5000)).code, 4002);
        assertLogged(host, f.roomId, new RegExp(`memory cap of ${ROOM_MEMORY_MB << 20} bytes`));
        assert.deepEqual(await echo.roundTrip("echo", "here"), "here");
        await echo.room.leave();
    });

    test(`--call-deadline-ms ${CALL_DEADLINE_MS}: a 30 ms call completes; a 400 ms one disposes only its room`, async (s) => {
        const echo = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq("deadline-bystander") });
        const f = await s.join(sdk, "create", "faults", {}, { label: "F" });
        sdk.disableAutoReconnect(f.room);
        assert.equal(await f.roundTrip("busy", 30), 30);
        f.send("busy", 400);
        assert.equal((await f.next("leave", 5000)).code, 4002);
        assertLogged(host, f.roomId, /ran past its 100ms deadline/);
        assert.deepEqual(await echo.roundTrip("echo", "here"), "here");
        await echo.room.leave();
    });

    test(`--max-message-bytes ${MAX_MESSAGE_BYTES}: a message of exactly that size is delivered; one byte more closes that client with 1009`, async (s) => {
        const other = await s.raw("create", "echo", { mode: uniq("msg"), maxClients: 4 });
        await other.nextData("welcome");
        const a = await s.raw("joinById", other.roomId);
        await a.nextData("welcome");
        a.ws.send(echoFrameOf(MAX_MESSAGE_BYTES));
        const echoed = await a.nextData("echo", 5000);
        assert.equal(echoed.payload.length, MAX_MESSAGE_BYTES - (roomData("echo", plainPackr.pack("x".repeat(300))).length - 300));
        a.ws.send(echoFrameOf(MAX_MESSAGE_BYTES + 1));
        assert.equal((await a.waitClose(5000, "close over --max-message-bytes")).code, 1009);
        assert.deepEqual((await other.echo({ after: "oversize" })).payload, { after: "oversize" });
        other.leave();
    });
});

describe("per-address limits (--matchmake-rate 5, --room-creates-per-min 3)", () => {
    const host = new Host({
        profile: "0.18",
        label: "host 0.18 (per-address limits)",
        extraArgs: ["--matchmake-rate", "5", "--room-creates-per-min", "3"],
    });
    before(async () => { await host.start(); });
    after(async () => { await host.stop(); });
    const test = (name, fn, opts) => hostTest(() => host, `[limits] ${name}`, fn, opts);

    test("3 rooms created from one address pass, the 4th is refused; a burst of 10 matchmaking requests passes, the next is a 429", async () => {
        for (let i = 0; i < 3; i++) {
            const r = await matchmake(host, "create", "echo", { mode: uniq("rate") });
            assert.equal(r.status, 200, r.text);
        }
        const fourth = await matchmake(host, "create", "echo", { mode: uniq("rate") });
        assert.notEqual(fourth.status, 200);
        assert.match(fourth.body?.error ?? fourth.text, /too many rooms created from this address/);
        // The matchmaking limit is 10 in any 2 s for the deployment (a sliding window over two
        // fixed ones, in presence) and bursts of 10 per host: wait until the requests above
        // have left the window.
        await sleep(4100);
        const burst = [];
        for (let i = 0; i < 10; i++) burst.push(await matchmake(host, "join", "echo", { mode: uniq("none") }));
        const statuses = burst.map((r) => r.status);
        assert.ok(statuses.every((st) => st !== 429), `the burst of 10 passes: ${statuses}`);
        const over = await matchmake(host, "join", "echo", { mode: uniq("none") });
        assert.equal(over.status, 429, over.text);
        assert.match(over.body.error, /too many matchmaking requests/);
        // Refused until the burst ages out of the window, within two windows.
        const t0 = Date.now();
        let later;
        do {
            await sleep(300);
            later = await matchmake(host, "join", "echo", { mode: uniq("none") });
        } while (later.status === 429 && Date.now() - t0 < 4500);
        assert.notEqual(later.status, 429, "requests pass again once the window has moved on");
    }, { timeout: 30000 });
});

describe("per-client message rate (--max-messages-per-sec 50)", () => {
    const host = new Host({ profile: "0.18", label: "host 0.18 (message rate)", extraArgs: ["--max-messages-per-sec", "50"] });
    before(async () => { await host.start(); });
    after(async () => { await host.stop(); });
    const test = (name, fn, opts) => hostTest(() => host, `[limits] ${name}`, fn, opts);

    test("a burst of 100 messages (twice the rate) is delivered; flooding past it closes only that client with 1008", async (s) => {
        const other = await s.raw("create", "echo", { mode: uniq("rate"), maxClients: 4 });
        await other.nextData("welcome");
        const a = await s.raw("joinById", other.roomId);
        await a.nextData("welcome");
        // The JOIN_ROOM ack, 98 messages and an echo: exactly the burst.
        for (let i = 0; i < 98; i++) a.ws.send(roomData("count"));
        assert.deepEqual((await a.echo({ within: "burst" }, 5000)).payload, { within: "burst" });
        for (let i = 0; i < 100; i++) a.ws.send(roomData("count"));
        const close = await a.waitClose(5000, "close over the message rate");
        assert.equal(close.code, 1008);
        assert.deepEqual((await other.echo({ after: "flood" })).payload, { after: "flood" });
        other.leave();
    });
});
