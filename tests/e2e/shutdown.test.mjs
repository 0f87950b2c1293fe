// Graceful shutdown: on SIGTERM the host closes every client with 4001 (SERVER_SHUTDOWN) and exits
// cleanly, in every profile.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Host, hostTest, waitFor } from "./harness.mjs";
import { SDK_BY_PROFILE } from "./sdks.mjs";

for (const profile of ["0.16", "0.17", "0.18"]) {
    const sdk = SDK_BY_PROFILE[profile];
    describe(`shutdown (odeon-host --protocol ${profile}, ${sdk.label})`, () => {
        const host = new Host({ profile, label: `host ${profile} (shutdown)` });
        before(async () => { await host.start(); });
        after(async () => { await host.stop(); });

        hostTest(() => host, `[shutdown / ${sdk.id}] SIGTERM closes clients with 4001 and the host exits 0`, async (s) => {
            const a = await s.join(sdk, "create", "echo", { mode: "shutdown" });
            await a.nextMsg("welcome");
            sdk.disableAutoReconnect(a.room);
            host.child.kill("SIGTERM");
            assert.equal((await a.next("leave", 5000)).code, 4001);
            const exit = await waitFor(host.exitPromise, 8000, "host exit");
            assert.deepEqual(exit, { code: 0, signal: null }, host.logTail(20));
        });
    });
}
