// Draining a host (issue 17, first part): `POST /odeon/admin/drain` marks the host draining in
// the registry, so no host and no odeon-proxy places a new room or seat on it; its rooms play on
// (reconnections included) until they end, and the host exits by itself once it holds none, or
// after `--drain-timeout-secs`, closing what is left.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { hostTest, sleep, uniq } from "./harness.mjs";
import { SDK18 as sdk } from "./sdks.mjs";
import { startDeployment } from "./proxy.mjs";

const TOKEN = "dr4in-7e5t-t0ken-5b3c81e0";

const drain = async (host) => {
    const res = await fetch(`${host.http}/odeon/admin/drain`, { method: "POST", headers: { Authorization: `Bearer ${TOKEN}` } });
    return { status: res.status, body: await res.json() };
};
const health = async (host) => (await fetch(`${host.http}/odeon/health`)).json();
const processOf = (peer) => peer.room.processId ?? sdk.ws(peer.room).url.split("/")[3];

describe("draining a host behind odeon-proxy (2 hosts, @colyseus/sdk 0.18)", () => {
    let d, proxy, hosts;
    before(async () => {
        d = await startDeployment({ hosts: 2, label: "drain", hostArgs: ["--admin-token", TOKEN] });
        hosts = d.hosts.slice();
        proxy = d.proxies[0];
    });
    after(async () => { await d?.stop(); });
    const test = (name, fn, opts) => hostTest(() => proxy, `[drain] ${name}`, fn, { timeout: 40000, ...opts });

    test("a draining host takes no new room or seat; its rooms play on and it exits once they end", async (s) => {
        // Rooms through the proxy until host 2 runs one; the others stay, so the load spreads.
        let a;
        for (let i = 0; i < 10 && !a; i++) {
            const p = await s.join(sdk, "create", "echo", { mode: uniq("drain") }, { label: `player ${i}` });
            await p.nextMsg("welcome");
            if (processOf(p) === hosts[1].processId) a = p;
        }
        assert.ok(a, "a room on host 2");
        const b = await s.join(sdk, "joinById", a.roomId, {}, { label: "B" });
        await b.nextMsg("welcome");

        const answer = await drain(hosts[1]);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.deepEqual([answer.body.processId, answer.body.draining], [hosts[1].processId, true]);
        assert.equal((await health(hosts[1])).draining, true);
        const state = await (await fetch(`${hosts[0].http}/odeon/admin/plugins`, { headers: { Authorization: `Bearer ${TOKEN}` } })).json();
        const echo = state.roomTypes.find((t) => t.name === "echo");
        assert.equal(echo.hosts.find((h) => h.processId === hosts[1].processId)?.draining, true, JSON.stringify(echo.hosts));
        assert.equal(echo.hosts.find((h) => h.processId === hosts[0].processId)?.draining, false);

        // New rooms, through the proxy and through the draining host itself, land on host 1.
        for (let i = 0; i < 6; i++) {
            const p = await s.join(sdk, "create", "echo", { mode: uniq("after") }, { label: `new ${i}` });
            assert.equal(processOf(p), hosts[0].processId, `new room ${i} is placed on host 1`);
            await p.room.leave();
        }
        const direct = await new sdk.Client(hosts[1].endpoint).create("echo", { mode: uniq("direct") });
        assert.equal(sdk.ws(direct).url.split("/")[3], hosts[0].processId, "a room asked of the draining host is created on host 1");
        await direct.leave();
        // No new seat in a room of the draining host.
        await assert.rejects(s.join(sdk, "joinById", a.roomId, {}, { label: "late" }), /locked/);

        // The room plays on, and a dropped client comes back into it.
        assert.deepEqual(await a.roundTrip("echo", "still"), "still");
        sdk.setMinUptime(b.room, 0);
        sdk.ws(b.room).terminate();
        await b.next("drop", 5000);
        await b.next("reconnect", 15000);
        assert.deepEqual(await b.roundTrip("echo", "back"), "back");
        assert.equal(hosts[1].alive, true, "a draining host with a room keeps running");

        // Once its last room ends, the host exits by itself, cleanly.
        await a.room.leave();
        await b.room.leave();
        const exited = await Promise.race([hosts[1].exitPromise, sleep(8000).then(() => null)]);
        assert.deepEqual(exited && { code: exited.code, signal: exited.signal }, { code: 0, signal: null }, hosts[1].logTail(20));
        await proxy.waitForProcesses([hosts[0].processId], 5000);
        assert.deepEqual(await (await s.join(sdk, "create", "echo", { mode: uniq("end") })).roundTrip("echo", 1), 1);
    });
});

describe("draining a host with nowhere else to go (1 host, --drain-timeout-secs 2)", () => {
    let d, host;
    before(async () => {
        d = await startDeployment({ hosts: 1, proxies: 0, label: "drain alone", hostArgs: ["--admin-token", TOKEN, "--drain-timeout-secs", "2"] });
        host = d.hosts[0];
    });
    after(async () => { await d?.stop(); });

    hostTest(() => host, "[drain] the rooms stay until the drain timeout; then their clients are closed and the host exits", async (s) => {
        const p = await s.join(sdk, "create", "echo", { mode: uniq("alone") }, { label: "alone" });
        await p.nextMsg("welcome");
        assert.equal((await drain(host)).status, 200);
        await assert.rejects(s.join(sdk, "create", "echo", { mode: uniq("refused") }), /draining/);
        assert.deepEqual(await p.roundTrip("echo", "playing"), "playing");
        const t0 = Date.now();
        const exited = await Promise.race([host.exitPromise, sleep(10000).then(() => null)]);
        assert.equal(exited?.code, 0, host.logTail(20));
        assert.ok(Date.now() - t0 >= 1000, "it waited for the drain timeout");
        const closed = p.inbox.items.find((it) => it.kind === "leave" || it.kind === "drop");
        assert.ok(closed, `the client was closed: ${p.inbox.describe()}`);
    }, { timeout: 30000 });
});
