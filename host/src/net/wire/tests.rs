//! The wire's framing, ordering and bounds against a real loopback socket.

use super::*;

#[test]
fn binary_headers_match_rfc_6455() {
    let header = |len| {
        let mut out = [0u8; HEADER_MAX];
        let n = binary_header(len, &mut out);
        out[..n].to_vec()
    };
    assert_eq!(header(5), [0x82, 5]);
    assert_eq!(header(300), [0x82, 126, 1, 44]);
    assert_eq!(header(70_000), [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
}

async fn pair(limits: WireLimits) -> (Wire, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (Wire::new(Arc::new(server), limits), client)
}

#[tokio::test]
async fn frames_sent_together_arrive_in_order_as_separate_messages() {
    use tokio::io::AsyncReadExt;
    let (wire, mut client) = pair(WireLimits::default()).await;
    let frames = [
        OutFrame::from(Bytes::from_static(b"one")),
        OutFrame::from(Bytes::from(vec![7u8; 300])),
        OutFrame::with_head(&[0x8f, 1, 2], Bytes::from_static(b"3")),
        OutFrame::with_head(&[0x8f; 9], Bytes::new()),
    ];
    wire.send_all(&frames).unwrap();
    let mut expected = vec![0x82, 3];
    expected.extend(b"one");
    expected.extend([0x82, 126, 1, 44]);
    expected.extend([7u8; 300]);
    // A head counts in the message length and comes before the shared body.
    expected.extend([0x82, 4, 0x8f, 1, 2, b'3']);
    expected.extend([0x82, 9]);
    expected.extend([0x8f; 9]);
    let mut got = vec![0u8; expected.len()];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_peer_that_does_not_read_hits_the_queue_bound_and_the_frames_stay_whole() {
    let limits = WireLimits { queue_bytes: 64 << 10, ..WireLimits::default() };
    let (wire, _client) = pair(limits).await;
    let frame = Bytes::from(vec![1u8; 16 << 10]);
    // The kernel's buffers take megabytes first; then at most 64 KiB more are queued.
    let mut sent = 0usize;
    while wire.send(&frame).is_ok() {
        sent += 1;
        assert!(sent < 10_000, "never hit the bound");
    }
    assert!(!wire.is_open());
    let st = wire.lock();
    assert!(st.queued_bytes <= limits.queue_bytes, "{}", st.queued_bytes);
    assert_eq!(st.queued_bytes, st.queue.iter().map(Bytes::len).sum::<usize>() - st.head_sent);
}

#[tokio::test]
async fn pongs_behind_a_backlog_are_coalesced_and_tiny_frames_are_charged_their_cost() {
    let limits = WireLimits { queue_bytes: 256 << 10, ..WireLimits::default() };
    let (wire, _client) = pair(limits).await;
    // A peer that never reads: fill the kernel's buffers until frames queue.
    let frame = Bytes::from(vec![1u8; 16 << 10]);
    while wire.lock().queue.is_empty() {
        wire.send(&frame).unwrap();
    }
    let entries = wire.lock().queue.len();
    // A ping flood's pongs: the newest replaces the one waiting, so the queue grows by one.
    for i in 0..100_000u32 {
        let b = i.to_le_bytes();
        wire.send_raw(&[0x8a, 4, b[0], b[1], b[2], b[3]]);
    }
    {
        let st = wire.lock();
        assert_eq!(st.queue.len(), entries + 1, "one pong waits, not 100 000");
        assert_eq!(&st.queue.back().unwrap()[2..], 99_999u32.to_le_bytes(), "the newest ping is answered");
        assert_eq!(st.queued_bytes, st.queue.iter().map(Bytes::len).sum::<usize>() - st.head_sent);
    }
    assert!(wire.is_open());
    // Other tiny frames are charged what they hold, not their 2 wire bytes: the bound
    // stops them long before 256 KiB / 2 entries.
    let mut sent = 0;
    while wire.send(&Bytes::new()).is_ok() {
        sent += 1;
        assert!(sent < 10_000, "never hit the bound");
    }
    let st = wire.lock();
    assert!(st.held() <= limits.queue_bytes, "{}", st.held());
    assert!(st.queue.len() < limits.queue_bytes / ENTRY_COST, "{} entries", st.queue.len());
}
