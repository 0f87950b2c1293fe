// Draining hosts from a test: the admin calls drain.test.mjs and handover.test.mjs share.

import assert from "node:assert/strict";

/** `POST /odeon/admin/drain` on `host` with the admin `token`: its status and JSON answer. */
export async function drain(host, token) {
    const res = await fetch(`${host.http}/odeon/admin/drain`, { method: "POST", headers: { Authorization: `Bearer ${token}` } });
    return { status: res.status, body: await res.json() };
}

/** The process that runs `roomId`, by the listings `host` sees (a moved room's clients still use the path they knew). */
export async function whereRuns(host, token, roomId) {
    const res = await fetch(`${host.http}/odeon/admin/rooms`, { headers: { Authorization: `Bearer ${token}` } });
    return (await res.json()).rooms.find((r) => r.roomId === roomId)?.processId;
}

/** The process a peer's room runs on, by its WebSocket path (`/{processId}/{roomId}`). */
export function processOf(sdk, peer) {
    return peer.room.processId ?? sdk.ws(peer.room).url.split("/")[3];
}

/** Creates `name` rooms through `s` until one lands on `host` (the others stay, so load spreads). */
export async function roomOn(s, sdk, host, name, options = {}) {
    for (let i = 0; i < 12; i++) {
        const p = await s.join(sdk, "create", name, { ...options }, { label: `${name} ${i}` });
        if (processOf(sdk, p) === host.processId) return p;
    }
    assert.fail(`no ${name} room landed on ${host.label}`);
}
