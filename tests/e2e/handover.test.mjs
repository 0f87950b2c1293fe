// Draining a host behind odeon-proxy (issue 17): every room moves to the other hosts and the
// proxy carries each client's socket along (`odeon_protocol::handover`): no client sees a close,
// a drop, a leave, an error, a reconnection or a second JOIN_ROOM, for each SDK generation. A
// numbered echo stream sent across the drain arrives complete, in order, exactly once; arena
// positions stay and play goes on; timers fire once, on the new host; a dropped client's seat
// waits in its reconnection window on the new host; a 0.18 pilot room's inputs in flight keep
// their acks (every input applied once, acks never go back).

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { hostTest, positions, sleep, uniq, until, waitFor } from "./harness.mjs";
import * as drains from "./drains.mjs";
import { SDK_BY_PROFILE } from "./sdks.mjs";
import { startDeployment } from "./proxy.mjs";

const TOKEN = "h4nd0ver-7e5t-t0ken-1f9a";

const drain = (host) => drains.drain(host, TOKEN);
const whereRuns = (host, roomId) => drains.whereRuns(host, TOKEN, roomId);

for (const profile of ["0.16", "0.17", "0.18"]) {
    const sdk = SDK_BY_PROFILE[profile];
    describe(`drain behind odeon-proxy: sockets follow their rooms (3 hosts, ${sdk.label})`, () => {
        let d, proxy, hosts;
        before(async () => {
            d = await startDeployment({ hosts: 3, profile, label: `handover ${profile}`, hostArgs: ["--admin-token", TOKEN] });
            hosts = d.hosts.slice();
            proxy = d.proxies[0];
        });
        after(async () => { await d?.stop(); });
        const test = (name, fn, opts) => hostTest(() => proxy, `[handover ${profile}] ${name}`, fn, { timeout: 90000, ...opts });
        const processOf = (peer) => drains.processOf(sdk, peer);

        const roomOn = (s, host, name, options) => drains.roomOn(s, sdk, host, name, options);

        test("drain host 2: every room plays on elsewhere and no client notices", async (s) => {
            const victim = hosts[1];
            // An echo room: A streams numbered echoes across the drain; C drops first and its
            // seat waits in the room's 10 s reconnection window.
            const a = await roomOn(s, victim, "echo", { mode: uniq("handover") });
            await a.nextMsg("welcome");
            const c = await s.join(sdk, "joinById", a.roomId, {}, { label: "C (dropped)" });
            await c.nextMsg("welcome");
            const cToken = c.room.reconnectionToken;
            const cSession = c.sessionId;
            sdk.disableAutoReconnect(c.room);
            c.ws.terminate();
            s.peers.splice(s.peers.indexOf(c), 1);
            // An arena room with positions set.
            const p = await roomOn(s, victim, "arena");
            await until("P has state", () => p.room.state?.players);
            const q = await s.join(sdk, "joinById", p.roomId, {}, { label: "Q" });
            await until("Q has state", () => q.room.state?.players);
            p.send("move", { x: 11, y: -3 });
            q.send("move", { x: 2.5, y: 7 });
            const expected = { [p.sessionId]: { x: 11, y: -3 }, [q.sessionId]: { x: 2.5, y: 7 } };
            for (const peer of [p, q]) await until(`${peer.label} converges`, () => JSON.stringify(positions(peer.room)) === JSON.stringify(expected));
            // A room with timers running across the move.
            const t = await roomOn(s, victim, "lifecycle");
            const intervals = [];
            t.room.onMessage("interval", (m) => intervals.push(m.n));
            t.send("interval", { ms: 200, times: 12 });
            t.send("timeout", { ms: 1200 });
            await until("the interval runs", () => intervals.length >= 2);
            // 0.18: a pilot room with inputs in flight.
            let pilot, input;
            const acks = [];
            if (profile === "0.18") {
                pilot = await roomOn(s, victim, "pilot");
                await until("the pilot has state", () => pilot.room.state?.players?.get(pilot.sessionId));
                input = pilot.room.input();
                pilot.room.onStateChange(() => acks.push(input.lastProcessed));
            }
            const peers = [a, p, q, t, ...(pilot ? [pilot] : [])];
            const sockets = new Map(peers.map((x) => [x, x.ws]));
            const moving = new Set(peers.map((x) => x.roomId));

            const echoed = [];
            a.room.onMessage("echo", (m) => { if (typeof m?.n === "number") echoed.push(m.n); });
            let sending = true;
            let sent = 0;
            let dxSum = 0;
            const stream = (async () => {
                while (sending) {
                    for (let k = 0; k < 3; k++) a.send("echo", { n: ++sent });
                    await sleep(2);
                }
            })();
            const steering = (async () => {
                while (sending && input) {
                    input.data.dx = 1 + (input.sentCount % 3);
                    input.data.dy = 0;
                    dxSum += input.data.dx;
                    input.send();
                    await sleep(70);
                }
            })();
            await sleep(150);
            const answer = await drain(victim);
            assert.equal(answer.status, 200, JSON.stringify(answer.body));
            assert.deepEqual(answer.body.stayed, [], JSON.stringify(answer.body));
            const movedIds = new Set(answer.body.moved.map((m) => m.roomId));
            for (const id of moving) assert.ok(movedIds.has(id), `room ${id} moved: ${JSON.stringify(answer.body)}`);
            await sleep(300);
            sending = false;
            await Promise.all([stream, steering]);

            // The stream: every message once, in order.
            await until(`all ${sent} echoes`, () => echoed.length >= sent, 10000);
            await sleep(100);
            assert.deepEqual(echoed, Array.from({ length: sent }, (_, k) => k + 1), "every echo once, in order");
            // The rooms run elsewhere, under the same ids.
            for (const id of moving) {
                const now = await whereRuns(hosts[0], id);
                assert.ok(now && now !== victim.processId, `room ${id} runs on ${now}`);
            }
            // Timers fired on, each once.
            const fired = await t.nextMsg("timeout", 5000);
            assert.ok(fired.elapsed >= 1100, `the timeout kept its delay: ${JSON.stringify(fired)}`);
            await until("the interval's last firing", () => intervals.includes(12), 8000);
            assert.deepEqual(intervals, Array.from({ length: 12 }, (_, k) => k + 1), "each firing once, in order");
            await t.noMsg("timeout", 300);
            // Arena positions stayed, and play goes on.
            assert.deepEqual(positions(p.room), expected);
            q.send("move", { x: -1, y: -1 });
            expected[q.sessionId] = { x: -1, y: -1 };
            for (const peer of [p, q]) await until(`${peer.label} converges after the move`, () => JSON.stringify(positions(peer.room)) === JSON.stringify(expected));
            // Inputs: every one applied once, acks never went back.
            if (pilot) {
                await until("every input acked", () => input.lastProcessed === input.sentCount, 5000);
                await until("every input applied", () => pilot.room.state.players.get(pilot.sessionId).x === dxSum, 3000);
                assert.ok(acks.every((v, i) => i === 0 || v >= acks[i - 1]), `acks never go back: ${acks}`);
                assert.ok(input.sentCount >= 5, `inputs were in flight: ${input.sentCount}`);
            }
            // Nobody noticed: the same socket, open, no close, drop, leave, error or reconnection.
            for (const peer of peers) {
                assert.equal(peer.ws, sockets.get(peer), `${peer.label} kept its socket`);
                assert.equal(peer.ws.readyState, 1, `${peer.label}'s socket is open`);
                const bad = peer.inbox.items.filter((it) => ["leave", "drop", "error", "reconnect"].includes(it.kind));
                assert.deepEqual(bad, [], `${peer.label} saw no leave, drop, error or reconnection`);
            }
            // The proxy had each client's socket open on the new host before its room moved:
            // the hold named the host, so the cutover did not wait for a connection.
            const followed = proxy.logTail(1e6).split("\n").filter((l) => l.includes("client followed room"));
            for (const peer of peers) {
                const lines = followed.filter((l) => l.includes(`room ${peer.roomId} to`));
                assert.ok(lines.length > 0 && lines.every((l) => /preopened=true/.test(l)), `${peer.label}'s resume was opened during the hold:\n${lines.join("\n")}`);
            }
            // The dropped client comes back into its seat, now on the new host, within its window.
            const back = await waitFor(sdk.client(proxy).reconnect(cToken), 8000, "reconnect C");
            assert.equal(back.roomId, a.roomId);
            assert.equal(back.sessionId, cSession);
            assert.deepEqual(await a.roundTrip("count"), { clients: 2 });
            await back.leave(true);
            // The drained host exits once empty, and says where its rooms went.
            const exited = await Promise.race([victim.exitPromise, sleep(10000).then(() => null)]);
            assert.equal(exited?.code, 0, victim.logTail(30));
            assert.match(victim.logTail(80), /room moved away.*handed_over=[1-9]/);
        });

        test("SIGTERM (a rolling restart): the host's clients follow their rooms without a sign", async (s) => {
            const victim = hosts[2];
            const a = await roomOn(s, victim, "echo", { mode: uniq("term") });
            await a.nextMsg("welcome");
            const ws = a.ws;
            victim.child.kill("SIGTERM");
            const exited = await Promise.race([victim.exitPromise, sleep(15000).then(() => null)]);
            assert.equal(exited?.code, 0, victim.logTail(30));
            assert.equal(await whereRuns(hosts[0], a.roomId), hosts[0].processId);
            assert.deepEqual(await a.roundTrip("echo", "after sigterm"), "after sigterm");
            assert.equal(a.ws, ws);
            const bad = a.inbox.items.filter((it) => ["leave", "drop", "error", "reconnect"].includes(it.kind));
            assert.deepEqual(bad, []);
        });
    });
}
