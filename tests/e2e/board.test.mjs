// Guest presence and room queries through the `board` plugin, on the embedded default: a global
// counter, pub/sub between two rooms, a hash scoped to the room type, and a room listing query.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Host, hostTest } from "./harness.mjs";
import { SDK_BY_PROFILE } from "./sdks.mjs";

for (const profile of ["0.16", "0.18"]) {
    const sdk = SDK_BY_PROFILE[profile];
    describe(`board rooms (odeon-host --protocol ${profile}, ${sdk.label})`, () => {
        const host = new Host({ profile, label: `host ${profile} (board)` });
        before(async () => { await host.start(); });
        after(async () => { await host.stop(); });
        const test = (name, fn) => hostTest(() => host, `[board / ${sdk.id}] ${name}`, fn);

        test("presence counters, pub/sub across rooms, scoped hashes and room queries", async (s) => {
            const a = await s.join(sdk, "create", "board", {}, { label: "A" });
            const first = (await a.nextMsg("visits")).count;
            const b = await s.join(sdk, "create", "board", {}, { label: "B" });
            assert.notEqual(a.roomId, b.roomId, "two rooms");
            assert.equal((await b.nextMsg("visits")).count, first + 1, "a global counter shared by rooms");

            a.send("post", { text: "hello from A" });
            const expected = { from: a.sessionId, text: "hello from A" };
            assert.deepEqual(await a.nextMsg("posted"), expected, "the publishing room hears its own post");
            assert.deepEqual(await b.nextMsg("posted"), expected, "another room subscribed to the topic hears it");

            assert.deepEqual(await a.roundTrip("rooms"), { count: 2, roomIds: [a.roomId, b.roomId].sort() });

            a.send("note", { key: "k", value: "v1" });
            assert.deepEqual(await a.nextMsg("noted"), { isNew: true });
            b.send("note", { key: "k", value: "v2" });
            assert.deepEqual(await b.nextMsg("noted"), { isNew: false }, "rooms of one type share their scope");
            a.send("read", { key: "k" });
            assert.deepEqual(await a.nextMsg("read"), { key: "k", value: "v2" });
            a.send("read", { key: "missing" });
            assert.deepEqual(await a.nextMsg("read"), { key: "missing", value: null });
        });

        test("a disposed room's subscription ends with it", async (s) => {
            const a = await s.join(sdk, "create", "board", {}, { label: "A" });
            await a.nextMsg("visits");
            const b = await s.join(sdk, "create", "board", {}, { label: "B" });
            await b.nextMsg("visits");
            const bRoom = b.roomId;
            await b.room.leave(true);
            // Wait until B's room is gone from the listings (auto-dispose after its last client).
            for (let i = 0; i < 50; i++) {
                const rooms = await a.roundTrip("rooms");
                if (!rooms.roomIds.includes(bRoom)) break;
                await new Promise((r) => setTimeout(r, 50));
            }
            assert.deepEqual((await a.roundTrip("rooms")).roomIds, [a.roomId]);
            a.send("post", { text: "anyone?" });
            assert.deepEqual(await a.nextMsg("posted"), { from: a.sessionId, text: "anyone?" });
        });
    });
}
