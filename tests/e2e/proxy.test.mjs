// odeon-proxy in front of a deployment: three hosts (`--behind-proxy`) sharing a real
// redis-server and a MongoDB-wire server, two proxies side by side. The official SDK clients of
// each generation know only a proxy's address; they join, play, reconnect and leave through it,
// and the proxy follows hosts coming and going.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import {
    Host, Peer, RawClient, hostTest, uniq, sleep, waitFor,
} from "./harness.mjs";
import { SDK16, SDK17, SDK18 } from "./sdks.mjs";
import { startRedis, startMongo } from "./services.mjs";
import { Proxy, matchmakeFrom, upgradeStatus } from "./proxy.mjs";

/** What a client claims: replaced by the proxy. */
const SPOOFED = { "X-Forwarded-For": "6.6.6.6" };

/** An HTTP/1.1 upgrade request written by hand; resolves with the status line and body. */
function proxySuite(sdk) {
    describe(`${sdk.label}: three hosts --protocol ${sdk.profile} behind two odeon-proxy`, () => {
        let redis, mongo;
        const hosts = [];
        const proxies = [];
        before(async () => {
            redis = await startRedis();
            mongo = await startMongo();
            for (let i = 1; i <= 3; i++) {
                hosts.push(await new Host({
                    profile: sdk.profile,
                    label: `host ${i} (${sdk.profile}, behind proxies)`,
                    extraArgs: ["--redis-url", redis.url, "--mongo-uri", mongo.uri, "--behind-proxy"],
                }).start());
            }
            for (let i = 1; i <= 2; i++) {
                const proxy = await new Proxy({ redisUrl: redis.url, profile: sdk.profile, label: `proxy ${i}` }).start();
                await proxy.waitForProcesses(hosts.map((h) => h.processId));
                proxies.push(proxy);
            }
        });
        after(async () => {
            for (const p of proxies) await p.stop();
            for (const h of hosts) await h.stop();
            await redis?.stop();
            await mongo?.stop();
        });
        const test = (name, fn, opts) => hostTest(() => proxies[0], `[proxy ${sdk.id}] ${name}`, fn, opts);

        /** Joins through `proxy` with the SDK; the peer is closed with the test's session. */
        async function joinVia(s, proxy, method, nameOrId, options, label) {
            const client = new sdk.Client(proxy.endpoint);
            const room = await waitFor(client[method](nameOrId, options), 8000, `${label}: ${method} via ${proxy.label}`);
            return s.track(new Peer(sdk, client, room, label));
        }

        /** 0.16 reconnection (and 0.17+ with automatic reconnection off), retried while the drop reaches the room. */
        async function reconnectVia(proxy, token) {
            const client = new sdk.Client(proxy.endpoint);
            for (let attempt = 1; ; attempt++) {
                try {
                    return await waitFor(client.reconnect(token), 5000, "client.reconnect()");
                } catch (err) {
                    if (attempt >= 20) throw err;
                    await sleep(100);
                }
            }
        }

        test("clients that know only a proxy join, play and leave; one room stays on one host through either proxy", async (s) => {
            const mode = uniq("px");
            const a = await joinVia(s, proxies[0], "joinOrCreate", "echo", { mode }, "A");
            const b = await joinVia(s, proxies[1], "join", "echo", { mode }, "B");
            assert.equal(b.roomId, a.roomId, "both proxies seat the second client in the same room");
            await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome")]);
            // Each socket went through the proxy its client knows, to the process of the room.
            const url = (p) => new URL(sdk.ws(p.room).url);
            assert.equal(url(a).port, String(proxies[0].port));
            assert.equal(url(b).port, String(proxies[1].port));
            assert.equal(url(a).pathname, url(b).pathname, "one /{processId}/{roomId} for both");
            assert.ok(hosts.some((h) => url(a).pathname.startsWith(`/${h.processId}/`)), url(a).pathname);
            assert.deepEqual(await a.roundTrip("echo", { n: 1, s: "x".repeat(2000) }), { n: 1, s: "x".repeat(2000) });
            b.send("broadcast", "hi from B");
            assert.deepEqual(await a.nextMsg("broadcast"), { from: b.sessionId, data: "hi from B" });
            assert.deepEqual(await b.roundTrip("count"), { clients: 2 });
            await b.room.leave(true);
            assert.deepEqual(await a.nextMsg("left"), { sessionId: b.sessionId });
        });

        test("reservations name no address of their own, so clients come back through their proxy", async () => {
            const r = await matchmakeFrom(proxies[1], "127.0.0.1", "create", "echo", { mode: uniq("addr") }, SPOOFED);
            assert.equal(r.status, 200, JSON.stringify(r.body));
            const listing = r.body.room ?? r.body;
            assert.equal(listing.publicAddress, undefined, JSON.stringify(r.body));
            assert.ok(hosts.some((h) => h.processId === listing.processId));
        });

        test("the auth hook sees the client's address from X-Forwarded-For, not the proxy's or a spoofed one", async (s) => {
            // From 127.0.0.2: the proxy (on 127.0.0.1) forwards it; the 6.6.6.6 the client claims is replaced.
            const r = await matchmakeFrom(proxies[0], "127.0.0.2", "joinOrCreate", "echo", { mode: uniq("ip"), showAuth: true }, SPOOFED);
            assert.equal(r.status, 200, JSON.stringify(r.body));
            const raw = s.trackRaw(await RawClient.fromReservation(proxies[0], r.body));
            assert.deepEqual((await raw.nextData("auth")).payload, { ip: "127.0.0.2" });
        });

        test("a client reconnects into its room through the other proxy", async (s) => {
            const mode = uniq("rc");
            const a = await joinVia(s, proxies[0], "joinOrCreate", "echo", { mode }, "A");
            const b = await joinVia(s, proxies[1], "join", "echo", { mode }, "B");
            await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome")]);
            sdk.disableAutoReconnect(a.room);
            const { reconnectionToken, sessionId, roomId } = a.room;
            sdk.ws(a.room).terminate();
            await a.next("leave");
            const room2 = await reconnectVia(proxies[1], reconnectionToken);
            a.replaceRoom(room2);
            assert.equal(room2.roomId, roomId);
            assert.equal(room2.sessionId, sessionId);
            assert.equal(new URL(sdk.ws(room2).url).port, String(proxies[1].port));
            assert.deepEqual(await a.roundTrip("echo", "back"), "back");
            assert.deepEqual(await b.roundTrip("count"), { clients: 2 });
        });

        test("a proxy killed and restarted mid-game: its clients come back to the same rooms", async (s) => {
            const mode = uniq("restart");
            const a = await joinVia(s, proxies[0], "joinOrCreate", "echo", { mode }, "A");
            const b = await joinVia(s, proxies[1], "join", "echo", { mode }, "B");
            await Promise.all([a.nextMsg("welcome"), b.nextMsg("welcome")]);
            if (sdk.autoReconnect) sdk.setMinUptime(a.room, 0);
            const { reconnectionToken, sessionId, roomId } = a.room;
            await proxies[0].kill();
            // B, on the other proxy, plays on meanwhile.
            assert.deepEqual(await b.roundTrip("echo", "still here"), "still here");
            await proxies[0].start();
            if (sdk.autoReconnect) {
                // The SDK's automatic reconnection, to the same proxy address.
                await a.next("drop", 5000);
                await a.next("reconnect", 15000);
            } else {
                await a.next("leave", 5000);
                a.replaceRoom(await reconnectVia(proxies[0], reconnectionToken));
            }
            assert.equal(a.room.roomId, roomId);
            assert.equal(a.room.sessionId, sessionId);
            assert.deepEqual(await a.roundTrip("echo", "back"), "back");
            assert.deepEqual(await b.roundTrip("count"), { clients: 2 });
        }, { timeout: 30000 });

        test("a host killed with -9: its routes are gone within 5 s and later joins through either proxy succeed", async (s) => {
            const victim = hosts[2];
            victim.child.kill("SIGKILL");
            const t0 = Date.now();
            await Promise.all(proxies.map((p) => p.waitForProcesses([hosts[0].processId, hosts[1].processId], 5000)));
            const gone = Date.now() - t0;
            assert.ok(gone <= 5000, `routes dropped after ${gone} ms`);
            const dead = await upgradeStatus(proxies[0], `/${victim.processId}/someRoom1?sessionId=x`);
            assert.equal(dead.status, 404);
            assert.match(dead.body.error, new RegExp(`unknown process ${victim.processId}`));
            for (let i = 0; i < 6; i++) {
                const p = await joinVia(s, proxies[i % 2], "joinOrCreate", "echo", { mode: uniq("after") }, `late ${i}`);
                assert.deepEqual(await p.roundTrip("echo", i), i);
                assert.ok(!new URL(sdk.ws(p.room).url).pathname.startsWith(`/${victim.processId}/`));
            }
        }, { timeout: 30000 });
    });
}

proxySuite(SDK16);
proxySuite(SDK17);
proxySuite(SDK18);
