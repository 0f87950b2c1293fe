// What one unauthenticated client can make a host hold, found by attacking it (issue 21): each
// test is an attack, checked at its boundary, and a bystander who keeps playing throughout.
// Attacks come from addresses of their own in 127.0.0.0/8, so per-address throttles of one test
// never touch another's.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Host, PLUGINS_DIR, PLUGIN_VARIANTS_DIR, RawClient, hostTest, matchmake, reservationTarget, sleep, uniq, until } from "./harness.mjs";
import { SDK18 as sdk } from "./sdks.mjs";

const TOKEN = "9f2c41e7b0a85d36c1e4f7a2";

/** The host's resident memory, in bytes. */
function rss(host) {
    const status = readFileSync(`/proc/${host.child.pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) * 1024;
}

/**
 * A raw TCP connection to `host` (from `localAddress`), for requests no HTTP client would send.
 * `head()` resolves with the status and headers once they have arrived; `closed` when the host
 * has closed the socket.
 */
function rawConn(host, localAddress = "127.0.0.1") {
    const sock = net.connect({ port: host.port, host: "127.0.0.1", localAddress });
    let buf = Buffer.alloc(0);
    let waiting = [];
    const closed = new Promise((r) => sock.on("close", r));
    sock.on("error", () => {});
    sock.on("data", (d) => {
        buf = Buffer.concat([buf, d]);
        waiting = waiting.filter((w) => !w());
    });
    const opened = new Promise((r, j) => { sock.once("connect", r); sock.once("error", j); });
    return {
        sock,
        opened,
        closed,
        get received() { return buf; },
        write: (data) => new Promise((r) => sock.write(data, () => r())),
        head(ms = 3000) {
            return new Promise((resolveHead, reject) => {
                const timer = setTimeout(() => reject(new Error(`no response head within ${ms} ms`)), ms);
                const check = () => {
                    const end = buf.indexOf("\r\n\r\n");
                    if (end < 0) return false;
                    clearTimeout(timer);
                    const [status, ...lines] = buf.subarray(0, end).toString().split("\r\n");
                    const headers = {};
                    for (const l of lines) {
                        const i = l.indexOf(":");
                        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
                    }
                    resolveHead({ status: Number(status.split(" ")[1]), headers, rest: buf.subarray(end + 4) });
                    return true;
                };
                if (!check()) waiting.push(check);
            });
        },
        destroy: () => sock.destroy(),
    };
}

/** A request's head, as bytes. */
function requestHead(method, path, headers = {}) {
    const lines = [`${method} ${path} HTTP/1.1`, "Host: 127.0.0.1", ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    return Buffer.from(lines.join("\r\n") + "\r\n\r\n");
}

/** A bystander playing in an echo room of its own: `check()` round-trips a message. */
async function bystander(s) {
    const p = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq("bystander") }, { label: "bystander" });
    await p.nextMsg("welcome");
    let n = 0;
    return {
        async check(what) {
            n += 1;
            assert.deepEqual(await p.roundTrip("echo", { n }), { n }, `the bystander kept playing ${what}`);
        },
    };
}

/** A WebSocket upgrade request for a seat (or another path). */
function upgradeHead(path, extra = {}) {
    return requestHead("GET", path, {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        ...extra,
    });
}

describe("hardening: a host attacked by one client (odeon-host --protocol 0.18)", () => {
    const host = new Host({
        profile: "0.18",
        label: "host (hardening)",
        extraArgs: ["--admin-token", TOKEN, "--body-timeout-ms", "1500", "--max-messages-per-sec", "0"],
    });
    const closed = new Host({ profile: "0.18", label: "host (admin off)", extraArgs: ["--cors-origins", "https://a.example"] });
    before(async () => { await Promise.all([host.start(), closed.start()]); });
    after(async () => { await Promise.all([host.stop(), closed.stop()]); });
    const test = (name, fn, opts) => hostTest(() => host, `[hardening] ${name}`, fn, opts);

    test("an unauthenticated upload is answered from its headers, and nothing of its body is read or held", async (s) => {
        const b = await bystander(s);
        for (const [target, expected, from] of [[host, 401, "127.0.0.10"], [closed, 404, "127.0.0.11"]]) {
            const before = rss(target);
            const conns = [];
            for (let i = 0; i < 20; i++) {
                const c = rawConn(target, from);
                s.onClose(() => c.destroy());
                await c.opened;
                // 32 MiB announced; 256 KiB sent before the answer is awaited.
                await c.write(requestHead("POST", "/odeon/admin/plugins", {
                    "Content-Length": String(32 << 20),
                    Authorization: "Bearer wrong-token-guess",
                }));
                c.sock.write(Buffer.alloc(256 << 10));
                conns.push(c);
            }
            for (const c of conns) {
                const head = await c.head(4000);
                assert.ok(head.status === expected || head.status === 429, `status ${head.status}`);
                assert.equal(head.headers.connection, "close");
            }
            // The rest of each body would have been read before: 20 × 4 MiB more.
            for (const c of conns) for (let k = 0; k < 16; k++) c.sock.write(Buffer.alloc(256 << 10));
            await Promise.all(conns.map((c) => Promise.race([c.closed, sleep(3000)])));
            assert.ok(conns.every((c) => c.sock.destroyed || c.sock.readableEnded), "the host closed every connection");
            const grown = rss(target) - before;
            assert.ok(grown < 16 << 20, `the host grew by ${(grown / 1048576).toFixed(1)} MiB for 20 refused uploads`);
        }
        await b.check("through the upload flood");
    }, { timeout: 40000 });

    test("the admin token: any case of Bearer, failures answered late and then refused per address", async () => {
        const rooms = (auth, localAddress) => new Promise((resolveRes, reject) => {
            const c = rawConn(host, localAddress);
            c.opened.then(() => c.write(requestHead("GET", "/odeon/admin/rooms", auth ? { Authorization: auth } : {})));
            c.head(5000).then((h) => { c.destroy(); resolveRes(h.status); }, reject);
        });
        assert.equal(await rooms(`bearer ${TOKEN}`, "127.0.0.12"), 200);
        assert.equal(await rooms(`BEARER ${TOKEN}`, "127.0.0.12"), 200);
        const t0 = Date.now();
        for (let i = 0; i < 10; i++) assert.equal(await rooms(`Bearer guess-${i}`, "127.0.0.12"), 401);
        assert.ok(Date.now() - t0 >= 10 * 200, `10 failures took only ${Date.now() - t0} ms`);
        // The 11th attempt is not even checked, right token or not.
        assert.equal(await rooms(`Bearer ${TOKEN}`, "127.0.0.12"), 429);
        assert.equal(await rooms(`Bearer ${TOKEN}`, "127.0.0.13"), 200, "another address is unaffected");
    }, { timeout: 20000 });

    test("a weak admin token is accepted with a warning at start", async () => {
        const weak = await new Host({ profile: "0.18", label: "host (weak token)", extraArgs: ["--admin-token", "secret"] }).start();
        try {
            await until("the warning", () => /admin token is weak/.test(weak.logTail()), 3000);
        } finally {
            await weak.stop();
        }
    });

    test("a matchmaking body that never completes is answered 408 at its deadline; a limited address is refused before its body", async (s) => {
        const b = await bystander(s);
        const c = rawConn(host, "127.0.0.14");
        s.onClose(() => c.destroy());
        await c.opened;
        const t0 = Date.now();
        await c.write(requestHead("POST", "/matchmake/joinOrCreate/echo", { "Content-Length": "100", "Content-Type": "application/json" }));
        await c.write("{\"mode\": \"");
        const head = await c.head(5000);
        assert.equal(head.status, 408);
        const waited = Date.now() - t0;
        assert.ok(waited >= 1400 && waited < 4000, `answered after ${waited} ms (deadline 1500 ms)`);
        await Promise.race([c.closed, sleep(2000)]);
        assert.ok(c.sock.destroyed || c.sock.readableEnded, "the connection is closed");
        await b.check("while a body stalled");

        const limited = await new Host({ profile: "0.18", label: "host (rate 1)", extraArgs: ["--matchmake-rate", "1"] }).start();
        try {
            const stalled = [];
            for (let i = 0; i < 3; i++) {
                const st = rawConn(limited, "127.0.0.15");
                s.onClose(() => st.destroy());
                await st.opened;
                await st.write(requestHead("POST", "/matchmake/joinOrCreate/echo", { "Content-Length": "100" }));
                stalled.push(st);
            }
            // Bursts of two: whichever arrives third is refused from its headers alone, at once;
            // the two within the limit wait for their bodies.
            const heads = await Promise.allSettled(stalled.map((st) => st.head(1200)));
            const answered = heads.filter((h) => h.status === "fulfilled").map((h) => h.value.status);
            assert.deepEqual(answered, [429], JSON.stringify(heads.map((h) => h.value?.status ?? "waiting")));
        } finally {
            await limited.stop();
        }
    });

    test("a ping flood closes the flooding client with 1008, its pongs are not queued, and others play on", async (s) => {
        const b = await bystander(s);
        const r = await matchmake(host, "joinOrCreate", "echo", { mode: uniq("pings") });
        const t = reservationTarget(r.body);
        const c = rawConn(host, "127.0.0.16");
        s.onClose(() => c.destroy());
        await c.opened;
        await c.write(upgradeHead(`/${t.processId}/${t.roomId}?sessionId=${t.sessionId}`));
        assert.equal((await c.head()).status, 101);
        const before = rss(host);
        // Empty masked pings as fast as the socket takes them, never reading the pongs.
        c.sock.pause();
        const ping = Buffer.from([0x89, 0x80, 1, 2, 3, 4]);
        const flood = Buffer.concat(Array.from({ length: 20000 }, () => ping));
        c.sock.write(flood);
        await sleep(1500);
        c.sock.resume();
        await Promise.race([c.closed, sleep(5000)]);
        // What the host sent after the 101: pongs (0x8a), then a close frame (0x88) with 1008.
        const all = c.received;
        const body = all.subarray(all.indexOf("\r\n\r\n") + 4);
        let pongs = 0;
        let closeCode = null;
        for (let i = 0; i + 1 < body.length; i += 2 + (body[i + 1] & 0x7f)) {
            if (body[i] === 0x8a) pongs += 1;
            if (body[i] === 0x88) closeCode = body.readUInt16BE(i + 2);
        }
        assert.equal(closeCode, 1008, `closed for policy violation (${body.length} bytes after the head)`);
        assert.ok(pongs < 200, `the host answered ${pongs} pings of 20 000`);
        assert.ok(rss(host) - before < 16 << 20, "the flood made the host hold memory");
        await b.check("through the ping flood");
    });

    test("a room path naming another process is refused before the upgrade; the seat still works", async (s) => {
        const r = await matchmake(host, "joinOrCreate", "echo", { mode: uniq("pid") });
        const t = reservationTarget(r.body);
        const c = rawConn(host);
        s.onClose(() => c.destroy());
        await c.opened;
        await c.write(upgradeHead(`/notThisOne/${t.roomId}?sessionId=${t.sessionId}`));
        const head = await c.head();
        assert.equal(head.status, 404);
        const raw = s.trackRaw(await RawClient.fromReservation(host, r.body));
        assert.deepEqual((await raw.echo("mine")).payload, "mine");
    });

    test("CORS headers are on matchmaking only, with Vary: Origin, never for a null or unlisted Origin", async () => {
        const ask = async (target, method, path, origin, extra = {}) => {
            const c = rawConn(target);
            await c.opened;
            await c.write(requestHead(method, path, { Origin: origin, ...extra }));
            const h = await c.head();
            c.destroy();
            return h;
        };
        const pre = await ask(host, "OPTIONS", "/matchmake/joinOrCreate/echo", "https://game.example");
        assert.equal(pre.headers["access-control-allow-origin"], "https://game.example");
        assert.equal(pre.headers["access-control-allow-credentials"], "true");
        assert.match(pre.headers.vary ?? "", /origin/i);
        const nul = await ask(host, "OPTIONS", "/matchmake/joinOrCreate/echo", "null");
        assert.equal(nul.headers["access-control-allow-origin"], undefined);
        assert.match(nul.headers.vary ?? "", /origin/i);
        for (const path of ["/odeon/health", "/odeon/admin/rooms", "/nowhere"]) {
            const h = await ask(host, "GET", path, "https://game.example", { Authorization: `Bearer ${TOKEN}` });
            assert.equal(h.headers["access-control-allow-origin"], undefined, path);
        }
        const r = await matchmake(host, "joinOrCreate", "echo", { mode: uniq("cors") });
        const t = reservationTarget(r.body);
        const up = await ask(host, "GET", `/${t.processId}/${t.roomId}?sessionId=${t.sessionId}`, "https://game.example", {
            Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        });
        assert.equal(up.status, 101);
        assert.equal(up.headers["access-control-allow-origin"], undefined, "no CORS on the upgrade");
        // --cors-origins: only the listed origins.
        assert.equal((await ask(closed, "OPTIONS", "/matchmake/create/echo", "https://a.example")).headers["access-control-allow-origin"], "https://a.example");
        assert.equal((await ask(closed, "OPTIONS", "/matchmake/create/echo", "https://b.example")).headers["access-control-allow-origin"], undefined);
    });
});

describe("hardening: session takeovers need a session the auth hook proved", () => {
    // echo's test-only `trusted-sessions` build, as `echo`: its `{sessionAs}` counts as proven.
    const dir = mkdtempSync(join(tmpdir(), "odeon-sessions-"));
    copyFileSync(resolve(PLUGIN_VARIANTS_DIR, "echo-sessions.wasm"), join(dir, "echo.wasm"));
    copyFileSync(resolve(PLUGINS_DIR, "faults.wasm"), join(dir, "faults.wasm"));
    const host = new Host({ profile: "0.18", label: "host (proven sessions)", pluginsDir: dir });
    before(async () => { await host.start(); });
    after(async () => { await host.stop(); rmSync(dir, { recursive: true, force: true }); });
    const test = (name, fn, opts) => hostTest(() => host, `[hardening] ${name}`, fn, opts);

    test("a second seat for a proven session replaces the first: the room sees it leave, then join", async (s) => {
        const mode = uniq("dup");
        const c = await s.join(sdk, "create", "echo", { mode }, { label: "C" });
        await c.nextMsg("welcome");
        const first = await s.join(sdk, "joinOrCreate", "echo", { mode, sessionAs: "dupSessn1" }, { label: "A1" });
        assert.equal(first.room.sessionId, "dupSessn1");
        assert.deepEqual(await c.nextMsg("joined"), { sessionId: "dupSessn1" });
        sdk.disableAutoReconnect(first.room);
        const second = await s.join(sdk, "joinOrCreate", "echo", { mode, sessionAs: "dupSessn1" }, { label: "A2" });
        assert.equal(second.roomId, first.roomId);
        assert.equal((await first.next("leave")).code, 4002, "the first connection is closed");
        assert.deepEqual(await c.nextMsg("left"), { sessionId: "dupSessn1" });
        assert.deepEqual(await c.nextMsg("joined"), { sessionId: "dupSessn1" });
        assert.deepEqual(await second.roundTrip("count"), { clients: 2 });
    });
});
