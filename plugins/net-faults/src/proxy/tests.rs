//! The toxics the daemon's tests leave out (`limit_data`, `slicer`, `slow_close`) and a
//! corner of the copy without a toxic (a pipe full of small pieces), on real loopback
//! sockets against a proxy of this process (they change nothing but the proxy's own
//! connections).

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant, SystemTime},
};

use super::{
    running,
    toxic::{Direction, Toxic},
    Active, Spec,
};

fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn on(toxic: Toxic, direction: Option<Direction>) -> Active {
    Active {
        id: toxic.name().to_owned(),
        toxic,
        direction,
        since: Instant::now(),
        since_wall: SystemTime::now(),
    }
}

/// Sends `data`, half-closes, reads to the end: what came back and when the end came.
fn round(addr: SocketAddr, data: &[u8]) -> (Vec<u8>, Duration) {
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let start = Instant::now();
    client.write_all(data).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    let _ = client.read_to_end(&mut back);
    (back, start.elapsed())
}

#[test]
fn limit_data_slicer_and_slow_close_do_what_they_say() {
    let (proxy, listen) = start("unit", echo_server());
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();

    let (back, _) = round(listen, &data);
    assert_eq!(back, data, "untouched without a toxic");

    // The connection ends once 10 bytes came back (a small message: a socket closed
    // with bytes unread would answer with a reset).
    proxy.add(on(
        Toxic::LimitData { bytes: 10 },
        Some(Direction::Downstream),
    ));
    let (back, _) = round(listen, &data[..100]);
    assert_eq!(back, &data[..10], "10 bytes came back, then the end");
    assert!(proxy.remove("limit_data"));

    let slicer = Toxic::Slicer {
        average_size: 7,
        size_variation: 3,
        delay_us: 100,
    };
    proxy.add(on(slicer, Some(Direction::Both)));
    let (back, _) = round(listen, &data);
    assert_eq!(back, data, "sliced, every byte arrives in order");
    assert!(proxy.remove("slicer"));

    proxy.add(on(Toxic::SlowClose { delay_ms: 300 }, None));
    let (back, took) = round(listen, b"ping");
    assert_eq!(back, b"ping");
    assert!(
        took >= Duration::from_millis(300),
        "the close came after {took:?}"
    );
    assert!(proxy.remove("slow_close"));
    assert!(!proxy.remove("slow_close"), "a second revert finds nothing");
}

/// A proxy of its own, added to the declared ones: `declare` would replace the other
/// tests' declarations, and one running in a thread beside, between declaring its proxy
/// and starting it, would find it gone.
fn start(name: &str, upstream: SocketAddr) -> (std::sync::Arc<super::Proxy>, SocketAddr) {
    let listen = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let spec = Spec::parse(name, &listen.to_string(), &upstream.to_string()).unwrap();
    super::registry().declared.insert(name.to_owned(), spec);
    (running(name).unwrap(), listen)
}

/// A server sending `size` bytes to each client, then closing.
fn bulk_server(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let block = vec![7u8; 64 * 1024];
                let mut left = size;
                while left > 0 {
                    let n = left.min(block.len());
                    if stream.write_all(&block[..n]).is_err() {
                        return;
                    }
                    left -= n;
                }
            });
        }
    });
    addr
}

/// Polls `done` until it holds, for 30 s at most.
fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 30s");
        thread::sleep(Duration::from_millis(5));
    }
}

/// A toxic reverted in the middle of a chunk lets go of it: under either toxic the
/// transfer would take minutes (hours); reverted, the rest arrives at full speed.
#[test]
fn a_reverted_toxic_lets_go_of_the_bytes_it_holds() {
    const SIZE: usize = 4 << 20;
    let (proxy, listen) = start("revert-bulk", bulk_server(SIZE));
    let slicer = Toxic::Slicer {
        average_size: 1,
        size_variation: 0,
        delay_us: 600_000_000,
    };
    for toxic in [Toxic::Bandwidth { rate_kb: 1 }, slicer] {
        proxy.add(on(toxic.clone(), Some(Direction::Downstream)));
        let mut client = TcpStream::connect(listen).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let mut first = [0u8; 1];
        client.read_exact(&mut first).unwrap();
        assert!(proxy.remove(toxic.name()));
        let reverted = Instant::now();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        let took = reverted.elapsed();
        assert_eq!(rest.len() + 1, SIZE, "{}: every byte arrives", toxic.name());
        assert!(
            took < Duration::from_secs(20),
            "{}: the rest took {took:?} after the revert",
            toxic.name()
        );
    }

    let (proxy, listen) = start("revert-latency", echo_server());
    proxy.add(on(
        Toxic::Latency {
            latency_ms: 600_000,
            jitter_ms: 0,
        },
        Some(Direction::Downstream),
    ));
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    client.write_all(b"ping").unwrap();
    // The answer is held by the latency once the proxy has read it.
    until("the echo reaches the proxy", || {
        proxy.bytes_down.load(std::sync::atomic::Ordering::Relaxed) >= 4
    });
    assert!(proxy.remove("latency"));
    let mut back = [0u8; 4];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
}

/// A toxic turned on while a connection is being spliced (no toxic when it opened)
/// meets the bytes from then on: an echo held, a bulk download stopped after what was
/// already on its way (the sockets' buffers and one pipe); off again, all of it arrives.
#[test]
fn a_toxic_turned_on_mid_connection_meets_the_next_bytes() {
    let latency = || {
        on(
            Toxic::Latency {
                latency_ms: 600_000,
                jitter_ms: 0,
            },
            Some(Direction::Downstream),
        )
    };
    let (proxy, listen) = start("mid-echo", echo_server());
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut back = [0u8; 4];
    client.write_all(b"ping").unwrap();
    client.read_exact(&mut back).unwrap();
    proxy.add(latency());
    client.write_all(b"pong").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(client.read(&mut back).is_err(), "held by the latency");
    assert!(proxy.remove("latency"));
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"pong");

    const SIZE: usize = 256 << 20;
    let (proxy, listen) = start("mid-bulk", bulk_server(SIZE));
    let mut client = TcpStream::connect(listen).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    client.read_exact(&mut buf).unwrap();
    proxy.add(latency());
    // What was on its way arrives; then nothing, for as long as we look.
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = buf.len();
    while let Ok(n) = client.read(&mut buf) {
        assert!(n > 0, "the stream ended under the toxic");
        got += n;
    }
    assert!(got < SIZE / 4, "{got} bytes went past the toxic");
    assert!(proxy.remove("latency"));
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert_eq!(got + rest.len(), SIZE, "every byte arrives");
}

/// At its cap a proxy stops accepting, says so once, and takes the client that waited
/// as soon as one leaves.
#[test]
fn at_the_cap_a_client_waits_until_one_leaves() {
    static LINES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let said = |what: &str| LINES.lock().unwrap().iter().any(|l| l.contains(what));
    super::registry().log = Some(std::sync::Arc::new(Box::new(|line: &str| {
        LINES.lock().unwrap().push(line.to_owned())
    })));
    let (proxy, listen) = start("capped", echo_server());
    proxy
        .max_open
        .store(2, std::sync::atomic::Ordering::Relaxed);
    let talk = |client: &mut TcpStream| {
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        client.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
    };
    let mut first = TcpStream::connect(listen).unwrap();
    talk(&mut first);
    let mut second = TcpStream::connect(listen).unwrap();
    talk(&mut second);
    until("the cap is told", || {
        said("proxy capped: 2 connections open, its most: new clients wait")
    });
    // Connected (the listen backlog), not accepted while two are open.
    let mut third = TcpStream::connect(listen).unwrap();
    assert_eq!(proxy.accepted.load(std::sync::atomic::Ordering::Relaxed), 2);
    drop(first);
    talk(&mut third);
    assert!(said(
        "proxy capped: below its most again (1 open): accepting"
    ));
    talk(&mut second);
}

/// The slicer cuts what it forwards into pieces of its size, `delay` apart: 100 bytes
/// sent at once arrive as pieces of exactly 10 (a read may hold several, if the reader
/// was late, never part of one), the last no sooner than 9 pauses after the connection
/// opened. A slicer that passed the bytes whole, or cut them without pausing, fails.
#[test]
fn the_slicer_delivers_pieces_of_its_size_its_delay_apart() {
    let (proxy, listen) = start("sliced", bulk_server(100));
    let slicer = Toxic::Slicer {
        average_size: 10,
        size_variation: 0,
        delay_us: 30_000,
    };
    proxy.add(on(slicer, Some(Direction::Downstream)));
    let opened = Instant::now();
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reads = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = client.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&b| b == 7), "the bytes sent");
        reads.push(n);
    }
    let took = opened.elapsed();
    assert_eq!(reads.iter().sum::<usize>(), 100, "every byte: {reads:?}");
    assert!(
        reads.iter().all(|n| n % 10 == 0),
        "whole pieces of 10 bytes: {reads:?}"
    );
    assert!(
        took >= Duration::from_millis(9 * 30),
        "10 pieces 30 ms apart came within {took:?}: {reads:?}"
    );
    assert!(proxy.remove("slicer"));
}

/// What `client` reads next (at most 64 bytes), and when, since `from`.
fn read_after(client: &mut TcpStream, from: Instant) -> (std::io::Result<Vec<u8>>, Duration) {
    let mut buf = [0u8; 64];
    let got = client.read(&mut buf).map(|n| buf[..n].to_vec());
    (got, from.elapsed())
}

/// A client of the proxy at `listen` that has sent `ping`.
fn talking(listen: SocketAddr) -> TcpStream {
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client.write_all(b"ping").unwrap();
    client
}

/// `Timeout` with a time forwards nothing, then closes the connection once its time
/// has passed since the toxic began (or since the connection, if later): the client
/// reads the end of the stream, never the echo, and no sooner.
#[test]
fn a_timeout_with_a_time_forwards_nothing_then_closes() {
    let (proxy, listen) = start("timeout-later", echo_server());
    proxy.add(on(
        Toxic::Timeout {
            timeout_ms: Some(400),
        },
        Some(Direction::Both),
    ));
    let from = Instant::now();
    let mut client = talking(listen);
    let (got, took) = read_after(&mut client, from);
    match got {
        Ok(bytes) => assert!(bytes.is_empty(), "forwarded {bytes:?} under the timeout"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(
        took >= Duration::from_millis(400),
        "closed after {took:?}, before its 400 ms"
    );
    assert!(proxy.remove("timeout"));
    let mut client = talking(listen);
    let (got, _) = read_after(&mut client, Instant::now());
    assert_eq!(got.unwrap(), b"ping", "forwarded again once off");
}

/// `ResetPeer` with a time lets the connection work until then, then resets it (the
/// client reads `ECONNRESET`), no sooner.
#[test]
fn a_reset_peer_with_a_time_resets_when_it_comes() {
    let (proxy, listen) = start("reset-later", echo_server());
    proxy.add(on(Toxic::ResetPeer { timeout_ms: 1500 }, None));
    let from = Instant::now();
    let mut client = talking(listen);
    let (got, took) = read_after(&mut client, from);
    // The echo comes back meanwhile; on a machine so busy that it took the whole 1.5 s,
    // the reset came first, and in its time.
    match got {
        Ok(bytes) => assert_eq!(bytes, b"ping", "after {took:?}"),
        Err(e) => assert!(
            e.kind() == std::io::ErrorKind::ConnectionReset && took >= Duration::from_millis(1500),
            "{e} after {took:?}"
        ),
    }
    let (got, took) = read_after(&mut client, from);
    let e = got.expect_err("the connection is reset");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    assert!(
        took >= Duration::from_millis(1500),
        "reset after {took:?}, before its 1.5 s"
    );
    assert!(proxy.remove("reset_peer"));
}

/// `Down` closes the connections already open, as well as refusing new ones; off
/// again, the proxy accepts and forwards.
#[test]
fn down_closes_the_connections_already_open() {
    let (proxy, listen) = start("down-open", echo_server());
    let mut client = talking(listen);
    let (got, _) = read_after(&mut client, Instant::now());
    assert_eq!(got.unwrap(), b"ping");
    proxy.add(on(Toxic::Down, None));
    let (got, _) = read_after(&mut client, Instant::now());
    match got {
        Ok(bytes) => assert!(bytes.is_empty(), "{bytes:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    until("the listener is closed", || {
        !proxy.listening.load(std::sync::atomic::Ordering::Acquire)
    });
    let refused = TcpStream::connect(listen).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(proxy.remove("down"));
    until("the listener is open again", || {
        proxy.listening.load(std::sync::atomic::Ordering::Acquire)
    });
    let mut client = talking(listen);
    let (got, _) = read_after(&mut client, Instant::now());
    assert_eq!(got.unwrap(), b"ping");
}

/// A latency with a jitter delays each chunk by the latency give or take up to the
/// jitter, a fresh draw each time: over 20 echoes at 100 ± 50 ms, none comes back
/// sooner than 50 ms, and the delays spread (a jitter ignored would make them all
/// 100 ms and more).
#[test]
fn a_latencys_jitter_spreads_the_delays_within_its_bounds() {
    let (proxy, listen) = start("jittery", echo_server());
    proxy.add(on(
        Toxic::Latency {
            latency_ms: 100,
            jitter_ms: 50,
        },
        Some(Direction::Downstream),
    ));
    let mut client = TcpStream::connect(listen).unwrap();
    client.set_nodelay(true).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rtts = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        client.write_all(b"x").unwrap();
        let mut back = [0u8; 1];
        client.read_exact(&mut back).unwrap();
        rtts.push(start.elapsed());
    }
    rtts.sort();
    let (least, most) = (rtts[0], rtts[rtts.len() - 1]);
    assert!(least >= Duration::from_millis(50), "{rtts:?}");
    assert!(
        least < Duration::from_millis(95),
        "no delay below the latency: {rtts:?}"
    );
    assert!(
        most > Duration::from_millis(105),
        "no delay above the latency: {rtts:?}"
    );
    assert!(proxy.remove("latency"));
}

/// A pipe full of small pieces is not taken for a client with nothing more to send:
/// with the upstream not reading, each piece spliced on its own takes a slot of the
/// pipe, which fills (its slots, not its bytes) while the socket still holds the rest;
/// once the upstream reads, every byte arrives.
#[test]
fn small_pieces_behind_a_stalled_upstream_all_arrive() {
    const PIECE: usize = 2000;
    const PIECES: usize = 1500;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // A small window (inherited by the accepted socket): the proxy's sending stops soon.
    rustix::net::sockopt::set_socket_recv_buffer_size(&listener, 4096).unwrap();
    let upstream = listener.local_addr().unwrap();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = received.clone();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = wait.recv();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            counted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let (_proxy, listen) = start("small-pieces", upstream);
    let mut client = TcpStream::connect(listen).unwrap();
    client.set_nodelay(true).unwrap();
    let piece = [3u8; PIECE];
    for _ in 0..PIECES {
        client.write_all(&piece).unwrap();
        // Apart, so that the proxy splices most pieces on their own (not a wait for
        // anything: pieces taken together only make the test easier to pass).
        thread::sleep(Duration::from_micros(300));
    }
    go.send(()).unwrap();
    until("every byte at the upstream", || {
        received.load(std::sync::atomic::Ordering::Relaxed) == PIECE * PIECES
    });
}

/// A `Down` reverted while another program holds the proxy's address says that the
/// proxy does not listen again, and why; `status` shows it not listening until it
/// can, and listening once the address is free.
#[test]
fn a_down_reverted_while_its_address_is_taken_says_the_proxy_does_not_listen() {
    use nightmare_monkey_plugin_api::sdk::FaultPlugin as _;
    let (proxy, listen) = start("down-taken", echo_server());
    let listening = |name: &str| {
        super::status()
            .into_iter()
            .find(|p| p.name == name)
            .map(|p| p.listening)
    };
    assert_eq!(listening("down-taken"), Some(true));
    let fault = super::NetProxy::new(super::ProxyConfig {
        proxy: Some("down-taken".to_owned()),
        toxic: Some(super::toxic::RawToxic::Down),
        ..Default::default()
    })
    .unwrap();
    proxy.add(on(Toxic::Down, None));
    until("the listener is closed", || {
        !proxy.listening.load(std::sync::atomic::Ordering::Acquire)
    });
    let taken = TcpListener::bind(listen).unwrap();
    let state = serde_json::json!({
        "proxy": "down-taken",
        "toxic_id": "down",
        "instance": super::instance(),
        "toxic": Toxic::Down,
    });
    let outcome = fault.revert(&state).unwrap();
    assert_eq!(
        outcome.summary,
        format!("turned off down: new connections refused, open ones closed on proxy down-taken, but the proxy does not listen again: proxy down-taken: cannot listen on {listen}: the address is in use: another program (or a daemon already running this proxy) listens there; choose another listen address or stop it; it tries again every 100ms")
    );
    assert_eq!(listening("down-taken"), Some(false));
    drop(taken);
    until("the listener is open again", || {
        listening("down-taken") == Some(true)
    });
}

/// A toxic turned off lets go of the chunk buffers (64 KiB a way) of the connections
/// that met it, idle ones included: they go back to the splice path without them.
#[test]
fn a_toxic_turned_off_lets_go_of_the_chunk_buffers() {
    let (proxy, listen) = start("buffers", echo_server());
    let buffers = || proxy.buffers.load(std::sync::atomic::Ordering::Relaxed);
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut back = [0u8; 4];
    proxy.add(on(
        Toxic::Latency {
            latency_ms: 1,
            jitter_ms: 0,
        },
        Some(Direction::Both),
    ));
    client.write_all(b"ping").unwrap();
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    until("a buffer each way", || buffers() == 2);
    assert!(proxy.remove("latency"));
    // The connection stays open and idle.
    until("the buffers are let go", || buffers() == 0);
    client.write_all(b"pong").unwrap();
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"pong");
    assert_eq!(buffers(), 0);
}

/// What is sent while a `Timeout` is on is dropped, as in Toxiproxy: AAAA before it
/// and CCCC after it come back, BBBB sent during it never does.
#[test]
fn what_is_sent_while_a_timeout_is_on_is_dropped() {
    let (proxy, listen) = start("timeout-drops", echo_server());
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut back = [0u8; 4];
    client.write_all(b"AAAA").unwrap();
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"AAAA");
    proxy.add(on(
        Toxic::Timeout { timeout_ms: None },
        Some(Direction::Upstream),
    ));
    client.write_all(b"BBBB").unwrap();
    until("BBBB reached the proxy", || {
        proxy.bytes_up.load(std::sync::atomic::Ordering::Relaxed) == 8
    });
    assert!(proxy.remove("timeout"));
    client.write_all(b"CCCC").unwrap();
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"CCCC", "BBBB was dropped");
}
