//! The proxies at work: one thread of their own (`proxy`) with a single-threaded tokio
//! runtime; per proxy an accept loop, per connection one task copying both ways.
//!
//! Without a toxic the bytes are spliced from socket to socket through a pipe (`splice`),
//! one atomic load (`toxic_on`) before each splice in; with one, each chunk is read up
//! here and meets the toxics in effect (`forward`), and a watch wakes every connection
//! when they change (a reset, a close, `Down`, the end of a wait). A proxy keeps at most
//! `MAX_OPEN` connections open (`Cap`).

use std::{
    io,
    sync::{atomic::Ordering, Arc, OnceLock},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{ReadHalf, WriteHalf},
        TcpListener, TcpStream,
    },
    time::sleep_until,
};

use super::{
    forward::{End, Plan, Toxicity, CHUNK},
    splice::{self, Clean, Pipe},
    toxic::Toxic,
    Log, Proxy, Spec,
};

/// How long a connection to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The runtime the proxies run on, started with the first proxy.
fn runtime() -> Result<&'static tokio::runtime::Handle, String> {
    static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("proxy".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => {
                    let _ = tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(std::future::pending::<()>());
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        })
        .map_err(|e| format!("cannot start the proxies' thread: {e}"))?;
    let handle = rx
        .recv()
        .map_err(|_| "the proxies' thread ended at its start".to_owned())?
        .map_err(|e| format!("cannot start the proxies' runtime: {e}"))?;
    Ok(HANDLE.get_or_init(|| handle))
}

/// Binds the proxy's address; the error says which proxy, where, and what to do.
pub(super) fn bind(spec: &Spec) -> Result<std::net::TcpListener, String> {
    let listener = std::net::TcpListener::bind(spec.listen).map_err(|e| cannot_bind(spec, &e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("proxy {}: {e}", spec.name))?;
    Ok(listener)
}

/// Why `spec`'s address cannot be bound, `e` being what the kernel said.
pub(super) fn cannot_bind(spec: &Spec, e: &io::Error) -> String {
    let why = match e.kind() {
        io::ErrorKind::AddrInUse => "the address is in use: another program (or a daemon already running this proxy) listens there; choose another listen address or stop it".to_owned(),
        io::ErrorKind::AddrNotAvailable => "no interface of this host has that address".to_owned(),
        io::ErrorKind::PermissionDenied => "a port below 1024 needs CAP_NET_BIND_SERVICE".to_owned(),
        _ => e.to_string(),
    };
    format!(
        "proxy {}: cannot listen on {}: {why}",
        spec.name, spec.listen
    )
}

/// Binds the proxy's address now (so the caller hears at once that it cannot) and
/// serves it on the proxies' thread.
pub(super) fn start(proxy: Arc<Proxy>, log: Arc<Log>) -> Result<(), String> {
    let listener = bind(&proxy.spec)?;
    runtime()?.spawn(serve(proxy, listener, log));
    Ok(())
}

fn is_down(proxy: &Proxy) -> bool {
    proxy.toxics().iter().any(|a| a.toxic == Toxic::Down)
}

/// The accept loop: while `Down` is on the listener is closed (a connection is
/// refused, as by a host with nothing listening), and bound again when it goes.
async fn serve(proxy: Arc<Proxy>, listener: std::net::TcpListener, log: Arc<Log>) {
    let name = &proxy.spec.name;
    let mut changes = proxy.changes.subscribe();
    let mut listener = match TcpListener::from_std(listener) {
        Ok(l) => Some(l),
        Err(e) => {
            log(&format!("proxy {name}: cannot serve: {e}"));
            return;
        }
    };
    let mut rebind_failed = false;
    let mut cap = Cap::default();
    // Why the last accept failed, while it fails (said once).
    let mut refused: Option<String> = None;
    loop {
        let down = is_down(&proxy);
        match (&listener, down) {
            (Some(_), true) => {
                listener = None;
                proxy.listening.store(false, Ordering::Release);
            }
            (None, true) => {
                let _ = changes.changed().await;
            }
            (None, false) => {
                let bound = bind(&proxy.spec)
                    .and_then(|l| TcpListener::from_std(l).map_err(|e| e.to_string()));
                match bound {
                    Ok(l) => {
                        listener = Some(l);
                        *proxy
                            .relisten_error
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                        proxy.listening.store(true, Ordering::Release);
                        if rebind_failed {
                            log(&format!(
                                "proxy {name}: listening again on {}",
                                proxy.spec.listen
                            ));
                        }
                        rebind_failed = false;
                    }
                    Err(why) => {
                        if !rebind_failed {
                            log(&format!("{why}; trying again every 100ms"));
                        }
                        *proxy
                            .relisten_error
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
                        rebind_failed = true;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            (Some(l), false) => {
                let open = proxy.open.load(Ordering::Relaxed);
                // Its own most, and what the descriptors left to every proxy allow.
                let room = (FILES.load(Ordering::Relaxed) / FILES_PER_CONNECTION)
                    .saturating_sub(ALL_OPEN.load(Ordering::Relaxed));
                let max = proxy.max_open.load(Ordering::Relaxed).min(open + room);
                let (admit, line) = cap.admit(open, max);
                if let Some(line) = line {
                    log(&format!("proxy {name}: {line}"));
                }
                if !admit {
                    // New clients wait in the listen backlog until one leaves (this
                    // proxy's, or another's: the descriptors are shared).
                    tokio::select! {
                        biased;
                        _ = changes.changed() => {}
                        () = proxy.closed.notified() => {}
                        () = any_closed().notified() => {}
                    }
                    continue;
                }
                tokio::select! {
                    biased;
                    _ = changes.changed() => {}
                    accepted = l.accept() => match accepted {
                        Ok((client, _)) => {
                            if let Some(e) = refused.take() {
                                log(&format!("proxy {name}: accepting again (after: {e})"));
                            }
                            // Counted here, not in its task: the cap sees it at once.
                            proxy.open.fetch_add(1, Ordering::Relaxed);
                            ALL_OPEN.fetch_add(1, Ordering::Relaxed);
                            let open = Open(proxy.clone());
                            tokio::spawn(connection(proxy.clone(), client, log.clone(), open));
                        }
                        Err(e) => {
                            // Out of descriptors, say: wait a little rather than spin,
                            // and say it once, not ten times a second.
                            let e = e.to_string();
                            if refused.as_deref() != Some(e.as_str()) {
                                log(&format!("proxy {name}: cannot accept a connection: {e}"));
                            }
                            refused = Some(e);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                }
            }
        }
    }
}

/// Counts an open connection while it lives.
struct Open(Arc<Proxy>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        ALL_OPEN.fetch_sub(1, Ordering::Relaxed);
        self.0.closed.notify_one();
        any_closed().notify_waiters();
    }
}

/// The descriptors a proxied connection holds: the client's socket and the upstream's,
/// and a pipe (two ends) each way to splice through.
pub const FILES_PER_CONNECTION: u64 = 6;

/// The descriptors every proxy's connections may hold together (see [`limit_files`]).
static FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// The connections open through every proxy.
static ALL_OPEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Told at every close of any proxy's connection.
fn any_closed() -> &'static tokio::sync::Notify {
    static CLOSED: std::sync::OnceLock<tokio::sync::Notify> = std::sync::OnceLock::new();
    CLOSED.get_or_init(tokio::sync::Notify::new)
}

/// Sets how many descriptors the proxies' connections may hold, all proxies together
/// (the host's limit of open files, less what its API and its reserve for reverts
/// need): past it, new clients wait in the listen backlog as at a proxy's own most,
/// and the daemon never runs out of descriptors for its kill switch.
pub fn limit_files(files: u64) {
    FILES.store(files, Ordering::Relaxed);
}

/// The most connections a proxy keeps open at once: past it, new clients wait in the
/// listen backlog (and the kernel refuses them once it is full) until one leaves.
pub(super) const MAX_OPEN: u64 = 1024;

/// Whether the accept loop takes another connection, with the line to log when that
/// changes (once each way, not once per client).
#[derive(Debug, Default)]
pub(super) struct Cap {
    full: bool,
}

impl Cap {
    /// With `open` connections open, `max` at most: whether to accept one more, and
    /// what to log.
    pub fn admit(&mut self, open: u64, max: u64) -> (bool, Option<String>) {
        let full = open >= max;
        let line = match (self.full, full) {
            (false, true) => Some(format!(
                "{open} connections open, its most: new clients wait until one closes"
            )),
            (true, false) => Some(format!("below its most again ({open} open): accepting")),
            _ => None,
        };
        self.full = full;
        (!full, line)
    }
}

async fn connection(proxy: Arc<Proxy>, mut client: TcpStream, log: Arc<Log>, _open: Open) {
    proxy.accepted.fetch_add(1, Ordering::Relaxed);
    let (name, target) = (&proxy.spec.name, &proxy.spec.upstream);
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.as_str()))
        .await
        .unwrap_or_else(|_| Err(io::Error::other("no answer within 10s")));
    let mut upstream = match connected {
        Ok(upstream) => {
            if proxy.upstream_failing.swap(false, Ordering::Relaxed) {
                log(&format!("proxy {name}: upstream {target} answers again"));
            }
            upstream
        }
        Err(e) => {
            // The client gets a closed connection; the outage is told once.
            if !proxy.upstream_failing.swap(true, Ordering::Relaxed) {
                log(&format!(
                    "proxy {name}: cannot connect to upstream {target}: {e}; its clients get a closed connection until it answers"
                ));
            }
            // A close, not a reset: the end of the stream first, then what the client
            // sent meanwhile read and dropped (a socket closed with bytes unread would
            // answer with a reset), for a second at most.
            let _ = client.shutdown().await;
            let mut sink = [0u8; 4096];
            let drained = async { while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {} };
            let _ = tokio::time::timeout(Duration::from_secs(1), drained).await;
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let started = Instant::now();
    let seed = proxy.accepted.load(Ordering::Relaxed);
    let end = {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        let both = async {
            tokio::try_join!(
                pump(&proxy, &mut cr, &mut uw, true, seed),
                pump(&proxy, &mut ur, &mut cw, false, seed),
            )
        };
        tokio::select! {
            biased;
            end = ends(&proxy, started) => end,
            done = both => done.err().unwrap_or(End::Done),
        }
    };
    if end == End::Reset {
        let _ = client.set_zero_linger();
        let _ = upstream.set_zero_linger();
    }
}

/// Resolves when a toxic ends the connection: `Down` at once, `reset_peer` and a
/// `timeout` with a time when it comes.
async fn ends(proxy: &Proxy, started: Instant) -> End {
    let mut changes = proxy.changes.subscribe();
    loop {
        let mut due: Option<(Instant, End)> = None;
        for active in proxy.toxics().iter() {
            let from = active.since.max(started);
            let at = |ms: u64| from + Duration::from_millis(ms);
            let this = match active.toxic {
                Toxic::Down => return End::Close,
                Toxic::ResetPeer { timeout_ms } => (at(timeout_ms), End::Reset),
                Toxic::Timeout {
                    timeout_ms: Some(ms),
                } => (at(ms), End::Close),
                _ => continue,
            };
            if due.is_none_or(|(when, _)| this.0 < when) {
                due = Some(this);
            }
        }
        // Due already (a reset "at once"): before a byte is forwarded, not at the
        // timer's next tick.
        if let Some((_, end)) = due.filter(|(when, _)| *when <= Instant::now()) {
            return end;
        }
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        tokio::select! {
            biased;
            changed = changes.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
            }
            () = sleep_until(due.map_or(far, |d| d.0).into()) => {
                if let Some((_, end)) = due {
                    return end;
                }
            }
        }
    }
}

/// Copies one way until the end of the stream (then half-closes the other side); an
/// error or a toxic's end is `Err`, which ends the other way too.
async fn pump(
    proxy: &Proxy,
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    to_upstream: bool,
    seed: u64,
) -> Result<(), End> {
    let counter = if to_upstream {
        &proxy.bytes_up
    } else {
        &proxy.bytes_down
    };
    let mut buf = Buffer::new(&proxy.buffers);
    let mut toxic = Toxicity::new(seed * 2 + u64::from(to_upstream));
    let mut changes = proxy.changes.subscribe();
    let pipe = Pipe::new();
    loop {
        if let (Some(pipe), false) = (&pipe, proxy.toxic_on.load(Ordering::Acquire)) {
            // Back to the splice path: the chunk buffer goes, or every connection that
            // once met a toxic would hold 64 KiB a way for as long as it lives.
            buf.release();
            match splice::copy(proxy, from.as_ref(), to.as_ref(), pipe, counter).await {
                Ok(Clean::ToxicOn) => {}
                Ok(Clean::Eof) => {
                    let _ = to.shutdown().await;
                    return Ok(());
                }
                Err(_) => return Err(End::Done),
            }
        }
        let buf = buf.get();
        // One piece at a time while a bandwidth or a slicer is on.
        let most = if proxy.toxic_on.load(Ordering::Acquire) {
            Plan::of(&proxy.toxics(), to_upstream).read_limit()
        } else {
            CHUNK
        };
        // While a toxic is on, a change of the toxics ends the wait for bytes (a read
        // of a tokio socket dropped unfinished loses none): one turned off sends an
        // idle connection back to the splice path, its buffer let go, at once.
        let watching = proxy.toxic_on.load(Ordering::Acquire);
        let n = tokio::select! {
            biased;
            read = from.read(&mut buf[..most]) => read.map_err(|_| End::Done)?,
            _ = changes.changed(), if watching => continue,
        };
        if n == 0 {
            if proxy.toxic_on.load(Ordering::Acquire) {
                toxic.slow_close(proxy, &mut changes).await;
            }
            let _ = to.shutdown().await;
            return Ok(());
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
        if !proxy.toxic_on.load(Ordering::Acquire) {
            to.write_all(&buf[..n]).await.map_err(|_| End::Done)?;
            continue;
        }
        let arrived = Instant::now();
        toxic
            .forward(proxy, to_upstream, &mut changes, &buf[..n], arrived, to)
            .await?;
    }
}

/// A connection's chunk buffer, one way: allocated when a toxic first needs it, let
/// go when the bytes go back to the splice path, counted in `Proxy::buffers` while
/// held.
struct Buffer<'a> {
    bytes: Vec<u8>,
    count: &'a std::sync::atomic::AtomicU64,
}

impl<'a> Buffer<'a> {
    fn new(count: &'a std::sync::atomic::AtomicU64) -> Self {
        Self {
            bytes: Vec::new(),
            count,
        }
    }

    /// The buffer, [`CHUNK`] bytes, allocated now if it is not.
    fn get(&mut self) -> &mut [u8] {
        if self.bytes.is_empty() {
            self.bytes = vec![0u8; CHUNK];
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        &mut self.bytes
    }

    /// Lets go of the buffer, if it is held.
    fn release(&mut self) {
        if !self.bytes.is_empty() {
            self.bytes = Vec::new();
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Buffer<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod cap_tests {
    use super::Cap;

    #[test]
    fn the_cap_stops_accepting_at_its_size_and_says_so_once() {
        let mut cap = Cap::default();
        assert_eq!(cap.admit(0, 3), (true, None));
        assert_eq!(cap.admit(2, 3), (true, None));
        let (admit, line) = cap.admit(3, 3);
        assert!(!admit);
        assert_eq!(
            line.as_deref(),
            Some("3 connections open, its most: new clients wait until one closes")
        );
        assert_eq!(cap.admit(3, 3), (false, None), "said once");
        assert_eq!(cap.admit(4, 3), (false, None));
        assert_eq!(
            cap.admit(2, 3),
            (
                true,
                Some("below its most again (2 open): accepting".to_owned())
            )
        );
        assert_eq!(cap.admit(2, 3), (true, None));
    }
}
