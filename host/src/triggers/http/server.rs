//! The API's own accept loop: warp's filters served by hyper 1 over HTTP/1.1, so that the
//! daemon speaks one HTTP stack with its clients (reqwest). Here, not in warp, because
//! this is where a connection is seen whole: its peer's address (put in each request's
//! extensions as `Peer`, for the journal), how many connections are served at once, and
//! how long a client may take to send a request head (also the idle limit of a
//! keep-alive connection, as hyper counts it from when it starts waiting), and how long
//! a write may wait on a client that takes nothing (the same limit: a client that does
//! not read an event stream would otherwise hold its connection and its place forever).
//!
//! At the cap, a new client does not wait for an idle one to time out: the oldest
//! connection with no request in flight is closed to make room (as any HTTP server may
//! close an idle keep-alive connection), so a crowd of silent or idle sockets can delay
//! `/healthz` by a round trip, never by the header timeout. Only when every connection
//! has a request in flight does a new one wait, unaccepted, in the listen backlog. Event
//! streams, in flight for as long as they last, hold at most half of the connections
//! (`dashboard::max_watchers`), so they alone never make the kill switch wait.

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{
    net::TcpListener,
    sync::{Notify, Semaphore},
};
use tower_service::Service as _;
use warp::{Filter, Reply};

/// What every answer says to caches unless it says otherwise: it tells the state of now,
/// none is for a cache to keep (a browser's back button, a proxy). The dashboard's page
/// says `no-store` itself, the event stream `no-cache` (warp's). Set here, on the way
/// out, rather than by warp's `default_header` filter around the routes: 1.03x the
/// rate of `/healthz` and of dry-run faults against it (`bench/run --compare`, five
/// rounds, 2026-12-08).
const NOT_TO_KEEP: hyper::header::HeaderValue = hyper::header::HeaderValue::from_static("no-store");

/// The connection's remote address, in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once. Further ones wait, unaccepted, in the listen
    /// backlog until one ends: a burst is served late rather than reset.
    pub max_connections: usize,
    /// How long a client may take to send a request head, counted from when the server
    /// starts waiting for one (so an idle keep-alive connection is closed after it too);
    /// also how long a write may wait on a client that takes nothing of its answer.
    pub header_read_timeout: Duration,
}

/// The daemon's limits unless the configuration says otherwise.
pub const LIMITS: Limits = Limits {
    max_connections: 512,
    header_read_timeout: Duration::from_secs(30),
};

/// Whether an accept failed for lack of descriptors (ours or the system's).
fn out_of_descriptors(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    e.raw_os_error()
        .is_some_and(|n| n == Errno::MFILE.raw_os_error() || n == Errno::NFILE.raw_os_error())
}

/// One connection as the accept loop keeps track of it.
struct Open {
    id: u64,
    /// Whether a request is being answered on it.
    state: Arc<State>,
    /// Closes it.
    close: Arc<Notify>,
}

/// The connections open, oldest first.
#[derive(Default)]
struct Connections {
    open: Mutex<VecDeque<Open>>,
    next: AtomicU64,
    /// Told when a connection's answer has been sent in full (it is idle again).
    became_idle: Notify,
}

/// A connection's state, as its answer goes out: busy from the request's head until
/// the response is handed over whole (hyper drops the body) *and* flushed to the socket.
/// A client that does not read keeps its connection busy: one still sending is never
/// closed to make room.
#[derive(Default)]
struct State {
    busy: AtomicBool,
    /// The body was handed over; the flush that follows makes it idle.
    answered: AtomicBool,
}

/// A response body that says when hyper is done with it.
struct Tracked<B> {
    body: B,
    state: Arc<State>,
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.state.answered.store(true, Ordering::SeqCst);
    }
}

/// The connection's socket, watched for the flush that ends an answer and for a client
/// that takes nothing of it.
struct Watched<T> {
    io: T,
    state: Arc<State>,
    connections: Arc<Connections>,
    /// How long a write may wait on a client that reads nothing (the header timeout).
    write_timeout: Duration,
    /// While a write waits: when it gives up.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Watched<T> {
    /// `polled`, or an error once writes have waited `write_timeout` without the client
    /// taking a byte: hyper then ends the connection, and with it the answer (an event
    /// stream's place among the watchers). Without it, a client that never reads would
    /// hold its connection, and its place, for as long as it likes: its answer is never
    /// done, so it is never idle, and the kernel's buffers stay full.
    fn within_deadline<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        use std::{future::Future as _, task::Poll};
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took nothing of the answer within the header timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Watched<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Watched<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        self.within_deadline(cx, polled)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let flushed = std::pin::Pin::new(&mut self.io).poll_flush(cx);
        let flushed = self.within_deadline(cx, flushed);
        if flushed.is_ready() && self.state.answered.swap(false, Ordering::SeqCst) {
            self.state.busy.store(false, Ordering::SeqCst);
            self.connections.became_idle.notify_one();
        }
        flushed
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.within_deadline(cx, polled)
    }
}

impl Connections {
    /// Closes the oldest connection with no request in flight; whether there was one.
    fn close_oldest_idle(&self) -> bool {
        let open = crate::support::lock::lock(&self.open);
        match open.iter().find(|c| !c.state.busy.load(Ordering::SeqCst)) {
            Some(idle) => {
                idle.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Binds `addr` now, so a taken port fails at startup with the system's reason, and
/// returns the bound address and the server. When `shutdown` completes the server stops
/// accepting, closes idle connections, lets requests in flight finish, and returns.
pub fn bind<F>(
    addr: SocketAddr,
    routes: F,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)>
where
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let local = listener.local_addr()?;
    let service = warp::service(routes);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = Arc::new(Connections::default());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);

    let server = async move {
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    // Out of descriptors (EMFILE, ENFILE) is ours: wait a little instead
                    // of spinning. Anything else (a peer that gave up: ECONNABORTED) is
                    // that peer's affair.
                    Err(e) if out_of_descriptors(&e) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(_) => continue,
                },
            };
            // At the cap: the oldest idle connection makes room for this one; with
            // every connection busy, it waits for one to end or to turn idle.
            let slot = loop {
                if let Ok(slot) = slots.clone().try_acquire_owned() {
                    break Some(slot);
                }
                connections.close_oldest_idle();
                tokio::select! {
                    biased;
                    () = &mut shutdown => break None,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => break Some(slot),
                        Err(_) => break None, // the semaphore is never closed
                    },
                    () = connections.became_idle.notified() => {}
                }
            };
            let Some(slot) = slot else { break };
            let service = service.clone();
            let state = Arc::new(State::default());
            let close = Arc::new(Notify::new());
            let id = connections.next.fetch_add(1, Ordering::SeqCst);
            crate::support::lock::lock(&connections.open).push_back(Open {
                id,
                state: state.clone(),
                close: close.clone(),
            });
            let io = Watched {
                io: TokioIo::new(stream),
                state: state.clone(),
                connections: connections.clone(),
                write_timeout: limits.header_read_timeout,
                stalled: None,
            };
            let per_connection = service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(Peer(peer));
                state.busy.store(true, Ordering::SeqCst);
                let answer = service.clone().call(request);
                let state = state.clone();
                async move {
                    answer.await.map(|mut response| {
                        response
                            .headers_mut()
                            .entry(hyper::header::CACHE_CONTROL)
                            .or_insert(NOT_TO_KEEP);
                        response.map(|body| Tracked { body, state })
                    })
                }
            });
            let connection = graceful.watch(http.serve_connection(io, per_connection));
            let connections = connections.clone();
            tokio::spawn(async move {
                // A reset, a header timeout or a malformed request ends that connection
                // alone; there is nobody to tell. Closed to make room, it is dropped.
                tokio::select! {
                    _ = connection => {}
                    () = close.notified() => {}
                }
                crate::support::lock::lock(&connections.open).retain(|c| c.id != id);
                drop(slot);
            });
        }
        drop(listener);
        graceful.shutdown().await;
    };
    Ok((local, server))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpStream,
        sync::oneshot,
    };

    use super::*;

    /// A server whose one route answers the caller's address as the extension says it.
    fn start(limits: Limits) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let routes = warp::path!("whoami")
            .and(warp::ext::optional::<Peer>())
            .map(|peer: Option<Peer>| peer.map_or("unknown".to_owned(), |p| p.0.to_string()))
            .or(warp::path!("big").map(|| "x".repeat(BIG)))
            .unify()
            .or(warp::path!("slow").and_then(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, warp::Rejection>("slept".to_owned())
            }))
            .unify()
            .recover(|_| async { Ok::<_, Infallible>("no".to_owned()) })
            .unify();
        let (stop, stopped) = oneshot::channel::<()>();
        let (addr, server) = bind("127.0.0.1:0".parse().unwrap(), routes, limits, async move {
            let _ = stopped.await;
        })
        .unwrap();
        (addr, stop, tokio::spawn(server))
    }

    /// Sends one keep-alive GET and reads the answer's body (small, one read).
    async fn whoami(stream: &mut TcpStream) -> Option<String> {
        let request = "GET /whoami HTTP/1.1\r\nhost: x\r\n\r\n";
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        text.split("\r\n\r\n").nth(1).map(str::to_owned)
    }

    #[tokio::test]
    async fn each_request_knows_its_peer_and_a_connection_serves_several() {
        let (addr, stop, server) = start(LIMITS);
        let mut client = TcpStream::connect(addr).await.unwrap();
        let me = client.local_addr().unwrap().to_string();
        assert_eq!(whoami(&mut client).await.as_deref(), Some(me.as_str()));
        assert_eq!(whoami(&mut client).await.as_deref(), Some(me.as_str()));
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("an idle keep-alive connection does not hold the shutdown up")
            .unwrap();
    }

    #[tokio::test]
    async fn over_the_cap_the_oldest_idle_connection_makes_room_at_once() {
        let limits = Limits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(60),
        };
        let (addr, stop, _server) = start(limits);
        // Both places, held by a client that never says anything and by one that is
        // idle between requests.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert!(whoami(&mut idle).await.is_some());
        let started = Instant::now();
        let mut next = TcpStream::connect(addr).await.unwrap();
        let answer = whoami(&mut next).await;
        assert_eq!(answer, Some(next.local_addr().unwrap().to_string()));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "served without waiting out the header timeout: {:?}",
            started.elapsed()
        );
        // The oldest idle one, the silent client, was closed for it.
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        assert!(
            whoami(&mut idle).await.is_some(),
            "the younger one still serves"
        );
        let _ = stop.send(());
    }

    const BIG: usize = 8 * 1024 * 1024;

    /// Sends a GET for `path` and reads the whole answer (head and body).
    async fn fetch(stream: &mut TcpStream, path: &str) -> Vec<u8> {
        let request = format!("GET /{path} HTTP/1.1\r\nhost: x\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("the answer keeps coming")
                .unwrap();
            all.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&all);
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                if n == 0 {
                    return all;
                }
                continue;
            };
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= length || n == 0 {
                return all;
            }
        }
    }

    /// A connection still sending its answer is not idle: a client over the cap waits
    /// for it, and it is not cut off.
    #[tokio::test]
    async fn a_connection_still_sending_is_never_closed_to_make_room() {
        let limits = Limits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(60),
        };
        let (addr, stop, _server) = start(limits);
        let mut sending = TcpStream::connect(addr).await.unwrap();
        let request = "GET /big HTTP/1.1\r\nhost: x\r\n\r\n";
        sending.write_all(request.as_bytes()).await.unwrap();
        // The answer is far larger than the socket buffers: it is still being sent
        // while nobody reads it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waiting = tokio::spawn(async move {
            let mut next = TcpStream::connect(addr).await.unwrap();
            whoami(&mut next).await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while all.len() < BIG {
            let n = tokio::time::timeout(Duration::from_secs(10), sending.read(&mut buf))
                .await
                .expect("the answer keeps coming")
                .unwrap();
            assert!(n > 0, "cut off after {} bytes", all.len());
            all.extend_from_slice(&buf[..n]);
        }
        // Then idle: the waiting client takes its place.
        let served = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("served once the first connection was idle")
            .unwrap();
        assert!(served.is_some());
        let _ = stop.send(());
    }

    /// A client over the cap while every connection is busy is served as soon as one
    /// turns idle, not when that one's header timeout runs out.
    #[tokio::test]
    async fn a_waiting_client_is_served_when_a_connection_turns_idle() {
        let limits = Limits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(60),
        };
        let (addr, stop, _server) = start(limits);
        let mut first = TcpStream::connect(addr).await.unwrap();
        let request = "GET /slow HTTP/1.1\r\nhost: x\r\n\r\n";
        first.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let mut next = TcpStream::connect(addr).await.unwrap();
        let answer = whoami(&mut next).await;
        assert_eq!(answer, Some(next.local_addr().unwrap().to_string()));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let whole = fetch(&mut first, "whoami").await;
        assert!(whole.is_empty() || String::from_utf8_lossy(&whole).contains("slept"));
        let _ = stop.send(());
    }

    /// A client that reads nothing of a long answer holds its connection only for the
    /// header timeout: then its write gives up and the place goes to the next client.
    #[tokio::test]
    async fn a_client_that_never_reads_is_cut_off_after_the_header_timeout() {
        let limits = Limits {
            max_connections: 1,
            header_read_timeout: Duration::from_millis(500),
        };
        let (addr, stop, _server) = start(limits);
        let mut deaf = TcpStream::connect(addr).await.unwrap();
        let request = "GET /big HTTP/1.1\r\nhost: x\r\n\r\n";
        deaf.write_all(request.as_bytes()).await.unwrap();
        // Its answer has begun (so it is busy, never closed to make room); then it
        // reads no more.
        let mut head = [0u8; 16];
        deaf.read_exact(&mut head).await.unwrap();
        assert!(head.starts_with(b"HTTP/1.1 200"));
        let started = Instant::now();
        let mut next = TcpStream::connect(addr).await.unwrap();
        let answer = whoami(&mut next).await;
        assert_eq!(answer, Some(next.local_addr().unwrap().to_string()));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // What the kernel had taken before the cut, then the end: never the whole.
        let mut taken = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), deaf.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => taken += n,
                Err(_) => panic!("the connection was not closed"),
            }
        }
        assert!(taken < BIG, "{taken}");
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn a_taken_port_fails_at_bind() {
        let (addr, stop, _server) = start(LIMITS);
        let again = bind(addr, warp::any().map(|| "x"), LIMITS, async {});
        let error = again.err().expect("the port is taken");
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
        let _ = stop.send(());
    }
}
