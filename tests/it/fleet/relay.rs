//! A TCP relay the test owns, between one daemon and one etcd member: threads copying
//! bytes both ways. Cutting it closes its port and every connection through it, so
//! that daemon alone loses etcd while the others go on. Blackholing it keeps every
//! connection open and accepts new ones, but forwards nothing more: packets dropped.
//! Blackholing only the connections open now (a stateful firewall or a NAT that lost
//! them) leaves a stream open and silent while new connections get through. Lagging
//! the connections open now delays what etcd sends on them, in order, as a slow path
//! would. Swallowing grants forwards each call that asks for a lease, and nothing etcd
//! sends after it on that connection: granted, and never heard.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use crate::util::ReservedPort;

pub struct Relay {
    pub port: u16,
    _reserved: ReservedPort,
    cut: Arc<AtomicBool>,
    blackholed: Arc<AtomicBool>,
    swallow_grants: Arc<AtomicBool>,
    /// The calls asking for a lease it has forwarded.
    grants: Arc<AtomicU64>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    /// Each connection's own hole.
    holes: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    /// Each connection's own lag (ms) of what etcd sends.
    lags: Arc<Mutex<Vec<Arc<AtomicU64>>>>,
}

impl Relay {
    /// Relays a free loopback port to `upstream` (a loopback port).
    pub fn start(upstream: u16) -> Relay {
        // Kept while the relay lives: cut, its port refuses connections rather than
        // becoming another test's.
        let reserved = ReservedPort::reserve();
        let port = reserved.port();
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("the reserved port");
        let cut = Arc::new(AtomicBool::new(false));
        let blackholed = Arc::new(AtomicBool::new(false));
        let swallow_grants = Arc::new(AtomicBool::new(false));
        let grants = Arc::new(AtomicU64::new(0));
        let open = Arc::new(Mutex::new(Vec::new()));
        let holes = Arc::new(Mutex::new(Vec::new()));
        let lags = Arc::new(Mutex::new(Vec::new()));
        let (on_thread, streams, hole) = (cut.clone(), open.clone(), blackholed.clone());
        let (each, each_lag) = (holes.clone(), lags.clone());
        let swallow = (swallow_grants.clone(), grants.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if on_thread.load(Ordering::SeqCst) {
                    // The listener closes with this thread: connecting is refused.
                    return;
                }
                let Ok(client) = client else { continue };
                if hole.load(Ordering::SeqCst) {
                    // Accepted, and held open, but never answered.
                    streams.lock().unwrap().push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let mut all = streams.lock().unwrap();
                if on_thread.load(Ordering::SeqCst) {
                    // Cut meanwhile: nothing gets through.
                    let _ = (
                        client.shutdown(Shutdown::Both),
                        server.shutdown(Shutdown::Both),
                    );
                    return;
                }
                for stream in [&client, &server] {
                    if let Ok(copy) = stream.try_clone() {
                        all.push(copy);
                    }
                }
                drop(all);
                let own = Arc::new(AtomicBool::new(false));
                each.lock().unwrap().push(own.clone());
                let lag = Arc::new(AtomicU64::new(0));
                each_lag.lock().unwrap().push(lag.clone());
                copy_between(client, server, [&hole, &own], &lag, &swallow);
            }
        });
        Relay {
            port,
            _reserved: reserved,
            cut,
            blackholed,
            swallow_grants,
            grants,
            open,
            holes,
            lags,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Forwards nothing more, either way, on any connection (new ones are accepted and
    /// held open): a network that drops every packet.
    pub fn blackhole(&self) {
        self.blackholed.store(true, Ordering::SeqCst);
    }

    /// Forwards nothing more on the connections open now (held open); new ones are
    /// relayed.
    pub fn blackhole_open(&self) {
        for hole in self.holes.lock().unwrap().iter() {
            hole.store(true, Ordering::SeqCst);
        }
    }

    /// From now on, forwards each call asking etcd for a lease but drops whatever etcd
    /// sends after it on its connection (which stays open).
    pub fn swallow_grants(&self) {
        self.swallow_grants.store(true, Ordering::SeqCst);
    }

    /// Forwards etcd's answers to the calls asking for a lease again.
    pub fn hear_grants(&self) {
        self.swallow_grants.store(false, Ordering::SeqCst);
    }

    /// How many calls asking for a lease it has forwarded.
    pub fn grants(&self) -> u64 {
        self.grants.load(Ordering::SeqCst)
    }

    /// How many connections it has relayed.
    pub fn connections(&self) -> usize {
        self.lags.lock().unwrap().len()
    }

    /// Delays by `lag` what etcd sends on the connections open now (in order: what it
    /// sends later comes later); new ones are relayed at once.
    pub fn lag_open(&self, lag: Duration) {
        for each in self.lags.lock().unwrap().iter() {
            each.store(lag.as_millis() as u64, Ordering::SeqCst);
        }
    }

    /// Closes every connection through it and its port.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Wakes the accepting thread, which sees the cut and ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Copies bytes both ways until either side closes; what comes once either hole is set
/// is dropped, and what `b` sends is delayed by `lag` (ms) as it stands when it comes.
/// `swallow`: while its flag is set, what `b` sends after `a` asked for a lease is
/// dropped; its count counts the asks.
fn copy_between(
    a: TcpStream,
    b: TcpStream,
    holes: [&Arc<AtomicBool>; 2],
    lag: &Arc<AtomicU64>,
    swallow: &(Arc<AtomicBool>, Arc<AtomicU64>),
) {
    let muted = Arc::new(AtomicBool::new(false));
    for (i, (mut from, mut to)) in [
        (a.try_clone(), b.try_clone()),
        (b.try_clone(), a.try_clone()),
    ]
    .into_iter()
    .filter_map(|(from, to)| Some((from.ok()?, to.ok()?)))
    .enumerate()
    {
        let [hole, own] = holes.map(Arc::clone);
        let lag = (i == 1).then(|| lag.clone());
        let ((swallow, grants), muted) = (swallow.clone(), muted.clone());
        // Each piece is written when due, in the order it came.
        let (pieces, due) = mpsc::channel::<(Instant, Vec<u8>)>();
        std::thread::spawn(move || {
            for (when, piece) in due {
                std::thread::sleep(when.saturating_duration_since(Instant::now()));
                if to.write_all(&piece).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
        std::thread::spawn(move || {
            let mut buffer = [0u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                let asks_lease = || buffer[..n].windows(16).any(|w| w == b"/v3/lease/grant ");
                if i == 0 && asks_lease() {
                    if swallow.load(Ordering::SeqCst) {
                        muted.store(true, Ordering::SeqCst);
                    }
                    grants.fetch_add(1, Ordering::SeqCst);
                }
                let dropped = hole.load(Ordering::SeqCst)
                    || own.load(Ordering::SeqCst)
                    || (i == 1 && muted.load(Ordering::SeqCst));
                let delay = lag.as_ref().map_or(0, |lag| lag.load(Ordering::SeqCst));
                let when = Instant::now() + Duration::from_millis(delay);
                if !dropped && pieces.send((when, buffer[..n].to_vec())).is_err() {
                    break;
                }
            }
        });
    }
}
