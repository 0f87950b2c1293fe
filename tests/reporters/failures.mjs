// A node:test reporter that prints, after everything else, one block per failed test: its
// file, its full name and the error. CI keeps only the tail of a long log, and the TAP stream
// puts a failure hundreds of lines before the end.
export default async function* failures(source) {
    const failed = [];
    const names = new Map(); // nesting -> name of the suite being run at that depth
    let suiteFile;
    for await (const event of source) {
        if (event.type === "test:start") {
            names.set(event.data.nesting, event.data.name);
            // Tests made by a helper report the helper"s file; the suite"s file is the one to rerun.
            if (event.data.nesting === 0) suiteFile = event.data.file;
        }
        if (event.type !== "test:fail") continue;
        const { data } = event;
        const cause = data.details?.error?.cause ?? data.details?.error;
        // A suite fails when one of its tests does; report the tests, not their suites again.
        // A test its suite cancelled (the suite"s hook failed) is that one failure again.
        const kind = data.details?.error?.failureType;
        if (kind === "cancelledByParent" || (data.details?.type === "suite" && kind === "subtestsFailed")) continue;
        const path = [];
        for (let depth = 0; depth < data.nesting; depth++) if (names.has(depth)) path.push(names.get(depth));
        path.push(data.name);
        failed.push({ file: suiteFile ?? data.file, path: path.join(" > "), cause });
    }
    if (failed.length === 0) return;
    yield `\n# ${failed.length} failed:\n`;
    for (const { file, path, cause } of failed) {
        yield `# ✖ ${path}\n#   ${file ?? ""}\n`;
        const text = String(cause?.stack ?? cause?.message ?? cause).split("\n").slice(0, 12);
        for (const line of text) yield `#     ${line}\n`;
    }
}
