// Loads each official SDK the way the e2e tests do and prints which
// @colyseus/schema version each one resolves from its own folder.
// Run: node e2e/smoke-sdks.mjs  (exits non-zero if an SDK resolves the wrong schema major)
import { createRequire } from "node:module";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);

function pkgDir(name) {
    // resolve the package.json of an installed package (works for npm aliases)
    return dirname(require.resolve(`${name}/package.json`));
}

function schemaVersionFrom(dir) {
    // @colyseus/schema does not export ./package.json: resolve its entry point
    // from inside the SDK's folder, then walk up to the package root.
    const req = createRequire(join(dir, "package.json"));
    let d = dirname(req.resolve("@colyseus/schema"));
    for (;;) {
        const candidate = join(d, "package.json");
        if (existsSync(candidate)) {
            const pkg = JSON.parse(readFileSync(candidate, "utf8"));
            if (pkg.name === "@colyseus/schema") return { path: candidate, version: pkg.version };
        }
        const up = dirname(d);
        if (up === d) throw new Error(`no @colyseus/schema package.json above ${dir}`);
        d = up;
    }
}

const expected = [
    { name: "colyseus.js", sdk: "0.16.22", schemaMajor: 3 },
    { name: "sdk17", sdk: "0.17.43", schemaMajor: 4 },
    { name: "sdk18", sdk: "0.18.4", schemaMajor: 5 },
];

let ok = true;
for (const e of expected) {
    const dir = pkgDir(e.name);
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    const schema = schemaVersionFrom(dir);
    const mod = await import(e.name);
    const exportsOk = typeof mod.Client === "function" && typeof mod.MatchMakeError === "function";
    const major = Number(schema.version.split(".")[0]);
    const good = pkg.version === e.sdk && major === e.schemaMajor && exportsOk;
    ok &&= good;
    console.log(`${good ? "ok " : "BAD"} ${e.name.padEnd(12)} ${pkg.name}@${pkg.version}  schema ${schema.version}  (${schema.path})  Client=${typeof mod.Client}`);
}
process.exit(ok ? 0 : 1);
