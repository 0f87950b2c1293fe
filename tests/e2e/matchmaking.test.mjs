// Matchmaking behaviour the README and ARCHITECTURE.md promise, through @colyseus/sdk 0.18:
// sortBy, a private room made public again, metadata changed at run time, the SDK's auth token,
// CORS headers, and `--public-address` with `{port}`.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Host, hostTest, matchmake, uniq } from "./harness.mjs";
import { SDK18 as sdk } from "./sdks.mjs";

const TOKEN = "matchmaking-admin";

async function listing(host, roomId) {
    const res = await fetch(`${host.http}/odeon/admin/rooms`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    return (await res.json()).rooms.find((r) => r.roomId === roomId);
}

/** Polls `check` for up to `ms`; fails with `what` if it never holds. */
async function eventually(what, check, ms = 3000) {
    const deadline = Date.now() + ms;
    for (;;) {
        if (await check()) return;
        if (Date.now() > deadline) assert.fail(`timed out: ${what}`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

describe("matchmaking (odeon-host --protocol 0.18, @colyseus/sdk 0.18.4)", () => {
    const host = new Host({
        profile: "0.18",
        label: "host 0.18 (matchmaking)",
        extraArgs: ["--admin-token", TOKEN, "--public-address", "127.0.0.1:{port}"],
    });
    before(async () => { await host.start(); });
    after(async () => { await host.stop(); });
    const test = (name, fn, opts) => hostTest(() => host, `[matchmaking] ${name}`, fn, opts);

    test("sortBy: join picks the room with the most clients, not the oldest", async (s) => {
        const older = await s.join(sdk, "create", "lifecycle", {}, { label: "O1" });
        await s.join(sdk, "joinById", older.roomId, {}, { label: "O2" });
        const fuller = await s.join(sdk, "create", "lifecycle", {}, { label: "F1" });
        await s.join(sdk, "joinById", fuller.roomId, {}, { label: "F2" });
        await s.join(sdk, "joinById", fuller.roomId, {}, { label: "F3" });
        await eventually("both listings are current", async () =>
            (await listing(host, older.roomId))?.clients === 2 && (await listing(host, fuller.roomId))?.clients === 3);
        const r = await matchmake(host, "join", "lifecycle", {});
        assert.equal(r.status, 200, r.text);
        assert.equal(JSON.parse(r.text).roomId, fuller.roomId, "clients descending");
    });

    test("a private room made public again is matched by name again", async (s) => {
        const a = await s.join(sdk, "create", "lifecycle", {}, { label: "A" });
        for (const label of ["B", "C", "D"]) await s.join(sdk, "joinById", a.roomId, {}, { label });
        assert.deepEqual(await a.roundTrip("private", { value: true }), { value: true });
        await eventually("the listing is private", async () => (await listing(host, a.roomId))?.private === true);
        const hidden = await matchmake(host, "join", "lifecycle", {});
        assert.ok(hidden.status !== 200 || JSON.parse(hidden.text).roomId !== a.roomId, "a private room is not matched");
        assert.deepEqual(await a.roundTrip("private", { value: false }), { value: false });
        await eventually("the listing is public", async () => (await listing(host, a.roomId))?.private === false);
        const found = await matchmake(host, "join", "lifecycle", {});
        assert.equal(found.status, 200, found.text);
        assert.equal(JSON.parse(found.text).roomId, a.roomId, "public again, and the fullest room");
    });

    test("metadata set at run time reaches the room's listing", async (s) => {
        const a = await s.join(sdk, "create", "lifecycle", {});
        await a.roundTrip("metadata", { tier: 2, map: "dunes" });
        await eventually("the listing has the new metadata", async () => {
            const l = await listing(host, a.roomId);
            return l?.metadata?.tier === 2 && l.metadata.map === "dunes";
        });
    });

    test("the SDK's auth token reaches the room's auth hook as the bearer token", async (s) => {
        const bad = new sdk.Client(host.endpoint);
        bad.auth.token = "bad";
        await assert.rejects(bad.joinOrCreate("echo", { mode: uniq("auth") }), (e) => {
            assert.match(String(e.message ?? e), /auth/i);
            return true;
        });
        const good = new sdk.Client(host.endpoint);
        good.auth.token = "good";
        const room = await good.joinOrCreate("echo", { mode: uniq("auth") });
        room.onMessage("*", () => {});
        await room.leave();
    });

    test("CORS: a preflight and a matchmaking answer carry the headers a browser needs", async () => {
        const origin = "https://game.example";
        const pre = await fetch(`${host.http}/matchmake/joinOrCreate/echo`, {
            method: "OPTIONS",
            headers: { Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, authorization" },
        });
        assert.equal(pre.status, 204);
        assert.equal(pre.headers.get("access-control-allow-origin"), origin);
        assert.equal(pre.headers.get("access-control-allow-credentials"), "true");
        assert.match(pre.headers.get("access-control-allow-methods"), /POST/);
        assert.match(pre.headers.get("access-control-allow-headers"), /Authorization/);
        const res = await fetch(`${host.http}/matchmake/joinOrCreate/echo`, {
            method: "POST", headers: { Origin: origin, "Content-Type": "application/json" }, body: JSON.stringify({ mode: uniq("cors") }),
        });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("access-control-allow-origin"), origin);
    });

    test("--public-address 127.0.0.1:{port} puts this host's own port in reservations", async () => {
        const r = await matchmake(host, "create", "echo", { mode: uniq("addr") });
        assert.equal(r.status, 200, r.text);
        assert.equal(JSON.parse(r.text).publicAddress, `127.0.0.1:${host.port}`);
    });
});
