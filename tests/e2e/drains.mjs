// Draining hosts from a test: the admin calls drain.test.mjs and handover.test.mjs share.

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
