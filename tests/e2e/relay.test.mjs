// A socket that reaches the wrong host (issue 17): hosts behind a proxy name no address in
// their seat reservations, so a client that matchmakes through a host directly opens its room
// socket on that host whatever process runs the room. The host relays it to the room's process
// instead of refusing it (which the SDKs reported as "seat reservation expired" about half the
// time): joining, playing and reconnecting all work through any host, for each SDK generation.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Peer, hostTest, sleep, uniq, waitFor } from "./harness.mjs";
import { SDK_BY_PROFILE } from "./sdks.mjs";
import { startDeployment, upgradeStatus } from "./proxy.mjs";

for (const profile of ["0.16", "0.18"]) {
    const sdk = SDK_BY_PROFILE[profile];
    describe(`a room socket on the wrong host is relayed (3 hosts, --protocol ${profile}, ${sdk.label})`, () => {
        let d, hosts;
        before(async () => {
            d = await startDeployment({ profile, label: `relay ${profile}`, proxies: 0 });
            hosts = d.hosts.slice();
        });
        after(async () => { await d?.stop(); });
        const test = (name, fn, opts) => hostTest(() => hosts[0], `[relay ${profile}] ${name}`, fn, opts);

        async function joinVia(s, host, method, nameOrId, options, label) {
            const client = new sdk.Client(host.endpoint ?? host.http);
            const room = await waitFor(client[method](nameOrId, options), 8000, `${label}: ${method} via ${host.label}`);
            return s.track(new Peer(sdk, client, room, label));
        }

        const processOf = (peer) => peer.room.processId ?? sdk.ws(peer.room).url.split("/")[3];

        test("clients matchmaking through any host join, play and reconnect in a room on another host", async (s) => {
            // Rooms created through host 1 land on every host; keep one that runs elsewhere.
            let a;
            for (let i = 0; i < 12 && !a; i++) {
                const p = await joinVia(s, hosts[0], "create", "echo", { mode: uniq("relay"), maxClients: 8 }, `creator ${i}`);
                await p.nextMsg("welcome");
                if (processOf(p) !== hosts[0].processId) a = p;
            }
            assert.ok(a, "a room created through host 1 ran on another host");
            const owner = hosts.find((h) => h.processId === processOf(a));
            const other = hosts.find((h) => h !== owner && h !== hosts[0]);
            // Joins by id through each host, the owner's included.
            const peers = [a];
            for (const via of [hosts[0], other, owner, hosts[0]]) {
                const p = await joinVia(s, via, "joinById", a.roomId, {}, `via ${via.label}`);
                await p.nextMsg("welcome");
                assert.equal(p.roomId, a.roomId);
                peers.push(p);
            }
            assert.deepEqual(await peers[3].roundTrip("count"), { clients: peers.length });
            for (const [i, p] of peers.entries()) {
                assert.deepEqual(await p.roundTrip("echo", { i }), { i });
            }
            // A broadcast from a relayed client reaches every client.
            peers[1].send("broadcast", "all");
            for (const p of peers.slice(2)) assert.deepEqual(await p.nextMsg("broadcast"), { from: peers[1].sessionId, data: "all" });
            for (const p of peers) {
                const bad = p.inbox.items.filter((it) => ["leave", "drop", "error"].includes(it.kind));
                assert.deepEqual(bad, [], `${p.label} saw no leave, drop or error`);
            }
            // A path naming a process that is not live is a 404 that says so.
            const res = await upgradeStatus(hosts[0], "/nOtLiVe01/someRoom?sessionId=x");
            assert.equal(res.status, 404);
            assert.match(res.body.error, /process nOtLiVe01 is not live/);
        }, { timeout: 40000 });

        test("a relayed client's reconnection goes through the same host and lands in its room", async (s) => {
            let a;
            for (let i = 0; i < 12 && !a; i++) {
                // Rooms that land on host 2 stay (until the test ends), so it is not the least
                // loaded for ever.
                const p = await joinVia(s, hosts[1], "create", "echo", { mode: uniq("rc") }, `creator ${i}`);
                await p.nextMsg("welcome");
                if (processOf(p) !== hosts[1].processId) a = p;
            }
            assert.ok(a, "a room created through host 2 ran on another host");
            const { reconnectionToken, sessionId, roomId } = a.room;
            if (sdk.autoReconnect) {
                sdk.setMinUptime(a.room, 0);
                sdk.ws(a.room).terminate();
                await a.next("drop", 5000);
                await a.next("reconnect", 15000);
            } else {
                sdk.ws(a.room).terminate();
                await a.next("leave", 5000);
                const client = new sdk.Client(hosts[1].http);
                for (let attempt = 1; ; attempt++) {
                    try {
                        a.replaceRoom(await waitFor(client.reconnect(reconnectionToken), 5000, "reconnect"));
                        break;
                    } catch (err) {
                        if (attempt >= 20) throw err;
                        await sleep(100);
                    }
                }
            }
            assert.equal(a.room.roomId, roomId);
            assert.equal(a.room.sessionId, sessionId);
            assert.deepEqual(await a.roundTrip("echo", "back"), "back");
        }, { timeout: 40000 });
    });
}
