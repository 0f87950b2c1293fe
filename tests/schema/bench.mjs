// The baseline for `just bench`: the official @colyseus/schema 5 encoder (what a Colyseus 0.18
// server runs) on the same 50-player arena state, measured in this run, next to the Rust
// encoder's criterion estimates from the run just before. Prints times and ratios.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { versions, defineShapes } from "./official.mjs";

const PLAYERS = 50;
const S = versions.v5;
const T = defineShapes("v5", [
  ["Player", { x: "number", y: "number" }],
  ["Arena", { players: { map: "Player" } }],
]);

const state = new T.Arena();
const players = [];
for (let i = 0; i < PLAYERS; i++) {
  const p = new T.Player();
  p.x = i * 1.5;
  p.y = -i;
  state.players.set(`player${String(i).padStart(4, "0")}`, p);
  players.push(p);
}
const encoder = new S.Encoder(state);
encoder.encode();
encoder.discardChanges();

let step = 0;
const moveAll = () => {
  step += 0.25;
  players.forEach((p, i) => { p.x = i + step; p.y = step * 2 - i; });
};

/** Median ns per call over `rounds` rounds of `n` calls, after a warm-up. */
function measure(fn, n = 2000, rounds = 15) {
  for (let i = 0; i < n; i++) fn();
  const samples = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn();
    samples.push(((performance.now() - t0) * 1e6) / n);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(rounds / 2)];
}

const js = {
  full_state_50: measure(() => encoder.encodeAll()),
  patch_50_moved: measure(() => { moveAll(); encoder.encode(); encoder.discardChanges(); }),
  patch_50_idle: measure(() => { encoder.encode(); encoder.discardChanges(); }),
};

const target = process.env.CARGO_TARGET_DIR ?? join(import.meta.dirname, "..", "..", "target");
const rust = {};
for (const id of Object.keys(js)) {
  const file = join(target, "criterion", id, "new", "estimates.json");
  rust[id] = JSON.parse(readFileSync(file, "utf8")).median.point_estimate;
}

const fmt = (ns) => (ns >= 1000 ? `${(ns / 1000).toFixed(2)} µs` : `${ns.toFixed(0)} ns`);
console.log(`\n50-player arena, median per operation (Rust: criterion; baseline: @colyseus/schema 5.0.34 on Node ${process.version}, same run)\n`);
console.log("| operation | odeon-schema | @colyseus/schema | speed-up |");
console.log("|---|---|---|---|");
for (const id of Object.keys(js)) {
  console.log(`| ${id} | ${fmt(rust[id])} | ${fmt(js[id])} | ${(js[id] / rust[id]).toFixed(1)}× |`);
}
