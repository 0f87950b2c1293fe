// The host's clock and room settings, through the `lifecycle` plugin: simulation ticks, timeouts,
// intervals, messages held until after the next patch, private rooms, metadata and disconnect.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Host, hostTest, matchmake, sleep } from "./harness.mjs";
import { SDK18 as sdk } from "./sdks.mjs";

describe("lifecycle room (odeon-host --protocol 0.18, @colyseus/sdk 0.18.4)", () => {
    const host = new Host({ profile: "0.18", label: "host 0.18 (lifecycle)" });
    before(async () => { await host.start(); });
    after(async () => { await host.stop(); });
    const test = (name, fn) => hostTest(() => host, `[lifecycle] ${name}`, fn);

    test("the simulation ticks at the interval the room set", async (s) => {
        const p = await s.join(sdk, "create", "lifecycle", { tickMs: 20 });
        const start = (await p.roundTrip("ticks")).count;
        await sleep(400);
        const ticks = (await p.roundTrip("ticks")).count - start;
        assert.ok(ticks >= 10 && ticks <= 25, `about 20 ticks of 20 ms in 400 ms, got ${ticks}`);
        const idle = await s.join(sdk, "create", "lifecycle", {});
        await sleep(100);
        assert.equal((await idle.roundTrip("ticks")).count, 0, "no ticks unless the room asks");
    });

    test("timeouts fire once after their delay; intervals repeat until cleared", async (s) => {
        const p = await s.join(sdk, "create", "lifecycle", {});
        const t0 = Date.now();
        p.send("timeout", { ms: 150 });
        const { elapsed } = await p.nextMsg("timeout");
        assert.ok(Date.now() - t0 >= 140, "not early");
        assert.ok(elapsed >= 140 && elapsed < 1000, `elapsed ${elapsed}`);
        p.send("interval", { ms: 40, times: 3 });
        for (const n of [1, 2, 3]) assert.deepEqual(await p.nextMsg("interval"), { n });
        await p.noMsg("interval", 200);
        await p.noMsg("timeout", 10);
    });

    test("after-patch messages arrive after the next patch, after immediate ones", async (s) => {
        const p = await s.join(sdk, "create", "lifecycle", { patchMs: 200 });
        const t0 = Date.now();
        p.send("after-patch");
        await p.nextMsg("immediate");
        const tImmediate = Date.now();
        await p.nextMsg("after-patch");
        const held = Date.now() - t0;
        assert.ok(tImmediate - t0 < 150, "the immediate message is not held");
        assert.ok(held >= 150 && held < 1500, `held until the 200 ms patch, took ${held} ms`);
        assert.deepEqual(p.inbox.types().slice(-2), ["immediate", "after-patch"]);
    });

    test("a private room is not matched by name but joins by id", async (s) => {
        const a = await s.join(sdk, "create", "lifecycle", {});
        assert.deepEqual(await a.roundTrip("private", { value: true }), { value: true });
        const other = await s.join(sdk, "joinOrCreate", "lifecycle", {});
        assert.notEqual(other.roomId, a.roomId, "joinOrCreate skips the private room");
        const byId = await s.join(sdk, "joinById", a.roomId, {});
        assert.equal(byId.roomId, a.roomId);
        const r = await matchmake(host, "join", "lifecycle", {});
        assert.equal(r.status, 200, r.text);
        assert.equal(JSON.parse(r.text).roomId, other.roomId, "join finds only the public room");
    });

    test("disconnect closes every client with the room's code", async (s) => {
        const a = await s.join(sdk, "create", "lifecycle", {});
        const b = await s.join(sdk, "joinById", a.roomId, {});
        a.send("disconnect", { code: 4001 });
        assert.equal((await a.next("leave")).code, 4001);
        assert.equal((await b.next("leave")).code, 4001);
        const r = await matchmake(host, "joinById", a.roomId, {});
        assert.equal(r.status, 522, `the room is gone: ${r.text}`);
    });

    test("now() is the host's clock", async (s) => {
        const p = await s.join(sdk, "create", "lifecycle", {});
        const { now } = await p.roundTrip("now");
        assert.ok(Math.abs(now - Date.now()) < 5000, `host now ${now}`);
    });
});
