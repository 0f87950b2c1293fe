// The official @colyseus/schema encoders and decoders (v4 = 4.0.31, the 0.16/0.17 wire; v5 =
// 5.0.34, the 0.18 wire), and the Rust side: the `schema-scenarios` binary of odeon-schema.

import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { format } from "node:util";
import * as schema4 from "schema4";
import * as schema5 from "schema5";

export const versions = { v4: schema4, v5: schema5 };

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

/** Runs `schema-scenarios` (ODEON_SCHEMA_SCENARIOS_BIN, else `cargo run`) and parses its JSON. */
export function runRust(...args) {
  const bin = process.env.ODEON_SCHEMA_SCENARIOS_BIN;
  const [cmd, cmdArgs] = bin
    ? [bin, args]
    : ["cargo", ["run", "-q", "-p", "odeon-schema", "--bin", "schema-scenarios", "--", ...args]];
  const out = execFileSync(cmd, cmdArgs, {
    cwd: repoRoot,
    encoding: "utf8",
    maxBuffer: 1 << 30,
    stdio: ["ignore", "pipe", "inherit"],
  });
  return JSON.parse(out);
}

export const fromHex = (hex) => Uint8Array.from(Buffer.from(hex, "hex"));
export const toHex = (bytes) => Buffer.from(bytes).toString("hex");

/** The JSON a client would print: undefined fields dropped, -0 as 0. */
export const normalize = (value) => JSON.parse(JSON.stringify(value));

/**
 * Runs `fn` and fails if the official code complains on the console: the decoders report a
 * missing refId, a definition mismatch or a bad ref count there instead of throwing.
 */
export function strict(fn) {
  const complaints = [];
  const { warn, error } = console;
  console.warn = (...args) => complaints.push(format(...args));
  console.error = (...args) => complaints.push(format(...args));
  let result;
  try {
    result = fn();
  } finally {
    console.warn = warn;
    console.error = error;
  }
  if (complaints.length > 0) {
    throw new Error(`@colyseus/schema complained: ${complaints.join(" | ")}`);
  }
  return result;
}

/**
 * Defines schema classes from a version-neutral description, in dependency order:
 * `[["Player", { x: "number", pet: { ref: "Pet" }, bag: { array: "string" } }], …]`.
 * References are optional (no instance is created by default), as `Option<Shared<T>>` and an
 * explicitly built `Shared<T>` are on the Rust side.
 */
export function defineShapes(version, shapes) {
  const S = versions[version];
  const classes = {};
  const child = (name) => classes[name] ?? name;
  for (const [name, fields] of shapes) {
    const definition = {};
    for (const [field, type] of Object.entries(fields)) {
      if (version === "v4") {
        if (typeof type === "string") definition[field] = type;
        else if (type.ref) definition[field] = { type: classes[type.ref], default: undefined };
        else if (type.map) definition[field] = { map: child(type.map) };
        else definition[field] = { array: child(type.array) };
      } else {
        if (typeof type === "string") definition[field] = S.t[type]();
        else if (type.ref) definition[field] = S.t.ref(classes[type.ref]).optional();
        else if (type.map) definition[field] = S.t.map(child(type.map));
        else definition[field] = S.t.array(child(type.array));
      }
    }
    classes[name] = S.schema(definition, name);
  }
  return classes;
}

/** A client: the official decoder built from a reflection handshake. */
export class Client {
  constructor(version, reflection) {
    this.S = versions[version];
    this.decoder = strict(() => this.S.Reflection.decode(reflection));
  }

  apply(bytes) {
    strict(() => this.decoder.decode(bytes));
  }

  json() {
    return normalize(this.decoder.state.toJSON());
  }

  /** Refs the decoder still tracks that the state no longer reaches (leaks), and the reverse. */
  refLeaks() {
    const { $refId, MapSchema, ArraySchema } = this.S;
    const reached = new Set();
    const visit = (value) => {
      if (value === null || typeof value !== "object" || value[$refId] === undefined) return;
      if (reached.has(value[$refId])) return;
      reached.add(value[$refId]);
      if (value instanceof MapSchema || value instanceof ArraySchema) {
        for (const item of value.values()) visit(item);
      } else {
        const metadata = value.constructor[Symbol.metadata];
        for (const key of Object.keys(metadata)) {
          if (/^\d+$/.test(key)) visit(value[metadata[key].name]);
        }
      }
    };
    visit(this.decoder.state);
    const tracked = [...this.decoder.root.refs.keys()];
    return {
      leaked: tracked.filter((id) => !reached.has(id)),
      missing: [...reached].filter((id) => !this.decoder.root.refs.has(id)),
    };
  }
}
