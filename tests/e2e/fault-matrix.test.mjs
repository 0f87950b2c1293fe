// The fault suite: every kind of guest fault in every hook, one room at a time, while an arena
// room on the same host is measured. Only the faulting room may go (its clients get 4002), the
// host and matchmaking carry on, and the neighbour's patch rate and echo latency stay within
// 10 % of an undisturbed run. The figures are printed for RELIABILITY.md.

import { describe, before, after, it } from "node:test";
import assert from "node:assert/strict";
import { Host, Session, matchmake, sleep, uniq, waitFor } from "./harness.mjs";
import { SDK18 as sdk } from "./sdks.mjs";

const KINDS = ["panic", "trap", "loop", "oom", "stack", "flood"];
const ROOM_HOOKS = ["join", "leave", "drop", "message", "request", "tick", "timer", "encode"];

/** An arena client that moves every 20 ms and times each move until a patch shows it. */
async function neighbour(host) {
    const client = new sdk.Client(host.endpoint);
    const room = await waitFor(client.joinOrCreate("arena"), 8000, "join arena");
    const $ = sdk.getStateCallbacks(room);
    const sent = new Map();
    const samples = []; // [time, latency ms]
    let patches = [];
    room.onStateChange(() => patches.push(Date.now()));
    $(room.state).players.onAdd((player, key) => {
        if (key !== room.sessionId) return;
        $(player).listen("x", (x) => {
            const t = sent.get(x);
            if (t !== undefined) {
                samples.push([Date.now(), Date.now() - t]);
                sent.delete(x);
            }
        });
    });
    let x = 0;
    const timer = setInterval(() => {
        x += 1;
        sent.set(x, Date.now());
        room.send("move", { x, y: 0 });
    }, 20);
    const window = (from, to) => {
        const lat = samples.filter(([t]) => t >= from && t < to).map(([, l]) => l).sort((a, b) => a - b);
        const n = patches.filter((t) => t >= from && t < to).length;
        return {
            patchesPerSec: n / ((to - from) / 1000),
            echoP50: lat[Math.floor(lat.length / 2)] ?? NaN,
            echoP99: lat[Math.floor(lat.length * 0.99)] ?? NaN,
            samples: lat.length,
        };
    };
    return {
        window,
        async stop() {
            clearInterval(timer);
            await room.leave().catch(() => {});
        },
    };
}

/** One fault in one hook of a fresh room; resolves once the room is gone and the host serves. */
async function strike(s, host, fault, hook) {
    const armed = { fault, hook };
    if (hook === "auth") {
        const r = await matchmake(host, "joinOrCreate", "faults", armed);
        assert.notEqual(r.status, 200, `auth ${fault}: ${r.text}`);
        assert.match(r.text, /onAuth failed/);
        return;
    }
    if (hook === "create") {
        const r = await matchmake(host, "create", "faults", armed);
        assert.notEqual(r.status, 200, `create ${fault}: ${r.text}`);
        assert.match(r.text, /failed to create room/);
        return;
    }
    const a = await s.join(sdk, "create", "faults", armed, { label: `A ${fault}/${hook}` });
    sdk.disableAutoReconnect(a.room);
    assert.deepEqual(await a.roundTrip("echo", "armed"), "armed");
    let b;
    if (["join", "leave", "drop"].includes(hook)) {
        const joining = s.join(sdk, "joinById", a.roomId, {}, { label: `B ${fault}/${hook}` });
        if (hook === "join") {
            await joining.catch(() => {});
        } else {
            b = await joining;
            sdk.disableAutoReconnect(b.room);
            if (hook === "leave") b.room.leave().catch(() => {});
            else sdk.ws(b.room).terminate();
        }
    } else if (hook === "message") {
        a.send("go");
    } else if (hook === "request") {
        // The request is never answered: the room is gone, and the SDK rejects it on close.
        a.room.request("go").catch(() => {});
    } else {
        a.send("arm");
    }
    const leave = await a.next("leave", 15000);
    assert.equal(leave.code, 4002, `${fault}/${hook}: A closes with 4002 (${JSON.stringify(leave)})`);
    const gone = await matchmake(host, "joinById", a.roomId, {});
    assert.notEqual(gone.status, 200, `${fault}/${hook}: the faulted room is gone`);
    assert.ok(host.alive, `host alive after ${fault}/${hook}`);
}

describe("the fault suite: every guest fault in every hook, beside a measured arena room", () => {
    const host = new Host({ profile: "0.18", label: "host 0.18 (fault suite)" });
    before(async () => { await host.start(); });
    after(async () => { await host.stop(); });

    it("contains each fault to its room and leaves the neighbour within 10 %", { timeout: 600000 }, async (t) => {
        const s = new Session(host, t);
        const n = await neighbour(host);
        try {
            await sleep(1000);
            const t0 = Date.now();
            await sleep(4000);
            const baseline = n.window(t0, Date.now());
            const cases = [];
            for (const fault of KINDS) {
                for (const hook of ["auth", "create", ...ROOM_HOOKS]) {
                    // Auth returns no effects, and a field's encoding has no context to send from.
                    if ((hook === "auth" || hook === "encode") && fault === "flood") continue;
                    cases.push([fault, hook]);
                }
            }
            const t1 = Date.now();
            for (const [fault, hook] of cases) {
                await strike(s, host, fault, hook);
                await s.closeAll?.();
            }
            const during = n.window(t1, Date.now());
            const matchmade = await matchmake(host, "joinOrCreate", "echo", { mode: uniq("after-suite") });
            assert.equal(matchmade.status, 200, matchmade.text);
            const report = `${cases.length} faults contained in ${((Date.now() - t1) / 1000).toFixed(1)} s; ` +
                `neighbour patches/s ${baseline.patchesPerSec.toFixed(2)} → ${during.patchesPerSec.toFixed(2)}, ` +
                `echo p50 ${baseline.echoP50} → ${during.echoP50} ms, p99 ${baseline.echoP99} → ${during.echoP99} ms ` +
                `(${baseline.samples} / ${during.samples} samples)`;
            t.diagnostic(report);
            console.log(`# fault suite: ${report}`);
            assert.ok(during.patchesPerSec >= baseline.patchesPerSec * 0.9, report);
            assert.ok(during.echoP50 <= baseline.echoP50 * 1.1, report);
        } finally {
            await n.stop();
            await s.close?.();
        }
    });
});
