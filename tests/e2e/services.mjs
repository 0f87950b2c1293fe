// Real backing services for multi-process tests: redis-server and a MongoDB-wire server
// (SecantusDB's secantusd-py; no mongod can be installed here). Each is started on a free loopback
// port, awaited until it answers, and stopped by its PID.

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { cleanEnv, freePort, sleep, spawnGroup } from "./harness.mjs";

class Service {
    constructor(name, cmd, args, port, cleanup) {
        this.name = name;
        this.cmd = cmd;
        this.args = args;
        this.port = port;
        this.cleanup = cleanup;
        this.logs = [];
        this.spawn();
    }

    spawn() {
        this.child = spawnGroup(this.cmd, this.args, { stdio: ["ignore", "pipe", "pipe"], env: cleanEnv() });
        this.child.stdout.on("data", (c) => this.logs.push(c.toString()));
        this.child.stderr.on("data", (c) => this.logs.push(c.toString()));
        this.exited = new Promise((r) => this.child.on("exit", r));
        this.child.on("error", (e) => this.logs.push(`spawn error: ${e.message}`));
    }

    /** Waits until the port accepts connections. */
    async ready(ms = 20000) {
        const deadline = Date.now() + ms;
        while (Date.now() < deadline) {
            if (this.child.exitCode !== null) break;
            const ok = await new Promise((r) => {
                const s = net.connect(this.port, "127.0.0.1", () => { s.destroy(); r(true); });
                s.on("error", () => r(false));
            });
            if (ok) return this;
            await sleep(100);
        }
        throw new Error(`${this.name} did not start on port ${this.port}:\n${this.logs.join("").slice(-2000)}`);
    }

    /** SIGKILL (by PID) and wait for the exit; the data directory stays. */
    async kill() {
        if (this.child.exitCode === null && this.child.signalCode === null) {
            this.child.kill("SIGKILL");
            await Promise.race([this.exited, sleep(3000)]);
        }
    }

    /** Starts the same server again, on the same port and data. */
    async restart() {
        await this.kill();
        this.spawn();
        return this.ready();
    }

    async stop() {
        await this.kill();
        this.cleanup?.();
    }
}

export async function startRedis() {
    const port = await freePort();
    const bin = process.env.ODEON_REDIS_SERVER ?? "redis-server";
    const redis = new Service("redis-server", bin, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], port);
    await redis.ready();
    redis.url = `redis://127.0.0.1:${port}`;
    return redis;
}

function secantusBin() {
    const candidates = [
        process.env.SECANTUSD_PY,
        join(homedir(), ".cache/odeon/secantus-venv/bin/secantusd-py"),
    ].filter(Boolean);
    return candidates.find((c) => existsSync(c)) ?? "secantusd-py";
}

export async function startMongo() {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "odeon-mongo-"));
    const mongo = new Service("secantusd-py", secantusBin(),
        ["--host", "127.0.0.1", "--port", String(port), "--storage-path", dir, "--standalone", "--sync-on-commit"],
        port, () => rmSync(dir, { recursive: true, force: true }));
    await mongo.ready();
    mongo.uri = `mongodb://127.0.0.1:${port}/odeon_e2e`;
    return mongo;
}
