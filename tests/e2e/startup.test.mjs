// A host whose shared services are unreachable at start exits with a clear error and a
// non-zero status, instead of panicking (it used to exit 101 with a tokio "runtime dropped in
// async context" panic when Redis was down).

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { HOST_BIN, PLUGINS_DIR, freePort } from "./harness.mjs";

async function runHost(extraArgs) {
    const port = await freePort();
    const child = spawn(HOST_BIN, ["--plugins", PLUGINS_DIR, "--port", String(port), "--no-watch", ...extraArgs], {
        stdio: ["ignore", "pipe", "pipe"],
        // A clean environment: nothing from the developer's shell (REDIS_URL, MONGO_URI, …).
        env: { PATH: process.env.PATH, NO_COLOR: "1" },
    });
    let out = "";
    child.stdout.on("data", (c) => { out += c; });
    child.stderr.on("data", (c) => { out += c; });
    const code = await new Promise((resolve) => {
        const timer = setTimeout(() => { child.kill("SIGKILL"); resolve("timeout"); }, 20000);
        child.once("exit", (c, signal) => { clearTimeout(timer); resolve(c ?? signal); });
    });
    return { code, out };
}

describe("startup with unreachable services", () => {
    it("Redis unreachable: exit 1 with the reason, no panic", { timeout: 25000 }, async () => {
        const { code, out } = await runHost(["--redis-url", "redis://127.0.0.1:1"]);
        assert.equal(code, 1, out.slice(-2000));
        assert.match(out, /connecting to Redis presence/);
        assert.doesNotMatch(out, /panicked/);
    });

    it("MongoDB unreachable: exit 1 with the reason, no panic", { timeout: 25000 }, async () => {
        const { code, out } = await runHost(["--mongo-uri", "mongodb://127.0.0.1:1/odeon"]);
        assert.equal(code, 1, out.slice(-2000));
        assert.match(out, /connecting to the MongoDB driver/);
        assert.doesNotMatch(out, /panicked/);
    });
});
