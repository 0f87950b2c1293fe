//! The byte relay: bytes unchanged both ways, backpressure, the idle timeout.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A connected pair of loopback TCP streams.
pub(super) async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (b, _) = l.accept().await.unwrap();
    (a, b)
}

type Relayed = (TcpStream, TcpStream, tokio::task::JoinHandle<io::Result<End>>);

/// A client and a host with a relay between them, started with these leftovers.
async fn relayed(client_leftover: &'static [u8], host_leftover: &'static [u8], idle: Duration) -> Relayed {
    let (client, client_proxy_side) = pair().await;
    let (upstream_proxy_side, host) = pair().await;
    let task = tokio::spawn(relay(
        Io::Tcp(client_proxy_side),
        Bytes::from_static(client_leftover),
        Io::Tcp(upstream_proxy_side),
        Bytes::from_static(host_leftover),
        idle,
    ));
    (client, host, task)
}

#[tokio::test]
async fn bytes_pass_unchanged_both_ways_leftovers_first_and_close_ends_the_relay() {
    let (mut client, mut host, task) = relayed(b"early-", b"hello-", Duration::from_secs(10)).await;
    client.write_all(b"up").await.unwrap();
    let mut got = [0u8; 8];
    host.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"early-up");
    host.write_all(b"down").await.unwrap();
    let mut got = [0u8; 10];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello-down");
    // A megabyte each way, concurrently, arrives whole and in order.
    let blob: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let (mut cr, mut cw) = client.into_split();
    let (mut hr, mut hw) = host.into_split();
    let (b1, b2) = (blob.clone(), blob.clone());
    let w1 = tokio::spawn(async move {
        cw.write_all(&b1).await.unwrap();
        cw
    });
    let w2 = tokio::spawn(async move {
        hw.write_all(&b2).await.unwrap();
        hw
    });
    let mut at_host = vec![0u8; blob.len()];
    let mut at_client = vec![0u8; blob.len()];
    hr.read_exact(&mut at_host).await.unwrap();
    cr.read_exact(&mut at_client).await.unwrap();
    assert!(at_host == blob && at_client == blob);
    drop((w1.await.unwrap(), w2.await.unwrap(), cr, hr));
    assert!(matches!(task.await.unwrap().unwrap(), End::Closed));
}

#[tokio::test]
async fn a_client_that_never_reads_holds_at_most_one_chunk() {
    let (client, mut host, task) = relayed(b"", b"", Duration::from_secs(30)).await;
    // The host writes until its socket is full: with the client not reading, that happens
    // after the kernel buffers, not after an unbounded amount queued in the proxy.
    let chunk = vec![1u8; 64 * 1024];
    let mut sent = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_millis(500), host.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => break,
        }
        assert!(sent < 64 << 20, "the relay kept reading from the host: {sent} bytes");
    }
    drop(client);
    drop(host);
    let _ = task.await.unwrap();
}

#[tokio::test]
async fn an_idle_relay_times_out_and_traffic_keeps_it_open() {
    let (mut client, mut host, task) = relayed(b"", b"", Duration::from_millis(400)).await;
    // Traffic every 150 ms for 1.5 s keeps it open.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        client.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        host.read_exact(&mut b).await.unwrap();
    }
    assert!(!task.is_finished());
    let quiet_from = tokio::time::Instant::now();
    assert!(matches!(task.await.unwrap().unwrap(), End::Idle));
    let waited = quiet_from.elapsed();
    // Between one timeout and one timeout plus a check (and scheduling slack).
    assert!(waited >= Duration::from_millis(300) && waited <= Duration::from_secs(3), "{waited:?}");
    // Both sockets were closed by the relay.
    let mut b = [0u8; 1];
    assert_eq!(host.read(&mut b).await.unwrap(), 0);
}

/// What an idle client costs the proxy is mostly this future (and its sockets): it holds no
/// buffer, and nothing a handover needs until one starts.
#[tokio::test]
async fn an_idle_relay_is_a_few_hundred_bytes() {
    let (a, _b) = pair().await;
    let (c, _d) = pair().await;
    let relay = relay(Io::Tcp(a), Bytes::new(), Io::Tcp(c), Bytes::new(), Duration::from_secs(1));
    assert!(
        std::mem::size_of_val(&relay) <= 448,
        "the relay's future is {} bytes",
        std::mem::size_of_val(&relay)
    );
}
