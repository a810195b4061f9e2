//! The API's own accept loop: warp's filters served by hyper 1 over HTTP/1.1, so that the
//! daemon speaks one HTTP stack with its clients (reqwest). Here, not in warp, because
//! this is where a connection is seen whole: its peer's address (put in each request's
//! extensions as `Peer`, for the journal), how many connections are served at once, and
//! how long a client may take to send a request head (also the idle limit of a
//! keep-alive connection, as hyper counts it from when it starts waiting).

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tower_service::Service as _;
use warp::{Filter, Reply};

/// The connection's remote address, in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// Connections served at once. Further ones wait, unaccepted, in the listen backlog
/// until one ends: a burst is served late rather than reset.
pub const MAX_CONNECTIONS: usize = 512;

/// How long a client may take to send a request head, counted from when the server
/// starts waiting for one (so an idle keep-alive connection is closed after it too).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds `addr` now, so a taken port fails at startup with the system's reason, and
/// returns the bound address and the server. When `shutdown` completes the server stops
/// accepting, closes idle connections, lets requests in flight finish, and returns.
pub fn bind<F>(
    addr: SocketAddr,
    routes: F,
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
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);

    let server = async move {
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                biased;
                () = &mut shutdown => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break, // the semaphore is never closed
                },
            };
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
            let service = service.clone();
            let per_connection = service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(Peer(peer));
                service.clone().call(request)
            });
            let connection =
                graceful.watch(http.serve_connection(TokioIo::new(stream), per_connection));
            tokio::spawn(async move {
                // A reset, a header timeout or a malformed request ends that connection
                // alone; there is nobody to tell.
                let _ = connection.await;
                drop(slot);
            });
        }
        drop(listener);
        graceful.shutdown().await;
    };
    Ok((local, server))
}
