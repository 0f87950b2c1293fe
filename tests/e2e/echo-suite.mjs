// The echo-room behaviour suite, shared by the three SDK test files.
// echoSuite(sdk) starts hosts with the SDK's protocol profile and asserts the
// behaviour recorded in colyseus-behaviour-notes.md for that SDK/profile pair.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import {
    Host, hostTest, waitFor, sleep, uniq, MSG, ID_RE, PROFILES,
    matchmake, expectMatchmakeError, expectMatchMakeError, RawClient, parseFrame, Code, hex, TEST_TIMEOUT,
} from "./harness.mjs";

function startHostHooks(opts) {
    const host = new Host(opts);
    before(async () => { await host.start(); });
    after(async () => { await host.stop(); });
    return host;
}

const ECHO_PAYLOADS = [
    { x: 1, y: 2 },
    {
        s: "héllo ✓ ünïcødé", n: -7, f: 1.5, tenth: 0.1, big: 100000, neg: -100000,
        timestamp: 1732600000123, t: true, fa: false, nul: null,
        arr: [1, "two", [3, [4]]], nested: { a: { b: { c: "deep" } } }, empty: {}, emptyArr: [],
    },
    // msgpackr record definition + reference, and ints in 0x40..0x7f
    [{ x: 1 }, { x: 100 }],
    [{ id: 1, name: "a" }, { id: 2, name: "b" }, { id: 3, name: "c" }],
    "just a string",
    42,
    -3.25,
    "x".repeat(300),
    Array.from({ length: 40 }, (_, i) => i * 7),
    Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i % 2 ? `v${i}` : i])),
];

export function echoSuite(sdk) {
    const P = PROFILES[sdk.profile];
    const C = P.codes;

    /**
     * 0.16 explicit reconnection. The client sees the close about when the server
     * notices it and opens the reconnection window (onLeave → allowReconnection),
     * so a request sent in the same millisecond can lose that race (the real
     * 0.16 server does too): retry briefly on "reconnection token invalid or
     * expired.", like an application would.
     */
    async function reconnect16(client, token) {
        for (let attempt = 1; ; attempt++) {
            try {
                return await waitFor(client.reconnect(token), 5000, "client.reconnect()");
            } catch (err) {
                if (attempt >= 10 || err.code !== C.expired) throw err;
                await sleep(100);
            }
        }
    }
    const tag = `[${sdk.id} / --protocol ${sdk.profile}]`;

    describe(`${sdk.label} against odeon-host --protocol ${sdk.profile}`, () => {
        const host = startHostHooks({ profile: sdk.profile, label: `host ${sdk.profile} (${sdk.id})` });
        const test = (name, fn, opts) => hostTest(() => host, `${tag} ${name}`, fn, opts);

        // No `type` message for `p`, checked at the room's next step rather than after a fixed
        // wait: the room answers `p`'s echo after everything it already sent `p`, so once the echo
        // is back, a message the room had sent would be in `p`'s inbox.
        const noMsgNow = async (p, type) => {
            const marker = uniq("settle");
            assert.deepEqual(await p.roundTrip("echo", marker), marker);
            await p.noMsg(type, 0);
        };
        const create = (s, opts = {}, label) => s.join(sdk, "create", "echo", { mode: uniq(), ...opts }, { label });
        const joinById = (s, roomId, opts = {}, label) => s.join(sdk, "joinById", roomId, opts, { label });

        test("seat reservation JSON has the profile's shape", async (s) => {
            const mode = uniq();
            const r = await matchmake(host, "joinOrCreate", "echo", { mode });
            assert.equal(r.status, 200, r.text);
            assert.match(r.headers.get("content-type") ?? "", /application\/json/);
            const b = r.body;
            if (P.reservation === "nested") {
                assert.equal(typeof b.room, "object", `0.16 nests the listing under "room": ${r.text}`);
                const room = b.room;
                assert.equal(room.name, "echo");
                assert.equal(room.clients, 1);
                assert.equal(room.maxClients, 4);
                assert.equal(room.locked, false);
                assert.equal(room.private, false);
                assert.equal(room.unlisted, false);
                assert.equal(room.mode, mode, "filterBy key top-level in the listing");
                assert.deepEqual(room.metadata, { mode });
                assert.equal(room.processId, host.processId);
                assert.match(room.roomId, ID_RE);
                assert.ok(!Number.isNaN(Date.parse(room.createdAt)), `createdAt parses as a date: ${room.createdAt}`);
            } else {
                assert.equal(b.name, "echo");
                assert.equal(b.processId, host.processId);
                assert.match(b.roomId, ID_RE);
            }
            assert.match(b.sessionId, ID_RE);
            // consume it so the room does not linger
            const raw = s.trackRaw(await RawClient.fromReservation(host, b));
            assert.deepEqual((await raw.nextData("welcome")).payload, { sessionId: b.sessionId, roomId: (b.room ?? b).roomId, clients: 1 });
            raw.leave();
            // exactly the observed keys, nothing more
            if (P.reservation === "nested") {
                assert.deepEqual(Object.keys(b).sort(), ["room", "sessionId"], `0.16 reservation keys: ${r.text}`);
                assert.deepEqual(Object.keys(b.room).sort(), [
                    "clients", "createdAt", "locked", "maxClients", "metadata", "mode", "name",
                    "private", "processId", "roomId", "unlisted",
                ], `0.16 listing keys: ${r.text}`);
            } else {
                assert.deepEqual(Object.keys(b).sort(), ["name", "processId", "roomId", "sessionId"], `flat reservation keys: ${r.text}`);
            }
        });

        test("join: the joiner gets welcome {sessionId, roomId, clients}, the others get joined {sessionId}", async (s) => {
            const a = await create(s, {}, "A");
            assert.equal(a.room.name, "echo");
            assert.match(a.sessionId, ID_RE);
            assert.match(a.roomId, ID_RE);
            assert.deepEqual(await a.nextMsg("welcome"), { sessionId: a.sessionId, roomId: a.roomId, clients: 1 });
            assert.match(a.room.reconnectionToken, new RegExp(`^${a.roomId}:[A-Za-z0-9_-]{9}$`), "reconnectionToken = roomId:token9");

            const b = await joinById(s, a.roomId, {}, "B");
            assert.equal(b.roomId, a.roomId);
            assert.notEqual(b.sessionId, a.sessionId);
            assert.deepEqual(await b.nextMsg("welcome"), { sessionId: b.sessionId, roomId: a.roomId, clients: 2 });
            assert.deepEqual(await a.nextMsg("joined"), { sessionId: b.sessionId });

            const c = await joinById(s, a.roomId, {}, "C");
            assert.deepEqual(await c.nextMsg("welcome"), { sessionId: c.sessionId, roomId: a.roomId, clients: 3 });
            assert.deepEqual(await a.nextMsg("joined"), { sessionId: c.sessionId });
            assert.deepEqual(await b.nextMsg("joined"), { sessionId: c.sessionId });
            await noMsgNow(c, "joined");
            assert.deepEqual(b.inbox.types(), ["welcome", "joined"], "B never gets joined about itself");
        });

        test("echo: the sender gets the identical payload back (objects, records, strings, numbers)", async (s) => {
            const a = await create(s, {}, "A");
            await a.nextMsg("welcome");
            for (const payload of ECHO_PAYLOADS) {
                const got = await a.roundTrip("echo", payload);
                assert.deepStrictEqual(got, payload, `echo of ${JSON.stringify(payload).slice(0, 80)}`);
            }
            // several in flight: replies come back in order
            for (let i = 0; i < 10; i++) a.send("echo", { seq: i });
            for (let i = 0; i < 10; i++) assert.deepEqual(await a.nextMsg("echo"), { seq: i });
        });

        test("broadcast: everyone but the sender gets {from, data}", async (s) => {
            const a = await create(s, {}, "A");
            const b = await joinById(s, a.roomId, {}, "B");
            const c = await joinById(s, a.roomId, {}, "C");
            await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome"), c.nextMsg("welcome")]);
            const data = { text: "hi", n: 3, list: [{ k: 1 }, { k: 2 }] };
            a.send("broadcast", data);
            assert.deepEqual(await b.nextMsg("broadcast"), { from: a.sessionId, data });
            assert.deepEqual(await c.nextMsg("broadcast"), { from: a.sessionId, data });
            await noMsgNow(a, "broadcast");
        });

        test("bytes: sendBytes(\"bytes\") comes back reversed as a Uint8Array via onMessage(\"bytes\")", async (s) => {
            const a = await create(s, {}, "A");
            await a.nextMsg("welcome");
            const small = Uint8Array.from([1, 2, 3, 250, 0]);
            sdk.sendBytes(a.room, "bytes", small);
            const got = await a.nextMsg("bytes");
            assert.ok(got instanceof Uint8Array, `bytes payload is a Uint8Array (got ${Object.prototype.toString.call(got)})`);
            assert.deepEqual(Array.from(got), [0, 250, 3, 2, 1]);

            const big = Uint8Array.from({ length: 200 }, (_, i) => i);
            sdk.sendBytes(a.room, "bytes", big);
            assert.deepEqual(Array.from(await a.nextMsg("bytes")), Array.from(big).reverse());
        });

        test("count: the sender gets {clients}", async (s) => {
            const a = await create(s, {}, "A");
            await a.nextMsg("welcome");
            assert.deepEqual(await a.roundTrip("count"), { clients: 1 });
            const b = await joinById(s, a.roomId, {}, "B");
            await b.nextMsg("welcome");
            assert.deepEqual(await a.roundTrip("count"), { clients: 2 });
            assert.deepEqual(await b.roundTrip("count"), { clients: 2 });
            await noMsgNow(b, "count");
        });

        test("order: welcome > joined(B) > count > left(B); the joiner never gets joined about itself", async (s) => {
            const a = await create(s, {}, "A");
            await a.nextMsg("welcome");
            const b = await joinById(s, a.roomId, {}, "B");
            await b.nextMsg("welcome");
            await a.nextMsg("joined");
            assert.deepEqual(await a.roundTrip("count"), { clients: 2 });
            const code = await waitFor(b.room.leave(), 3000, "B.leave()");
            assert.equal(code, 4000);
            assert.deepEqual(await a.nextMsg("left"), { sessionId: b.sessionId });
            assert.deepEqual(a.inbox.types(), ["welcome", "joined", "count", "left"]);
            assert.deepEqual(b.inbox.types(), ["welcome"]);
        });

        test("consented leave: leave() resolves 4000, onLeave(4000, \"\"), the others get left at once", async (s) => {
            const a = await create(s, {}, "A");
            const b = await joinById(s, a.roomId, {}, "B");
            await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome"), a.nextMsg("joined")]);
            const t0 = Date.now();
            const code = await waitFor(b.room.leave(), 3000, "B.leave()");
            assert.equal(code, 4000);
            const leave = await b.next("leave");
            assert.equal(leave.code, 4000);
            assert.equal(leave.reason, "");
            assert.deepEqual(b.inbox.types(), ["welcome"], "no frames before the close");
            assert.ok(!b.inbox.items.some((i) => i.kind === "drop"), "no onDrop on a consented leave");
            assert.deepEqual(await a.nextMsg("left", 1500), { sessionId: b.sessionId });
            assert.ok(Date.now() - t0 < 1500, "left arrives immediately");
            assert.deepEqual(await a.roundTrip("count"), { clients: 1 });
        });

        test("welcome.clients counts the joiner: five joins with maxClients 4 see 1,2,3,4 then 1 in a new room", async (s) => {
            const mode = uniq();
            const seen = [];
            for (let i = 0; i < 5; i++) {
                const p = await s.join(sdk, "joinOrCreate", "echo", { mode, maxClients: 4 }, { label: `P${i}` });
                const w = await p.nextMsg("welcome");
                assert.equal(w.roomId, p.roomId);
                seen.push([p.roomId, w.clients]);
            }
            assert.deepEqual(seen.map((x) => x[1]), [1, 2, 3, 4, 1]);
            const first = seen[0][0];
            assert.ok(seen.slice(0, 4).every((x) => x[0] === first), "first four share a room");
            assert.notEqual(seen[4][0], first, "fifth gets a new room");
        });

        test("error-me: onError(4321, \"requested error\") and the connection stays usable", async (s) => {
            const a = await create(s, {}, "A");
            await a.nextMsg("welcome");
            a.send("error-me");
            const e = await a.next("error");
            assert.equal(e.code, 4321);
            assert.equal(e.message, "requested error");
            assert.deepEqual(await a.roundTrip("echo", { after: "error" }), { after: "error" });
            assert.ok(!a.inbox.items.some((i) => i.kind === "leave" || i.kind === "drop"), "no leave/drop after error");
        });

        test("a second seat for a connected session the auth hook only claims is refused; the first keeps playing", async (s) => {
            // echo's `{sessionAs}` is a name the client sends, not one the hook proved: it may
            // never take over a live connection (hardening: session hijack through sessionAs).
            const mode = uniq("dup");
            const c = await create(s, { mode }, "C");
            await c.nextMsg("welcome");
            const first = await s.join(sdk, "joinOrCreate", "echo", { mode, sessionAs: "dupSessn1" }, { label: "A1" });
            assert.equal(first.room.sessionId, "dupSessn1");
            assert.deepEqual(await c.nextMsg("joined"), { sessionId: "dupSessn1" });
            const thief = sdk.client(s.host);
            for (const [method, target] of [["joinOrCreate", "echo"], ["joinById", first.roomId]]) {
                await expectMatchMakeError(s, sdk, thief[method](target, { mode, sessionAs: "dupSessn1" }), C.unhandled,
                    'session "dupSessn1" is already connected; it must leave before it joins again', `${method} as a connected session`);
            }
            assert.deepEqual(await first.roundTrip("echo", "still mine"), "still mine");
            assert.deepEqual(await c.roundTrip("count"), { clients: 2 });
            assert.ok(!first.inbox.items.some((i) => i.kind === "leave" || i.kind === "drop"), "the first connection was never closed");
            // Once it has left, the name is free again.
            await first.room.leave(true);
            assert.deepEqual(await c.nextMsg("left"), { sessionId: "dupSessn1" });
            const again = await s.join(sdk, "joinOrCreate", "echo", { mode, sessionAs: "dupSessn1" }, { label: "A2" });
            assert.equal(again.roomId, first.roomId);
        });

        test("the reconnection window closes after its 10 s: reconnecting with the token then fails as expired", async (s) => {
            const a = await create(s, {}, "A");
            const b = await joinById(s, a.roomId, {}, "B");
            await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome")]);
            if (sdk.autoReconnect) sdk.disableAutoReconnect(a.room);
            const { reconnectionToken } = a.room;
            a.send("kick-me");
            await a.next(sdk.autoReconnect ? "drop" : "leave");
            // B keeps the room alive; A's seat is held for 10 s and then given up.
            await sleep(10500);
            await expectMatchMakeError(s, sdk, a.client.reconnect(reconnectionToken), C.expired, MSG.reconnectBadToken, "reconnect after the window");
            assert.deepEqual(await b.roundTrip("count"), { clients: 1 });
        }, { timeout: 25000 });

        if (sdk.autoReconnect) {
            test("kick-me within 5 s of joining: onDrop(1005, \"\") then onLeave(1006, uptime too short)", async (s) => {
                const a = await create(s, {}, "A");
                const b = await joinById(s, a.roomId, {}, "B");
                await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome")]);
                a.send("kick-me");
                const drop = await a.next("drop");
                assert.equal(drop.code, 1005);
                assert.equal(drop.reason, "");
                const leave = await a.next("leave");
                assert.equal(leave.code, 1006);
                assert.equal(leave.reason, MSG.uptimeTooShort);
                assert.deepEqual(await b.roundTrip("echo", { still: "here" }), { still: "here" });
            });

            test("kick-me with minUptime 0: onDrop(1005) then automatic reconnection with the same sessionId", async (s) => {
                const a = await create(s, {}, "A");
                const b = await joinById(s, a.roomId, {}, "B");
                await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome")]);
                sdk.setMinUptime(a.room, 0);
                const { roomId, sessionId } = a.room;
                a.send("kick-me");
                const drop = await a.next("drop");
                assert.equal(drop.code, 1005);
                await a.next("reconnect", 5000);
                assert.equal(a.room.roomId, roomId);
                assert.equal(a.room.sessionId, sessionId);
                assert.deepEqual(await a.roundTrip("echo", { back: true }), { back: true });
                assert.deepEqual(await a.roundTrip("count"), { clients: 2 });
                assert.ok(!a.inbox.items.some((i) => i.kind === "leave"), "no onLeave");
            });

            // Kicks `p` (its SDK reconnects at once with minUptime 0) and waits for it to be back in
            // the same room with the same session.
            const kickAndReconnect = async (p) => {
                sdk.setMinUptime(p.room, 0);
                const { roomId, sessionId } = p.room;
                p.send("kick-me");
                assert.equal((await p.next("drop")).code, 1005);
                await p.next("reconnect", 5000);
                assert.equal(p.room.roomId, roomId);
                assert.equal(p.room.sessionId, sessionId);
            };
            // Kicks `p` within 5 s of joining: its SDK gives up; the room holds its seat.
            const kickAndGiveUp = async (p) => {
                p.send("kick-me");
                assert.equal((await p.next("drop")).code, 1005);
                assert.equal((await p.next("leave")).code, 1006);
            };

            test("kick-me after another client was kicked and did not come back: automatic reconnection still works", async (s) => {
                const a = await create(s, {}, "A");
                const b = await joinById(s, a.roomId, {}, "B");
                await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome")]);
                await kickAndGiveUp(a);
                await kickAndReconnect(b);
                assert.deepEqual(await b.roundTrip("echo", { back: true }), { back: true });
            });

            test("a client that joins after a kicked one left: its own kick-me reconnects automatically", async (s) => {
                const a = await create(s, {}, "A");
                await a.nextMsg("welcome");
                await kickAndGiveUp(a);
                // The room holds A's seat for its reconnection window; B joins meanwhile.
                const b = await joinById(s, a.roomId, {}, "B");
                await b.nextMsg("welcome");
                await kickAndReconnect(b);
                assert.deepEqual(await b.roundTrip("echo", { back: true }), { back: true });
            });

            test("the only client kicked reconnects automatically", async (s) => {
                const a = await create(s, {}, "A");
                await a.nextMsg("welcome");
                await kickAndReconnect(a);
                assert.deepEqual(await a.roundTrip("count"), { clients: 1 });
            });

            test("two clients kicked at once both reconnect automatically", async (s) => {
                const a = await create(s, {}, "A");
                const b = await joinById(s, a.roomId, {}, "B");
                await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome")]);
                await Promise.all([kickAndReconnect(a), kickAndReconnect(b)]);
                assert.deepEqual(await a.roundTrip("count"), { clients: 2 });
                assert.deepEqual(await b.roundTrip("echo", { both: true }), { both: true });
            });
        } else {
            // Kicks `p` and brings it back with client.reconnect(token): same room, same session.
            const kickAndReconnect16 = async (p) => {
                const { roomId, sessionId, reconnectionToken } = p.room;
                p.send("kick-me");
                assert.equal((await p.next("leave")).code, 1005);
                const room2 = await reconnect16(p.client, reconnectionToken);
                p.replaceRoom(room2);
                assert.equal(room2.roomId, roomId);
                assert.equal(room2.sessionId, sessionId);
            };

            test("kick-me after another client was kicked and did not come back: client.reconnect(token) still works", async (s) => {
                const a = await create(s, {}, "A");
                const b = await joinById(s, a.roomId, {}, "B");
                await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome")]);
                a.send("kick-me");
                assert.equal((await a.next("leave")).code, 1005);
                await kickAndReconnect16(b);
                assert.deepEqual(await b.roundTrip("echo", { back: true }), { back: true });
            });

            test("the only client kicked: client.reconnect(token) comes back to the room", async (s) => {
                const a = await create(s, {}, "A");
                await a.nextMsg("welcome");
                await kickAndReconnect16(a);
                assert.deepEqual(await a.roundTrip("count"), { clients: 1 });
            });

            test("kick-me: onLeave(1005, \"\")", async (s) => {
                const a = await create(s, {}, "A");
                const b = await joinById(s, a.roomId, {}, "B");
                await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome")]);
                a.send("kick-me");
                const leave = await a.next("leave");
                assert.equal(leave.code, 1005);
                assert.equal(leave.reason, "");
                assert.deepEqual(await b.roundTrip("echo", { still: "here" }), { still: "here" });
            });

            test("kick-me then client.reconnect(token) comes back with the same sessionId", async (s) => {
                const a = await create(s, {}, "A");
                const b = await joinById(s, a.roomId, {}, "B");
                await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome")]);
                const { roomId, sessionId, reconnectionToken } = a.room;
                a.send("kick-me");
                assert.equal((await a.next("leave")).code, 1005);
                const room2 = await reconnect16(a.client, reconnectionToken);
                a.replaceRoom(room2);
                assert.equal(room2.roomId, roomId);
                assert.equal(room2.sessionId, sessionId);
                assert.deepEqual(await a.roundTrip("echo", { back: true }), { back: true });
                assert.deepEqual(await a.roundTrip("count"), { clients: 2 });
            });
        }

        test("ping: room.ping(cb) yields an integer number of ms", async (s) => {
            const a = await create(s, {}, "A");
            await a.nextMsg("welcome");
            for (let i = 0; i < 3; i++) {
                const ms = await waitFor(new Promise((r) => a.room.ping(r)), 3000, "ping callback");
                assert.equal(typeof ms, "number");
                assert.ok(Number.isInteger(ms) && ms >= 0 && ms < 1000, `ping ms = ${ms}`);
            }
            assert.deepEqual(await a.roundTrip("echo", "after ping"), "after ping");
        }, { skip: !sdk.hasPing && "colyseus.js 0.16 has no room.ping(); the 0.16 server ignoring [18] is in raw.test.mjs" });

        if (sdk.autoReconnect) {
            test("reconnection: ws.terminate() → onDrop(1006) → automatic reconnect → onReconnect, same ids, others see nothing", async (s) => {
                const a = await create(s, {}, "A");
                const b = await joinById(s, a.roomId, {}, "B");
                await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome"), a.nextMsg("joined")]);
                sdk.setMinUptime(a.room, 0);
                const { roomId, sessionId } = a.room;
                const token = a.room.reconnectionToken.split(":")[1];
                const oldWs = sdk.ws(a.room);
                const t0 = Date.now();
                oldWs.terminate();
                const drop = await a.next("drop", 3000);
                assert.equal(drop.code, 1006);
                await a.next("reconnect", 5000);
                const elapsed = Date.now() - t0;
                assert.ok(elapsed < 3000, `onReconnect ${elapsed} ms after the drop`);
                assert.equal(a.room.roomId, roomId);
                assert.equal(a.room.sessionId, sessionId);
                const ws = sdk.ws(a.room);
                assert.notEqual(ws, oldWs, "a new socket");
                const url = new URL(ws.url);
                assert.equal(url.pathname, `/${host.processId}/${roomId}`);
                assert.equal(url.searchParams.get("sessionId"), sessionId);
                assert.equal(url.searchParams.get("reconnectionToken"), token);
                assert.equal(url.searchParams.get("skipHandshake"), "true");

                assert.deepEqual(await a.roundTrip("echo", { again: 1 }), { again: 1 });
                a.send("broadcast", { after: "reconnect" });
                assert.deepEqual(await b.nextMsg("broadcast"), { from: sessionId, data: { after: "reconnect" } });
                assert.deepEqual(await a.roundTrip("count"), { clients: 2 });
                await noMsgNow(b, "left");
                await b.noMsg("joined", 0);
                await a.noMsg("welcome", 0);
                assert.ok(!a.inbox.items.some((i) => i.kind === "leave"), "no onLeave");
            });
        } else {
            test("reconnection: ws.terminate() → onLeave(1006); client.reconnect(token) → same roomId/sessionId, others see nothing", async (s) => {
                const a = await create(s, {}, "A");
                const b = await joinById(s, a.roomId, {}, "B");
                await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome"), a.nextMsg("joined")]);
                const { roomId, sessionId, reconnectionToken } = a.room;
                sdk.ws(a.room).terminate();
                const leave = await a.next("leave", 3000);
                assert.equal(leave.code, 1006);
                const room2 = await reconnect16(a.client, reconnectionToken);
                a.replaceRoom(room2);
                assert.equal(room2.roomId, roomId);
                assert.equal(room2.sessionId, sessionId);
                assert.match(room2.reconnectionToken, new RegExp(`^${roomId}:[A-Za-z0-9_-]{9}$`));
                const url = new URL(sdk.ws(room2).url);
                assert.equal(url.searchParams.get("sessionId"), sessionId);
                assert.equal(url.searchParams.get("reconnectionToken"), reconnectionToken.split(":")[1]);

                assert.deepEqual(await a.roundTrip("echo", { again: 1 }), { again: 1 });
                a.send("broadcast", { after: "reconnect" });
                assert.deepEqual(await b.nextMsg("broadcast"), { from: sessionId, data: { after: "reconnect" } });
                assert.deepEqual(await a.roundTrip("count"), { clients: 2 });
                await noMsgNow(b, "left");
                await b.noMsg("joined", 0);
                await a.noMsg("welcome", 0);
            });
        }

        test(`auth: options.token "bad" → MatchMakeError(${C.authFailed}, "onAuth failed"); another token joins`, async (s) => {
            const client = sdk.client(host);
            await expectMatchMakeError(s, sdk, client.joinOrCreate("echo", { mode: uniq(), token: "bad" }), C.authFailed, MSG.authFailed, "joinOrCreate token bad");
            await expectMatchMakeError(s, sdk, client.create("echo", { mode: uniq(), token: "bad" }), C.authFailed, MSG.authFailed, "create token bad");
            const a = await create(s, { token: "good" }, "A");
            assert.equal((await a.nextMsg("welcome")).clients, 1);
            await expectMatchMakeError(s, sdk, client.joinById(a.roomId, { token: "bad" }), C.authFailed, MSG.authFailed, "joinById token bad");
        });

        test(`matchmaking errors through the SDK are MatchMakeError with the ${sdk.profile} codes`, async (s) => {
            const client = sdk.client(host);
            await expectMatchMakeError(s, sdk, client.join("echo", { mode: uniq("nomatch") }), C.invalidCriteria, MSG.noRooms, "join nomatch");
            await expectMatchMakeError(s, sdk, client.joinById("doesnotexist"), C.invalidRoomId, MSG.roomNotFound("doesnotexist"), "joinById unknown");
            await expectMatchMakeError(s, sdk, client.joinOrCreate("no_such_room"), C.noHandler, MSG.roomNotDefined("no_such_room"), "joinOrCreate unknown room name");
            const a = await create(s, {}, "A");
            await a.nextMsg("welcome");
            await expectMatchMakeError(s, sdk, client.reconnect(`${a.roomId}:badtoken1`), C.expired, MSG.reconnectBadToken, "reconnect with a bad token");
            // the notes record no message for this one: only the code is checked
            await expectMatchMakeError(s, sdk, client.reconnect(`doesnotexist:badtoken1`), C.invalidRoomId, null, "reconnect to an unknown room");
            // the room is unaffected
            assert.deepEqual(await a.roundTrip("count"), { clients: 1 });
        });

        test(`matchmaking errors over raw HTTP: ${sdk.profile === "0.16" ? "HTTP 200 with {code,error}" : "HTTP status = code"}`, async (s) => {
            await expectMatchmakeError(host, "join", "echo", { mode: uniq("nomatch") }, C.invalidCriteria, MSG.noRooms);
            await expectMatchmakeError(host, "joinById", "doesnotexist", {}, C.invalidRoomId, MSG.roomNotFound("doesnotexist"));
            await expectMatchmakeError(host, "joinOrCreate", "no_such_room", {}, C.noHandler, MSG.roomNotDefined("no_such_room"));
            await expectMatchmakeError(host, "joinOrCreate", "echo", { mode: uniq(), token: "bad" }, C.authFailed, MSG.authFailed);
            await expectMatchmakeError(host, "bogus", "echo", {}, C.noHandler, MSG.invalidMethod("bogus"));
            const a = await create(s, {}, "A");
            await a.nextMsg("welcome");
            await expectMatchmakeError(host, "reconnect", a.roomId, { reconnectionToken: "badtoken1" }, C.expired, MSG.reconnectBadToken);
            await expectMatchmakeError(host, "reconnect", a.roomId, {}, C.unhandled, MSG.reconnectNoToken);
            assert.deepEqual(await a.roundTrip("count"), { clients: 1 });
        });

        if (sdk.profile !== "0.16") {
            test("matchmaking error status line reads \"<code> unknown\" (reason phrase)", async () => {
                const r = await matchmake(host, "joinOrCreate", "echo", { mode: uniq(), token: "bad" });
                assert.equal(r.status, C.authFailed);
                assert.equal(r.statusText, "unknown", "HTTP reason phrase");
            });
        }

        test("lock: joinOrCreate makes a new room, joinById fails 'is locked'; unlock makes it joinable again", async (s) => {
            const mode = uniq();
            const a = await s.join(sdk, "joinOrCreate", "echo", { mode }, { label: "A" });
            await a.nextMsg("welcome");
            a.send("lock");
            assert.deepEqual(await a.roundTrip("count"), { clients: 1 });

            const b = await s.join(sdk, "joinOrCreate", "echo", { mode }, { label: "B" });
            assert.notEqual(b.roomId, a.roomId, "a locked room is not matched");
            assert.equal((await b.nextMsg("welcome")).clients, 1);

            const client = sdk.client(host);
            await expectMatchMakeError(s, sdk, client.joinById(a.roomId), C.invalidRoomId, MSG.roomLocked(a.roomId), "joinById locked room");
            await expectMatchmakeError(host, "joinById", a.roomId, {}, C.invalidRoomId, MSG.roomLocked(a.roomId));

            a.send("unlock");
            assert.deepEqual(await a.roundTrip("count"), { clients: 1 });
            const c = await joinById(s, a.roomId, {}, "C");
            assert.equal(c.roomId, a.roomId);
            assert.deepEqual(await c.nextMsg("welcome"), { sessionId: c.sessionId, roomId: a.roomId, clients: 2 });
        });

        test("filterBy mode: same mode → same room, other mode → other room, join({mode}) finds the room", async (s) => {
            const m1 = uniq("f1");
            const m2 = uniq("f2");
            const a = await s.join(sdk, "joinOrCreate", "echo", { mode: m1 }, { label: "A" });
            const b = await s.join(sdk, "joinOrCreate", "echo", { mode: m1 }, { label: "B" });
            const c = await s.join(sdk, "joinOrCreate", "echo", { mode: m2 }, { label: "C" });
            assert.equal(b.roomId, a.roomId);
            assert.notEqual(c.roomId, a.roomId);
            const d = await s.join(sdk, "join", "echo", { mode: m2 }, { label: "D" });
            assert.equal(d.roomId, c.roomId);
            const e = await s.join(sdk, "join", "echo", { mode: m1 }, { label: "E" });
            assert.equal(e.roomId, a.roomId);
            assert.equal((await e.nextMsg("welcome")).clients, 3);
            const r = await matchmake(host, "join", "echo", { mode: m2 });
            assert.equal(r.status, 200);
            assert.equal((r.body.room ?? r.body).roomId, c.roomId);
            // consume that reservation rather than leave it pending
            const raw = s.trackRaw(await RawClient.fromReservation(host, r.body));
            assert.equal((await raw.nextData("welcome")).payload.clients, 3);
            raw.leave();
        });
    });

    // A host of its own: joinOrCreate({}) must find the one room that exists.
    describe(`${sdk.label}: filterBy with an absent key (fresh host)`, () => {
        const host = startHostHooks({ profile: sdk.profile, label: `host ${sdk.profile} (${sdk.id}, filter)` });
        const test = (name, fn, opts) => hostTest(() => host, `${tag} ${name}`, fn, opts);

        test("a filter key absent from the options matches any room: create({mode:\"zz\"}) then joinOrCreate({}) joins it", async (s) => {
            const a = await s.join(sdk, "create", "echo", { mode: "zz" }, { label: "A" });
            await a.nextMsg("welcome");
            const b = await s.join(sdk, "joinOrCreate", "echo", {}, { label: "B" });
            assert.equal(b.roomId, a.roomId);
            assert.equal((await b.nextMsg("welcome")).clients, 2);
        });
    });

    describe(`${sdk.label}: metadata.mode "default" (fresh host)`, () => {
        const host = startHostHooks({ profile: sdk.profile, label: `host ${sdk.profile} (${sdk.id}, default mode)` });
        const test = (name, fn, opts) => hostTest(() => host, `${tag} ${name}`, fn, opts);

        if (sdk.profile === "0.16") {
            test("join({mode:\"default\"}) does not match a room created without a mode (4211)", async (s) => {
                const a = await s.join(sdk, "create", "echo", {}, { label: "A" });
                await a.nextMsg("welcome");
                await expectMatchMakeError(s, sdk, sdk.client(host).join("echo", { mode: "default" }), C.invalidCriteria, MSG.noRooms, "join mode default");
                const b = await s.join(sdk, "joinOrCreate", "echo", {}, { label: "B" });
                assert.equal(b.roomId, a.roomId, "joinOrCreate({}) still finds it");
            });
        } else {
            test("join({mode:\"default\"}) matches a room created without a mode (filter on metadata)", async (s) => {
                const a = await s.join(sdk, "create", "echo", {}, { label: "A" });
                await a.nextMsg("welcome");
                const b = await s.join(sdk, "join", "echo", { mode: "default" }, { label: "B" });
                assert.equal(b.roomId, a.roomId);
                assert.equal((await b.nextMsg("welcome")).clients, 2);
            });
        }
    });

    describe(`${sdk.label}: seat reservation expiry (--seat-reservation-secs 1)`, () => {
        const host = startHostHooks({ profile: sdk.profile, seatReservationSecs: 1, label: `host ${sdk.profile} (${sdk.id}, 1 s seats)` });
        const test = (name, fn, opts) => hostTest(() => host, `${tag} ${name}`, fn, opts);

        test(`an expired reservation: the SDK join fails with code ${P.wsSeatExpiredCode} "seat reservation expired."; raw: ERROR then close 4002`, async (s) => {
            const a = await s.join(sdk, "create", "echo", { mode: uniq() }, { label: "A" });
            await a.nextMsg("welcome");

            // a reservation consumed in time works
            const quick = await matchmake(host, "joinById", a.roomId, {});
            assert.equal(quick.status, 200, quick.text);
            const qroom = await waitFor(sdk.client(host).consumeSeatReservation(quick.body), 5000, "consume fresh reservation");
            s.onClose(() => qroom.leave(true));
            assert.equal(qroom.roomId, a.roomId);

            const res = await matchmake(host, "joinById", a.roomId, {});
            assert.equal(res.status, 200, res.text);
            const res2 = await matchmake(host, "joinById", a.roomId, {});
            assert.equal(res2.status, 200, res2.text);
            await sleep(2500);

            const outcome = await waitFor(
                sdk.client(host).consumeSeatReservation(res.body).then((room) => ({ room }), (err) => ({ err })),
                5000, "consume expired reservation");
            if (outcome.room) {
                s.onClose(() => outcome.room.leave(true));
                assert.fail("joined with an expired reservation");
            }
            assert.equal(outcome.err.code, P.wsSeatExpiredCode, `code (${outcome.err.message})`);
            assert.equal(outcome.err.message, MSG.seatExpired);

            const t = res2.body.room ?? res2.body;
            const raw = s.trackRaw(new RawClient(`${host.endpoint}/${t.processId}/${t.roomId}?sessionId=${res2.body.sessionId}`));
            await raw.opened;
            const f = await raw.nextFrame(3000, "ERROR");
            const pf = parseFrame(f);
            assert.equal(pf.code, Code.ERROR, `ERROR frame, got ${hex(f)}`);
            assert.equal(pf.errCode, P.wsSeatExpiredCode);
            assert.equal(pf.message, MSG.seatExpired);
            const close = await raw.waitClose(3000);
            assert.equal(close.code, 4002);

            assert.deepEqual(await a.roundTrip("count"), { clients: 2 });
        }, { timeout: TEST_TIMEOUT });
    });
}
