// The Colyseus frame format for raw WebSocket tests: schema string/number codecs (little-endian,
// protocol §4), plain MessagePack (no msgpackr records), and a tiny client that joins through
// matchmaking and reads frames one at a time. Re-exported by harness.mjs.

import assert from "node:assert/strict";
import WebSocket from "ws";
import { Packr, Unpackr } from "msgpackr";
import { hex, matchmake, reservationTarget, sleep, waitFor } from "./harness.mjs";

// ---------------------------------------------------------------------------
// Colyseus frame codecs (schema string/number: little-endian, see protocol §4)
// ---------------------------------------------------------------------------

export const Code = { JOIN_ROOM: 10, ERROR: 11, LEAVE_ROOM: 12, ROOM_DATA: 13, ROOM_DATA_BYTES: 17, PING: 18 };

export function encodeSchemaString(str) {
    const bytes = Buffer.from(str, "utf8");
    const n = bytes.length;
    let head;
    if (n < 32) head = Buffer.from([0xa0 | n]);
    else if (n < 0x100) head = Buffer.from([0xd9, n]);
    else if (n < 0x10000) head = Buffer.from([0xda, n & 0xff, n >> 8]);
    else { head = Buffer.alloc(5); head[0] = 0xdb; head.writeUInt32LE(n, 1); }
    return Buffer.concat([head, bytes]);
}

/** Decode a schema string or number at `it.offset` (the type of ROOM_DATA, the code of ERROR...). */
export function decodeSchemaValue(buf, it) {
    const b = buf[it.offset++];
    const readStr = (len) => { const s = buf.subarray(it.offset, it.offset + len).toString("utf8"); it.offset += len; return s; };
    if (b >= 0xa0 && b <= 0xbf) return readStr(b & 0x1f);
    if (b === 0xd9) { const l = buf[it.offset]; it.offset += 1; return readStr(l); }
    if (b === 0xda) { const l = buf.readUInt16LE(it.offset); it.offset += 2; return readStr(l); }
    if (b === 0xdb) { const l = buf.readUInt32LE(it.offset); it.offset += 4; return readStr(l); }
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 0x100;
    switch (b) {
        case 0xcc: { const v = buf[it.offset]; it.offset += 1; return v; }
        case 0xcd: { const v = buf.readUInt16LE(it.offset); it.offset += 2; return v; }
        case 0xce: { const v = buf.readUInt32LE(it.offset); it.offset += 4; return v; }
        case 0xd0: { const v = buf.readInt8(it.offset); it.offset += 1; return v; }
        case 0xd1: { const v = buf.readInt16LE(it.offset); it.offset += 2; return v; }
        case 0xd2: { const v = buf.readInt32LE(it.offset); it.offset += 4; return v; }
        case 0xca: { const v = buf.readFloatLE(it.offset); it.offset += 4; return v; }
        case 0xcb: { const v = buf.readDoubleLE(it.offset); it.offset += 8; return v; }
        default: throw new Error(`cannot decode schema value tag 0x${b.toString(16)} at ${it.offset - 1} in ${hex(buf)}`);
    }
}

// Plain MessagePack: no msgpackr records, no structured clone extensions.
export const plainPackr = new Packr({ useRecords: false, structuredClone: false, moreTypes: false });
export const plainUnpackr = new Unpackr({ useRecords: false, structuredClone: false, mapsAsObjects: true });

export function roomData(type, payloadBytes) {
    const parts = [Buffer.from([Code.ROOM_DATA]), encodeSchemaString(type)];
    if (payloadBytes !== undefined) parts.push(Buffer.from(payloadBytes));
    return Buffer.concat(parts);
}

export function roomDataBytes(type, bytes) {
    return Buffer.concat([Buffer.from([Code.ROOM_DATA_BYTES]), encodeSchemaString(type), Buffer.from(bytes)]);
}

/** Parse a server frame into {code, ...}. */
export function parseFrame(buf) {
    buf = Buffer.from(buf);
    const code = buf[0];
    const it = { offset: 1 };
    if (code === Code.ROOM_DATA) {
        const type = decodeSchemaValue(buf, it);
        const payloadBytes = buf.subarray(it.offset);
        const payload = payloadBytes.length ? plainUnpackr.unpack(payloadBytes) : undefined;
        return { code, type, payload, payloadBytes, raw: buf };
    }
    if (code === Code.ROOM_DATA_BYTES) {
        const type = decodeSchemaValue(buf, it);
        return { code, type, bytes: buf.subarray(it.offset), raw: buf };
    }
    if (code === Code.ERROR) {
        const errCode = decodeSchemaValue(buf, it);
        const message = decodeSchemaValue(buf, it);
        return { code, errCode, message, raw: buf };
    }
    if (code === Code.JOIN_ROOM) {
        const tl = buf[it.offset++];
        const token = buf.subarray(it.offset, it.offset + tl).toString("utf8"); it.offset += tl;
        const sl = buf[it.offset++];
        const serializer = buf.subarray(it.offset, it.offset + sl).toString("utf8"); it.offset += sl;
        return { code, token, serializer, rest: buf.subarray(it.offset), raw: buf };
    }
    return { code, raw: buf };
}

// ---------------------------------------------------------------------------
// Raw WebSocket client
// ---------------------------------------------------------------------------

export class RawClient {
    /**
     * Matchmake over HTTP, connect, and (unless ack: false) consume JOIN_ROOM and send the [10] ack.
     */
    static async join(host, method, roomNameOrId, options = {}, { ack = true } = {}) {
        const r = await matchmake(host, method, roomNameOrId, options);
        assert.equal(r.status, 200, `matchmake ${method}/${roomNameOrId} should succeed, got ${r.status} ${r.text}`);
        return RawClient.fromReservation(host, r.body, { ack });
    }

    /** Connect with a reservation obtained over HTTP (either shape). */
    static async fromReservation(host, reservation, { ack = true } = {}) {
        const t = reservationTarget(reservation);
        const raw = new RawClient(`${host.endpoint}/${t.processId}/${t.roomId}?sessionId=${t.sessionId}`);
        raw.reservation = reservation;
        raw.roomId = t.roomId;
        raw.sessionId = t.sessionId;
        await raw.opened;
        if (ack) {
            const join = await raw.nextFrame(3000, "JOIN_ROOM");
            assert.equal(join[0], Code.JOIN_ROOM, `first frame should be JOIN_ROOM, got ${hex(join)}`);
            raw.joinFrame = join;
            raw.send([Code.JOIN_ROOM]);
        }
        return raw;
    }

    constructor(url) {
        this.url = url;
        this.frames = [];
        this.waiters = [];
        this.ws = new WebSocket(url);
        this.ws.binaryType = "nodebuffer";
        this.closeInfo = null;
        this.opened = new Promise((resolveOpen, reject) => {
            this.ws.once("open", resolveOpen);
            this.ws.once("error", (e) => reject(new Error(`raw ws ${url}: ${e.message}`)));
            this.ws.once("close", (code) => reject(new Error(`raw ws closed before open (${code})`)));
        });
        this.opened.catch(() => {});
        this.closed = new Promise((resolveClose) => {
            this.ws.on("close", (code, reason) => {
                this.closeInfo = { code, reason: reason.toString("utf8"), at: Date.now() };
                resolveClose(this.closeInfo);
                for (const w of this.waiters.splice(0)) w.reject(new Error(`socket closed (${code} ${JSON.stringify(reason.toString())}) while waiting for ${w.what}`));
            });
        });
        this.ws.on("error", () => { /* surfaced through close */ });
        this.ws.on("message", (data, isBinary) => {
            const buf = Buffer.from(data);
            buf.isBinary = isBinary;
            const w = this.waiters.shift();
            if (w) w.resolve(buf); else this.frames.push(buf);
        });
    }

    get isOpen() { return this.ws.readyState === WebSocket.OPEN; }

    send(bytes) { this.ws.send(Buffer.from(bytes)); }

    sendData(type, payloadBytes) { this.send(roomData(type, payloadBytes)); }

    nextFrame(ms = 3000, what = "a frame") {
        if (this.frames.length) return Promise.resolve(this.frames.shift());
        if (this.closeInfo) return Promise.reject(new Error(`socket already closed (${this.closeInfo.code}) while waiting for ${what}`));
        let w;
        const p = new Promise((resolveFrame, reject) => { w = { resolve: resolveFrame, reject, what }; this.waiters.push(w); });
        return waitFor(p, ms, `raw frame: ${what}`).catch((e) => {
            const i = this.waiters.indexOf(w);
            if (i >= 0) this.waiters.splice(i, 1);
            throw e;
        });
    }

    /** Next ROOM_DATA frame of the given type (other frames are skipped). */
    async nextData(type, ms = 3000) {
        const deadline = Date.now() + ms;
        for (;;) {
            const left = deadline - Date.now();
            if (left <= 0) throw new Error(`timed out waiting for ROOM_DATA "${type}"`);
            const f = parseFrame(await this.nextFrame(left, `ROOM_DATA "${type}"`));
            if (f.code === Code.ROOM_DATA && f.type === type) return f;
        }
    }

    /** Assert that no frame arrives within ms. */
    async noFrame(ms, what = "no frame") {
        assert.equal(this.frames.length, 0, `${what}: unexpected queued frame ${this.frames.map(hex).join(" | ")}`);
        await sleep(ms);
        assert.equal(this.frames.length, 0, `${what}: unexpected frame ${this.frames.map(hex).join(" | ")}`);
    }

    waitClose(ms = 5000, what = "close") { return waitFor(this.closed, ms, what); }

    /** Send echo with a plain msgpack payload and return the parsed reply. */
    async echo(value, ms = 3000) {
        this.sendData("echo", plainPackr.pack(value));
        return this.nextData("echo", ms);
    }

    leave() { if (this.isOpen) this.send([Code.LEAVE_ROOM]); }

    terminate() {
        try { this.ws.terminate(); } catch { /* ignore */ }
    }
}
