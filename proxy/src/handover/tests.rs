//! The proxy following a room to its new host: the resume request, the splice, a resume
//! opened during the hold, and the 4010 when it cannot follow.

use super::*;
use crate::frames::tests::frame;
use crate::routes::Route;
use odeon_protocol::handover::{Control, Destination, held_payload};
use odeon_protocol::registry::PROXY_HEADER;
use tokio::net::{TcpListener, TcpStream};

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (b, _) = l.accept().await.unwrap();
    (a, b)
}

async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await.expect("bytes in time").unwrap();
    buf
}

/// A request head, lowercased: its request line and its headers.
async fn head(s: &mut TcpStream) -> (String, Vec<String>) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.extend(read_n(s, 1).await);
    }
    let text = String::from_utf8(head).unwrap();
    let mut lines = text.trim_end().split("\r\n");
    let first = lines.next().unwrap().to_string();
    (first, lines.map(str::to_ascii_lowercase).collect())
}

fn moved_to(process_id: &str) -> Vec<u8> {
    Control::Moved { process_id: process_id.into(), session_id: "s1".into(), token: "t/k".into() }
        .frame()
        .unwrap()
}

#[tokio::test]
async fn a_client_follows_its_room_to_the_new_host_and_gets_4010_when_it_cannot() {
    let new_host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let identity = Identity::generate().unwrap();
    let follow = follow_to(&new_host, &identity);
    let (mut client, client_side) = pair().await;
    let (old_side, mut old_host) = pair().await;
    let fut = follow.relay(Io::Tcp(client_side), Bytes::new(), Io::Tcp(old_side), Bytes::new(), "p1".into());
    // An idle client's task is this future: the relay, its Follow and no more.
    assert!(std::mem::size_of_val(&fut) <= 704, "the follow future is {} bytes", std::mem::size_of_val(&fut));
    let task = tokio::spawn(fut);
    // The old host holds the client, then sends its last frame and the marker.
    old_host.write_all(&Control::Hold { nonce: "h".into(), to: None }.frame().unwrap()).await.unwrap();
    let ping = read_n(&mut old_host, 6 + held_payload("h").len()).await;
    assert_eq!(ping[..2], [0x89, 0x80 | held_payload("h").len() as u8]);
    let held = frame(0x82, 300, true, 1);
    client.write_all(&held).await.unwrap();
    let (x, y) = (frame(0x82, 50, false, 2), frame(0x81, 5, false, 3));
    old_host.write_all(&[x.clone(), moved_to("p2")].concat()).await.unwrap();
    // The new host gets the resume, answers it with a frame right behind its 101, and then
    // gets the held frame.
    let (mut there, _) = timeout(Duration::from_secs(5), new_host.accept()).await.unwrap().unwrap();
    let (line, headers) = head(&mut there).await;
    assert_eq!(line, "GET /p2/room1?sessionId=s1&reconnectionToken=t%2Fk HTTP/1.1");
    let proof = format!("{PROXY_HEADER}: {}", identity.header().to_str().unwrap()).to_ascii_lowercase();
    for h in [
        "host: game.example",
        "connection: upgrade",
        "upgrade: websocket",
        "sec-websocket-version: 13",
        "x-odeon-resume: 1",
        "x-odeon-handover: 1",
        "x-forwarded-for: 203.0.113.9",
        "x-forwarded-proto: https",
        proof.as_str(),
    ] {
        assert!(headers.iter().any(|l| l == h), "{h} not in {headers:?}");
    }
    let key = headers.iter().find_map(|l| l.strip_prefix("sec-websocket-key: ")).unwrap();
    assert_eq!(key.len(), 24);
    let answer = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    there.write_all(&[&answer[..], &y].concat()).await.unwrap();
    assert_eq!(read_n(&mut there, held.len()).await, held);
    let mut expected = x.clone();
    expected.extend_from_slice(&y);
    assert_eq!(read_n(&mut client, expected.len()).await, expected);
    // Spliced: both ways.
    let z = frame(0x82, 9, true, 4);
    client.write_all(&z).await.unwrap();
    assert_eq!(read_n(&mut there, z.len()).await, z);
    // The room moves again, to a process the proxy does not know: the client is closed
    // with 4010 right after the new host's last frame.
    let last = frame(0x82, 20, false, 5);
    there.write_all(&[last.clone(), moved_to("p3")].concat()).await.unwrap();
    assert_eq!(read_n(&mut client, last.len()).await, last);
    let close = read_n(&mut client, 2).await;
    assert_eq!(close[0], 0x88);
    let body = read_n(&mut client, usize::from(close[1])).await;
    assert_eq!(body[..2], [0x0f, 0xaa]);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

/// A proxy's follow of `room1` for a client at 203.0.113.9, with `p2` at `new_host`.
fn follow_to(new_host: &TcpListener, identity: &Identity) -> Follow {
    let routes = Arc::new(Routes::default());
    routes.insert(Route::new("p2".into(), new_host.local_addr().unwrap().to_string(), 0));
    Follow {
        routes,
        identity: identity.clone(),
        client_ip: "203.0.113.9".parse().unwrap(),
        scheme: Scheme::Https,
        host: Some(HeaderValue::from_static("game.example")),
        room_id: "room1".into(),
        idle: Duration::from_secs(30),
    }
}

fn hold_to(nonce: &str, process_id: &str) -> Vec<u8> {
    let to = Destination { process_id: process_id.into(), session_id: "s1".into(), token: "t/k".into() };
    Control::Hold { nonce: nonce.into(), to: Some(to) }.frame().unwrap()
}

/// A client relayed to `p1` whose room is held for a move to `p2`, where nothing is accepted
/// yet.
struct Held {
    new_host: TcpListener,
    client: TcpStream,
    old_host: TcpStream,
    task: JoinHandle<()>,
}

async fn held_with_destination() -> Held {
    let new_host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let identity = Identity::generate().unwrap();
    let (client, client_side) = pair().await;
    let (old_side, mut old_host) = pair().await;
    let fut = follow_to(&new_host, &identity).relay(
        Io::Tcp(client_side),
        Bytes::new(),
        Io::Tcp(old_side),
        Bytes::new(),
        "p1".into(),
    );
    let task = tokio::spawn(fut);
    old_host.write_all(&hold_to("h", "p2")).await.unwrap();
    read_n(&mut old_host, 6 + held_payload("h").len()).await;
    Held { new_host, client, old_host, task }
}

const SWITCHING: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";

#[tokio::test]
async fn a_hold_that_names_the_new_host_has_the_resume_open_there_before_the_room_moves() {
    let Held { new_host, mut client, mut old_host, task } = held_with_destination().await;
    // The resume reaches the new host while the room still runs on the old one, whose frames
    // keep reaching the client.
    let (mut there, _) = timeout(Duration::from_secs(5), new_host.accept()).await.unwrap().unwrap();
    let (line, headers) = head(&mut there).await;
    assert_eq!(line, "GET /p2/room1?sessionId=s1&reconnectionToken=t%2Fk HTTP/1.1");
    assert!(headers.iter().any(|h| h == "x-odeon-resume: 1"), "{headers:?}");
    // The room arrives over there and sends the client a frame at once; it waits at the proxy
    // behind the old host's frames.
    let y = frame(0x81, 5, false, 3);
    there.write_all(&[SWITCHING, &y[..]].concat()).await.unwrap();
    let during = frame(0x82, 40, false, 1);
    old_host.write_all(&during).await.unwrap();
    assert_eq!(read_n(&mut client, during.len()).await, during);
    let held = frame(0x82, 300, true, 2);
    client.write_all(&held).await.unwrap();
    let x = frame(0x82, 50, false, 4);
    old_host.write_all(&[x.clone(), moved_to("p2")].concat()).await.unwrap();
    assert_eq!(read_n(&mut client, x.len() + y.len()).await, [x, y].concat());
    assert_eq!(read_n(&mut there, held.len()).await, held);
    // One connection: the one opened during the hold.
    assert!(
        timeout(Duration::from_millis(300), new_host.accept()).await.is_err(),
        "a second resume was opened"
    );
    let z = frame(0x82, 9, true, 5);
    client.write_all(&z).await.unwrap();
    assert_eq!(read_n(&mut there, z.len()).await, z);
    drop(client);
    drop(there);
    timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_hold_that_ends_without_a_move_closes_the_resume_it_opened() {
    let Held { new_host, mut client, mut old_host, task } = held_with_destination().await;
    let (mut there, _) = timeout(Duration::from_secs(5), new_host.accept()).await.unwrap().unwrap();
    head(&mut there).await;
    there.write_all(SWITCHING).await.unwrap();
    let held = frame(0x82, 30, true, 1);
    client.write_all(&held).await.unwrap();
    old_host.write_all(&Control::Resume.frame().unwrap()).await.unwrap();
    // The held frame goes to the old host, and the resume opened over there is closed.
    assert_eq!(read_n(&mut old_host, held.len()).await, held);
    let mut rest = Vec::new();
    timeout(Duration::from_secs(5), there.read_to_end(&mut rest)).await.expect("closed in time").unwrap();
    assert!(rest.is_empty());
    // The room runs on at the old host.
    let after = frame(0x82, 9, false, 2);
    old_host.write_all(&after).await.unwrap();
    assert_eq!(read_n(&mut client, after.len()).await, after);
    drop(client);
    drop(old_host);
    timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[test]
fn keys_and_query_values_are_encoded() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64(&[0xff; 16]), "/////////////////////w==");
    assert_eq!(base64(&[0u8; 16]).len(), 24);
    assert_eq!(encode("aZ9-_.~"), "aZ9-_.~");
    assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
}
