// The `tictactoe` room (plugins/tictactoe, the README's example) played by two official
// @colyseus/sdk 0.18.4 clients: a whole game to a win, refused moves (the code and message reach
// the sender: `room.onError` for a send, a rejected `room.request()` with its reason), a player
// whose connection drops and whose SDK reconnects by itself to play on, and a rematch by request.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { hostTest, until, useHost } from "./harness.mjs";
import { SDK18 as sdk } from "./sdks.mjs";

// The room's refusal codes (plugins/tictactoe/src/lib.rs) and the SDK's for a payload that does
// not decode.
const NOT_YOUR_TURN = 4101;
const CELL_TAKEN = 4102;
const NO_SUCH_CELL = 4103;
const GAME_OVER = 4104;
const NOT_OVER = 4106;
const INVALID_PAYLOAD = 4217;

describe("tictactoe (odeon-host --protocol 0.18, @colyseus/sdk 0.18.4)", () => {
    const host = useHost({ before, after }, { profile: "0.18", label: "host 0.18 (tictactoe)" });
    const test = (name, fn, opts) => hostTest(() => host, `[tictactoe] ${name}`, fn, opts);

    /** Resolves once `p`'s `room.state` satisfies `holds`. */
    const sees = (p, what, holds) => until(`${p.label} sees ${what}`, () => holds(p.room.state), 5000);

    /** Two players at a new table: X created it (mark 1, to move first), O joined it. */
    async function table(s) {
        const x = await s.join(sdk, "create", "tictactoe", {}, { label: "X" });
        const o = await s.join(sdk, "joinById", x.roomId, {}, { label: "O" });
        for (const p of [x, o]) await sees(p, "the game start", (st) => st.turn === x.sessionId);
        return { x, o };
    }

    /** A move as a request; resolves with no value once the room took it. */
    const move = (p, index) => p.room.request("move", { index });

    /** What a rejected request rejects with. */
    const refusal = (promise) => promise.then(() => assert.fail("expected the request to be refused"), (e) => e);

    test("a whole game to a win, as both clients see it", async (s) => {
        const { x, o } = await table(s);
        assert.deepEqual(Object.fromEntries(o.room.state.players.entries()), { [x.sessionId]: 1, [o.sessionId]: 2 });
        for (const [p, index] of [[x, 0], [o, 3], [x, 1], [o, 4]]) {
            assert.equal(await move(p, index), undefined);
        }
        // The winning move as a plain send: nothing comes back but the state.
        x.send("move", { index: 2 });
        for (const p of [x, o]) {
            await sees(p, "X win", (st) => st.winner === x.sessionId);
            assert.deepEqual([...p.room.state.board], [1, 1, 1, 2, 2, 0, 0, 0, 0]);
            assert.equal(p.room.state.turn, "");
            await p.noKind("error", 0);
        }
        o.send("move", { index: 8 });
        const over = await o.next("error");
        assert.deepEqual([over.code, over.message], [GAME_OVER, "the game is over"]);
    });

    test("a refused move reaches its sender only, and the game goes on", async (s) => {
        const { x, o } = await table(s);
        // A send: room.onError(code, message).
        o.send("move", { index: 4 });
        const error = await o.next("error");
        assert.deepEqual([error.code, error.message], [NOT_YOUR_TURN, "not your turn"]);
        // A request: rejected, `name` "rejected", the room's reason in `.reason`.
        const rejected = await refusal(move(o, 4));
        assert.equal(rejected.name, "rejected");
        assert.equal(rejected.message, "request rejected");
        assert.deepEqual(rejected.reason, { code: NOT_YOUR_TURN, message: "not your turn" });
        await move(x, 4);
        assert.deepEqual((await refusal(move(o, 4))).reason, { code: CELL_TAKEN, message: "cell 4 is taken" });
        assert.deepEqual((await refusal(move(o, 9))).reason, { code: NO_SUCH_CELL, message: "no cell 9: cells are 0 to 8" });
        // A payload that does not decode is a fault: an Error with the code, not a rejection.
        const fault = await refusal(o.room.request("move", { index: "four" }));
        assert.equal(fault.name, "Error");
        assert.equal(fault.code, INVALID_PAYLOAD);
        assert.match(fault.message, /^move: invalid payload: /);
        await x.noKind("error", 0);
        await move(o, 0);
        for (const p of [x, o]) await sees(p, "both moves", (st) => st.board[4] === 1 && st.board[0] === 2);
    });

    test("a player whose connection drops is reconnected by its SDK and plays on", async (s) => {
        const { x, o } = await table(s);
        await move(x, 0);
        sdk.setMinUptime(o.room, 0);
        const { roomId, sessionId } = o.room;
        sdk.ws(o.room).terminate();
        assert.equal((await o.next("drop", 3000)).code, 1006);
        await o.next("reconnect", 5000);
        assert.deepEqual([o.room.roomId, o.room.sessionId], [roomId, sessionId], "back in its seat");
        await sees(o, "the board and its turn", (st) => st.board[0] === 1 && st.turn === sessionId);
        await move(o, 4);
        await sees(x, "O's move", (st) => st.board[4] === 2 && st.turn === x.sessionId);
        await move(x, 8);
        await sees(o, "X's next move", (st) => st.board[8] === 1);
        assert.ok(!o.inbox.items.some((i) => i.kind === "leave"), "O never left");
    });

    test("a rematch by request starts once both players ask, with the marks swapped", async (s) => {
        const { x, o } = await table(s);
        assert.deepEqual((await refusal(x.room.request("rematch"))).reason, { code: NOT_OVER, message: "the game is not over" });
        for (const [p, index] of [[x, 0], [o, 3], [x, 1], [o, 4], [x, 2]]) await move(p, index);
        await sees(o, "X win", (st) => st.winner === x.sessionId);
        assert.equal(await x.room.request("rematch"), false, "one wish is not a rematch");
        assert.equal(await o.room.request("rematch"), true);
        for (const p of [x, o]) {
            await sees(p, "the new game", (st) => st.winner === "" && st.turn === o.sessionId);
            assert.deepEqual([...p.room.state.board], [0, 0, 0, 0, 0, 0, 0, 0, 0]);
            assert.deepEqual(Object.fromEntries(p.room.state.players.entries()), { [x.sessionId]: 2, [o.sessionId]: 1 });
        }
        await move(o, 4);
        await sees(x, "O's first move", (st) => st.board[4] === 1 && st.turn === x.sessionId);
    });
});
