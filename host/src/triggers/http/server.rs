//! The API's own accept loop: warp's filters served by hyper 1 over HTTP/1.1, so that the
//! daemon speaks one HTTP stack with its clients (reqwest). Here, not in warp, because
//! this is where a connection is seen whole: its peer's address (put in each request's
//! extensions as `Peer`, for the journal), how many connections are served at once, and
//! how long a client may take to send a request head (also the idle limit of a
//! keep-alive connection, as hyper counts it from when it starts waiting).
//!
//! At the cap, a new client does not wait for an idle one to time out: the oldest
//! connection with no request in flight is closed to make room (as any HTTP server may
//! close an idle keep-alive connection), so a crowd of silent or idle sockets can delay
//! `/healthz` by a round trip, never by the header timeout. Only when every connection
//! has a request in flight does a new one wait, unaccepted, in the listen backlog.

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
    /// starts waiting for one (so an idle keep-alive connection is closed after it too).
    pub header_read_timeout: Duration,
}

/// The daemon's limits unless the configuration says otherwise.
pub const LIMITS: Limits = Limits {
    max_connections: 512,
    header_read_timeout: Duration::from_secs(30),
};

/// One connection as the accept loop keeps track of it.
struct Open {
    id: u64,
    /// Whether a request is being answered on it.
    busy: Arc<AtomicBool>,
    /// Closes it.
    close: Arc<Notify>,
}

/// The connections open, oldest first.
#[derive(Default)]
struct Connections {
    open: Mutex<VecDeque<Open>>,
    next: AtomicU64,
}

impl Connections {
    /// Closes the oldest connection with no request in flight; whether there was one.
    fn close_oldest_idle(&self) -> bool {
        let open = crate::support::lock::lock(&self.open);
        match open.iter().find(|c| !c.busy.load(Ordering::SeqCst)) {
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
                    // A peer that gave up (ECONNABORTED) is its own affair; out of
                    // descriptors (EMFILE) is ours: wait a little instead of spinning.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // At the cap: the oldest idle connection makes room for this one; with
            // every connection busy, it waits for one to end.
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    connections.close_oldest_idle();
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        slot = slots.clone().acquire_owned() => match slot {
                            Ok(slot) => slot,
                            Err(_) => break, // the semaphore is never closed
                        },
                    }
                }
            };
            let service = service.clone();
            let busy = Arc::new(AtomicBool::new(false));
            let close = Arc::new(Notify::new());
            let id = connections.next.fetch_add(1, Ordering::SeqCst);
            crate::support::lock::lock(&connections.open).push_back(Open {
                id,
                busy: busy.clone(),
                close: close.clone(),
            });
            let per_connection = service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(Peer(peer));
                busy.store(true, Ordering::SeqCst);
                let answer = service.clone().call(request);
                let busy = busy.clone();
                async move {
                    let answer = answer.await;
                    busy.store(false, Ordering::SeqCst);
                    answer
                }
            });
            let connection =
                graceful.watch(http.serve_connection(TokioIo::new(stream), per_connection));
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

    #[tokio::test]
    async fn a_taken_port_fails_at_bind() {
        let (addr, stop, _server) = start(LIMITS);
        let again = bind(addr, warp::any().map(|| "x"), LIMITS, async {});
        let error = again.err().expect("the port is taken");
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
        let _ = stop.send(());
    }
}
