// One deploy reaches every host (issue 16, first part): three hosts on a real redis-server and
// the MongoDB-wire server behind odeon-proxy. A plugin uploaded to one host is validated there,
// stored by its SHA-256 where every host fetches it, and activated on each; new rooms anywhere
// run the new code, a host started afterwards runs it too, a host that cannot run it says why
// and keeps its previous version, and a module no host could run is refused before it is
// announced.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { PLUGINS_DIR, PLUGIN_VARIANTS_DIR, hostTest, uniq } from "./harness.mjs";
import { SDK18 as sdk } from "./sdks.mjs";
import { startDeployment } from "./proxy.mjs";

const TOKEN = "d3p1oy-7e5t-t0ken-4f9a0c27";
const ECHO_V1 = readFileSync(resolve(PLUGINS_DIR, "echo.wasm"));
const ECHO_V2 = readFileSync(resolve(PLUGIN_VARIANTS_DIR, "echo-v2.wasm"));
const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

async function admin(host, method, body) {
    const res = await fetch(`${host.http}/odeon/admin/plugins`, {
        method,
        headers: { Authorization: `Bearer ${TOKEN}` },
        body,
        signal: AbortSignal.timeout(20000),
    });
    return { status: res.status, body: await res.json() };
}

/** What `build` answers in a new room created through the proxy, and where that room runs. */
async function newRoomBuild(s) {
    const p = await s.join(sdk, "create", "echo", { mode: uniq("deploy") });
    await p.nextMsg("welcome");
    return { processId: p.room.processId ?? sdk.ws(p.room).url.split("/")[3], build: await p.roundTrip("build") };
}

describe("deploy: one upload reaches every host", () => {
    let d, proxy, hosts;
    before(async () => {
        d = await startDeployment({ label: "deploy", hostArgs: ["--admin-token", TOKEN], ownPlugins: true });
        hosts = d.hosts.slice();
        proxy = d.proxies[0];
    });
    after(async () => { await d?.stop(); });
    const test = (name, fn, opts) => hostTest(() => proxy, `[deploy] ${name}`, fn, opts);

    test("a version uploaded to host 1 is active on every host, and new rooms anywhere run it", async (s) => {
        // Players mid-game through the proxy, on rooms spread over the hosts, play on through
        // the deploy: their rooms keep the code they were created with, and none of them sees a
        // leave, a drop or an error.
        const players = [];
        for (let i = 0; i < 3; i++) {
            const p = await s.join(sdk, "create", "echo", { mode: uniq("midgame") }, { label: `player ${i}` });
            await p.nextMsg("welcome");
            assert.equal(await p.roundTrip("build"), "v1");
            players.push(p);
        }
        let playing = true;
        const play = Promise.all(players.map(async (p, i) => {
            let n = 0;
            while (playing) {
                n += 1;
                assert.deepEqual(await p.roundTrip("echo", { i, n }), { i, n });
            }
            return n;
        }));
        const t0 = Date.now();
        const up = await admin(hosts[0], "POST", ECHO_V2);
        const took = Date.now() - t0;
        assert.equal(up.status, 200, JSON.stringify(up.body));
        assert.equal(up.body.name, "echo");
        assert.equal(up.body.hash, sha256(ECHO_V2));
        assert.deepEqual(
            up.body.hosts.map((h) => [h.processId, h.status]).sort(),
            hosts.map((h) => [h.processId, "active"]).sort(),
            JSON.stringify(up.body),
        );
        assert.ok(took < 5000, `the deploy took ${took} ms`);
        // Rooms created through the proxy spread over the hosts; every one runs v2.
        const seen = new Map();
        for (let i = 0; i < 9 && seen.size < hosts.length; i++) {
            const { processId, build } = await newRoomBuild(s);
            assert.equal(build, "v2", `a new room on ${processId}`);
            seen.set(processId, build);
        }
        assert.ok(seen.size >= 2, `new rooms ran on ${[...seen.keys()]}`);
        // The deployment's state, from any host.
        playing = false;
        const rounds = await play;
        assert.ok(rounds.every((n) => n > 1), `round trips during the deploy: ${rounds}`);
        for (const p of players) {
            assert.equal(await p.roundTrip("build"), "v1", `${p.label}'s running room keeps its code`);
            const bad = p.inbox.items.filter((it) => ["leave", "drop", "error"].includes(it.kind));
            assert.deepEqual(bad, [], `${p.label} saw no leave, drop or error`);
        }
        const state = await admin(hosts[2], "GET");
        const echo = state.body.roomTypes.find((t) => t.name === "echo");
        assert.equal(echo.activeHash, sha256(ECHO_V2));
        assert.ok(echo.versions.some((v) => v.hash === sha256(ECHO_V2) && v.size === ECHO_V2.length && v.uploader === "127.0.0.1"), JSON.stringify(echo.versions));
        for (const h of hosts) {
            await (async () => {
                const deadline = Date.now() + 5000;
                for (;;) {
                    const st = (await admin(hosts[0], "GET")).body.roomTypes.find((t) => t.name === "echo");
                    const mine = st.hosts.find((x) => x.processId === h.processId);
                    if (mine?.hash === sha256(ECHO_V2)) return;
                    assert.ok(Date.now() < deadline, `host ${h.processId} runs ${mine?.hash}`);
                    await new Promise((r) => setTimeout(r, 200));
                }
            })();
        }
    }, { timeout: 40000 });

    test("a host started after the deploy runs the deployed version before it takes rooms", async () => {
        const late = await d.addHost("host 4 (late)");
        assert.match(late.logTail(), new RegExp(`source="deploy:${sha256(ECHO_V2)}"`), "activated from the store at start");
        const health = await (await fetch(`${late.http}/odeon/health`)).json();
        assert.ok(health.roomTypes.some((t) => t.name === "echo"), JSON.stringify(health));
    }, { timeout: 30000 });

    test("a host that cannot run a version refuses it with its reason and keeps its previous one", async () => {
        // A host whose rooms get 1 MiB of memory cannot instantiate these plugins at all.
        const small = await d.addHost("host 5 (1 MiB rooms)", ["--room-memory-mb", "1"]);
        const up = await admin(hosts[0], "POST", ECHO_V1);
        assert.equal(up.status, 200, JSON.stringify(up.body));
        const mine = up.body.hosts.find((h) => h.processId === small.processId);
        assert.equal(mine?.status, "refused", JSON.stringify(up.body));
        assert.ok(mine.reason.length > 0);
        for (const h of d.hosts.filter((x) => x !== small)) {
            assert.equal(up.body.hosts.find((x) => x.processId === h.processId)?.status, "active", JSON.stringify(up.body));
        }
        // The deployment's state shows the refusal and its reason, from any host.
        const deadline = Date.now() + 8000;
        for (;;) {
            const echo = (await admin(hosts[1], "GET")).body.roomTypes.find((t) => t.name === "echo");
            const shown = echo.hosts.find((h) => h.processId === small.processId)?.refused;
            if (shown) {
                assert.equal(shown.hash, sha256(ECHO_V1));
                assert.equal(shown.reason, mine.reason);
                break;
            }
            assert.ok(Date.now() < deadline, `the state shows the refusal: ${JSON.stringify(echo.hosts)}`);
            await new Promise((r) => setTimeout(r, 250));
        }
        // It still runs nothing new; the others run v1 again.
        await small.stop();
        d.hosts.splice(d.hosts.indexOf(small), 1);
    }, { timeout: 40000 });

    test("rollback by hash: a stored version becomes active on every host again; an unknown hash is a 404", async (s) => {
        const res = await fetch(`${hosts[2].http}/odeon/admin/plugins/echo/activate`, {
            method: "POST",
            headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
            body: JSON.stringify({ hash: sha256(ECHO_V2) }),
        });
        const body = await res.json();
        assert.equal(res.status, 200, JSON.stringify(body));
        assert.equal(body.hash, sha256(ECHO_V2));
        for (const h of hosts) {
            assert.equal(body.hosts.find((x) => x.processId === h.processId)?.status, "active", JSON.stringify(body));
        }
        assert.equal((await newRoomBuild(s)).build, "v2");
        const unknown = await fetch(`${hosts[0].http}/odeon/admin/plugins/echo/activate`, {
            method: "POST",
            headers: { Authorization: `Bearer ${TOKEN}` },
            body: JSON.stringify({ hash: "0".repeat(64) }),
        });
        assert.equal(unknown.status, 404);
    }, { timeout: 30000 });

    test("a module no host could run is refused before it is stored or announced; the active version stays", async () => {
        const before = (await admin(hosts[0], "GET")).body.roomTypes.find((t) => t.name === "echo").activeHash;
        const bad = await admin(hosts[1], "POST", Buffer.from("not a wasm module at all"));
        assert.equal(bad.status, 400);
        assert.match(bad.body.error, /./);
        const after = (await admin(hosts[2], "GET")).body.roomTypes.find((t) => t.name === "echo");
        assert.equal(after.activeHash, before);
    });
});
