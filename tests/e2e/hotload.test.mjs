// Hot loading: a new plugin version written into a running host's plugins directory (write, then
// rename) or POSTed to the admin endpoint serves new rooms; running rooms keep their version until
// they dispose; a bad version is refused with a reason while the old one keeps serving; a plugin
// file removed unregisters its room type once its rooms are gone.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, copyFileSync, readFileSync, writeFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
    Host, MSG, PLUGINS_DIR, PLUGIN_VARIANTS_DIR, PROFILES, expectMatchMakeError, hostTest, sleep, uniq, until,
} from "./harness.mjs";
import { SDK18 as sdk } from "./sdks.mjs";

const TOKEN = "test-admin-token";
const ECHO = readFileSync(resolve(PLUGINS_DIR, "echo.wasm"));
// The same room built with the `v2` feature: its `build` message answers "v2" instead of "v1".
const ECHO_V2 = readFileSync(resolve(PLUGIN_VARIANTS_DIR, "echo-v2.wasm"));

/** A module with a custom section appended: identical behaviour, different bytes. */
function variant(label, module = ECHO) {
    const name = Buffer.from("odeon-test");
    const payload = Buffer.from(label);
    const body = Buffer.concat([leb(name.length), name, payload]);
    return Buffer.concat([module, Buffer.from([0x00]), leb(body.length), body]);
}

/** Which build of echo a joined client's room runs. */
const build = (peer) => peer.roundTrip("build");

function leb(n) {
    const out = [];
    do {
        let byte = n & 0x7f;
        n >>>= 7;
        if (n) byte |= 0x80;
        out.push(byte);
    } while (n);
    return Buffer.from(out);
}

function pluginsCopy() {
    const dir = mkdtempSync(join(tmpdir(), "odeon-plugins-"));
    for (const p of ["echo.wasm", "faults.wasm"]) copyFileSync(resolve(PLUGINS_DIR, p), join(dir, p));
    return dir;
}

/** Write then rename, as a deploy would, so the watcher never sees a half-written file. */
function deploy(dir, file, bytes) {
    const tmp = join(dir, `.${file}.tmp`);
    writeFileSync(tmp, bytes);
    renameSync(tmp, join(dir, file));
}

async function echoVersion(host) {
    const health = await (await fetch(`${host.http}/odeon/health`)).json();
    return health.roomTypes.find((t) => t.name === "echo")?.version;
}

async function waitForEchoVersion(host, predicate, what, ms = 10000) {
    const deadline = Date.now() + ms;
    let v;
    while (Date.now() < deadline) {
        v = await echoVersion(host);
        if (predicate(v)) return v;
        await sleep(100);
    }
    assert.fail(`${what}: echo version stayed ${v}`);
}

async function roomVersions(host) {
    const res = await fetch(`${host.http}/odeon/admin/rooms`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    const { rooms } = await res.json();
    return Object.fromEntries(rooms.map((r) => [r.roomId, r.pluginVersion]));
}

/** `GET /odeon/admin/plugins`'s room types, by name. */
async function adminTypes(host) {
    const res = await fetch(`${host.http}/odeon/admin/plugins`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    return Object.fromEntries((await res.json()).roomTypes.map((t) => [t.name, t]));
}

function upload(host, bytes, token = TOKEN) {
    const headers = token === null ? {} : { Authorization: `Bearer ${token}` };
    return fetch(`${host.http}/odeon/admin/plugins?file=echo.wasm`, { method: "POST", headers, body: bytes });
}

/** A host with the admin token on a copy of echo and faults of its own, started and stopped by
 *  the enclosing describe. */
function hostOnCopy(label) {
    const dir = pluginsCopy();
    const host = new Host({ profile: "0.18", pluginsDir: dir, extraArgs: ["--admin-token", TOKEN], label });
    before(async () => { await host.start(); });
    after(async () => {
        await host.stop();
        rmSync(dir, { recursive: true, force: true });
    });
    return { dir, host };
}

describe("hot loading (odeon-host --protocol 0.18, @colyseus/sdk 0.18.4)", () => {
    const { dir, host } = hostOnCopy("host 0.18 (hot load)");
    const test = (name, fn, opts) => hostTest(() => host, `[hot load] ${name}`, fn, opts);

    test("a new version renamed into the plugins directory serves new rooms; running rooms keep theirs", async (s) => {
        const before = await echoVersion(host);
        const old = await s.join(sdk, "create", "echo", { mode: uniq() }, { label: "old" });
        await old.nextMsg("welcome");

        assert.equal(await build(old), "v1");

        deploy(dir, "echo.wasm", ECHO_V2);
        const after = await waitForEchoVersion(host, (v) => v > before, "the renamed file was not loaded");

        assert.deepEqual(await old.roundTrip("echo", { still: "here" }), { still: "here" }, "the running room keeps serving");
        assert.equal(await build(old), "v1", "the running room runs the old code");
        const fresh = await s.join(sdk, "create", "echo", { mode: uniq() }, { label: "new" });
        assert.equal(await build(fresh), "v2", "a new room runs the new code");
        assert.deepEqual(await fresh.roundTrip("echo", { fresh: true }), { fresh: true });
        const versions = await roomVersions(host);
        assert.equal(versions[old.roomId], before, "the running room keeps the version that created it");
        assert.equal(versions[fresh.roomId], after, "a new room runs the new version");
    });

    test("a bad version in the directory is refused with a reason and the old one keeps serving", async (s) => {
        const before = await echoVersion(host);
        deploy(dir, "echo.wasm", Buffer.from("this is not a wasm module"));
        const deadline = Date.now() + 10000;
        while (!host.logTail(400).includes("refused plugin") && Date.now() < deadline) await sleep(100);
        assert.match(host.logTail(400), /refused plugin: not a valid wasm module/, "the refusal is logged with its reason");
        assert.equal(await echoVersion(host), before, "the registered version is unchanged");
        const peer = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq() });
        assert.deepEqual(await peer.roundTrip("echo", [1, 2, 3]), [1, 2, 3], "echo still serves");
        deploy(dir, "echo.wasm", variant("restore"));
        await waitForEchoVersion(host, (v) => v > before, "the restored file was not loaded");
    });

    test("the admin endpoint requires the bearer token and answers JSON errors", async () => {
        for (const token of [null, "wrong"]) {
            const res = await upload(host, variant("unauthorised"), token);
            assert.equal(res.status, 401);
            assert.match((await res.json()).error, /bearer token/);
        }
        const bad = await upload(host, Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x02]));
        assert.equal(bad.status, 400);
        assert.match((await bad.json()).error, /not a valid wasm module/);
        const rooms = await fetch(`${host.http}/odeon/admin/rooms`);
        assert.equal(rooms.status, 401);
    });

    test("uploads up to the 32 MiB plugin cap reach the loader; one byte more is a 413 JSON error", async () => {
        const cap = 32 << 20;
        // Exactly at the cap: read whole and refused by the loader for what it is, not its size.
        const atCap = Buffer.alloc(cap, 0x61);
        const read = await upload(host, atCap);
        assert.equal(read.status, 400);
        assert.match((await read.json()).error, /not a valid wasm module/);
        const over = await upload(host, Buffer.alloc(cap + 1, 0x61));
        assert.equal(over.status, 413);
        assert.match((await over.json()).error, /over the 33554432-byte limit/);
        assert.ok(await echoVersion(host), "echo still serves");
    }, { timeout: 60000 });

    test("concurrent uploads of one room type: the version serving is the one saved", async () => {
        const results = await Promise.all(["c1", "c2", "c3", "c4"].map((l) => upload(host, variant(`concurrent-${l}`))));
        for (const r of results) assert.equal(r.status, 200);
        const versions = await Promise.all(results.map((r) => r.json()));
        const newest = Math.max(...versions.map((v) => v.version));
        assert.equal(await echoVersion(host), newest);
        const saved = readFileSync(join(host.pluginsDir, "echo.wasm"));
        const label = ["c1", "c2", "c3", "c4"][versions.findIndex((v) => v.version === newest)];
        assert.ok(saved.equals(variant(`concurrent-${label}`)), "the file on disk is the serving version");
    });

    test("a version POSTed to the admin endpoint serves new rooms at once", async (s) => {
        const before = await echoVersion(host);
        const old = await s.join(sdk, "create", "echo", { mode: uniq() }, { label: "old" });
        const oldBuild = await build(old);
        const newBuild = oldBuild === "v1" ? "v2" : "v1";
        const res = await upload(host, variant("admin", newBuild === "v2" ? ECHO_V2 : ECHO));
        assert.equal(res.status, 200);
        const body = await res.json();
        assert.equal(body.name, "echo");
        assert.ok(body.version > before, `new version ${body.version} after ${before}`);
        assert.equal(await echoVersion(host), body.version);
        const fresh = await s.join(sdk, "create", "echo", { mode: uniq() }, { label: "new" });
        assert.equal(await build(fresh), newBuild, "a new room runs the uploaded code");
        assert.equal(await build(old), oldBuild, "the running room keeps its code");
        const versions = await roomVersions(host);
        assert.equal(versions[fresh.roomId], body.version);
        assert.equal(versions[old.roomId], before);
        assert.deepEqual(await old.roundTrip("echo", "old"), "old");
        assert.deepEqual(await fresh.roundTrip("echo", "new"), "new");
    });

    test("alone, ?migrate=1 moves running rooms to the upload in place, and ?canary=P splits new rooms", async (s) => {
        const p = await s.join(sdk, "create", "echo", { mode: uniq() }, { label: "running" });
        const was = await build(p);
        const next = was === "v1" ? "v2" : "v1";
        const res = await fetch(`${host.http}/odeon/admin/plugins?migrate=1`, {
            method: "POST",
            headers: { Authorization: `Bearer ${TOKEN}` },
            body: variant("migrate", next === "v2" ? ECHO_V2 : ECHO),
        });
        const body = await res.json();
        assert.equal(res.status, 200, JSON.stringify(body));
        assert.equal(body.hosts.length, 1);
        assert.ok(body.hosts[0].migration.migrated >= 1, JSON.stringify(body));
        assert.equal(await build(p), next, "the running room runs the upload");
        assert.deepEqual(await p.roundTrip("echo", "after"), "after");
        assert.deepEqual(p.inbox.items.filter((it) => ["leave", "drop", "error"].includes(it.kind)), []);
        // A canary of half the new rooms on the one host.
        const canary = await fetch(`${host.http}/odeon/admin/plugins?canary=50`, {
            method: "POST",
            headers: { Authorization: `Bearer ${TOKEN}` },
            body: variant("canary", was === "v2" ? ECHO_V2 : ECHO),
        });
        assert.equal(canary.status, 200, JSON.stringify(await canary.clone().json()));
        const seen = { v1: 0, v2: 0 };
        for (let i = 0; i < 24 && !(seen.v1 && seen.v2); i++) {
            const q = await s.join(sdk, "create", "echo", { mode: uniq() }, { label: `probe ${i}` });
            seen[await build(q)] += 1;
            await q.room.leave();
        }
        assert.ok(seen.v1 > 0 && seen.v2 > 0, `new rooms split: ${JSON.stringify(seen)}`);
        const bad = await fetch(`${host.http}/odeon/admin/plugins?canary=100`, {
            method: "POST",
            headers: { Authorization: `Bearer ${TOKEN}` },
            body: ECHO,
        });
        assert.equal(bad.status, 400);
        assert.match((await bad.json()).error, /canary must be a percentage from 1 to 99/);
    });
});

describe("admin endpoint without a token", () => {
    const host = new Host({ profile: "0.18", label: "host 0.18 (no admin)" });
    before(async () => { await host.start(); });
    after(async () => { await host.stop(); });

    hostTest(() => host, "[hot load] uploads are refused when no admin token is configured", async () => {
        const res = await upload(host, variant("disabled"));
        assert.equal(res.status, 404);
        assert.match((await res.json()).error, /admin endpoint disabled/);
    });
});

describe("a bad plugin at start-up", () => {
    const dir = pluginsCopy();
    writeFileSync(join(dir, "broken.wasm"), "not wasm");
    writeFileSync(join(dir, "truncated.wasm"), ECHO.subarray(0, 4096));
    const host = new Host({ profile: "0.18", pluginsDir: dir, label: "host 0.18 (bad plugin at start)" });
    before(async () => { await host.start(); });
    after(async () => {
        await host.stop();
        rmSync(dir, { recursive: true, force: true });
    });

    hostTest(() => host, "[hot load] is refused with a reason while the host serves the others", async (s) => {
        const logs = host.logTail(400);
        assert.match(logs, /refused plugin: not a valid wasm module.*plugin="?broken\.wasm/);
        assert.match(logs, /refused plugin: .*plugin="?truncated\.wasm/);
        const health = await (await fetch(`${host.http}/odeon/health`)).json();
        assert.deepEqual(health.roomTypes.map((t) => t.name).sort(), ["echo", "faults"]);
        const peer = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq() });
        assert.deepEqual(await peer.roundTrip("echo", "served"), "served");
    });
});

describe("a plugin file removed from the directory", () => {
    const { dir, host } = hostOnCopy("host 0.18 (plugin removed)");
    const C = PROFILES["0.18"].codes;

    hostTest(() => host, "[hot load] unregisters its room type once its rooms are gone; running rooms play on", async (s) => {
        const running = await s.join(sdk, "create", "echo", { mode: uniq() }, { label: "running" });
        await running.nextMsg("welcome");
        assert.equal((await adminTypes(host)).echo?.retired, false);

        rmSync(join(dir, "echo.wasm"));
        await until("the removal to retire echo", async () => (await adminTypes(host)).echo?.retired === true, 10000);
        const client = sdk.client(host);
        for (const method of ["joinOrCreate", "create", "join"]) {
            await expectMatchMakeError(s, sdk, client[method]("echo", { mode: uniq() }), C.noHandler, MSG.roomNotDefined("echo"), `${method} of a removed room type`);
        }
        const health = await (await fetch(`${host.http}/odeon/health`)).json();
        assert.deepEqual(health.roomTypes.map((t) => t.name), ["faults"], "new rooms can be made of faults alone");

        // The running room plays on, and takes a join by id.
        assert.deepEqual(await running.roundTrip("echo", { still: "playing" }), { still: "playing" });
        const friend = await s.join(sdk, "joinById", running.roomId, {}, { label: "friend" });
        await friend.nextMsg("welcome");
        assert.deepEqual(await friend.roundTrip("echo", "joined late"), "joined late");
        const listed = (await adminTypes(host)).echo;
        assert.equal(listed.activeHash, null, "no version serves new rooms");
        assert.deepEqual(Object.values(listed.hosts[0].rooms), [1], "listed with its running room");

        await friend.room.leave();
        await running.room.leave();
        await until("echo to leave the admin list once its room ended", async () => !("echo" in (await adminTypes(host))), 10000);
        assert.ok("faults" in (await adminTypes(host)), "the other room type stays");

        // Written again, the type is back.
        deploy(dir, "echo.wasm", ECHO);
        await waitForEchoVersion(host, (v) => v !== undefined, "the file written again was not loaded");
        const back = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq() }, { label: "back" });
        assert.deepEqual(await back.roundTrip("echo", "back"), "back");
    });
});
