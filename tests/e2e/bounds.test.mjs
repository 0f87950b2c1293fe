// Bounded against any one client: whatever one client does (stop reading, flood expanding
// payloads, never ack its join), only that client is closed, its resources are freed, and the
// room and its other clients carry on.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import WebSocket from "ws";
import { Host, hostTest, uniq, sleep, matchmake, reservationTarget, roomData } from "./harness.mjs";

/** Whether the host still holds an established TCP connection to the client at `clientPort`. */
function hostHoldsConnection(hostPort, clientPort) {
    const hexPort = (p) => p.toString(16).toUpperCase().padStart(4, "0");
    for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
        let text = "";
        try { text = readFileSync(file, "utf8"); } catch { continue; }
        for (const line of text.split("\n").slice(1)) {
            const cols = line.trim().split(/\s+/);
            if (cols.length < 4) continue;
            const [local, remote, state] = [cols[1], cols[2], cols[3]];
            if (local.endsWith(`:${hexPort(hostPort)}`) && remote.endsWith(`:${hexPort(clientPort)}`) && state === "01") {
                return true;
            }
        }
    }
    return false;
}

/** `echo` with a msgpackr payload of `refs` records that each repeat one `keyLen`-byte key. */
function expandingEcho(keyLen, refs) {
    const key = Buffer.alloc(keyLen, 0x6b);
    const parts = [Buffer.from([0xdd, (refs >>> 24) & 0xff, (refs >>> 16) & 0xff, (refs >>> 8) & 0xff, refs & 0xff])];
    // The definition: record 0x40 with one key, and its value 1.
    parts.push(Buffer.from([0xd4, 0x72, 0x40, 0x91, 0xd9, keyLen]), key, Buffer.from([0x01]));
    parts.push(Buffer.alloc((refs - 1) * 2, 0));
    const payload = Buffer.concat(parts);
    for (let i = payload.length - (refs - 1) * 2; i < payload.length; i += 2) {
        payload[i] = 0x40;
        payload[i + 1] = 0x01;
    }
    return roomData("echo", payload);
}

describe("bounds: one client cannot hurt its room", () => {
    const host = new Host({ profile: "0.18", label: "host (bounds)" });
    before(async () => { await host.start(); });
    after(async () => { await host.stop(); });
    const test = (name, fn, opts) => hostTest(() => host, `[bounds] ${name}`, fn, opts);

    async function clientsOf(raw) {
        raw.send(roomData("count"));
        return (await raw.nextData("count")).payload.clients;
    }

    test("a client that stops reading is closed by the server and freed; the others play on", async (s) => {
        const a = await s.raw("create", "echo", { mode: uniq(), maxClients: 10 });
        await a.nextData("welcome");
        const stalled = await s.raw("joinById", a.roomId, {});
        await stalled.nextData("welcome");
        await a.nextData("joined");
        // Stop reading: the socket's receive buffer fills, then the server's.
        stalled.ws._socket.pause();
        const data = "x".repeat(60_000);
        const started = Date.now();
        let closedAfter = null;
        for (let i = 0; i < 1000 && closedAfter === null; i++) {
            a.ws.send(roomDataMsg("broadcast", data));
            if (i % 20 === 19) {
                if ((await clientsOf(a)) === 1) closedAfter = Date.now() - started;
            }
        }
        for (let i = 0; closedAfter === null && i < 150; i++) {
            await sleep(100);
            if ((await clientsOf(a)) === 1) closedAfter = Date.now() - started;
        }
        assert.ok(closedAfter !== null, "the room dropped the client that stopped reading (about 60 MB sent to it)");
        // And the host let go of its socket (while the client still does not read).
        const clientPort = stalled.ws._socket.localPort;
        assert.ok(clientPort > 0);
        let held = true;
        for (let i = 0; held && i < 50; i++) {
            held = hostHoldsConnection(host.port, clientPort);
            if (held) await sleep(100);
        }
        assert.ok(!held, "the host closed the socket of the client that stopped reading");
        // The others carry on and the room still matchmakes.
        assert.deepEqual((await a.echo({ after: "stalled" })).payload, { after: "stalled" });
        const r = await matchmake(host, "joinById", a.roomId, {});
        assert.equal(r.status, 200, r.text);
        stalled.ws._socket.resume();
        a.leave();
    }, { timeout: 40000 });

    test("payloads that expand past the cap close only their sender, with 1009", async (s) => {
        const a = await s.raw("create", "echo", { mode: uniq(), maxClients: 10 });
        await a.nextData("welcome");
        const bad = await s.raw("joinById", a.roomId, {});
        await bad.nextData("welcome");
        // 62 KB frames whose records expand about 60×, under the relative limit: 3.7 MB each.
        const frame = expandingEcho(120, 30000);
        assert.ok(frame.length < 64 * 1024, `${frame.length} bytes fits the message limit`);
        for (let i = 0; i < 300 && bad.isOpen; i++) bad.send(frame);
        const close = await bad.waitClose(8000, "close after expanding payloads");
        assert.equal(close.code, 1009);
        assert.deepEqual((await a.echo({ after: "expansion" })).payload, { after: "expansion" });
        assert.equal(await clientsOf(a), 1);
        a.leave();
    }, { timeout: 30000 });

    test("a payload just under the expansion cap is delivered; just over closes with 1009", async (s) => {
        const a = await s.raw("create", "echo", { mode: uniq(), maxClients: 10 });
        await a.nextData("welcome");
        // The cap is 4 × --max-message-bytes (64 KiB) = 256 KiB of expanded output; each
        // record expands to 104 bytes (map header, str8 header, 100-byte key, value).
        const under = expandingEcho(100, 2400); // about 250 KB expanded
        a.send(under);
        const echoed = await a.nextData("echo", 5000);
        assert.equal(echoed.payload.length, 2400);
        const over = expandingEcho(100, 2600); // about 270 KB expanded
        a.send(over);
        assert.equal((await a.waitClose(5000, "close over the cap")).code, 1009);
    });

    test("a client that never acks JOIN_ROOM cannot make the host hold unbounded frames for it", async (s) => {
        const a = await s.raw("create", "echo", { mode: uniq(), maxClients: 10 });
        await a.nextData("welcome");
        const silent = await s.raw("joinById", a.roomId, {}, { ack: false });
        const data = "y".repeat(60_000);
        // 6 MB of broadcasts while it has not acked: it is closed once its bound (2 MiB) is hit.
        for (let i = 0; i < 100; i++) a.ws.send(roomDataMsg("broadcast", data));
        const close = await silent.waitClose(10000, "close of a client that never acked");
        assert.equal(close.code, 4002);
        assert.equal(await clientsOf(a), 1);
        assert.deepEqual((await a.echo({ after: "silent" })).payload, { after: "silent" });
        a.leave();
    });

    test("matchmaking bodies up to 100 KiB are read; one byte more is a 413 JSON error", async () => {
        const limit = 100 * 1024;
        // `{"mode":"…","pad":"…"}` of exactly `length` bytes.
        const body = (length) => {
            const head = `{"mode":"${uniq("big")}","pad":"`;
            return head + "p".repeat(length - head.length - 2) + `"}`;
        };
        const post = (text) => fetch(`${host.http}/matchmake/create/echo`, {
            method: "POST", headers: { "Content-Type": "application/json" }, body: text,
        });
        const atLimit = await post(body(limit));
        assert.equal(atLimit.status, 200, await atLimit.clone().text());
        assert.ok((await atLimit.json()).sessionId);
        const over = await post(body(limit + 1));
        assert.equal(over.status, 413);
        assert.match((await over.json()).error, /over the 102400-byte limit/);
    });
});

describe("heartbeats", () => {
    const host = new Host({ profile: "0.18", label: "host (heartbeats)" });
    before(async () => { await host.start(); });
    after(async () => { await host.stop(); });
    const test = (name, fn, opts) => hostTest(() => host, `[heartbeats] ${name}`, fn, opts);

    test("a silent client that does not answer pings is dropped after two heartbeats; one that answers stays", async (s) => {
        const a = await s.raw("create", "echo", { mode: uniq(), maxClients: 10 });
        await a.nextData("welcome");
        const r = await matchmake(host, "joinById", a.roomId, {});
        assert.equal(r.status, 200, r.text);
        const t = reservationTarget(r.body);
        const mute = new WebSocket(`${host.endpoint}/${t.processId}/${t.roomId}?sessionId=${t.sessionId}`, { autoPong: false });
        let pings = 0;
        mute.on("ping", () => { pings += 1; });
        mute.once("message", () => mute.send(Buffer.from([10])));
        const closed = new Promise((resolve) => mute.once("close", (code) => resolve({ code, at: Date.now() })));
        await new Promise((resolve, reject) => { mute.once("open", resolve); mute.once("error", reject); });
        const opened = Date.now();
        // Heartbeats every 3 s, started at a random offset within the first interval: dropped
        // after the second missed one, 6 to 9 s in.
        const close = await Promise.race([closed, sleep(12000).then(() => null)]);
        assert.ok(close, "the host dropped the client that never answered its pings");
        const after = (close.at - opened) / 1000;
        assert.ok(after >= 5 && after <= 10.5, `dropped after ${after.toFixed(1)} s`);
        assert.ok(pings >= 1, `it was pinged (${pings})`);
        // The other client was just as silent but answers pings: still in the room.
        assert.ok(a.isOpen, "the client that answers pings stays connected");
        assert.deepEqual((await a.echo({ after: "heartbeats" })).payload, { after: "heartbeats" });
        a.leave();
    }, { timeout: 20000 });
});

/** ROOM_DATA with a msgpack str payload. */
function roomDataMsg(type, text) {
    const body = Buffer.from(text, "utf8");
    const header = body.length < 256 ? Buffer.from([0xd9, body.length])
        : body.length < 65536 ? Buffer.from([0xda, body.length >> 8, body.length & 0xff])
            : Buffer.from([0xdb, 0, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]);
    return roomData(type, Buffer.concat([header, body]));
}
