// `just dev`'s edit-run loop (scripts/dev.sh, which the recipe runs once odeon-host is built) on a
// room crate outside the checkout, as `just new-room` writes it: the room built and served by a
// host on a port of the test's own; a save of its source builds it again and the host hot-loads
// it, so a new room runs the new code while a room already joined keeps the old; a save that does
// not compile prints cargo's error and the last good build keeps serving; and stopping the script
// stops the host's whole process group. The rooms are played with the official @colyseus/sdk 0.18.
//
// The edit is the starter's `MAX_STEP` (10 → 20), which its `increment` request enforces: a step
// of 15 is rejected by the old build and answered by the new one. The builds share
// new-room.test.mjs's target directory ($CARGO_TARGET_DIR/new-room) and run offline with the
// workspace's Cargo.lock (the starter's), as that test's do, so the SDK compiles once per machine.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Client } from "sdk18";
import { HOST_BIN, TESTS_DIR, cleanEnv, freePort, spawnGroup, until } from "./harness.mjs";

const REPO = resolve(TESTS_DIR, "..");
const NAME = "dev-room";
const TARGET_DIR = join(resolve(process.env.CARGO_TARGET_DIR ?? join(REPO, "target")), "new-room");
// The first build may compile the SDK into an empty target directory.
const BUILD_MS = 10 * 60 * 1000;
const OLD_STEP = "const MAX_STEP: u32 = 10;";
const NEW_STEP = "const MAX_STEP: u32 = 20;";

/** `room.request`'s answer, or its rejection's `{name, reason}` (the starter's reason is
 *  `{code, message}`: its message). */
function answer(room, type, payload) {
    return room.request(type, payload).then(
        (value) => ({ value }),
        (error) => ({ name: error.name, reason: error.reason?.message ?? error.reason ?? error.message }),
    );
}

describe("just dev: a room crate built, served, rebuilt on save and hot-loaded", () => {
    const tmp = mkdtempSync(join(tmpdir(), "odeon-dev-"));
    const dir = join(tmp, NAME);
    const source = join(dir, "src/lib.rs");
    let dev = null;
    let exited = null;
    let output = "";
    let port = 0;
    let hostPid = 0;
    const rooms = [];
    const out = () => output.replace(/\x1b\[[0-9;]*m/g, "");
    const http = () => `http://127.0.0.1:${port}`;
    const client = () => new Client(`ws://127.0.0.1:${port}`);
    /** The version the host serves new rooms of the room type with, if it serves it. */
    const version = async () => {
        const health = await (await fetch(`${http()}/odeon/health`)).json();
        return health.roomTypes.find((t) => t.name === NAME)?.version;
    };
    const join18 = async (label) => {
        const room = await client().create(NAME, { name: label });
        rooms.push(room);
        return room;
    };
    const failure = (what) => `${what}\n--- just dev output ---\n${out().slice(-6000)}`;

    before(async () => {
        execFileSync(join(REPO, "scripts/new-room.sh"), [dir], { cwd: tmp, stdio: "pipe" });
        port = await freePort();
        const env = cleanEnv({
            ODEON_HOST_BIN: HOST_BIN,
            ODEON_DEV_TARGET_DIR: TARGET_DIR,
            CARGO_NET_OFFLINE: "true",
        });
        for (const k of ["CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"]) {
            if (process.env[k] !== undefined) env[k] = process.env[k];
        }
        dev = spawnGroup(join(REPO, "scripts/dev.sh"), [dir, "--port", String(port)], { cwd: tmp, env, stdio: ["ignore", "pipe", "pipe"] });
        dev.stdout.on("data", (c) => { output += c; });
        dev.stderr.on("data", (c) => { output += c; });
        dev.on("exit", (code, signal) => { exited = { code, signal }; });
    });
    after(async () => {
        for (const room of rooms) await room.leave().catch(() => {});
        if (dev && !exited) process.kill(-dev.pid, "SIGKILL");
        if (hostPid) {
            try { process.kill(-hostPid, "SIGKILL"); } catch { /* already gone */ }
        }
        rmSync(tmp, { recursive: true, force: true });
    });

    it("builds the room and starts a host serving it", { timeout: BUILD_MS + 30000 }, async () => {
        assert.ok(readFileSync(source, "utf8").includes(OLD_STEP), `the starter's src/lib.rs has \`${OLD_STEP}\`, which this test edits`);
        await until("the host to serve the room", async () => {
            assert.equal(exited, null, failure(`just dev exited ${JSON.stringify(exited)}`));
            return (await version().catch(() => undefined)) === 1;
        }, BUILD_MS);
        hostPid = Number(out().match(/odeon-host \(pid (\d+)\)/)?.[1]);
        assert.ok(hostPid > 0, failure("the host's pid is printed"));
        assert.notEqual(hostPid, dev.pid);
        assert.match(out(), /dev: installed dev_room\.wasm/);
        // The host's own output comes through.
        assert.match(out(), /odeon host listening/);
    });

    it("rebuilds on a save: a new room runs the new code, a joined room keeps the old", { timeout: BUILD_MS + 30000 }, async () => {
        const old = await join18("old");
        assert.deepEqual(await answer(old, "increment", { by: 15 }), { name: "rejected", reason: "increment by 1 to 10, not 15" });

        const before = out().length;
        writeFileSync(source, readFileSync(source, "utf8").replace(OLD_STEP, NEW_STEP));
        // Once the script says the host loaded the build, a new room gets it: no waiting more.
        await until("the script to say the host loaded the new build", () => {
            assert.equal(exited, null, failure(`just dev exited ${JSON.stringify(exited)}`));
            return out().slice(before).includes("dev: the host loaded dev_room.wasm");
        }, BUILD_MS);
        assert.equal(await version(), 2, failure("the build the script announced serves new rooms"));
        assert.match(out().slice(before), /loaded new plugin version; running rooms keep theirs[^\n]*\n(.*\n)*dev: the host loaded dev_room\.wasm/, failure("the host's log line comes first"));

        const fresh = await join18("fresh");
        assert.deepEqual(await answer(fresh, "increment", { by: 15 }), { value: 15 }, "the new room runs the saved code");
        assert.deepEqual(await answer(fresh, "increment", { by: 25 }), { name: "rejected", reason: "increment by 1 to 20, not 25" });
        assert.deepEqual(await answer(old, "increment", { by: 15 }), { name: "rejected", reason: "increment by 1 to 10, not 15" }, "the joined room keeps the build it started with");
        assert.deepEqual(await answer(old, "increment", { by: 4 }), { value: 4 });
    });

    it("prints a build error and keeps serving the last good build", { timeout: BUILD_MS + 30000 }, async () => {
        const before = out().length;
        writeFileSync(source, `${readFileSync(source, "utf8")}\nfn broken() -> u32 {\n    "not a number"\n}\n`);
        await until("the failed build to be reported", () => {
            assert.equal(exited, null, failure(`just dev exited ${JSON.stringify(exited)}`));
            return out().slice(before).includes("dev: the build failed");
        }, BUILD_MS);
        const printed = out().slice(before);
        assert.match(printed, /error\[E0308\]: mismatched types/, failure("cargo's error is printed"));
        assert.match(printed, /fn broken\(\) -> u32/, "with the offending line");
        assert.equal(await version(), 2, "the host still serves the last good build");
        const after = await join18("after the error");
        assert.deepEqual(await answer(after, "increment", { by: 15 }), { value: 15 }, "a new room gets the last good build");
    });

    it("stops the host's process group when it is stopped", { timeout: 30000 }, async () => {
        for (const room of rooms.splice(0)) await room.leave();
        const plugins = out().match(/serves (\S+\/plugins);/)?.[1];
        assert.ok(plugins && existsSync(plugins), failure("the plugins directory is printed"));
        // What Ctrl-C does: SIGINT to the terminal's foreground group, the script's.
        process.kill(-dev.pid, "SIGINT");
        await until("just dev to exit", () => exited !== null, 15000);
        assert.equal(exited.code, 0, failure(`a Ctrl-C is a clean stop: exit ${JSON.stringify(exited)}`));
        const alive = () => {
            try {
                process.kill(-hostPid, 0);
                return true;
            } catch (e) {
                assert.equal(e.code, "ESRCH");
                return false;
            }
        };
        assert.equal(alive(), false, failure("the host's process group is gone"));
        assert.match(out(), new RegExp(`dev: stopping odeon-host \\(process group ${hostPid}\\)`));
        await assert.rejects(fetch(`${http()}/odeon/health`), "nothing answers on the port");
        assert.ok(!existsSync(plugins), "its plugins directory is removed");
        hostPid = 0;
    });
});
