// Hardening of a deployment (issue 21): three hosts behind odeon-proxy sharing a real
// redis-server and the MongoDB-wire server. A per-address limit holds once for the deployment, not once per host, and a
// process that reaches a host directly cannot choose its own client address: only a proxy that
// proves itself with its registry secret, or a network the operator named, is believed.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { Host, RawClient, hostTest, uniq } from "./harness.mjs";
import { SDK18 as sdk } from "./sdks.mjs";
import { matchmakeFrom, startDeployment } from "./proxy.mjs";

/** The address the auth hook saw for a client seated with `{showAuth: true}`. */
async function seenAddress(s, target, reservation) {
    const raw = s.trackRaw(await RawClient.fromReservation(target, reservation));
    return (await raw.nextData("auth")).payload.ip;
}

describe("hardening: three hosts behind odeon-proxy sharing Redis and MongoDB", () => {
    let deployment, proxy, hosts;
    before(async () => {
        deployment = await startDeployment({ label: "deployment limits", hostArgs: ["--room-creates-per-min", "10"] });
        ({ hosts, proxies: [proxy] } = deployment);
    });
    after(async () => { await deployment?.stop(); });
    const test = (name, fn, opts) => hostTest(() => proxy, `[deployment] ${name}`, fn, opts);

    test("an address gets --room-creates-per-min once for the deployment, however the proxy spreads it", async (s) => {
        const bystander = await s.join(sdk, "joinOrCreate", "echo", { mode: uniq("by") }, { label: "bystander" });
        const results = [];
        for (let i = 0; i < 16; i++) {
            const r = await matchmakeFrom(proxy, "127.0.0.20", "create", "echo", { mode: uniq("flood") });
            results.push(r.status === 200 ? r.body.processId : r.status);
        }
        const created = results.filter((r) => typeof r === "string");
        assert.equal(created.length, 10, JSON.stringify(results));
        assert.ok(new Set(created).size >= 2, `the rooms went to several hosts: ${JSON.stringify(results)}`);
        // Another address still creates.
        assert.equal((await matchmakeFrom(proxy, "127.0.0.21", "create", "echo", { mode: uniq("other") })).status, 200);
        assert.deepEqual(await bystander.roundTrip("echo", "playing"), "playing");
    });

    test("the proxy's 101 says Connection: upgrade, as strict WebSocket clients require", async (s) => {
        const r = await matchmakeFrom(proxy, "127.0.0.1", "joinOrCreate", "echo", { mode: uniq("strict") });
        const room = r.body.room ?? r.body;
        const sock = net.connect(proxy.port, "127.0.0.1");
        s.onClose(() => sock.destroy());
        await new Promise((ok) => sock.once("connect", ok));
        sock.write(`GET /${room.processId}/${room.roomId}?sessionId=${r.body.sessionId} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
        let text = "";
        await new Promise((ok) => sock.on("data", (d) => { text += d.toString("latin1"); if (text.includes("\r\n\r\n")) ok(); }));
        const head = text.slice(0, text.indexOf("\r\n\r\n")).toLowerCase();
        assert.match(head, /^http\/1\.1 101/, head);
        assert.match(head, /\r\nconnection: upgrade\r\n/, head);
        assert.match(head, /\r\nupgrade: websocket\r\n/, head);
    });

    test("X-Forwarded-For is believed only with a running proxy's secret", async (s) => {
        // Through the proxy: the client's own address.
        const via = await matchmakeFrom(proxy, "127.0.0.22", "joinOrCreate", "echo", { mode: uniq("ip"), showAuth: true }, { "X-Forwarded-For": "6.6.6.6" });
        assert.equal(via.status, 200, JSON.stringify(via.body));
        assert.equal(await seenAddress(s, proxy, via.body), "127.0.0.22");
        // Straight to a host, claiming to be a proxy: its own address, whatever it says.
        for (const claim of [undefined, "someProxy:guess", "x"]) {
            const headers = { "X-Forwarded-For": "9.9.9.9" };
            if (claim) headers["X-Odeon-Proxy"] = claim;
            const direct = await matchmakeFrom(hosts[1], "127.0.0.23", "joinOrCreate", "echo", { mode: uniq("ip"), showAuth: true }, headers);
            assert.equal(direct.status, 200, JSON.stringify(direct.body));
            assert.equal(await seenAddress(s, proxy, direct.body), "127.0.0.23", `claim ${claim}`);
        }
    });

    test("--trusted-proxies names the networks believed without a secret", async (s) => {
        const named = await new Host({ profile: "0.18", label: "host (named proxy)", extraArgs: ["--trusted-proxies", "127.0.0.1/32"] }).start();
        try {
            const headers = { "X-Forwarded-For": "198.51.100.7" };
            const trusted = await matchmakeFrom(named, "127.0.0.1", "joinOrCreate", "echo", { mode: uniq("ip"), showAuth: true }, headers);
            assert.equal(await seenAddress(s, named, trusted.body), "198.51.100.7");
            const other = await matchmakeFrom(named, "127.0.0.24", "joinOrCreate", "echo", { mode: uniq("ip"), showAuth: true }, headers);
            assert.equal(await seenAddress(s, named, other.body), "127.0.0.24", "another loopback address is not the named proxy");
        } finally {
            await named.stop();
        }
    });
});
