//! The relay's side of a handover, over loopback TCP: control frames taken out of the host's
//! stream, holds cut at client frame boundaries and answered with a masked Ping, resumes, moves.

use std::time::Duration;

use odeon_protocol::handover::{CONTROL_FIRST_BYTE, Control, held_payload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::tests::pair;
use super::*;
use crate::frames::tests::frame;

/// A client and a host with a relay between them.
async fn rig() -> (TcpStream, TcpStream, JoinHandle<io::Result<End>>) {
    let (client, client_proxy_side) = pair().await;
    let (upstream_proxy_side, host) = pair().await;
    client.set_nodelay(true).unwrap();
    host.set_nodelay(true).unwrap();
    let task = tokio::spawn(relay(
        Io::Tcp(client_proxy_side),
        Bytes::new(),
        Io::Tcp(upstream_proxy_side),
        Bytes::new(),
        Duration::from_secs(30),
    ));
    (client, host, task)
}

/// A client's frame (masked).
fn up(len: usize, seed: u8) -> Vec<u8> {
    frame(0x82, len, true, seed)
}

/// A host's frame (unmasked).
fn down(len: usize, seed: u8) -> Vec<u8> {
    frame(0x82, len, false, seed)
}

fn control(c: &Control) -> Vec<u8> {
    c.frame().unwrap()
}

fn hold(nonce: &str) -> Vec<u8> {
    control(&Control::Hold { nonce: nonce.into(), to: None })
}

fn moved() -> Vec<u8> {
    control(&Control::Moved { process_id: "p2".into(), session_id: "s1".into(), token: "tok".into() })
}

async fn read_n<S: AsyncRead + Unpin>(s: &mut S, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{n} bytes did not arrive"))
        .unwrap();
    buf
}

/// Nothing arrives for a while.
async fn quiet(s: &mut TcpStream) {
    let mut b = [0u8; 1];
    if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await {
        panic!("unexpected {r:?}: {b:?}");
    }
}

/// Reads a masked Ping; its unmasked payload.
async fn read_ping(host: &mut TcpStream) -> Vec<u8> {
    let head = read_n(host, 2).await;
    assert_eq!(head[0], 0x89, "a Ping");
    assert_eq!(head[1] & 0x80, 0x80, "masked");
    let mask = read_n(host, 4).await;
    let payload = read_n(host, usize::from(head[1] & 0x7f)).await;
    payload.iter().enumerate().map(|(j, b)| b ^ mask[j % 4]).collect()
}

#[tokio::test]
async fn control_frames_are_taken_out_of_any_split_of_the_hosts_stream() {
    for (bytewise, big) in [(true, false), (false, true)] {
        let (mut client, mut host, task) = rig().await;
        let lens: &[usize] =
            if big { &[0, 1, 125, 126, 300, 70_000, 5, 1 << 20] } else { &[0, 1, 125, 126, 300] };
        let (mut stream, mut expected) = (Vec::new(), Vec::new());
        for (i, &len) in lens.iter().cycle().take(lens.len() * 3).enumerate() {
            let f = down(len, i as u8);
            expected.extend_from_slice(&f);
            stream.extend_from_slice(&f);
            // Between frames: a resume (no hold to end), a control frame that does not parse,
            // and one too long for a control frame.
            match i % 3 {
                0 => stream.extend(control(&Control::Resume)),
                1 => stream.extend([CONTROL_FIRST_BYTE, 3, b'h', b'e', b'y']),
                _ => stream.extend(frame(CONTROL_FIRST_BYTE, 200, false, 1)),
            }
        }
        let writer = tokio::spawn(async move {
            if bytewise {
                for b in stream {
                    host.write_all(&[b]).await.unwrap();
                    tokio::task::yield_now().await;
                }
            } else {
                for piece in stream.chunks(100_003) {
                    host.write_all(piece).await.unwrap();
                }
            }
            host
        });
        let got = read_n(&mut client, expected.len()).await;
        assert!(got == expected, "the client got other bytes than the host's frames ({} bytes)", got.len());
        let mut host = writer.await.unwrap();
        quiet(&mut client).await;
        // The relay still carries the client's bytes: nothing was held.
        let f = up(10, 1);
        client.write_all(&f).await.unwrap();
        assert_eq!(read_n(&mut host, f.len()).await, f);
        drop((client, host));
        assert!(matches!(task.await.unwrap().unwrap(), End::Closed));
    }
}

#[tokio::test]
async fn a_hold_cuts_after_the_frame_in_flight_and_a_resume_delivers_the_rest_in_order() {
    let (mut client, mut host, task) = rig().await;
    let (a, b, c, d) = (up(20, 1), up(300, 2), up(7, 3), up(70_000, 4));
    client.write_all(&a).await.unwrap();
    client.write_all(&b[..100]).await.unwrap();
    let mut expected = a.clone();
    expected.extend_from_slice(&b[..100]);
    assert_eq!(read_n(&mut host, expected.len()).await, expected);
    // The hold comes while B is partly through: B ends, then the Ping.
    host.write_all(&hold("n1")).await.unwrap();
    quiet(&mut host).await;
    client.write_all(&b[100..]).await.unwrap();
    client.write_all(&c).await.unwrap();
    client.write_all(&d[..50]).await.unwrap();
    assert_eq!(read_n(&mut host, b.len() - 100).await, &b[100..]);
    assert_eq!(read_ping(&mut host).await, held_payload("n1"));
    quiet(&mut host).await;
    // The host's frames still reach the client during the hold.
    let x = down(1000, 5);
    host.write_all(&x).await.unwrap();
    assert_eq!(read_n(&mut client, x.len()).await, x);
    // Resume: the held bytes, then the rest, in order, and frames are still followed: a new
    // hold once D is through answers at once.
    host.write_all(&control(&Control::Resume)).await.unwrap();
    let mut held = c.clone();
    held.extend_from_slice(&d[..50]);
    assert_eq!(read_n(&mut host, held.len()).await, held);
    client.write_all(&d[50..]).await.unwrap();
    assert_eq!(read_n(&mut host, d.len() - 50).await, &d[50..]);
    host.write_all(&hold("n2")).await.unwrap();
    assert_eq!(read_ping(&mut host).await, held_payload("n2"));
    host.write_all(&control(&Control::Resume)).await.unwrap();
    client.write_all(&a).await.unwrap();
    assert_eq!(read_n(&mut host, a.len()).await, a);
    drop((client, host));
    assert!(matches!(task.await.unwrap().unwrap(), End::Closed));
}

#[tokio::test]
async fn a_held_client_is_read_up_to_a_cap_and_everything_arrives_after_the_resume() {
    let (client, mut host, task) = rig().await;
    host.write_all(&hold("big")).await.unwrap();
    assert_eq!(read_ping(&mut host).await, held_payload("big"));
    // Thirteen megabytes of frames during the hold: more than the proxy holds and the sockets
    // buffer.
    let mut sent = Vec::new();
    for i in 0..200 {
        sent.extend(up(65_000, i));
    }
    let (mut cr, mut cw) = client.into_split();
    let blob = sent.clone();
    let writer = tokio::spawn(async move {
        cw.write_all(&blob).await.unwrap();
        cw
    });
    quiet(&mut host).await;
    assert!(!writer.is_finished(), "the client's writes should be held back by TCP");
    host.write_all(&control(&Control::Resume)).await.unwrap();
    let got = read_n(&mut host, sent.len()).await;
    assert!(got == sent, "the held frames arrived changed");
    let cw = writer.await.unwrap();
    drop((cw, host));
    let mut rest = Vec::new();
    cr.read_to_end(&mut rest).await.unwrap();
    assert!(matches!(task.await.unwrap().unwrap(), End::Closed));
}

#[tokio::test]
async fn a_hold_that_does_not_end_is_resumed() {
    let (mut client, mut host, task) = rig().await;
    host.write_all(&hold("late")).await.unwrap();
    assert_eq!(read_ping(&mut host).await, held_payload("late"));
    let a = up(30, 1);
    client.write_all(&a).await.unwrap();
    quiet(&mut host).await;
    let t0 = tokio::time::Instant::now();
    assert_eq!(read_n(&mut host, a.len()).await, a);
    assert!(t0.elapsed() >= hold::HOLD_TIMEOUT - Duration::from_millis(400), "{:?}", t0.elapsed());
    drop((client, host));
    assert!(matches!(task.await.unwrap().unwrap(), End::Closed));
}

/// The held bytes of `m` and what its client sends next are `sent`; the client's socket.
async fn held_then(m: Moved, sent: &[u8]) -> Io {
    assert!(sent.starts_with(&m.held), "held {} bytes that were not the client's frames", m.held.len());
    let mut io = m.client;
    assert_eq!(read_n(&mut io, sent.len() - m.held.len()).await, &sent[m.held.len()..]);
    io
}

fn expect_moved(end: io::Result<End>) -> Moved {
    match end.unwrap() {
        End::Moved(m) => *m,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_move_ends_the_relay_with_the_client_and_its_held_frames_after_the_hosts_last_ones() {
    let (mut client, mut host, task) = rig().await;
    host.write_all(&hold("n")).await.unwrap();
    assert_eq!(read_ping(&mut host).await, held_payload("n"));
    let (e, f) = (up(40, 1), up(500, 2));
    client.write_all(&e).await.unwrap();
    client.write_all(&f[..200]).await.unwrap();
    // The host's last frames are more than the sockets buffer and the client is not reading:
    // they are written out before the relay ends. What follows the marker is not forwarded.
    let last = down(4 << 20, 3);
    let mut tail = last.clone();
    tail.extend(moved());
    tail.extend(down(10, 4));
    let writer = tokio::spawn(async move {
        let _ = host.write_all(&tail).await;
        host
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "the relay ended before the client had the host's frames");
    let got = read_n(&mut client, last.len()).await;
    assert!(got == last, "the host's last frames arrived changed");
    let m = expect_moved(task.await.unwrap());
    assert_eq!((m.process_id.as_str(), m.session_id.as_str(), m.token.as_str()), ("p2", "s1", "tok"));
    // The client's socket is whole, both ways: the held bytes and what it sends next are its
    // frames after E, from E on.
    client.write_all(&f[200..]).await.unwrap();
    let mut sent = e.clone();
    sent.extend_from_slice(&f);
    let mut io = held_then(m, &sent).await;
    io.write_all(b"new host").await.unwrap();
    assert_eq!(read_n(&mut client, 8).await, b"new host");
    // And the old host's connection was closed.
    let mut host = writer.await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), host.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty(), "the old host got {} bytes after the marker", rest.len());
}

#[tokio::test]
async fn a_move_without_a_hold_holds_from_the_next_client_frame_boundary() {
    // At a boundary: everything after the marker is held.
    let (mut client, mut host, task) = rig().await;
    let (a, b, c) = (up(20, 1), up(300, 2), up(9, 3));
    client.write_all(&a).await.unwrap();
    assert_eq!(read_n(&mut host, a.len()).await, a);
    host.write_all(&moved()).await.unwrap();
    let m = expect_moved(task.await.unwrap());
    assert!(m.held.is_empty());
    let mut io = m.client;
    client.write_all(&b).await.unwrap();
    assert_eq!(read_n(&mut io, b.len()).await, b);

    // Within a frame: its rest is dropped (the old host had its start), what follows is held.
    let (mut client, mut host, task) = rig().await;
    client.write_all(&a).await.unwrap();
    client.write_all(&b[..100]).await.unwrap();
    assert_eq!(read_n(&mut host, a.len() + 100).await.len(), a.len() + 100);
    host.write_all(&moved()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!task.is_finished());
    client.write_all(&b[100..]).await.unwrap();
    client.write_all(&c).await.unwrap();
    let m = expect_moved(task.await.unwrap());
    held_then(m, &c).await;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), host.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert!(rest.is_empty(), "the old host got {} bytes after the marker", rest.len());
}
