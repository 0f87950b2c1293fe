//! A guest's memory image (issue 17's move of a room to another host): a fresh instance of the
//! same version that is given the image continues exactly where the first one stopped, so a room
//! moves with no help from its author.

mod support;

use std::time::Duration;

use odeon_host::plugins::{GuestImage, Plugins};
use odeon_protocol::abi::{Batch, Event, MessageType};
use serde_json::json;
use support::rooms::{limits, plugin_bytes};

const DEADLINE: Duration = Duration::from_secs(1);

fn message(sid: &str, kind: &str, payload: serde_json::Value) -> Event {
    Event::Message {
        session_id: sid.into(),
        kind: MessageType::Str(kind.into()),
        payload: rmp_serde::to_vec_named(&payload).unwrap(),
    }
}

fn join(sid: &str) -> Event {
    Event::Join { session_id: sid.into(), options: vec![0x80], auth: Vec::new() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_given_an_image_continues_where_the_first_stopped() {
    let plugins = Plugins::new(limits()).unwrap();
    let arena = plugins.load("arena.wasm", plugin_bytes("arena")).await.unwrap();
    let mut first = arena.instantiate("first".into(), limits()).await.unwrap();
    let create = Event::Create { room_id: "r1".into(), room_name: "arena".into(), options: vec![0x80] };
    let start = vec![
        create,
        join("a"),
        join("b"),
        join("c"),
        message("a", "move", json!({"x": 1.5, "y": -2})),
        Event::Leave { session_id: "c".into(), code: 4000 },
        Event::Patch,
    ];
    first.events(&Batch { now_ms: 1, events: start }, DEADLINE).await.unwrap();

    let image = first.image();
    assert!(image.pages.len() < image.size as usize, "zero pages are left out");
    // It travels as bytes.
    let image: GuestImage = rmp_serde::from_slice(&rmp_serde::to_vec(&image).unwrap()).unwrap();
    let mut second = arena.instantiate("second".into(), limits()).await.unwrap();
    second.restore_image(&image).unwrap();

    // The same events to both: the same effects, patch and full-state bytes included.
    for (i, events) in [
        vec![message("b", "move", json!({"x": 3, "y": 4})), Event::Patch],
        vec![join("d"), Event::FullState, message("d", "build", json!(null))],
        vec![Event::Leave { session_id: "a".into(), code: 4000 }, Event::Tick { dt_ms: 50.0 }, Event::Patch],
    ]
    .into_iter()
    .enumerate()
    {
        let batch = Batch { now_ms: 2 + i as u64, events };
        let want = first.events(&batch, DEADLINE).await.unwrap();
        let got = second.events(&batch, DEADLINE).await.unwrap();
        assert!(!want.effects.is_empty(), "batch {i} did something");
        assert_eq!(got, want, "batch {i}");
    }
    // A fresh instance without the image holds no room: it answers otherwise.
    let mut fresh = arena.instantiate("fresh".into(), limits()).await.unwrap();
    let batch =
        Batch { now_ms: 9, events: vec![message("b", "move", json!({"x": 5, "y": 5})), Event::Patch] };
    assert_ne!(fresh.events(&batch, DEADLINE).await.unwrap(), first.events(&batch, DEADLINE).await.unwrap());
}
