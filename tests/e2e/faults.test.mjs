// Fault isolation: a guest that panics, loops forever or allocates without bound
// disposes only its own room (its clients get close 4002). An `echo` room and a
// second `faults` room on the same host keep answering, matchmaking keeps
// answering, and a new `faults` room can be created afterwards.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Host, hostTest, matchmake, sleep, uniq, PROFILES, MSG, expectMatchMakeError } from "./harness.mjs";
import { SDK_BY_PROFILE } from "./sdks.mjs";

// The full set on the 0.17 profile, the panic case on the other two as well.
const PLAN = [
    { profile: "0.17", faults: ["panic", "loop", "oom"] },
    { profile: "0.16", faults: ["panic"] },
    { profile: "0.18", faults: ["panic"] },
];

// How long a fault may take to be detected and the room disposed.
const FAULT_CLOSE_MS = { panic: 5000, loop: 20000, oom: 20000 };

for (const { profile, faults } of PLAN) {
    const sdk = SDK_BY_PROFILE[profile];
    const C = PROFILES[profile].codes;
    const tag = `[faults / ${sdk.id} / --protocol ${profile}]`;

    describe(`faults against odeon-host --protocol ${profile} (${sdk.label})`, () => {
        const host = new Host({ profile, label: `host ${profile} (faults)` });
        before(async () => { await host.start(); });
        after(async () => { await host.stop(); });
        const test = (name, fn, opts) => hostTest(() => host, `${tag} ${name}`, fn, opts);

        test("the faults room echoes", async (s) => {
            const f = await s.join(sdk, "create", "faults", {}, { label: "F" });
            assert.deepEqual(await f.roundTrip("echo", { hello: "faults" }), { hello: "faults" });
            assert.deepEqual(await f.roundTrip("echo", [1, "two"]), [1, "two"]);
        });

        for (const fault of faults) {
            test(`"${fault}" disposes only its room: its clients close 4002, other rooms and matchmaking carry on`, async (s) => {
                // bystanders: an echo room and a second faults room
                const echo = await s.join(sdk, "create", "echo", { mode: uniq("bystander") }, { label: "E" });
                await echo.nextMsg("welcome");
                const other = await s.join(sdk, "create", "faults", {}, { label: "G" });
                assert.deepEqual(await other.roundTrip("echo", { pre: 1 }), { pre: 1 });

                // the victim room with two clients
                const f1 = await s.join(sdk, "create", "faults", {}, { label: "F1" });
                const f2 = await s.join(sdk, "joinById", f1.roomId, {}, { label: "F2" });
                assert.notEqual(f1.roomId, other.roomId);
                assert.deepEqual(await f1.roundTrip("echo", { pre: fault }), { pre: fault });
                // nothing reconnects automatically while we watch the close codes
                sdk.disableAutoReconnect(f1.room);
                sdk.disableAutoReconnect(f2.room);

                const t0 = Date.now();
                f1.send(fault);
                const [l1, l2] = await Promise.all([
                    f1.next("leave", FAULT_CLOSE_MS[fault]),
                    f2.next("leave", FAULT_CLOSE_MS[fault]),
                ]);
                assert.equal(l1.code, 4002, `F1 close code (${JSON.stringify(l1)})`);
                assert.equal(l2.code, 4002, `F2 close code (${JSON.stringify(l2)})`);
                assert.ok(!f1.inbox.items.some((i) => i.kind === "drop"), "a 4002 close is not a drop");
                const took = Date.now() - t0;

                assert.ok(host.alive, `host still running after "${fault}"`);
                // The failure is in the host log, tagged with the room it killed.
                const cause = { panic: /requested panic/, loop: /deadline/, oom: /memory cap/ }[fault];
                const line = host.logTail(400).split("\n").find((l) => l.includes(f1.roomId) && cause.test(l));
                assert.ok(line, `the host log names room ${f1.roomId} and the cause of "${fault}":\n${host.logTail(40)}`);
                assert.deepEqual(await echo.roundTrip("echo", { after: fault }), { after: fault }, "echo room keeps answering");
                assert.deepEqual(await echo.roundTrip("count"), { clients: 1 });
                assert.deepEqual(await other.roundTrip("echo", { after: fault }), { after: fault }, "the other faults room keeps answering");

                const r = await matchmake(host, "joinOrCreate", "echo", { mode: uniq("after") });
                assert.equal(r.status, 200, `matchmaking after "${fault}": ${r.text}`);
                await expectMatchMakeError(s, sdk, sdk.client(host).joinById(f1.roomId), C.invalidRoomId, MSG.roomNotFound(f1.roomId), "joinById the faulted room");

                const again = await s.join(sdk, "create", "faults", {}, { label: "F3" });
                assert.notEqual(again.roomId, f1.roomId);
                assert.deepEqual(await again.roundTrip("echo", { fresh: true }), { fresh: true });
                if (took > FAULT_CLOSE_MS[fault] / 2) console.log(`# ${tag} "${fault}" took ${took} ms to close its clients`);
            }, { timeout: FAULT_CLOSE_MS[fault] + 15000 });
        }

        test("two faults in a row on the same host, then everything still works", async (s) => {
            const echo = await s.join(sdk, "create", "echo", { mode: uniq("bystander") }, { label: "E" });
            await echo.nextMsg("welcome");
            for (let i = 0; i < 2; i++) {
                const f = await s.join(sdk, "create", "faults", {}, { label: `F${i}` });
                sdk.disableAutoReconnect(f.room);
                f.send("panic");
                assert.equal((await f.next("leave", FAULT_CLOSE_MS.panic)).code, 4002);
            }
            assert.deepEqual(await echo.roundTrip("echo", "still here"), "still here");
            const f = await s.join(sdk, "create", "faults", {}, { label: "F-last" });
            assert.deepEqual(await f.roundTrip("echo", 7), 7);
        });
    });
}

// What one guest can make the host hold is capped; each cap is probed at its boundary. Over a
// cap the room fails like any other fault (4002 for its clients); the log cap only drops lines.
describe("host limits on what one guest can make the host hold (--protocol 0.18)", () => {
    const sdk = SDK_BY_PROFILE["0.18"];
    const host = new Host({ profile: "0.18", label: "host 0.18 (guest caps)" });
    before(async () => { await host.start(); });
    after(async () => { await host.stop(); });
    const test = (name, fn, opts) => hostTest(() => host, `[faults / caps] ${name}`, fn, opts);

    /** A faults room with one client, and an echo room beside it. */
    async function victimAndBystander(s) {
        const echo = await s.join(sdk, "create", "echo", { mode: uniq("bystander") }, { label: "E" });
        await echo.nextMsg("welcome");
        const f = await s.join(sdk, "create", "faults", {}, { label: "F" });
        sdk.disableAutoReconnect(f.room);
        return { echo, f };
    }

    async function expectDisposed(f, echo, cause) {
        assert.equal((await f.next("leave", 5000)).code, 4002);
        const line = host.logTail(400).split("\n").find((l) => l.includes(f.roomId) && cause.test(l));
        assert.ok(line, `the host log names room ${f.roomId} and ${cause}:\n${host.logTail(20)}`);
        assert.deepEqual(await echo.roundTrip("echo", { still: "here" }), { still: "here" });
    }

    test("10 000 pending timers are allowed; one more disposes only that room", async (s) => {
        const { echo, f } = await victimAndBystander(s);
        f.send("timers", 10000);
        assert.deepEqual(await f.roundTrip("echo", "alive"), "alive");
        f.send("timers", 1);
        await expectDisposed(f, echo, /over 10000 pending timers/);
    });

    test("65 536 effects in one call are allowed; 65 537 dispose only that room", async (s) => {
        const { echo, f } = await victimAndBystander(s);
        // W sees the broadcasts: the echo below goes only once their call is done, so batching
        // cannot put it in the same call (65 536 + 1 effects would be over the cap).
        const w = await s.join(sdk, "joinById", f.roomId, {}, { label: "W" });
        f.send("broadcasts", 65536);
        await w.nextMsg("b", 10000);
        assert.deepEqual(await f.roundTrip("echo", "alive", 10000), "alive");
        f.send("broadcasts", 65537);
        await expectDisposed(f, echo, /65537 effects in one call, over the limit of 65536/);
    }, { timeout: 30000 });

    test("a guest logging 5000 lines at once gets 200 through, then the count of the dropped ones", async (s) => {
        const { f } = await victimAndBystander(s);
        f.send("logs", 5000);
        assert.deepEqual(await f.roundTrip("echo", "alive"), "alive");
        await sleep(100);
        f.send("logs", 1);
        assert.deepEqual(await f.roundTrip("echo", "alive"), "alive");
        const lines = host.logTail(20000).split("\n").filter((l) => l.includes(f.roomId));
        const logged = lines.filter((l) => /log line \d+/.test(l)).length;
        assert.ok(logged >= 200 && logged <= 220, `${logged} guest lines logged`);
        const dropped = lines.find((l) => /\d+ log lines dropped/.test(l));
        assert.ok(dropped, "the dropped count is logged");
        assert.ok(Number(dropped.match(/(\d+) log lines dropped/)[1]) >= 4780, dropped);
    });
});
