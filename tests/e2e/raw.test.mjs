// Raw-WebSocket tests (the `ws` package, plain MessagePack, no msgpackr records)
// against each protocol profile: frame layouts byte for byte, malformed and
// oversize frames (only that client is closed), seat errors, ping.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import {
    Host, hostTest, RawClient, Code, parseFrame, hex, uniq, sleep, matchmake, reservationTarget,
    encodeSchemaString, roomData, roomDataBytes, plainPackr, plainUnpackr, MSG, ID_RE, PROFILES,
} from "./harness.mjs";
import { SDK_BY_PROFILE } from "./sdks.mjs";

const b = (...parts) => Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : Buffer.from(p))));
const str = (s) => encodeSchemaString(s);
const ERR_PREFIX = { 0: [0x00], 524: [0xcd, 0x0c, 0x02] };

for (const profile of ["0.16", "0.17", "0.18"]) {
    const P = PROFILES[profile];
    const sdk = SDK_BY_PROFILE[profile];
    const tag = `[raw / --protocol ${profile}]`;

    describe(`raw WebSocket against odeon-host --protocol ${profile}`, () => {
        const host = new Host({ profile, label: `host ${profile} (raw)` });
        before(async () => { await host.start(); });
        after(async () => { await host.stop(); });
        const test = (name, fn, opts) => hostTest(() => host, `${tag} ${name}`, fn, opts);

        test(`JOIN_ROOM is ${profile === "0.18" ? 17 : 16} bytes (serializer "none"); welcome is held until the [10] ack`, async (s) => {
            const raw = await s.raw("create", "echo", { mode: uniq() }, { ack: false });
            const join = await raw.nextFrame(3000, "JOIN_ROOM");
            const expectedLen = 16 + P.joinRoomTail.length;
            assert.equal(join.length, expectedLen, `JOIN_ROOM length, got ${hex(join)}`);
            assert.equal(join[0], 0x0a);
            assert.equal(join[1], 9, "token length");
            const token = join.subarray(2, 11).toString("utf8");
            assert.match(token, ID_RE, "9-character nanoid token");
            assert.deepEqual([...join.subarray(11)], [0x04, ...Buffer.from("none"), ...P.joinRoomTail], `JOIN_ROOM tail, got ${hex(join)}`);

            await raw.noFrame(400, "nothing but JOIN_ROOM before the ack");
            raw.send([Code.JOIN_ROOM]);
            const w = parseFrame(await raw.nextFrame(3000, "welcome"));
            assert.equal(w.code, Code.ROOM_DATA);
            assert.equal(w.type, "welcome");
            assert.deepEqual(w.payload, { sessionId: raw.sessionId, roomId: raw.roomId, clients: 1 });
            raw.leave();
        });

        // Colyseus re-encodes every object as map16 (`de 00 NN`); Odeon rooms encode with the
        // smallest map header and "echo" forwards the client's bytes untouched. Both are plain
        // MessagePack that every SDK decodes to the same object, so the frame prefix is checked
        // byte for byte and the payload by value and by header kind.
        test("server→client payloads are plain MessagePack maps: welcome, joined, echo, count, left", async (s) => {
            const isMapHeader = (byte) => (byte >= 0x80 && byte <= 0x8f) || byte === 0xde || byte === 0xdf;
            const expectData = (frame, type, value, what) => {
                const prefix = b([0x0d], str(type));
                assert.equal(hex(frame.subarray(0, prefix.length)), hex(prefix), `${what}: code and type bytes`);
                assert.ok(isMapHeader(frame[prefix.length]), `${what}: payload is a plain map, got ${hex(frame)}`);
                assert.deepStrictEqual(plainUnpackr.unpack(frame.subarray(prefix.length)), value, `${what}: payload`);
            };
            const r1 = await s.raw("create", "echo", { mode: uniq() });
            expectData(await r1.nextFrame(3000, "welcome"), "welcome",
                { sessionId: r1.sessionId, roomId: r1.roomId, clients: 1 }, "welcome");

            const r2 = await s.raw("joinById", r1.roomId, {});
            await r2.nextData("welcome");
            expectData(await r1.nextFrame(3000, "joined"), "joined", { sessionId: r2.sessionId }, "joined");

            const sent = [0x82, 0xa1, 0x78, 0x07, 0xa1, 0x79, 0x09];
            r1.send(b([0x0d, 0xa4], "echo", sent));
            const e = await r1.nextFrame(3000, "echo reply");
            assert.equal(hex(e), hex(b([0x0d], str("echo"), sent)), "echo returns the payload bytes unchanged");

            r1.send(roomData("count"));
            expectData(await r1.nextFrame(3000, "count"), "count", { clients: 2 }, "count");

            r2.leave();
            expectData(await r1.nextFrame(3000, "left"), "left", { sessionId: r2.sessionId }, "left");
            r1.leave();
        });

        test("plain msgpack echo: 0d a4 echo 82 a1 78 07 a1 79 09 → payload {x:7,y:9}", async (s) => {
            const raw = await s.raw("create", "echo", { mode: uniq() });
            await raw.nextData("welcome");

            raw.send(b([0x0d, 0xa4], "echo", [0x82, 0xa1, 0x78, 0x07, 0xa1, 0x79, 0x09]));
            const f1 = parseFrame(await raw.nextFrame(3000, "echo reply"));
            assert.equal(f1.code, Code.ROOM_DATA);
            assert.equal(f1.type, "echo");
            assert.deepStrictEqual(f1.payload, { x: 7, y: 9 });

            // the msgpackr record form the SDKs send decodes to the same value
            raw.send(b([0x0d, 0xa4], "echo", [0xd4, 0x72, 0x40, 0x92, 0xa1, 0x78, 0xa1, 0x79, 0x07, 0x09]));
            const f2 = await raw.nextFrame(3000, "echo reply (record form)");
            assert.equal(hex(f2.subarray(0, 6)), hex(b([0x0d, 0xa4], "echo")));
            assert.deepStrictEqual(parseFrame(f2).payload, { x: 7, y: 9 });
            assert.equal(hex(f2.subarray(6)), hex(f1.payloadBytes), "same reply bytes for the plain and the record form");

            // a richer plain payload
            const value = { s: "plain ✓", list: [1, -2, 3.5, null, true, "x".repeat(40)], nested: { m: { k: 300 } }, big: 70000, neg: -40000 };
            assert.deepStrictEqual((await raw.echo(value)).payload, value);
            assert.deepStrictEqual((await raw.echo("top-level string")).payload, "top-level string");
            assert.deepStrictEqual((await raw.echo([1, 2, 3])).payload, [1, 2, 3]);
            raw.leave();
        });

        test("bytes: 11 a5 bytes 01 02 03 fa → 11 a5 bytes fa 03 02 01", async (s) => {
            const raw = await s.raw("create", "echo", { mode: uniq() });
            await raw.nextData("welcome");
            raw.send(roomDataBytes("bytes", [0x01, 0x02, 0x03, 0xfa]));
            const f = await raw.nextFrame(3000, "bytes reply");
            assert.equal(hex(f), hex(b([0x11, 0xa5], "bytes", [0xfa, 0x03, 0x02, 0x01])));
            raw.leave();
        });

        test("error-me: 0b cd e1 10 af \"requested error\", then the socket stays usable", async (s) => {
            const raw = await s.raw("create", "echo", { mode: uniq() });
            await raw.nextData("welcome");
            raw.send(roomData("error-me"));
            const f = await raw.nextFrame(3000, "ERROR frame");
            assert.equal(hex(f), hex(b([0x0b, 0xcd, 0xe1, 0x10, 0xaf], "requested error")));
            assert.deepEqual((await raw.echo({ ok: 1 })).payload, { ok: 1 });
            assert.ok(raw.isOpen);
            raw.leave();
        });

        test("joined, count, broadcast and left between two raw clients", async (s) => {
            const r1 = await s.raw("create", "echo", { mode: uniq() });
            await r1.nextData("welcome");
            const r2 = await s.raw("joinById", r1.roomId, {});
            assert.deepEqual((await r2.nextData("welcome")).payload, { sessionId: r2.sessionId, roomId: r1.roomId, clients: 2 });
            const joined = parseFrame(await r1.nextFrame(3000, "joined"));
            assert.equal(joined.type, "joined");
            assert.deepEqual(joined.payload, { sessionId: r2.sessionId });

            r1.send(roomData("count"));
            const c = parseFrame(await r1.nextFrame(3000, "count"));
            assert.equal(c.type, "count");
            assert.deepEqual(c.payload, { clients: 2 });

            r1.sendData("broadcast", plainPackr.pack({ a: 1 }));
            const bc = await r2.nextData("broadcast");
            assert.deepEqual(bc.payload, { from: r1.sessionId, data: { a: 1 } });
            await r1.noFrame(300, "the broadcaster gets nothing");

            r2.leave();
            const left = parseFrame(await r1.nextFrame(3000, "left"));
            assert.equal(left.type, "left");
            assert.deepEqual(left.payload, { sessionId: r2.sessionId });
            r1.leave();
        });

        if (P.ping) {
            test("PING: [18] is answered with [18]", async (s) => {
                const raw = await s.raw("create", "echo", { mode: uniq() });
                await raw.nextData("welcome");
                raw.send([Code.PING]);
                const f = await raw.nextFrame(2000, "PING reply");
                assert.equal(hex(f), "12");
                raw.leave();
            });
        } else {
            test("PING: the 0.16 server ignores [18]: no reply and the socket stays open", async (s) => {
                const raw = await s.raw("create", "echo", { mode: uniq() });
                await raw.nextData("welcome");
                raw.send([Code.PING]);
                await raw.noFrame(600, "no reply to [18]");
                assert.ok(raw.isOpen, "socket still open");
                assert.deepEqual((await raw.echo({ after: "ping" })).payload, { after: "ping" });
                raw.leave();
            });
        }

        test(`a socket without a seat reservation: ERROR(${P.wsSeatExpiredCode}, "seat reservation expired.") then close 4002`, async (s) => {
            const owner = await s.raw("create", "echo", { mode: uniq() });
            await owner.nextData("welcome");
            const expected = b([0x0b], ERR_PREFIX[P.wsSeatExpiredCode], str(MSG.seatExpired));
            for (const path of [
                `/${host.processId}/${owner.roomId}?sessionId=bogus1234`,
                `/${host.processId}/${owner.roomId}?sessionId=${owner.sessionId}`, // already consumed
                `/${host.processId}/nosuchroom?sessionId=bogus1234`,
                `/${host.processId}/undefined?sessionId=undefined`,
            ]) {
                const raw = s.trackRaw(new RawClient(`${host.endpoint}${path}`));
                await raw.opened;
                const f = await raw.nextFrame(3000, `ERROR for ${path}`);
                assert.equal(hex(f), hex(expected), `ERROR frame for ${path}`);
                const close = await raw.waitClose(3000, `close for ${path}`);
                assert.equal(close.code, 4002, `close code for ${path}`);
            }
            assert.deepEqual((await owner.echo({ still: "ok" })).payload, { still: "ok" });
            owner.leave();
        });

        test("consented leave [12]: close 4000 with an empty reason and no frames first", async (s) => {
            const raw = await s.raw("create", "echo", { mode: uniq() });
            await raw.nextData("welcome");
            raw.send([Code.LEAVE_ROOM]);
            const close = await raw.waitClose(3000);
            assert.equal(close.code, 4000);
            assert.equal(close.reason, "");
            assert.equal(raw.frames.length, 0, `frames before close: ${raw.frames.map(hex).join(" | ")}`);
        });

        test("kick-me: close frame without a status code (1005)", async (s) => {
            const raw = await s.raw("create", "echo", { mode: uniq() });
            await raw.nextData("welcome");
            raw.send(roomData("kick-me"));
            const close = await raw.waitClose(3000);
            assert.equal(close.code, 1005);
        });

        // --- malformed / oversize frames: each from its own raw client in a room shared
        //     with an SDK client and a first raw client, which both keep working.
        async function sharedRoom(s) {
            const mode = uniq("mal");
            const sdkPeer = await s.join(sdk, "create", "echo", { mode, maxClients: 10 }, { label: `${sdk.id}-S` });
            await sdkPeer.nextMsg("welcome");
            const r0 = await s.raw("joinById", sdkPeer.roomId, {});
            await r0.nextData("welcome");
            return { sdkPeer, r0, roomId: sdkPeer.roomId };
        }

        async function othersKeepWorking(s, { sdkPeer, r0, roomId }, label) {
            assert.ok(host.alive, `host still running after ${label}`);
            assert.deepEqual(await sdkPeer.roundTrip("echo", { after: label }), { after: label }, `SDK client echo after ${label}`);
            assert.deepEqual((await r0.echo({ after: label })).payload, { after: label }, `first raw client echo after ${label}`);
            const r = await matchmake(host, "joinById", roomId, {});
            assert.equal(r.status, 200, `matchmaking after ${label}: ${r.text}`);
            const fresh = s.trackRaw(await RawClient.fromReservation(host, r.body));
            assert.equal((await fresh.nextData("welcome")).payload.roomId, roomId);
            assert.deepEqual((await fresh.echo([label])).payload, [label]);
            fresh.leave();
        }

        test(`malformed: 0d alone → close 4002 "${MSG.undefinedHandler}", no ERROR frame; the others carry on`, async (s) => {
            const ctx = await sharedRoom(s);
            const bad = await s.raw("joinById", ctx.roomId, {});
            await bad.nextData("welcome");
            bad.send([0x0d]);
            const close = await bad.waitClose(3000);
            assert.equal(close.code, 4002);
            assert.equal(close.reason, MSG.undefinedHandler);
            assert.ok(!bad.frames.some((f) => f[0] === Code.ERROR), `no ERROR frame, got ${bad.frames.map(hex).join(" | ")}`);
            await othersKeepWorking(s, ctx, "0d");
        });

        test("malformed: truncated msgpack 0d a4 echo 92 01 → close 4002 with an empty reason; the others carry on", async (s) => {
            const ctx = await sharedRoom(s);
            const bad = await s.raw("joinById", ctx.roomId, {});
            await bad.nextData("welcome");
            bad.send(b([0x0d, 0xa4], "echo", [0x92, 0x01]));
            const close = await bad.waitClose(3000);
            assert.equal(close.code, 4002);
            assert.equal(close.reason, "");
            await othersKeepWorking(s, ctx, "truncated msgpack");
        });

        test("malformed: unknown code 1e de ad be ef is ignored; the next echo works", async (s) => {
            const ctx = await sharedRoom(s);
            const odd = await s.raw("joinById", ctx.roomId, {});
            await odd.nextData("welcome");
            odd.send([0x1e, 0xde, 0xad, 0xbe, 0xef]);
            await odd.noFrame(300, "no answer to an unknown code");
            assert.ok(odd.isOpen, "socket stays open");
            assert.deepEqual((await odd.echo({ next: "echo" })).payload, { next: "echo" });
            await othersKeepWorking(s, ctx, "unknown code");
            odd.leave();
        });

        test("oversize: a 1 MiB binary frame closes only that client", async (s) => {
            const ctx = await sharedRoom(s);
            const big = await s.raw("joinById", ctx.roomId, {});
            await big.nextData("welcome");
            const frame = Buffer.alloc(1024 * 1024, 0x41);
            frame[0] = 0x0d;
            frame[1] = 0xa4;
            frame.write("echo", 2, "utf8");
            frame[6] = 0xc6; // bin32 header claiming the rest
            frame.writeUInt32BE(frame.length - 11, 7);
            big.send(frame);
            const close = await big.waitClose(8000, "close after an oversize frame");
            assert.ok(close.code >= 1000, `close code ${close.code}`);
            await othersKeepWorking(s, ctx, "oversize frame");
        });
    });
}
