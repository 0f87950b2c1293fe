// odeon-schema against the official encoders, scenario by scenario.
//
// For every scenario of scenarios.mjs and both schema generations, the official encoder runs the
// same steps as the Rust scenario. Then:
// - the reflection handshakes must be byte-identical;
// - the Rust full states and patches, decoded by the official decoder (a client that follows
//   every patch, and a client that joins with each step's full state), must give the same
//   `toJSON()` as a client of the official encoder, with no decoder warning and no leaked ref;
// - the bytes must be identical, except for the steps listed in DIFFERS (with the reasons).

import assert from "node:assert/strict";
import { test } from "node:test";

import { Client, defineShapes, fromHex, runRust, toHex, versions } from "./official.mjs";
import { scenarios } from "./scenarios.mjs";

const rust = runRust("scenarios");

// The steps whose bytes legitimately differ from the official encoder's; every other full state
// and patch must be byte-identical (a regression fails the test). All of them decode the same.
// - v4 full states list a struct's fields in the order they were first assigned (collections,
//   created by the constructor, first) and children in attach order; odeon-schema writes fields
//   in index order, depth first, as v5 does.
// - "unshift m": the official encoder writes ADD 0 (an insert for v5, an unshift for v4);
//   odeon-schema rewrites the shifted positions, which every decoder reads the same way.
// - v5 removes struct items of an array with DELETE_BY_REFID (0x21); odeon-schema's one patch
//   serves every client generation and uses DELETE at the index, which all decoders accept.
// - shared_refs: after "a=undefined" the instance was garbage-collected by every client; placed
//   again, the official encoder reuses its refId, odeon-schema gives it a new one.
// - multi_order: the official encoder writes instances in the order they first changed (v4 also a
//   struct's fields); odeon-schema goes depth first through the tree, fields in index order.
const DIFFERS = {
  primitives: { v4: { full: ["opt=y", "opt=undefined,z", "same", "unicode"] } },
  nested: { v4: { full: ["vel=new", "pos=new"] } },
  maps: {
    v4: {
      full: ["remove+add b", "replace a", "a.qty", "counts x,y", "counts x=5", "counts remove y", "counts clear",
        "counts clear+add"],
    },
  },
  array_primitives: { v4: { patch: ["unshift m"] }, v5: { patch: ["unshift m"] } },
  array_structs: { v4: { full: ["[0]=new"] }, v5: { patch: ["splice(1,1)", "pop"] } },
  replace_collections: { v4: { full: ["m=new", "a=new"] } },
  shared_refs: {
    v4: {
      patch: ["a=p again", "l=[q,q]", "q.v=11"],
      full: ["a=b=m.k=p", "p.v=2", "b=undefined", "m.remove(k)", "a=undefined", "a=p again", "l=[q,q]", "q.v=11",
        "l.pop"],
    },
    v5: {
      patch: ["a=p again", "l=[q,q]", "q.v=11", "l.pop"],
      full: ["a=p again", "l=[q,q]", "q.v=11", "l.pop"],
    },
  },
  multi_order: { v4: { patch: ["p3 then p1 move", "p2 y then x"] }, v5: { patch: ["p3 then p1 move"] } },
  // plain: every v4 full state, for the first reason above (the root's collections come first).
  plain: {
    v4: {
      full: ["init", "turn=a", "turn=a again", "round,winner", "winner=undefined", "board[4]=1", "board[4]=1 again",
        "board[0]=2,[8]=1", "seats a,b", "a.mark=1", "scores x,y", "scores.x+=5", "lead=a", "lead.name",
        "lead=undefined", "every mark+1", "board=new", "every cell=2"],
    },
  },
};

const differs = (name, version, kind, label) => DIFFERS[name]?.[version]?.[kind]?.includes(label) ?? false;

for (const [name, scenario] of Object.entries(scenarios)) {
  test(name, async (t) => {
    const frames = rust[name];
    assert.ok(frames, `the Rust binary has no scenario ${name}`);
    assert.deepEqual(
      frames.steps.map((s) => s.label),
      ["init", ...Object.keys(scenario.steps)],
      "both sides run the same steps",
    );

    for (const version of ["v4", "v5"]) {
      const S = versions[version];
      const T = defineShapes(version, scenario.shapes);
      const state = scenario.build(T);
      const encoder = new S.Encoder(state);

      assert.equal(frames.reflection[version], toHex(S.Reflection.encode(encoder)), `${version} reflection`);

      const follower = new Client(version, fromHex(frames.reflection[version]));
      // What a client of the official encoder sees (float32 precision and all).
      const official = new Client(version, S.Reflection.encode(encoder));
      const mismatches = [];
      const steps = [["init", null], ...Object.entries(scenario.steps)];
      for (const [i, [label, change]] of steps.entries()) {
        const step = frames.steps[i];
        let officialPatch = null;
        if (change) {
          change(state, T, S);
          const bytes = encoder.encode().slice();
          officialPatch = bytes.length > 0 ? toHex(bytes) : null;
        }
        encoder.discardChanges();
        const officialFull = toHex(encoder.encodeAll().slice());
        official.apply(fromHex(i === 0 ? officialFull : officialPatch ?? ""));
        const expected = official.json();
        const where = `${name} ${version} step "${label}"`;

        assert.deepEqual(step.json, expected, `${where}: the Rust state's JSON`);

        if (i === 0) {
          follower.apply(fromHex(step.full));
        } else if (step.patch !== null) {
          follower.apply(fromHex(step.patch));
        }
        assert.deepEqual(follower.json(), expected, `${where}: a client following the patches`);
        assert.deepEqual(follower.refLeaks(), { leaked: [], missing: [] }, `${where}: refs of the follower`);

        const joiner = new Client(version, fromHex(frames.reflection[version]));
        joiner.apply(fromHex(step.full));
        assert.deepEqual(joiner.json(), expected, `${where}: a client joining with the full state`);

        const fullSame = step.full === officialFull;
        const patchSame = i === 0 || step.patch === officialPatch;
        if (!fullSame || !patchSame) {
          mismatches.push(label);
        }
        if (!differs(name, version, "full", label)) {
          assert.equal(step.full, officialFull, `${where}: full state bytes`);
        }
        if (i > 0 && !differs(name, version, "patch", label)) {
          assert.equal(step.patch, officialPatch, `${where}: patch bytes`);
        }
      }
      t.diagnostic(
        `${version}: ${steps.length - mismatches.length}/${steps.length} steps byte-identical` +
          (mismatches.length ? `; decode-equal only: ${mismatches.join(", ")}` : ""),
      );
    }
  });
}
