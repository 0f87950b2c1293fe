// Random-mutation soak: odeon-schema's `schema-scenarios soak` applies thousands of seeded random
// operations to a nested state (maps and arrays of structs, shared instances, instances placed
// again after removal, optional fields and children, collections replaced whole), patching every
// few operations and now and then taking a full state for a joining client mid-window.
//
// For the v4 and the v5 official decoders: one client starts from the first full state and
// follows every patch; every joining client starts from its full state and follows the later
// patches. After every frame each client's `toJSON()` must equal the Rust state's, the decoder
// must not complain (a missing refId, a bad ref count), and it must track no ref the state no
// longer reaches.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Client, fromHex, runRust } from "./official.mjs";

const SEEDS = [1, 7, 2026];
const OPERATIONS = 3000;
/** Joining clients kept following patches (the oldest is dropped). */
const JOINERS = 4;

for (const seed of SEEDS) {
  test(`soak seed ${seed}, ${OPERATIONS} operations`, (t) => {
    const run = runRust("soak", String(seed), String(OPERATIONS));
    const [first, ...events] = run.events;
    assert.ok(first.full !== undefined, "the soak starts with a full state");

    for (const version of ["v4", "v5"]) {
      const reflection = fromHex(run.reflection[version]);
      const main = new Client(version, reflection);
      main.apply(fromHex(first.full));
      assert.deepEqual(main.json(), first.json);

      let joiners = [];
      let patches = 0;
      let bytes = 0;
      let joined = 0;
      for (const [i, event] of events.entries()) {
        const where = `${version} event ${i + 1}`;
        if (event.full !== undefined) {
          const joiner = new Client(version, reflection);
          joiner.apply(fromHex(event.full));
          assert.deepEqual(joiner.json(), event.json, `${where}: a client joining mid-window`);
          joiners = [...joiners.slice(-(JOINERS - 1)), joiner];
          joined += 1;
          continue;
        }
        if (event.patch !== null) {
          const frame = fromHex(event.patch);
          patches += 1;
          bytes += frame.length;
          for (const client of [main, ...joiners]) client.apply(frame);
        }
        assert.deepEqual(main.json(), event.json, `${where}: the client following every patch`);
        assert.deepEqual(main.refLeaks(), { leaked: [], missing: [] }, `${where}: refs of the following client`);
        for (const [j, joiner] of joiners.entries()) {
          assert.deepEqual(joiner.json(), event.json, `${where}: joiner ${j}`);
          if (patches % 8 === 0) {
            assert.deepEqual(joiner.refLeaks(), { leaked: [], missing: [] }, `${where}: refs of joiner ${j}`);
          }
        }
      }
      t.diagnostic(`${version}: ${patches} patches (${bytes} bytes), ${joined} joining clients, all in sync`);
    }
  });
}
