//! The `lobby` room, like Colyseus's LobbyRoom: it lists the rooms of every host process and
//! keeps its clients up to date. Build it with `just plugins`.
//!
//! - On join a client gets `rooms`: every public room (lobbies excluded) as a listing
//!   `{roomId, name, processId, clients, maxClients, locked, metadata}`.
//! - Then `+ [roomId, listing]` when a room appears or its listing changes, and `- roomId` when
//!   it goes away.
//!
//! The host announces listing changes on the global presence channel `$lobby`; the lobby answers
//! each announcement with a room query and sends the difference.

use std::collections::{BTreeMap, HashMap};

use odeon_guest::prelude::*;
use serde::Serialize;

/// The lobby room.
#[derive(Default)]
pub struct Lobby {
    /// The listings clients were last told about.
    known: BTreeMap<String, RoomInfo>,
    /// Room queries issued for joiners, with the clients waiting for their answer.
    joiners: HashMap<OpId, Vec<String>>,
}

/// A room as lobby clients see it.
#[derive(Serialize, Clone, PartialEq, Debug)]
#[serde(rename_all = "camelCase")]
struct RoomInfo {
    room_id: String,
    name: String,
    process_id: String,
    clients: u32,
    max_clients: Option<u32>,
    locked: bool,
    metadata: Value,
}

impl RoomInfo {
    fn from_listing(l: Listing) -> Self {
        let metadata = Payload::new(l.metadata).value().unwrap_or(Value::Map(Vec::new()));
        Self {
            room_id: l.room_id,
            name: l.name,
            process_id: l.process_id,
            clients: l.clients,
            max_clients: l.max_clients,
            locked: l.locked,
            metadata,
        }
    }
}

impl Room for Lobby {
    const NAME: &'static str = "lobby";
    type State = ();
    type UserData = ();

    fn on_create(ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
        ctx.presence().subscribe(Key::global("$lobby"));
        Ok(Self::default())
    }

    fn on_join(
        &mut self,
        ctx: &mut Ctx,
        client: &Client,
        _options: Payload,
        _auth: Payload,
    ) -> Result<(), RoomError> {
        let op = ctx.query_rooms(None);
        self.joiners.entry(op).or_default().push(client.session_id().to_owned());
        Ok(())
    }

    fn on_presence_message(&mut self, ctx: &mut Ctx, _topic: &str, _message: &str) {
        ctx.query_rooms(None);
    }

    fn on_rooms(&mut self, ctx: &mut Ctx, op: OpId, result: Result<Vec<Listing>, String>) {
        let listings = match result {
            Ok(listings) => listings,
            Err(e) => {
                ctx.warn(format_args!("room query failed: {e}"));
                return;
            }
        };
        let now: BTreeMap<String, RoomInfo> = listings
            .into_iter()
            .filter(|l| !l.private && l.name != Self::NAME)
            .map(|l| (l.room_id.clone(), RoomInfo::from_listing(l)))
            .collect();
        for (id, info) in &now {
            if self.known.get(id) != Some(info) {
                ctx.broadcast("+", &(id, info));
            }
        }
        for id in self.known.keys().filter(|id| !now.contains_key(*id)) {
            ctx.broadcast("-", id);
        }
        self.known = now;
        for sid in self.joiners.remove(&op).unwrap_or_default() {
            if let Some(client) = ctx.client(&sid).cloned() {
                ctx.send(&client, "rooms", &self.known.values().collect::<Vec<_>>());
            }
        }
    }
}

export_room!(Lobby);

#[cfg(test)]
mod tests {
    use super::*;
    use odeon_guest::testing::{TestRoom, listing};
    use serde_json::{Value as Json, json};

    #[test]
    fn joiners_get_the_rooms_then_changes() {
        let mut room = TestRoom::<Lobby>::create(json!({})).unwrap();
        assert!(room.is_subscribed(Key::global("$lobby")));
        room.set_rooms(vec![listing("echo", "r1"), listing("lobby", "me")]);
        room.join("a", json!({})).unwrap();
        let rooms = room.sent_to::<Json>("a", "rooms");
        assert_eq!(rooms.len(), 1);
        assert_eq!(rooms[0].as_array().unwrap().len(), 1, "lobbies are not listed");
        assert_eq!(rooms[0][0]["roomId"], "r1");
        room.take_effects();

        room.set_rooms(vec![listing("echo", "r1"), listing("echo", "r2")]);
        assert!(room.deliver_presence_message(Key::global("$lobby"), "r2,0"));
        let added = room.sent_to::<Json>("a", "+");
        assert_eq!(added.len(), 1);
        assert_eq!(added[0][0], "r2");
        room.take_effects();

        room.set_rooms(vec![listing("echo", "r2")]);
        room.deliver_presence_message(Key::global("$lobby"), "r1,1");
        assert_eq!(room.sent_to::<Json>("a", "-"), [json!("r1")]);
    }
}
