// odeon-proxy at the edge: what bad or hostile clients get (clear JSON errors, nothing else
// affected), bounded memory, idle and header timeouts, the connection cap, and TLS through the
// official SDK with a self-signed certificate that is reloaded when its files change.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, renameSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Host, RawClient, TESTS_DIR, hostTest, matchmake, reservationTarget, sleep, uniq } from "./harness.mjs";
import { SDK18 as sdk } from "./sdks.mjs";
import { startRedis } from "./services.mjs";
import { Proxy } from "./proxy.mjs";

/** Writes raw bytes to the proxy and collects what comes back until it closes or `ms` pass. */
function rawExchange(port, bytes, ms = 3000) {
    return new Promise((resolveOut, reject) => {
        const sock = net.connect(port, "127.0.0.1", () => sock.write(bytes));
        let out = "";
        const timer = setTimeout(() => { sock.destroy(); resolveOut({ text: out, closed: false }); }, ms);
        sock.on("data", (c) => { out += c; });
        sock.on("close", () => { clearTimeout(timer); resolveOut({ text: out, closed: true }); });
        sock.on("error", (e) => { if (e.code !== "ECONNRESET") reject(e); });
    });
}

const status = (text) => Number(text.split(" ")[1]);
const jsonBody = (text) => JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4));

/** A WebSocket client written by hand on a net socket, so it can stop reading. */
async function stubbornClient(proxy, reservation) {
    const t = reservationTarget(reservation);
    const sock = net.connect(proxy.port, "127.0.0.1");
    await new Promise((r, j) => { sock.once("connect", r); sock.once("error", j); });
    sock.write(`GET /${t.processId}/${t.roomId}?sessionId=${t.sessionId} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    let head = "";
    await new Promise((r) => {
        const onData = (c) => {
            head += c.toString("latin1");
            if (head.includes("\r\n\r\n")) { sock.off("data", onData); r(); }
        };
        sock.on("data", onData);
    });
    assert.equal(status(head), 101, head);
    // The JOIN_ROOM ack [10], as a masked binary frame; after it, this client never reads again.
    const mask = Buffer.from([1, 2, 3, 4]);
    sock.write(Buffer.from([0x82, 0x81, ...mask, 10 ^ mask[0]]));
    sock.pause();
    return sock;
}

describe("odeon-proxy at the edge: bad input, floods, memory, timeouts", () => {
    let redis, host, proxy, idleProxy;
    before(async () => {
        redis = await startRedis();
        host = await new Host({ profile: "0.18", label: "host (edge)", extraArgs: ["--redis-url", redis.url, "--behind-proxy"] }).start();
        proxy = await new Proxy({
            redisUrl: redis.url, label: "proxy (edge)",
            extraArgs: ["--header-timeout-secs", "2", "--max-connections", "300"],
        }).start();
        idleProxy = await new Proxy({ redisUrl: redis.url, label: "proxy (1 s idle)", extraArgs: ["--idle-timeout-secs", "1"] }).start();
        await proxy.waitForProcesses([host.processId]);
        await idleProxy.waitForProcesses([host.processId]);
    });
    after(async () => {
        await proxy?.stop();
        await idleProxy?.stop();
        await host?.stop();
        await redis?.stop();
    });
    const test = (name, fn, opts) => hostTest(() => proxy, `[proxy edge] ${name}`, fn, opts);

    test("non-WebSocket requests to room paths, unknown paths and unknown processes get JSON errors", async (s) => {
        const get = await fetch(`${proxy.http}/${host.processId}/abcdefghi`);
        assert.equal(get.status, 426);
        assert.equal(get.headers.get("upgrade"), "websocket");
        assert.deepEqual(await get.json(), { error: "room paths take a WebSocket upgrade" });
        for (const path of ["/", "/nope", "/a/b/c", "/matchmakes", "/odeon/admin/plugins/x"]) {
            const res = await fetch(`${proxy.http}${path}`);
            assert.equal(res.status, 404, path);
            assert.match((await res.json()).error, /^not found/, path);
        }
        // The hosts' own endpoints are not reachable through the proxy.
        for (const path of ["/odeon/health", "/odeon/admin"]) {
            const res = await fetch(`${proxy.http}${path}`);
            assert.equal(res.status, 404, path);
            assert.deepEqual(await res.json(), { error: "unknown process odeon: no such game server is running" });
        }
        const ws = await rawExchange(proxy.port, "GET /nosuchproc/abcdefghi HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n" +
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 1000);
        assert.equal(status(ws.text), 404, ws.text);
        assert.deepEqual(jsonBody(ws.text), { error: "unknown process nosuchproc: no such game server is running" });
        // Garbage instead of HTTP: a 400 and the connection is closed.
        const junk = await rawExchange(proxy.port, "\x16\x03\x01 definitely not http\r\n\r\n");
        assert.equal(status(junk.text), 400, junk.text);
        assert.ok(junk.closed);
        // Matchmaking errors come from the host, through the proxy, unchanged.
        const bad = await matchmake(proxy, "joinOrCreate", "no-such-room", {});
        const direct = await matchmake(host, "joinOrCreate", "no-such-room", {});
        assert.equal(bad.status, direct.status);
        assert.deepEqual(bad.body, direct.body);
        assert.equal(typeof bad.body.error, "string", bad.text);
        // And the game is unaffected.
        const p = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq("edge") });
        assert.deepEqual(await p.roundTrip("echo", "fine"), "fine");
    });

    test("oversized request headers get 431; headers just under the limit pass", async () => {
        for (const size of [33 * 1024, 40 * 1024, 100 * 1024]) {
            const big = await rawExchange(proxy.port, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(size)}\r\n\r\n`);
            assert.equal(status(big.text), 431, `${size}: ${big.text.slice(0, 200)}`);
        }
        const ok = await rawExchange(proxy.port, `GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ${"a".repeat(24 * 1024)}\r\n\r\n`);
        assert.equal(status(ok.text), 200, ok.text.slice(0, 200));
    });

    test("a client that never finishes its headers is cut after the header timeout", async () => {
        const t0 = Date.now();
        const slow = await rawExchange(proxy.port, "GET /health HTTP/1.1\r\nHost: x\r\n", 10000);
        const took = Date.now() - t0;
        assert.ok(slow.closed, "closed by the proxy");
        assert.ok(took >= 1500 && took < 6000, `closed after ${took} ms (timeout 2 s)`);
    });

    test("a flood of connections: past the cap new ones get 503, a game in progress plays on, and the proxy recovers", async (s) => {
        const p = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq("flood") });
        const flood = [];
        for (let i = 0; i < 320; i++) {
            const sock = net.connect(proxy.port, "127.0.0.1");
            sock.on("error", () => {});
            flood.push(sock);
        }
        s.onClose(() => flood.forEach((x) => x.destroy()));
        await Promise.all(flood.map((x) => new Promise((r) => { if (x.readyState === "open") r(); else x.once("connect", r); x.once("close", r); })));
        await sleep(100);
        const refused = await rawExchange(proxy.port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 1000);
        assert.equal(status(refused.text), 503, refused.text);
        assert.deepEqual(jsonBody(refused.text), { error: "the proxy is at its connection limit" });
        // The player already connected is not affected.
        for (let i = 0; i < 5; i++) assert.deepEqual(await p.roundTrip("echo", i), i);
        // The idle flood is cut at the header timeout; then everything is served again.
        const deadline = Date.now() + 8000;
        let health;
        while (Date.now() < deadline) {
            try {
                const res = await fetch(`${proxy.http}/health`);
                health = res.status === 200 ? await res.json() : { status: res.status };
                if (health.connections <= 5) break;
            } catch { /* refused while full */ }
            await sleep(200);
        }
        assert.ok(health?.connections <= 5, `the proxy is back to normal after the flood: ${JSON.stringify(health)}`);
        const q = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq("after-flood") });
        assert.deepEqual(await q.roundTrip("echo", "ok"), "ok");
    }, { timeout: 30000 });

    test("a client that never reads costs the proxy bounded memory and nobody else waits", async (s) => {
        const mode = uniq("stubborn");
        const reservation = (await matchmake(proxy, "joinOrCreate", "echo", { mode, maxClients: 3 })).body;
        const stubborn = await stubbornClient(proxy, reservation);
        s.onClose(() => stubborn.destroy());
        const sender = await s.join(sdk, "join", "echo", { mode }, { label: "sender" });
        const other = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq("other") }, { label: "other" });
        await sleep(300);
        const before = proxy.rssKiB();
        // 48 MiB of broadcasts towards the client that does not read.
        const blob = "z".repeat(16 * 1024);
        for (let i = 0; i < 3072; i++) {
            sender.send("broadcast", blob);
            if (i % 256 === 0) {
                const t0 = Date.now();
                assert.deepEqual(await other.roundTrip("echo", i), i);
                assert.ok(Date.now() - t0 < 1000, `another room's echo took ${Date.now() - t0} ms`);
            }
        }
        assert.deepEqual(await sender.roundTrip("echo", "sender is fine"), "sender is fine");
        const grown = proxy.rssKiB() - before;
        assert.ok(grown < 8 * 1024, `proxy RSS grew by ${grown} KiB while relaying to a client that never reads`);
    }, { timeout: 60000 });

    test("no growth in the proxy's memory once the clients are gone", async () => {
        const round = async (r) => {
            const mode = uniq(`mem${r}`);
            const clients = [];
            for (let i = 0; i < 200; i += 20) {
                clients.push(...await Promise.all(Array.from({ length: 20 }, () =>
                    new sdk.Client(proxy.endpoint).joinOrCreate("echo", { mode, maxClients: 50 }))));
            }
            await Promise.all(clients.map((room) => room.leave(true)));
            await sleep(500);
            return proxy.rssKiB();
        };
        const first = await round(1);
        let last = first;
        for (let r = 2; r <= 4; r++) last = await round(r);
        assert.ok(last - first < 2048, `RSS after round 1 ${first} KiB, after round 4 ${last} KiB`);
        // Every relay ended (the SDK's idle keep-alive HTTP connections close at the header timeout).
        const deadline = Date.now() + 6000;
        let open;
        do {
            await sleep(200);
            open = (await proxy.health()).connections;
        } while (open > 2 && Date.now() < deadline);
        assert.ok(open <= 2, `${open} connections still open`);
    }, { timeout: 90000 });

    test("a relayed WebSocket with no traffic is closed after the idle timeout; traffic keeps it open", async (s) => {
        const busy = s.trackRaw(await RawClient.join(idleProxy, "joinOrCreate", "echo", { mode: uniq("idle") }));
        // Raw client: it answers no pings, so nothing crosses a quiet socket but the host's pings
        // every 3 s; 1 s of silence ends it.
        for (let i = 0; i < 6; i++) {
            await sleep(300);
            assert.deepEqual((await busy.echo(i)).payload, i);
        }
        const t0 = Date.now();
        await busy.waitClose(6000, "idle close");
        const took = Date.now() - t0;
        assert.ok(took >= 700 && took < 4000, `closed ${took} ms after the last traffic`);
    });
    test("Redis down and restarted: the last known routes keep serving, then the proxy follows the registry again", async (s) => {
        const p = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq("redis-down") });
        assert.deepEqual(await p.roundTrip("echo", "before"), "before");
        await redis.kill();
        // Longer than a registry entry lives (3 s) plus a resync: the routes are kept all the same.
        await sleep(4500);
        assert.deepEqual((await proxy.health()).processes, [host.processId]);
        assert.deepEqual(await p.roundTrip("echo", "during"), "during");
        assert.match(proxy.logTail(200), /registry unreadable, keeping the last known routes/);
        await redis.restart();
        const second = await new Host({ profile: "0.18", label: "host 2 (edge)", extraArgs: ["--redis-url", redis.url, "--behind-proxy"] }).start();
        s.onClose(() => second.stop());
        await proxy.waitForProcesses([host.processId, second.processId], 8000);
        assert.deepEqual(await p.roundTrip("echo", "after"), "after");
        const q = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq("redis-back") });
        assert.deepEqual(await q.roundTrip("echo", "new"), "new");
    }, { timeout: 40000 });
});

/** A self-signed certificate for localhost and 127.0.0.1, written as PEM files. */
function selfSigned(dir, name) {
    const cert = join(dir, `${name}.crt`);
    const key = join(dir, `${name}.key`);
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", `/CN=${name}`,
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert], { stdio: "ignore" });
    return { cert, key };
}

function fingerprint(port) {
    return new Promise((resolveFp, reject) => {
        const sock = tls.connect({ port, host: "127.0.0.1", servername: "localhost", rejectUnauthorized: false }, () => {
            const fp = sock.getPeerCertificate().fingerprint256;
            sock.end();
            resolveFp(fp);
        });
        sock.on("error", reject);
    });
}

/** Runs @colyseus/sdk 0.18 in a child Node trusting `ca` (or nothing extra); its JSON result. */
function sdkOverTls(url, ca, mode) {
    const script = `
        import { Client } from "sdk18";
        const client = new Client(${JSON.stringify(url)});
        try {
            const room = await client.joinOrCreate("echo", { mode: ${JSON.stringify(mode)} });
            room.onMessage("echo", (m) => {
                console.log(JSON.stringify({ ok: true, echo: m, ws: room.connection.transport.ws.url }));
                process.exit(0);
            });
            room.onMessage("*", () => {});
            room.send("echo", "over tls");
        } catch (e) {
            console.log(JSON.stringify({ ok: false, error: String(e?.message ?? e) }));
            process.exit(0);
        }
        setTimeout(() => { console.log(JSON.stringify({ ok: false, error: "timeout" })); process.exit(0); }, 8000);`;
    const env = { PATH: process.env.PATH, HOME: process.env.HOME };
    if (ca) env.NODE_EXTRA_CA_CERTS = ca;
    return new Promise((resolveRun) => {
        const child = spawn(process.execPath, ["--input-type=module", "-e", script], { cwd: TESTS_DIR, env, stdio: ["ignore", "pipe", "pipe"] });
        let out = "", err = "";
        child.stdout.on("data", (c) => { out += c; });
        child.stderr.on("data", (c) => { err += c; });
        child.on("exit", () => {
            try { resolveRun(JSON.parse(out.trim().split("\n").pop())); } catch { resolveRun({ ok: false, error: `no result: ${out} ${err}` }); }
        });
    });
}

describe("odeon-proxy with TLS: wss:// through the official SDK, redirects, certificate reload", () => {
    let redis, host, proxy, dir, files;
    before(async () => {
        dir = mkdtempSync(join(tmpdir(), "odeon-tls-"));
        const first = selfSigned(dir, "first");
        files = { cert: join(dir, "live.crt"), key: join(dir, "live.key"), ca1: first.cert };
        writeFileSync(files.cert, execFileSync("cat", [first.cert]));
        writeFileSync(files.key, execFileSync("cat", [first.key]));
        redis = await startRedis();
        host = await new Host({ profile: "0.18", label: "host (tls)", extraArgs: ["--redis-url", redis.url, "--behind-proxy"] }).start();
        proxy = await new Proxy({ redisUrl: redis.url, label: "proxy (tls)", tls: { cert: files.cert, key: files.key } }).start();
        await proxy.waitForProcesses([host.processId]);
    });
    after(async () => {
        await proxy?.stop();
        await host?.stop();
        await redis?.stop();
        if (dir) rmSync(dir, { recursive: true, force: true });
    });
    const test = (name, fn, opts) => hostTest(() => proxy, `[proxy tls] ${name}`, fn, opts);

    test("the official SDK joins and plays over https:// and wss:// with the certificate trusted, and refuses it otherwise", async () => {
        const url = `https://localhost:${proxy.tls.port}`;
        const trusted = await sdkOverTls(url, files.ca1, uniq("tls"));
        assert.equal(trusted.ok, true, JSON.stringify(trusted));
        assert.equal(trusted.echo, "over tls");
        assert.match(trusted.ws, new RegExp(`^wss://localhost:${proxy.tls.port}/${host.processId}/`));
        const untrusted = await sdkOverTls(url, null, uniq("tls"));
        assert.equal(untrusted.ok, false, "a client that does not trust the certificate gets no connection");
    }, { timeout: 30000 });

    test("plain HTTP on PORT redirects to HTTPS and still answers the health path", async () => {
        const res = await fetch(`${proxy.plainHttp}/matchmake/joinOrCreate/echo?x=1`, { method: "POST", redirect: "manual" });
        assert.equal(res.status, 308);
        assert.equal(res.headers.get("location"), `https://127.0.0.1:${proxy.tls.port}/matchmake/joinOrCreate/echo?x=1`);
        assert.equal((await fetch(`${proxy.plainHttp}/health`)).status, 200);
    });

    test("a renewed certificate is served without a restart; a broken one is refused and the current one stays", async () => {
        const before = await fingerprint(proxy.tls.port);
        const second = selfSigned(dir, "second");
        // Replace both files the way a renewal would: write aside, then rename over.
        writeFileSync(`${files.key}.tmp`, execFileSync("cat", [second.key]));
        writeFileSync(`${files.cert}.tmp`, execFileSync("cat", [second.cert]));
        renameSync(`${files.key}.tmp`, files.key);
        renameSync(`${files.cert}.tmp`, files.cert);
        let now = before;
        const deadline = Date.now() + 8000;
        while (now === before && Date.now() < deadline) {
            await sleep(250);
            now = await fingerprint(proxy.tls.port);
        }
        assert.notEqual(now, before, "the new certificate is served");
        const renewed = await sdkOverTls(`https://localhost:${proxy.tls.port}`, second.cert, uniq("tls2"));
        assert.equal(renewed.ok, true, JSON.stringify(renewed));
        writeFileSync(files.cert, "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n");
        await sleep(3000);
        assert.equal(await fingerprint(proxy.tls.port), now, "the broken file did not replace the certificate");
        assert.match(proxy.logTail(), /tls certificate not reloaded, keeping the current one/);
    }, { timeout: 30000 });
});
