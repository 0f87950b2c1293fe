// Shared harness for the Odeon end-to-end tests.
//
// - starts the real host binary on a free loopback port and stops it by PID;
// - wraps node:test cases with a hard timeout, per-test cleanup and the host's
//   stderr tail on failure;
// - an Inbox that records everything an SDK room reports (messages, leave,
//   drop, reconnect, error) and lets tests wait for / assert the absence of items;
// - re-exported from raw-client.mjs: the Colyseus frame codecs and a tiny raw WebSocket
//   client speaking them with plain MessagePack (no msgpackr records);
// - the per-profile expectations (error codes, reservation shape, JOIN_ROOM tail).

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { it } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { RawClient } from "./raw-client.mjs";

export * from "./raw-client.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
export const TESTS_DIR = resolve(HERE, "..");

export const HOST_BIN = process.env.ODEON_HOST_BIN
    ? resolve(process.env.ODEON_HOST_BIN)
    : resolve(TESTS_DIR, "../target/debug/odeon-host");
export const PLUGINS_DIR = process.env.ODEON_PLUGINS_DIR
    ? resolve(process.env.ODEON_PLUGINS_DIR)
    : resolve(TESTS_DIR, "../target/plugins");
// Other builds of the example plugins (`just plugins` writes echo-v2.wasm here).
export const PLUGIN_VARIANTS_DIR = process.env.ODEON_PLUGIN_VARIANTS_DIR
    ? resolve(process.env.ODEON_PLUGIN_VARIANTS_DIR)
    : resolve(PLUGINS_DIR, "../plugin-variants");

/** Default per-test budget (ms). node:test gets a few seconds more so our own timer fires first. */
export const TEST_TIMEOUT = 20000;
/** How long a host may take to answer its first health check. */
const STARTUP_MS = 30000;

// ---------------------------------------------------------------------------
// Per-profile expectations (colyseus-behaviour-notes.md)
// ---------------------------------------------------------------------------

export const PROFILES = {
    "0.16": {
        profile: "0.16",
        // matchmaking errors: HTTP 200 with body {code, error}
        codes: { noHandler: 4210, invalidCriteria: 4211, invalidRoomId: 4212, unhandled: 4213, expired: 4214, authFailed: 4215 },
        httpStatusForError: () => 200,
        // ERROR frame code for a WebSocket without a seat reservation
        wsSeatExpiredCode: 0,
        reservation: "nested",
        joinRoomTail: [],
        ping: false,
    },
    "0.17": {
        profile: "0.17",
        codes: { noHandler: 520, invalidCriteria: 521, invalidRoomId: 522, unhandled: 523, expired: 524, authFailed: 525 },
        httpStatusForError: (code) => code,
        wsSeatExpiredCode: 524,
        reservation: "flat",
        joinRoomTail: [],
        ping: true,
    },
    "0.18": {
        profile: "0.18",
        codes: { noHandler: 520, invalidCriteria: 521, invalidRoomId: 522, unhandled: 523, expired: 524, authFailed: 525 },
        httpStatusForError: (code) => code,
        wsSeatExpiredCode: 524,
        reservation: "flat",
        joinRoomTail: [0x00],
        ping: true,
    },
};

export const MSG = {
    noRooms: "no rooms found with provided criteria",
    roomNotFound: (id) => `room "${id}" not found`,
    roomLocked: (id) => `room "${id}" is locked`,
    roomNotDefined: (name) => `provided room name "${name}" not defined`,
    authFailed: "onAuth failed",
    invalidMethod: (m) => `invalid method "${m}"`,
    reconnectBadToken: "reconnection token invalid or expired.",
    reconnectNoToken: "'reconnectionToken' must be provided for reconnection.",
    seatExpired: "seat reservation expired.",
    undefinedHandler: 'room onMessage for "undefined" not registered.',
    uptimeTooShort: "Room uptime too short for reconnection.",
};

export const ID_RE = /^[A-Za-z0-9_-]{9}$/;

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Race a promise against a timer; rejects with a descriptive error. */
export function waitFor(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    });
    return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

let uniqCounter = 0;
/** A unique filter value so that tests never share rooms by accident. */
/** Waits until `predicate()` (sync or async) holds, polling every 20 ms; fails after `ms`. */
export async function until(what, predicate, ms = 5000) {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
        if (await predicate()) return;
        await sleep(20);
    }
    assert.fail(`timed out: ${what}`);
}

/** Every player's position in an arena-like `room.state.players`, by session. */
export function positions(room) {
    const out = {};
    room.state.players.forEach((p, key) => { out[key] = { x: p.x, y: p.y }; });
    return out;
}

export function uniq(prefix = "m") {
    uniqCounter += 1;
    return `${prefix}-${process.pid}-${uniqCounter}-${Math.random().toString(36).slice(2, 8)}`;
}

export const hex = (buf) => Buffer.from(buf).toString("hex").replace(/(..)/g, "$1 ").trim();

/** Pick a free loopback port: bind port 0, read it, close. */
export function freePort() {
    return new Promise((resolvePort, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const { port } = srv.address();
            srv.close(() => resolvePort(port));
        });
    });
}

// ---------------------------------------------------------------------------
// Host process
// ---------------------------------------------------------------------------

/**
 * The environment a process under test gets: PATH, HOME and the temp dir, nothing else from the
 * developer's shell (REDIS_URL, MONGO_URI, NODE_APP_INSTANCE, PORT and ODEON_* would change what
 * a host does). `ODEON_TEST_RUST_LOG` becomes the host's RUST_LOG.
 */
export function cleanEnv(extra = {}) {
    const env = { NO_COLOR: "1" };
    for (const k of ["PATH", "HOME", "TMPDIR", "LANG"]) {
        if (process.env[k] !== undefined) env[k] = process.env[k];
    }
    if (process.env.ODEON_TEST_RUST_LOG) env.RUST_LOG = process.env.ODEON_TEST_RUST_LOG;
    return { ...env, ...extra };
}

// Every process group a test started, so they are killed even when the test file crashes.
const GROUPS = new Set();
const killGroups = () => {
    for (const pid of GROUPS) {
        try { process.kill(-pid, "SIGKILL"); } catch { /* already gone */ }
    }
    GROUPS.clear();
};
process.on("exit", killGroups);
for (const signal of ["SIGINT", "SIGTERM"]) {
    process.on(signal, () => { killGroups(); process.exit(128 + (signal === "SIGINT" ? 2 : 15)); });
}

/**
 * Spawns `cmd` as the leader of a process group of its own (so a signal to the group reaches
 * whatever it starts), remembered until it exits and killed by group when this process exits.
 */
export function spawnGroup(cmd, args, options = {}) {
    const child = spawn(cmd, args, { ...options, detached: true });
    if (child.pid !== undefined) {
        GROUPS.add(child.pid);
        child.on("exit", () => GROUPS.delete(child.pid));
    }
    return child;
}

export class Host {
    // `requiredPlugins`: the files that must be in `pluginsDir` before the host starts (a missing
    // build fails the test at once, with the path, rather than as a room type nobody serves).
    constructor({
        profile, seatReservationSecs, extraArgs = [], label, pluginsDir = PLUGINS_DIR, env = {},
        requiredPlugins = ["echo.wasm", "faults.wasm"],
    } = {}) {
        this.profile = profile;
        this.env = env;
        this.pluginsDir = pluginsDir;
        this.requiredPlugins = requiredPlugins;
        this.seatReservationSecs = seatReservationSecs;
        this.extraArgs = extraArgs;
        this.label = label ?? `host ${profile}`;
        this.logs = [];
        this.child = null;
        this.port = 0;
        this.processId = null;
        this.exited = null;
    }

    get http() { return `http://127.0.0.1:${this.port}`; }
    get endpoint() { return `ws://127.0.0.1:${this.port}`; }

    logTail(lines = 150) {
        // strip ANSI colour codes in case the logger ignores NO_COLOR
        const all = this.logs.join("").replace(/\x1b\[[0-9;]*m/g, "").split("\n");
        return all.slice(-lines).join("\n");
    }

    async start() {
        if (!existsSync(HOST_BIN)) {
            throw new Error(`host binary not found: ${HOST_BIN} (build it, or set ODEON_HOST_BIN)`);
        }
        for (const p of this.requiredPlugins) {
            if (!existsSync(resolve(this.pluginsDir, p))) {
                throw new Error(`plugin not found: ${resolve(this.pluginsDir, p)} (set ODEON_PLUGINS_DIR)`);
            }
        }
        // `reusePort`: a restart keeps the port, as PM2 restarts a process on its port.
        if (!(this.reusePort && this.port)) this.port = await freePort();
        const args = [
            "--bind", "127.0.0.1",
            "--port", String(this.port),
            "--plugins", this.pluginsDir,
            "--protocol", this.profile,
        ];
        if (this.seatReservationSecs !== undefined) {
            args.push("--seat-reservation-secs", String(this.seatReservationSecs));
        }
        // Every test client comes from 127.0.0.1 and some tests flood on purpose: the rate limits
        // are off unless a test sets them (limits.test.mjs probes them at their boundaries).
        for (const flag of ["--matchmake-rate", "--room-creates-per-min", "--max-messages-per-sec"]) {
            if (!this.extraArgs.includes(flag)) args.push(flag, "0");
        }
        args.push(...this.extraArgs);
        this.args = args;

        this.exited = null; // a restart starts a new process
        this.child = spawnGroup(HOST_BIN, args, { stdio: ["ignore", "pipe", "pipe"], env: cleanEnv(this.env) });
        const verbose = !!process.env.ODEON_TEST_VERBOSE;
        const capture = (chunk) => {
            const s = chunk.toString();
            this.logs.push(s);
            if (verbose) process.stderr.write(`[${this.label}] ${s}`);
        };
        this.child.stdout.on("data", capture);
        this.child.stderr.on("data", capture);
        this.exitPromise = new Promise((r) => {
            this.child.on("exit", (code, signal) => {
                this.exited = { code, signal };
                r(this.exited);
            });
            this.child.on("error", (err) => {
                this.logs.push(`spawn error: ${err.message}\n`);
                this.exited = { code: null, signal: null, error: err };
                r(this.exited);
            });
        });

        // The host compiles every plugin before it listens (about 1-2 s each for the eight
        // example rooms on a loaded 2-core machine): a start takes up to ~20 s there.
        const deadline = Date.now() + STARTUP_MS;
        let lastErr = "no answer yet";
        while (Date.now() < deadline) {
            if (this.exited) {
                throw new Error(`${this.label} exited early (${JSON.stringify(this.exited)}) while starting: ${HOST_BIN} ${args.join(" ")}\n--- host output ---\n${this.logTail()}`);
            }
            try {
                const res = await fetch(`${this.http}/odeon/health`, { signal: AbortSignal.timeout(1000) });
                const text = await res.text();
                if (res.status === 200) {
                    const body = JSON.parse(text);
                    if (body.status === "ok" && typeof body.processId === "string") {
                        this.processId = body.processId;
                        return this;
                    }
                    lastErr = `unexpected health body ${text}`;
                } else {
                    lastErr = `health status ${res.status} ${text}`;
                }
            } catch (e) {
                lastErr = e.message;
            }
            await sleep(100);
        }
        await this.stop();
        throw new Error(`${this.label} did not answer GET /odeon/health within ${STARTUP_MS / 1000} s (${lastErr}): ${HOST_BIN} ${args.join(" ")}\n--- host output ---\n${this.logTail()}`);
    }

    /** Stop by PID: SIGTERM, then SIGKILL after 3 s. */
    async stop() {
        if (!this.child || this.exited) return;
        this.child.kill("SIGTERM");
        const killed = await Promise.race([this.exitPromise, sleep(3000).then(() => null)]);
        if (!killed && !this.exited) {
            this.child.kill("SIGKILL");
            await Promise.race([this.exitPromise, sleep(2000)]);
        }
    }

    /** True while the process is alive (a fault must never take the host down). */
    get alive() { return this.child && !this.exited; }
}

/** Start a host in `before` and stop it in `after` of the enclosing describe. */
export function useHost(hooks, opts) {
    const host = new Host(opts);
    hooks.before(async () => { await host.start(); });
    hooks.after(async () => { await host.stop(); });
    return host;
}

// ---------------------------------------------------------------------------
// Test wrapper: timeout, cleanup, host logs on failure
// ---------------------------------------------------------------------------

/**
 * Define a test with a hard timeout. `fn(s)` receives a Session that tracks
 * every room/socket it opens and closes them afterwards. On failure the
 * error message gets the tail of the host's output appended.
 */
export function hostTest(getHost, name, fn, { timeout = TEST_TIMEOUT, skip } = {}) {
    it(name, { timeout: timeout + 8000, skip }, async () => {
        const host = typeof getHost === "function" ? getHost() : getHost;
        const s = new Session(host);
        let timer;
        try {
            await Promise.race([
                fn(s),
                new Promise((_, reject) => {
                    timer = setTimeout(() => reject(new Error(`test body exceeded ${timeout} ms`)), timeout);
                }),
            ]);
        } catch (err) {
            if (host && host.logs) {
                const extra = `\n--- ${host.label} (port ${host.port}${host.exited ? `, EXITED ${JSON.stringify(host.exited)}` : ""}) output tail ---\n${host.logTail(80)}\n--- end host output ---`;
                try { err.message += extra; } catch { /* frozen error */ }
            }
            throw err;
        } finally {
            clearTimeout(timer);
            await s.close();
        }
    });
}

// ---------------------------------------------------------------------------
// Inbox: everything a room reports, in order
// ---------------------------------------------------------------------------

export const isMsg = (type) => (it) => it.kind === "msg" && it.type === type;
export const isKind = (kind) => (it) => it.kind === kind;

export class Inbox {
    constructor(label) {
        this.label = label;
        this.items = [];
        this.waiters = [];
    }

    push(item) {
        item.at = Date.now();
        item.consumed = false;
        this.items.push(item);
        for (const w of [...this.waiters]) {
            if (!item.consumed && w.match(item)) {
                item.consumed = true;
                this.waiters.splice(this.waiters.indexOf(w), 1);
                w.resolve(item);
            }
        }
    }

    /** Wait for the first not-yet-consumed item that matches; consumes it. */
    next(match, ms = 5000, what = "item") {
        const found = this.items.find((it) => !it.consumed && match(it));
        if (found) {
            found.consumed = true;
            return Promise.resolve(found);
        }
        let waiter;
        const p = new Promise((resolveItem) => {
            waiter = { match, resolve: resolveItem };
            this.waiters.push(waiter);
        });
        return waitFor(p, ms, `${this.label}: ${what}`).catch((err) => {
            const i = this.waiters.indexOf(waiter);
            if (i >= 0) this.waiters.splice(i, 1);
            err.message += `\n  ${this.label} got so far: ${this.describe()}`;
            throw err;
        });
    }

    nextMsg(type, ms = 5000) {
        return this.next(isMsg(type), ms, `message "${type}"`).then((it) => it.payload);
    }

    /** Assert that no not-yet-consumed item matching is present or arrives within `ms`. */
    async none(match, ms, what) {
        const start = this.items.length;
        const already = this.items.filter((it) => !it.consumed && match(it));
        assert.equal(already.length, 0, `${this.label}: expected no ${what}, got ${this.describe(already)}`);
        await sleep(ms);
        const later = this.items.slice(start).filter(match);
        assert.equal(later.length, 0, `${this.label}: expected no ${what} within ${ms} ms, got ${this.describe(later)}`);
    }

    types() {
        return this.items.filter((it) => it.kind === "msg").map((it) => it.type);
    }

    describe(items = this.items) {
        return "[" + items.map((it) => {
            if (it.kind === "msg") {
                const p = it.payload instanceof Uint8Array ? `bytes(${hex(it.payload)})` : JSON.stringify(it.payload);
                return `msg ${it.type} ${p}`;
            }
            if (it.kind === "leave" || it.kind === "drop") return `${it.kind}(${it.code}, ${JSON.stringify(it.reason)})`;
            if (it.kind === "error") return `error(${it.code}, ${JSON.stringify(it.message)})`;
            return it.kind;
        }).join(", ") + "]";
    }
}

/** Subscribe an inbox to a room of any of the three SDKs. */
export function attachInbox(room, label) {
    const inbox = new Inbox(label);
    room.onMessage("*", (type, payload) => inbox.push({ kind: "msg", type, payload }));
    room.onLeave((code, reason) => inbox.push({ kind: "leave", code, reason }));
    room.onError((code, message) => inbox.push({ kind: "error", code, message }));
    if (typeof room.onDrop === "function") room.onDrop((code, reason) => inbox.push({ kind: "drop", code, reason }));
    if (typeof room.onReconnect === "function") room.onReconnect(() => inbox.push({ kind: "reconnect" }));
    return inbox;
}

// ---------------------------------------------------------------------------
// Session: a per-test set of peers, closed afterwards
// ---------------------------------------------------------------------------

let peerCounter = 0;

export class Peer {
    constructor(sdk, client, room, label) {
        this.sdk = sdk;
        this.client = client;
        this.room = room;
        this.label = label;
        this.inbox = attachInbox(room, label);
    }
    get sessionId() { return this.room.sessionId; }
    get roomId() { return this.room.roomId; }
    get ws() { return this.room.connection?.transport?.ws; }
    send(type, payload) { this.room.send(type, payload); }
    nextMsg(type, ms) { return this.inbox.nextMsg(type, ms); }
    next(kind, ms = 5000) { return this.inbox.next(isKind(kind), ms, kind); }
    noMsg(type, ms = 400) { return this.inbox.none(isMsg(type), ms, `message "${type}"`); }
    noKind(kind, ms = 400) { return this.inbox.none(isKind(kind), ms, kind); }
    /** Send and wait for the reply of the same type. */
    async roundTrip(type, payload, ms = 5000) {
        this.send(type, payload);
        return this.nextMsg(type, ms);
    }
    /** Replace the underlying room (0.16 explicit reconnection returns a new Room). */
    replaceRoom(room) {
        this.room = room;
        this.inbox = attachInbox(room, this.label);
    }
}

export class Session {
    constructor(host) {
        this.host = host;
        this.peers = [];
        this.raws = [];
        this.closers = [];
    }

    /** Join with an SDK adapter: method is joinOrCreate | create | join | joinById. */
    async join(sdk, method, nameOrId, options = {}, { label } = {}) {
        const client = sdk.client(this.host);
        const room = await waitFor(client[method](nameOrId, options), 8000, `${sdk.id} ${method}(${nameOrId})`);
        const peer = new Peer(sdk, client, room, label ?? `${sdk.id}#${++peerCounter}`);
        this.peers.push(peer);
        return peer;
    }

    track(peer) { this.peers.push(peer); return peer; }
    trackRaw(raw) { this.raws.push(raw); return raw; }
    onClose(fn) { this.closers.push(fn); }

    async raw(method, roomNameOrId, options = {}, opts = {}) {
        const raw = await RawClient.join(this.host, method, roomNameOrId, options, opts);
        this.raws.push(raw);
        return raw;
    }

    async close() {
        for (const fn of this.closers) {
            try { await fn(); } catch { /* best effort */ }
        }
        await Promise.all(this.peers.map((p) => closePeer(p)));
        for (const r of this.raws) r.terminate();
    }
}

async function closePeer(peer) {
    const room = peer.room;
    if (!room) return;
    if (room.reconnection) room.reconnection.enabled = false;
    const ws = room.connection?.transport?.ws;
    try {
        if (ws && ws.readyState === WebSocket.OPEN) {
            await waitFor(room.leave(true), 2000, "leave");
        }
    } catch { /* fall through to terminate */ }
    try {
        const w = room.connection?.transport?.ws;
        if (w && w.readyState !== WebSocket.CLOSED) w.terminate();
    } catch { /* ignore */ }
}

// ---------------------------------------------------------------------------
// Matchmaking over plain HTTP
// ---------------------------------------------------------------------------

export async function matchmake(host, method, roomNameOrId, body = {}) {
    const res = await fetch(`${host.http}/matchmake/${method}/${roomNameOrId}`, {
        method: "POST",
        headers: { "Accept": "application/json", "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(8000),
    });
    const text = await res.text();
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.status, statusText: res.statusText, body: json, text, headers: res.headers };
}

/** The fields a client needs from a reservation, for either shape. */
export function reservationTarget(res) {
    const room = res.room ?? res;
    return { roomId: room.roomId, processId: room.processId, name: room.name, sessionId: res.sessionId };
}

export async function expectMatchmakeError(host, method, roomNameOrId, body, code, message) {
    const prof = PROFILES[host.profile];
    const r = await matchmake(host, method, roomNameOrId, body);
    assert.equal(r.status, prof.httpStatusForError(code), `HTTP status of POST /matchmake/${method}/${roomNameOrId} (body ${r.text})`);
    assert.deepEqual(r.body, { code, error: message }, `body of POST /matchmake/${method}/${roomNameOrId}`);
    return r;
}

/** Await an SDK matchmaking call that must fail with MatchMakeError(code, message); message null = not checked. */
export async function expectMatchMakeError(s, sdk, promise, code, message, what) {
    const outcome = await waitFor(promise.then((room) => ({ room }), (err) => ({ err })), 8000, what);
    if (outcome.room) {
        s.onClose(() => outcome.room.leave(true));
        assert.fail(`${what}: expected MatchMakeError(${code}, ${JSON.stringify(message)}) but joined room ${outcome.room.roomId}`);
    }
    const err = outcome.err;
    assert.equal(err.name, "MatchMakeError", `${what}: error name (got ${err.name}: ${err.message} code=${err.code})`);
    assert.ok(err instanceof sdk.MatchMakeError, `${what}: instanceof the SDK's MatchMakeError`);
    assert.equal(err.code, code, `${what}: err.code (message ${JSON.stringify(err.message)})`);
    if (message !== null) assert.equal(err.message, message, `${what}: err.message`);
    return err;
}
