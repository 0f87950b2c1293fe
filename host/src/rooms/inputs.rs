//! A room's inputs (Colyseus 0.18), for rooms that declared them: each client's current input
//! values, the copies waiting for a step, and how many were consumed (the ack its TIMED frames
//! carry). Everything here is the room actor's; nothing is shared.

use std::collections::VecDeque;

use odeon_protocol::abi::{InputDecl, StepInput};
use odeon_protocol::input::{self, FieldKind, InputError, InputValue};
use tokio::time::Instant;

/// Inputs a client may have waiting; on overflow the oldest is dropped and counts as consumed.
pub(super) const BUFFER: usize = 32;

/// One client's inputs.
struct ClientInputs {
    values: Vec<InputValue>,
    /// Copies of the values per input, with the seq of an unreliable one.
    queue: VecDeque<(Vec<u8>, Option<u64>)>,
    /// Reliable inputs consumed (or dropped), or, after unreliable ones, the last seq consumed.
    ack: u32,
    /// The highest unreliable seq buffered.
    last_seq: u64,
}

/// A room's inputs as they move with it to another host (a drain): the room clock and each
/// client's values, waiting copies and ack, so a client the proxy carries over sees its acks
/// and the clock go on where they were.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct InputsImage {
    /// The room clock when the room left, ms.
    pub clock_ms: u64,
    /// Per client, in step order: session, values, waiting copies (values, unreliable seq),
    /// ack, last unreliable seq.
    #[allow(clippy::type_complexity)]
    pub clients: Vec<(String, Vec<InputValue>, Vec<(serde_bytes::ByteBuf, Option<u64>)>, u32, u64)>,
}

pub(super) struct RoomInputs {
    decl: InputDecl,
    kinds: Vec<FieldKind>,
    created: Instant,
    /// Per client, in the order they first connected: the order steps take inputs in.
    clients: Vec<(String, ClientInputs)>,
}

impl RoomInputs {
    /// Inputs as the room declared them; `Err` names a field type inputs cannot hold.
    pub(super) fn new(decl: InputDecl, created: Instant) -> Result<Self, String> {
        let kinds = decl
            .fields
            .iter()
            .map(|(name, ty)| FieldKind::of(ty).ok_or_else(|| format!("input field {name} has type {ty}")))
            .collect::<Result<_, _>>()?;
        if decl.tick_rate_hz == 0 || decl.tick_rate_hz > 1000 {
            return Err(format!("input tick rate {} Hz is out of range", decl.tick_rate_hz));
        }
        Ok(Self { decl, kinds, created, clients: Vec::new() })
    }

    /// The inputs as they move with the room.
    pub(super) fn export(&self, now: Instant) -> InputsImage {
        let clients = self
            .clients
            .iter()
            .map(|(sid, c)| {
                let queue = c.queue.iter().map(|(v, seq)| (v.clone().into(), *seq)).collect();
                (sid.clone(), c.values.clone(), queue, c.ack, c.last_seq)
            })
            .collect();
        InputsImage { clock_ms: u64::from(self.server_now(now)), clients }
    }

    /// Inputs declared as `decl`, as `image` left them.
    pub(super) fn import(decl: InputDecl, image: InputsImage, now: Instant) -> Result<Self, String> {
        let created = now.checked_sub(std::time::Duration::from_millis(image.clock_ms)).unwrap_or(now);
        let mut inputs = Self::new(decl, created)?;
        for (sid, values, queue, ack, last_seq) in image.clients {
            if values.len() != inputs.kinds.len() {
                return Err(format!("moved inputs of {sid} have {} fields", values.len()));
            }
            let queue = queue.into_iter().map(|(v, seq)| (v.into_vec(), seq)).collect();
            inputs.clients.push((sid, ClientInputs { values, queue, ack, last_seq }));
        }
        Ok(inputs)
    }

    /// The declaration the room made.
    pub(super) fn decl(&self) -> &InputDecl {
        &self.decl
    }

    /// The fixed step, in milliseconds.
    pub(super) fn step_ms(&self) -> f64 {
        1000.0 / self.decl.tick_rate_hz as f64
    }

    /// The JOIN_ROOM sections after the state reflection.
    pub(super) fn sections(&self, patch_rate_ms: u32) -> Vec<u8> {
        let mut out = Vec::new();
        input::push_section(&mut out, input::section::INPUT_REFLECTION, &self.decl.reflection_v5);
        let options = input::options(self.decl.tick_rate_hz, patch_rate_ms, self.decl.sub_steps);
        input::push_section(&mut out, input::section::INPUT_OPTIONS, &options);
        out
    }

    /// A client connected (joined or reconnected): it starts with zero values and no inputs.
    pub(super) fn reset(&mut self, session_id: &str) {
        let values = self.kinds.iter().map(|k| InputValue::zero(*k)).collect();
        let fresh = ClientInputs { values, queue: VecDeque::new(), ack: 0, last_seq: 0 };
        match find(&mut self.clients, session_id) {
            Some(c) => *c = fresh,
            None => self.clients.push((session_id.to_owned(), fresh)),
        }
    }

    /// One reliable input: the delta applied to the client's values, a copy buffered. A delta
    /// that does not decode still counts as an input (the fields before the bad one apply).
    pub(super) fn reliable(&mut self, session_id: &str, delta: &[u8]) -> Result<(), InputError> {
        let Some(c) = find(&mut self.clients, session_id) else { return Ok(()) };
        let applied = input::apply_delta(&mut c.values, &self.kinds, delta);
        let copy = encode_values(&self.decl.fields, &c.values);
        push(c, copy, None);
        applied
    }

    /// An unreliable frame: every slot applied in order, only those newer than the last seen
    /// buffered (duplicates dropped).
    pub(super) fn unreliable(&mut self, session_id: &str, body: &[u8]) -> Result<(), InputError> {
        let Some(c) = find(&mut self.clients, session_id) else { return Ok(()) };
        for (seq, delta) in input::unreliable_slots(body)? {
            input::apply_delta(&mut c.values, &self.kinds, delta)?;
            if seq > c.last_seq {
                c.last_seq = seq;
                let copy = encode_values(&self.decl.fields, &c.values);
                push(c, copy, Some(seq));
            }
        }
        Ok(())
    }

    /// Takes at most one input per client, the oldest, for a step, in connection order; the
    /// clients `connected` says are gone are forgotten on the way.
    pub(super) fn take_step(&mut self, connected: impl Fn(&str) -> bool) -> Vec<StepInput> {
        self.clients.retain(|(sid, _)| connected(sid));
        let mut step = Vec::new();
        for (sid, c) in &mut self.clients {
            if let Some((values, seq)) = c.queue.pop_front() {
                consumed(c, seq);
                step.push(StepInput { session_id: sid.clone(), values });
            }
        }
        step
    }

    /// The TIMED head of a state frame (`code` ROOM_STATE or ROOM_STATE_PATCH) for a client.
    pub(super) fn head(&self, code: u8, session_id: &str, now: Instant) -> [u8; 9] {
        let ack = self.clients.iter().find(|(sid, _)| sid == session_id).map_or(0, |(_, c)| c.ack);
        input::timed_prefix(code, self.server_now(now), ack)
    }

    /// The room clock: whole milliseconds since the room was created.
    pub(super) fn server_now(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.created).as_millis().min(u32::MAX as u128) as u32
    }
}

/// A client's inputs (rooms hold a few dozen clients: a scan is cheaper than hashing).
fn find<'a>(clients: &'a mut [(String, ClientInputs)], session_id: &str) -> Option<&'a mut ClientInputs> {
    clients.iter_mut().find(|(sid, _)| sid == session_id).map(|(_, c)| c)
}

fn push(c: &mut ClientInputs, copy: Vec<u8>, seq: Option<u64>) {
    c.queue.push_back((copy, seq));
    if c.queue.len() > BUFFER
        && let Some((_, seq)) = c.queue.pop_front()
    {
        consumed(c, seq);
    }
}

/// Counts one input as consumed: a reliable one adds to the count; an unreliable one's ack is
/// its seq.
fn consumed(c: &mut ClientInputs, seq: Option<u64>) {
    c.ack = match seq {
        Some(seq) => seq.min(u32::MAX as u64) as u32,
        None => c.ack.wrapping_add(1),
    };
}

/// The values as the guest gets them: a MessagePack map from field name to value.
fn encode_values(fields: &[(String, String)], values: &[InputValue]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 12 * values.len());
    rmp::encode::write_map_len(&mut out, values.len() as u32).expect("writing to a Vec");
    for ((name, _), value) in fields.iter().zip(values) {
        rmp::encode::write_str(&mut out, name).expect("writing to a Vec");
        match value {
            InputValue::Number(n) => rmp::encode::write_f64(&mut out, *n).expect("writing to a Vec"),
            InputValue::String(s) => rmp::encode::write_str(&mut out, s).expect("writing to a Vec"),
            InputValue::Bool(b) => rmp::encode::write_bool(&mut out, *b).expect("writing to a Vec"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pilot() -> RoomInputs {
        let decl = InputDecl {
            reflection_v5: vec![1, 2, 3],
            fields: vec![("dx".into(), "number".into()), ("dy".into(), "number".into())],
            tick_rate_hz: 20,
            sub_steps: 1,
        };
        let mut inputs = RoomInputs::new(decl, Instant::now()).unwrap();
        inputs.reset("a");
        inputs.reset("b");
        inputs
    }

    fn values(step: &[StepInput]) -> Vec<(String, serde_json::Value)> {
        step.iter().map(|s| (s.session_id.clone(), rmp_serde::from_slice(&s.values).unwrap())).collect()
    }

    #[test]
    fn a_step_takes_one_input_per_client_and_an_empty_frame_repeats_the_last_values() {
        let mut inputs = pilot();
        inputs.reliable("a", &[0x80, 0x03, 0x81, 0x07]).unwrap();
        inputs.reliable("a", &[]).unwrap();
        inputs.reliable("a", &[0x81, 0x01]).unwrap();
        let all = |_: &str| true;
        let step = inputs.take_step(all);
        assert_eq!(values(&step), [("a".to_string(), serde_json::json!({"dx": 3.0, "dy": 7.0}))]);
        assert_eq!(inputs.head(0x0f, "a", inputs.created)[5..], 1u32.to_le_bytes());
        assert_eq!(inputs.head(0x0f, "b", inputs.created)[5..], 0u32.to_le_bytes());
        let step = inputs.take_step(all);
        assert_eq!(values(&step), [("a".to_string(), serde_json::json!({"dx": 3.0, "dy": 7.0}))]);
        let step = inputs.take_step(all);
        assert_eq!(values(&step), [("a".to_string(), serde_json::json!({"dx": 3.0, "dy": 1.0}))]);
        assert!(inputs.take_step(all).is_empty());
        assert_eq!(inputs.head(0x0f, "a", inputs.created)[5..], 3u32.to_le_bytes());
        // A reconnection starts over.
        inputs.reset("a");
        assert_eq!(inputs.head(0x0f, "a", inputs.created)[5..], 0u32.to_le_bytes());
    }

    #[test]
    fn the_buffer_keeps_the_newest_and_counts_the_dropped_as_consumed() {
        let mut inputs = pilot();
        for i in 0..(BUFFER as u8 + 3) {
            inputs.reliable("a", &[0x80, i]).unwrap();
        }
        assert_eq!(inputs.head(0x0f, "a", inputs.created)[5..], 3u32.to_le_bytes());
        let step = inputs.take_step(|sid| sid == "a");
        assert_eq!(values(&step)[0].1, serde_json::json!({"dx": 3.0, "dy": 0.0}));
    }

    #[test]
    fn unreliable_duplicates_are_dropped_and_the_ack_is_the_seq() {
        let mut inputs = pilot();
        inputs.unreliable("a", &[0x0a, 0x02, 0x80, 0x01]).unwrap();
        inputs.unreliable("a", &[0x0a, 0x02, 0x80, 0x01, 0x00]).unwrap();
        let step = inputs.take_step(|sid| sid == "a");
        assert_eq!(step.len(), 1);
        assert_eq!(inputs.head(0x0f, "a", inputs.created)[5..], 10u32.to_le_bytes());
        inputs.take_step(|sid| sid == "a");
        assert_eq!(inputs.head(0x0f, "a", inputs.created)[5..], 11u32.to_le_bytes());
        assert!(inputs.take_step(|sid| sid == "a").is_empty());
    }

    #[test]
    fn unknown_field_types_and_rates_are_refused() {
        let bad = InputDecl {
            reflection_v5: vec![],
            fields: vec![("m".into(), "map".into())],
            tick_rate_hz: 20,
            sub_steps: 1,
        };
        assert!(RoomInputs::new(bad, Instant::now()).err().unwrap().contains("input field m has type map"));
        let bad = InputDecl { reflection_v5: vec![], fields: vec![], tick_rate_hz: 0, sub_steps: 1 };
        assert!(RoomInputs::new(bad, Instant::now()).is_err());
    }
}
