// The odeon-proxy binary under test: started on free loopback ports with a clean environment,
// awaited until its health path answers, stopped (or killed) by PID. A started proxy has the
// `endpoint` and `http` of a host, so SDK adapters and Session take it where they take a host.

import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http from "node:http";
import net from "node:net";
import { resolve } from "node:path";
import { Host, PLUGINS_DIR, TESTS_DIR, cleanEnv, freePort, sleep, spawnGroup } from "./harness.mjs";
import { startMongo, startRedis } from "./services.mjs";

export const PROXY_BIN = process.env.ODEON_PROXY_BIN
    ? resolve(process.env.ODEON_PROXY_BIN)
    : resolve(TESTS_DIR, "../target/debug/odeon-proxy");

export class Proxy {
    /** `profile` is the hosts' (the suites read per-profile expectations from it). */
    constructor({ redisUrl, profile = "0.18", label = "proxy", extraArgs = [], port, tls } = {}) {
        this.redisUrl = redisUrl;
        this.profile = profile;
        this.label = label;
        this.extraArgs = extraArgs;
        this.port = port ?? 0;
        this.tls = tls; // { cert, key, port? }
        this.logs = [];
        this.child = null;
        this.exited = null;
    }

    get http() { return this.tls ? `https://localhost:${this.tls.port}` : `http://127.0.0.1:${this.port}`; }
    get endpoint() { return this.tls ? `wss://localhost:${this.tls.port}` : `ws://127.0.0.1:${this.port}`; }
    get plainHttp() { return `http://127.0.0.1:${this.port}`; }

    logTail(lines = 80) {
        return this.logs.join("").replace(/\x1b\[[0-9;]*m/g, "").split("\n").slice(-lines).join("\n");
    }

    async start() {
        if (!existsSync(PROXY_BIN)) {
            throw new Error(`proxy binary not found: ${PROXY_BIN} (cargo build -p odeon-proxy, or set ODEON_PROXY_BIN)`);
        }
        if (!this.port) this.port = await freePort();
        const args = ["--bind", "127.0.0.1", "--port", String(this.port), "--redis-url", this.redisUrl];
        if (this.tls) {
            if (!this.tls.port) this.tls.port = await freePort();
            args.push("--tls-cert", this.tls.cert, "--tls-key", this.tls.key, "--tls-port", String(this.tls.port));
        }
        args.push(...this.extraArgs);
        this.args = args;
        this.exited = null;
        this.child = spawnGroup(PROXY_BIN, args, { stdio: ["ignore", "pipe", "pipe"], env: cleanEnv() });
        const capture = (c) => {
            this.logs.push(c.toString());
            if (process.env.ODEON_TEST_VERBOSE) process.stderr.write(`[${this.label}] ${c}`);
        };
        this.child.stdout.on("data", capture);
        this.child.stderr.on("data", capture);
        this.exitPromise = new Promise((r) => this.child.on("exit", (code, signal) => { this.exited = { code, signal }; r(this.exited); }));
        const deadline = Date.now() + 15000;
        let last = "no answer yet";
        while (Date.now() < deadline) {
            if (this.exited) throw new Error(`${this.label} exited while starting (${JSON.stringify(this.exited)}):\n${this.logTail()}`);
            try {
                const res = await fetch(`${this.plainHttp}/health`, { signal: AbortSignal.timeout(1000) });
                if (res.status === 200) return this;
                last = `status ${res.status}`;
            } catch (e) {
                last = e.message;
            }
            await sleep(100);
        }
        await this.kill();
        throw new Error(`${this.label} did not answer /health within 15 s (${last}):\n${this.logTail()}`);
    }

    /** The proxy's own view: `{status, processes, connections}`. */
    async health() {
        const res = await fetch(`${this.plainHttp}/health`, { signal: AbortSignal.timeout(2000) });
        return res.json();
    }

    /** Waits until the proxy routes to exactly these process ids. */
    async waitForProcesses(ids, ms = 8000) {
        const want = [...ids].sort();
        const deadline = Date.now() + ms;
        let seen;
        while (Date.now() < deadline) {
            seen = (await this.health()).processes;
            if (JSON.stringify(seen) === JSON.stringify(want)) return;
            await sleep(50);
        }
        throw new Error(`${this.label} routes ${JSON.stringify(seen)}, expected ${JSON.stringify(want)}`);
    }

    /** Resident memory of the proxy process, in KiB (from /proc). */
    rssKiB() {
        const status = readFileSync(`/proc/${this.child.pid}/status`, "utf8");
        return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]);
    }

    async stop() {
        if (!this.child || this.exited) return;
        this.child.kill("SIGTERM");
        if (!(await Promise.race([this.exitPromise, sleep(3000).then(() => null)]))) await this.kill();
    }

    async kill() {
        if (!this.child || this.exited) return;
        this.child.kill("SIGKILL");
        await Promise.race([this.exitPromise, sleep(3000)]);
    }
}

/** POST /matchmake to `target` (a proxy or a host) from a chosen local address, with `headers`. */
export function matchmakeFrom(target, localAddress, method, name, body, headers = {}) {
    return new Promise((resolveRes, reject) => {
        const data = JSON.stringify(body);
        const req = http.request({
            host: "127.0.0.1", port: target.port, localAddress, method: "POST",
            path: `/matchmake/${method}/${name}`,
            headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data), ...headers },
        }, (res) => {
            let text = "";
            res.on("data", (c) => { text += c; });
            res.on("end", () => resolveRes({ status: res.statusCode, body: JSON.parse(text) }));
        });
        req.on("error", reject);
        req.end(data);
    });
}

/** A copy of the built plugins in a directory of its own (removed by `rm()`), for a host that
 * may write to its plugins directory (an admin upload saves the module there). */
export function ownPluginsDir() {
    const dir = mkdtempSync(join(tmpdir(), "odeon-plugins-"));
    cpSync(PLUGINS_DIR, dir, { recursive: true });
    return { dir, rm: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A deployment on loopback: a real redis-server and MongoDB-wire server, `hosts` hosts sharing
 * them behind `proxies` odeon-proxies (each following every host). With `ownPlugins`, each host
 * gets a copy of the plugins directory. `addHost(label, args)` starts one more host on the same
 * services; `stop()` stops it all.
 */
export async function startDeployment({ hosts = 3, proxies = 1, profile = "0.18", label = "deployment", hostArgs = [], ownPlugins = false } = {}) {
    const d = { hosts: [], proxies: [], redis: null, mongo: null, dirs: [] };
    d.stop = async () => {
        for (const p of d.proxies) await p.stop();
        for (const h of d.hosts) await h.stop();
        await d.redis?.stop();
        await d.mongo?.stop();
        for (const dir of d.dirs) dir.rm();
    };
    d.addHost = async (hostLabel, args = hostArgs) => {
        const own = ownPlugins ? ownPluginsDir() : null;
        if (own) d.dirs.push(own);
        const host = new Host({
            profile,
            label: hostLabel,
            pluginsDir: own?.dir ?? PLUGINS_DIR,
            extraArgs: ["--redis-url", d.redis.url, "--mongo-uri", d.mongo.uri, "--behind-proxy", ...args],
        });
        d.hosts.push(host);
        return host.start();
    };
    try {
        d.redis = await startRedis();
        d.mongo = await startMongo();
        for (let i = 1; i <= hosts; i++) await d.addHost(`host ${i} (${label})`);
        for (let i = 1; i <= proxies; i++) {
            const proxy = await new Proxy({ redisUrl: d.redis.url, profile, label: `proxy ${i} (${label})` }).start();
            await proxy.waitForProcesses(d.hosts.map((h) => h.processId));
            d.proxies.push(proxy);
        }
    } catch (e) {
        await d.stop();
        throw e;
    }
    return d;
}

/** A raw WebSocket upgrade of `path` on `server` (a host or a proxy): its status and JSON body. */
export function upgradeStatus(server, path) {
    return new Promise((resolveRes, reject) => {
        const sock = net.connect(server.port, "127.0.0.1", () => {
            sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
        });
        let text = "";
        sock.on("data", (c) => {
            text += c;
            if (text.includes("\r\n\r\n") && /\}\s*$/.test(text)) sock.end();
        });
        sock.on("close", () => resolveRes({ status: Number(text.split(" ")[1]), body: JSON.parse(text.slice(text.indexOf("{"))) }));
        sock.on("error", reject);
    });
}
