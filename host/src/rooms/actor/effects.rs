//! Applying a guest call's effects: every `Effect` the room actor carries out, in order.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use odeon_protocol::abi::{Effect, Event, Outbound, RequestStatus};
use odeon_protocol::frame::{self, close};
use serde_json::Value;
use tokio::time::Instant;

use super::{MAX_TIMERS, Room, Serializer};
use crate::net::wire::OutFrame;
use crate::plugins::GuestError;
use crate::rooms::inputs::RoomInputs;

impl Room {
    /// Applies effects; returns the sessions whose join was rejected.
    pub(in crate::rooms) fn apply(
        &mut self,
        effects: Vec<Effect>,
        events: &mut Vec<Event>,
    ) -> HashSet<String> {
        let mut rejected = HashSet::new();
        let now = Instant::now();
        for effect in effects {
            match effect {
                Effect::Send { to, message } => {
                    let frame = outbound_frame(&message);
                    if message.after_patch {
                        self.hold_after_patch(Some(to), frame, Vec::new());
                    } else {
                        self.clients.send_to(&to, &frame);
                    }
                }
                Effect::Broadcast { message, except } => {
                    let frame = outbound_frame(&message);
                    if message.after_patch {
                        self.hold_after_patch(None, frame, except);
                    } else {
                        self.clients.broadcast(&frame, &except);
                    }
                }
                Effect::Error { to, code, message } => {
                    self.clients.send_to(&to, &frame::error(code, &message).into());
                }
                Effect::Leave { session_id, code } => {
                    if self.clients.get(&session_id).is_none() {
                        continue;
                    }
                    self.clients.close(&session_id, code);
                    // Colyseus treats a server-side close like any other: only 4000 is consented.
                    match code.unwrap_or(close::NO_STATUS) {
                        close::CONSENTED => {
                            self.clients.remove(&session_id);
                            events.push(Event::Leave { session_id, code: close::CONSENTED });
                        }
                        code => self.drop_client(session_id, code, events),
                    }
                }
                Effect::RejectJoin { session_id, code, message } => {
                    if let Some(c) = self.clients.remove(&session_id)
                        && let Some(wire) = &c.wire
                    {
                        let _ = wire.send(&frame::error(code, &message).into());
                        wire.close(Some(close::WITH_ERROR), &message);
                    }
                    rejected.insert(session_id);
                }
                Effect::CreateFailed { code, message } => {
                    tracing::warn!(
                        room = self.tag(),
                        code,
                        "CreateFailed outside creation ignored: {message}"
                    );
                }
                Effect::Lock => self.explicit_lock = true,
                Effect::Unlock => self.explicit_lock = false,
                Effect::SetMetadata(bytes) => match rmp_serde::from_slice::<Value>(&bytes) {
                    Ok(Value::Object(map)) => self.listing.metadata.extend(map),
                    _ => tracing::warn!(room = self.tag(), "metadata must be a map; ignored"),
                },
                Effect::SetPrivate(p) => self.listing.private = p,
                Effect::SetMaxClients(n) => self.listing.max_clients = (n > 0).then_some(n),
                Effect::SetPatchRate(ms) => {
                    self.schedule.set_patch_rate(Duration::from_millis(u64::from(ms)), now);
                    if !self.schedule.patches_on() {
                        self.flush_after_patch();
                    }
                }
                Effect::SetSimulationInterval(_) | Effect::TicksUnhandled if self.inputs.is_some() => {
                    tracing::debug!(
                        room = self.tag(),
                        "a room with inputs steps on its fixed timestep; ignored"
                    );
                }
                Effect::SetSimulationInterval(ms) => {
                    self.simulation_ms = ms;
                    // A room without a tick hook never gets ticks: they would be empty calls.
                    let every =
                        (ms > 0 && !self.ticks_unhandled).then(|| Duration::from_millis(u64::from(ms)));
                    self.schedule.set_simulation_interval(every, now);
                }
                Effect::SetAutoDispose(v) => self.auto_dispose = v,
                Effect::AllowReconnection { session_id, seconds } => {
                    self.seats.allow_reconnection(&session_id, seconds, now);
                }
                Effect::Disconnect { code } => {
                    self.clients.close_all(code);
                    self.disposing = true;
                }
                Effect::SetTimer { id, delay_ms, repeat } => {
                    if self.schedule.timer_count() >= MAX_TIMERS {
                        self.fault
                            .get_or_insert(GuestError::Flood(format!("over {MAX_TIMERS} pending timers")));
                        continue;
                    }
                    let delay = Duration::from_millis(delay_ms.max(if repeat { 1 } else { 0 }));
                    self.schedule.set_timer(id, delay, repeat, now);
                }
                Effect::ClearTimer { id } => self.schedule.clear_timer(id),
                Effect::SetSerializer { reflection_v4, reflection_v5 } => {
                    self.serializer = Some(Serializer { reflection_v4, reflection_v5 });
                }
                Effect::StateChanged => {
                    self.state_dirty = true;
                    self.schedule.want_patch(now);
                }
                Effect::FullState(bytes) => self.clients.full_state(state_frames(
                    self.inputs.as_ref(),
                    frame::code::ROOM_STATE,
                    bytes,
                    now,
                )),
                Effect::StatePatch(bytes) => {
                    // Encoded once by the guest, shared by every joined client (with a TIMED
                    // head of its own each in a room with inputs).
                    self.clients.patch(state_frames(
                        self.inputs.as_ref(),
                        frame::code::ROOM_STATE_PATCH,
                        bytes,
                        now,
                    ));
                    self.patch_pending = false;
                    self.flush_after_patch();
                }
                Effect::Respond { to, request_id, status, payload } => {
                    let status = match status {
                        RequestStatus::Ok => frame::status::OK,
                        RequestStatus::Rejected => frame::status::REJECTED,
                        RequestStatus::Error => frame::status::ERROR,
                    };
                    let frame = frame::room_response(request_id, status, payload.as_deref().map(|p| &p[..]));
                    self.clients.send_to(&to, &frame.into());
                }
                // Inputs and TIMED frames are 0.18's: older clients would not read them.
                Effect::SetInputs(_) if !self.deps.profile.has_requests() => {
                    tracing::debug!(room = self.tag(), "inputs need the 0.18 profile; ignored");
                }
                Effect::SetInputs(decl) => match RoomInputs::new(decl, self.created) {
                    Ok(inputs) => {
                        // Announced at creation, before any client connects.
                        let step = Duration::from_secs_f64(inputs.step_ms() / 1000.0);
                        self.inputs = Some(inputs);
                        self.schedule.set_simulation_interval(Some(step), now);
                        self.schedule.want_patch(now);
                    }
                    Err(e) => {
                        self.fault.get_or_insert(GuestError::Abi(format!("bad input declaration: {e}")));
                    }
                },
                Effect::Presence { op_id, op } => self.services.presence(op_id, op),
                Effect::QueryRooms { op_id, name } => self.services.query_rooms(op_id, name),
                Effect::TicksUnhandled => {
                    self.ticks_unhandled = true;
                    self.schedule.set_simulation_interval(None, now);
                }
            }
        }
        rejected
    }
}

/// A state body's frame per client: one shared ROOM_STATE/ROOM_STATE_PATCH frame, or, in a room
/// with inputs, the same body behind each client's TIMED head (its ack, the room clock).
fn state_frames(
    inputs: Option<&RoomInputs>,
    code: u8,
    body: Vec<u8>,
    now: Instant,
) -> impl Fn(&str) -> OutFrame + '_ {
    let shared: Bytes = match inputs {
        Some(_) => body.into(),
        None => state_frame(code, &body),
    };
    move |sid| match inputs {
        Some(inputs) => OutFrame::with_head(&inputs.head(code, sid, now), shared.clone()),
        None => shared.clone().into(),
    }
}

/// ROOM_STATE or ROOM_STATE_PATCH around the guest's encoded body.
fn state_frame(code: u8, body: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(body.len() + 1);
    frame.push(code);
    frame.extend_from_slice(body);
    frame.into()
}

fn outbound_frame(message: &Outbound) -> Bytes {
    frame::room_data(&message.kind, message.payload.as_deref().map(|b| b.as_ref()), message.bytes).into()
}
