// Small adapters that hide the per-SDK API differences from the shared suite.
//
// All three SDKs expose the same Room surface for what the suite needs
// (send, sendBytes, onMessage("*"), onLeave, onError, leave, reconnectionToken);
// bytes arrive through onMessage(type) with a Uint8Array in all of them
// (none of these SDK versions has a separate onMessageBytes). 0.17/0.18 add
// onDrop/onReconnect, automatic reconnection (room.reconnection.*) and ping().

import * as sdk16 from "colyseus.js";
import * as sdk17 from "sdk17";
import * as sdk18 from "sdk18";
import { PROFILES } from "./harness.mjs";

function common(id, mod, profile, label) {
    return {
        id,
        label,
        profile,
        expect: PROFILES[profile],
        Client: mod.Client,
        getStateCallbacks: mod.getStateCallbacks,
        MatchMakeError: mod.MatchMakeError,
        ServerError: mod.ServerError,
        client(host) { return new mod.Client(host.endpoint); },
        /** The SDK's `ws` socket (Node 20 has no global WebSocket, so it is the `ws` package). */
        ws(room) { return room.connection.transport.ws; },
        sendBytes(room, type, bytes) { room.sendBytes(type, bytes); },
    };
}

export const SDK16 = {
    ...common("sdk16", sdk16, "0.16", "colyseus.js 0.16.22"),
    autoReconnect: false,
    hasPing: false,
    setMinUptime() { /* no automatic reconnection in 0.16 */ },
    disableAutoReconnect() { /* nothing to disable */ },
};

export const SDK17 = {
    ...common("sdk17", sdk17, "0.17", "@colyseus/sdk 0.17.43"),
    autoReconnect: true,
    hasPing: true,
    setMinUptime(room, ms) { room.reconnection.minUptime = ms; },
    disableAutoReconnect(room) { room.reconnection.enabled = false; },
};

export const SDK18 = {
    ...common("sdk18", sdk18, "0.18", "@colyseus/sdk 0.18.4"),
    autoReconnect: true,
    hasPing: true,
    setMinUptime(room, ms) { room.reconnection.minUptime = ms; },
    disableAutoReconnect(room) { room.reconnection.enabled = false; },
};

export const SDK_BY_PROFILE = { "0.16": SDK16, "0.17": SDK17, "0.18": SDK18 };
