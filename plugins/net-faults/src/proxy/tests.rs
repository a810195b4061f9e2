//! The toxics the daemon's tests leave out (`limit_data`, `slicer`, `slow_close`), on
//! real loopback sockets against a proxy of this process (they change nothing but the
//! proxy's own connections).

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant, SystemTime},
};

use super::{
    declare, running,
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
    let upstream = echo_server();
    let listen = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    declare(vec![Spec::parse(
        "unit",
        &listen.to_string(),
        &upstream.to_string(),
    )
    .unwrap()]);
    let proxy = running("unit").unwrap();
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
