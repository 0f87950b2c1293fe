// `just new-room`, as a room author outside this repository uses it: the starter written into a
// temporary directory outside the checkout, built to wasm with its README's command, its own
// `cargo test`, a host serving that .wasm alone, and the generated client/play.mjs (the official
// @colyseus/sdk 0.18) playing it. Every step runs the starter's own files, so any of them
// breaking fails this. Also: new-room refuses a non-empty directory and a name no room can have.
//
// The room's builds share one target directory kept between runs ($CARGO_TARGET_DIR/new-room),
// so the SDK compiles once per machine (about a minute per target), not on every run. The
// starter comes with the workspace's Cargo.lock and cargo runs offline: the same dependency
// versions the workspace is tested with, all already downloaded, and no network. The client's
// @colyseus/sdk is this suite's own installed copy (tests/node_modules), not a fresh npm install.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Host, TESTS_DIR, cleanEnv, spawnGroup } from "./harness.mjs";

const REPO = resolve(TESTS_DIR, "..");
// A dash in the name: the crate's library, and so its .wasm, is hello_room.
const NAME = "hello-room";
const WASM = "hello_room.wasm";
const TARGET_DIR = join(resolve(process.env.CARGO_TARGET_DIR ?? join(REPO, "target")), "new-room");
const BUILD_MS = 10 * 60 * 1000;

/** Runs `cmd` in a process group of its own; its exit and output. Killed after `timeoutMs`. */
function run(cmd, args, { cwd, env, timeoutMs }) {
    return new Promise((resolveRun) => {
        const child = spawnGroup(cmd, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        child.stdout.on("data", (c) => { out += c; });
        child.stderr.on("data", (c) => { out += c; });
        const timer = setTimeout(() => {
            out += `\n[killed after ${timeoutMs} ms]`;
            try { process.kill(-child.pid, "SIGKILL"); } catch { /* already gone */ }
        }, timeoutMs);
        child.on("error", (err) => { out += `\ncannot start ${cmd}: ${err.message}`; });
        child.on("close", (code, signal) => {
            clearTimeout(timer);
            resolveRun({ code, signal, out });
        });
    });
}

/** `run`, failing unless it exits 0; its output. */
async function runOk(cmd, args, opts) {
    const { code, signal, out } = await run(cmd, args, opts);
    assert.equal(code, 0, `\`${cmd} ${args.join(" ")}\` in ${opts.cwd} exited ${code ?? signal}:\n${out.slice(-6000)}`);
    return out;
}

/** The one command of the sh block under `## heading` in the generated README, as argv. */
function readmeCommand(readme, heading) {
    const section = readme.split(/^## /m).find((s) => s.startsWith(`${heading}\n`));
    assert.ok(section, `the README has a "## ${heading}" section`);
    const block = section.match(/```sh\n([^\n]+)\n```/);
    assert.ok(block, `the README's "${heading}" section has a one-line sh block:\n${section}`);
    return block[1].split(/\s+/);
}

describe("just new-room: a room crate outside the repository, built, tested, served and played", () => {
    const tmp = mkdtempSync(join(tmpdir(), "odeon-new-room-"));
    const dir = join(tmp, NAME);
    const pluginsDir = join(tmp, "plugins");
    // cargo with the toolchain's environment, offline, into the shared target directory.
    const cargoEnv = { ...process.env, CARGO_TARGET_DIR: TARGET_DIR, CARGO_NET_OFFLINE: "true" };
    let readme = "";
    let host = null;
    before(() => mkdirSync(pluginsDir));
    after(async () => {
        await host?.stop();
        rmSync(tmp, { recursive: true, force: true });
    });

    it("writes the crate, refusing a non-empty directory and a bad name", { timeout: 60000 }, async () => {
        assert.ok(!tmp.startsWith(`${REPO}/`), `${tmp} is outside the checkout`);
        await runOk("just", ["new-room", dir], { cwd: REPO, env: process.env, timeoutMs: 30000 });
        for (const file of ["Cargo.toml", "rust-toolchain.toml", "src/lib.rs", "README.md", ".gitignore", "client/package.json", "client/play.mjs"]) {
            assert.ok(existsSync(join(dir, file)), `new-room wrote ${file}`);
        }
        const manifest = readFileSync(join(dir, "Cargo.toml"), "utf8");
        assert.match(manifest, /^name = "hello-room"$/m);
        assert.match(manifest, /^crate-type = \["cdylib", "rlib"\]$/m);
        assert.ok(manifest.includes(`odeon-guest = { path = "${REPO}/guest-sdk" }`), `the SDK by this checkout's path:\n${manifest}`);
        assert.match(manifest, /^\[workspace\]$/m, "a workspace of its own");
        assert.match(manifest, /^\[profile\.wasm\]\ninherits = "release"$/m);
        assert.equal(readFileSync(join(dir, "rust-toolchain.toml"), "utf8"), readFileSync(join(REPO, "rust-toolchain.toml"), "utf8"));
        assert.match(readFileSync(join(dir, "src/lib.rs"), "utf8"), /const NAME: &'static str = "hello-room";/);
        // The client pins the @colyseus/sdk this suite tests (tests/package.json's sdk18), unlocked.
        const sdk18 = JSON.parse(readFileSync(join(TESTS_DIR, "package.json"), "utf8")).devDependencies.sdk18;
        const client = JSON.parse(readFileSync(join(dir, "client/package.json"), "utf8"));
        assert.equal(`npm:@colyseus/sdk@${client.dependencies["@colyseus/sdk"]}`, sdk18);
        assert.ok(!existsSync(join(dir, "client/package-lock.json")), "no npm lockfile");
        assert.equal(readFileSync(join(dir, "Cargo.lock"), "utf8"), readFileSync(join(REPO, "Cargo.lock"), "utf8"), "the workspace's Cargo.lock, so it builds offline with the versions Odeon is tested with");
        readme = readFileSync(join(dir, "README.md"), "utf8");

        // Not over a crate, nor with a name that cannot be a room type's or a crate's.
        const again = await run("just", ["new-room", dir], { cwd: REPO, env: process.env, timeoutMs: 30000 });
        assert.notEqual(again.code, 0);
        assert.match(again.out, /already exists and is not empty/);
        for (const bad of ["Hello", "9lives", "fn"]) {
            const refused = await run("just", ["new-room", join(tmp, bad)], { cwd: REPO, env: process.env, timeoutMs: 30000 });
            assert.notEqual(refused.code, 0, `"${bad}" is refused`);
            assert.match(refused.out, new RegExp(`"${bad}" (cannot name a room|is a Rust keyword)`));
            assert.ok(!existsSync(join(tmp, bad)), `nothing written for "${bad}"`);
        }
    });

    it("builds to wasm with its README's command", { timeout: BUILD_MS + 10000 }, async () => {
        assert.ok(readme, "the crate was written");
        const [cmd, ...args] = readmeCommand(readme, "Build");
        assert.deepEqual([cmd, ...args], ["cargo", "build", "--target", "wasm32-wasip1", "--profile", "wasm"]);
        await runOk(cmd, args, { cwd: dir, env: cargoEnv, timeoutMs: BUILD_MS });
        assert.ok(readme.includes(`target/wasm32-wasip1/wasm/${WASM}`), "the README says where the .wasm lands");
        copyFileSync(join(TARGET_DIR, "wasm32-wasip1", "wasm", WASM), join(pluginsDir, WASM));
    });

    it("passes its own cargo test", { timeout: BUILD_MS + 10000 }, async () => {
        const [cmd, ...args] = readmeCommand(readme, "Test");
        assert.deepEqual([cmd, ...args], ["cargo", "test"]);
        const out = await runOk(cmd, args, { cwd: dir, env: cargoEnv, timeoutMs: BUILD_MS });
        // The starter's TestRoom tests ran, and all passed.
        assert.match(out, /test result: ok\. [1-9]\d* passed; 0 failed/);
    });

    it("with a git URL, depends on the SDK by that URL and builds", { timeout: BUILD_MS + 10000 }, async () => {
        // This checkout as the git repository (CI's is a clone of main): cargo clones it locally.
        const fromGit = join(tmp, "from-git");
        const url = `file://${REPO}`;
        await runOk("just", ["new-room", fromGit, url], { cwd: REPO, env: process.env, timeoutMs: 30000 });
        const manifest = readFileSync(join(fromGit, "Cargo.toml"), "utf8");
        assert.ok(manifest.includes(`odeon-guest = { git = "${url}" }`), `the SDK by git URL:\n${manifest}`);
        // A git source is fetched even with a lockfile, so not offline; the crates.io packages
        // come from the lockfile and the local cache.
        const env = { ...cargoEnv, CARGO_NET_OFFLINE: "false" };
        await runOk("cargo", ["check", "--target", "wasm32-wasip1", "--profile", "wasm"], { cwd: fromGit, env, timeoutMs: BUILD_MS });
        const lock = readFileSync(join(fromGit, "Cargo.lock"), "utf8");
        assert.match(lock, /name = "odeon-guest"\nversion = "[^"]+"\nsource = "git\+file:\/\//, "odeon-guest comes from the git URL");
    });

    it("is served by a host and played by its client script", { timeout: 60000 }, async () => {
        host = new Host({ profile: "0.18", pluginsDir, requiredPlugins: [WASM], label: "host (new room)" });
        await host.start();
        const health = await (await fetch(`${host.http}/odeon/health`)).json();
        assert.deepEqual(health.roomTypes.map((t) => t.name), [NAME]);

        // The client's one dependency, from this suite's node_modules: npm's alias directory is
        // the package itself, and its own dependencies resolve from where it really lives.
        mkdirSync(join(dir, "client/node_modules/@colyseus"), { recursive: true });
        symlinkSync(join(TESTS_DIR, "node_modules/sdk18"), join(dir, "client/node_modules/@colyseus/sdk"), "dir");
        const play = ["play.mjs", host.endpoint];
        const played = await run("node", play, { cwd: join(dir, "client"), env: cleanEnv(), timeoutMs: 45000 });
        assert.equal(played.code, 0, `play.mjs exited ${played.code ?? played.signal}:\n${played.out}\n--- host ---\n${host.logTail(40)}`);
        assert.match(played.out, /request\("stats"\) answered \{"count":5,"players":1\}/);
        assert.match(played.out, /all as expected/);
        assert.ok(host.alive, "the host is still up");

        // And the script says so when it cannot play: no server, a non-zero exit with the reason.
        await host.stop();
        const refused = await run("node", play, { cwd: join(dir, "client"), env: cleanEnv(), timeoutMs: 45000 });
        assert.equal(refused.code, 1, refused.out);
        assert.match(refused.out, /play\.mjs failed: /);
    });
});
