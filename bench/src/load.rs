//! A loopback HTTP/1.1 load generator for `POST /api/kill` (or `GET /healthz`, the
//! bare answer to set it beside): keep-alive connections, one thread each, every answer
//! read in full and checked.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

const BODY: &str = r#"{"desc":"benchmark"}"#;

/// Which request a load sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A dry-run `POST /api/kill`.
    Kill,
    /// `GET /healthz`: the HTTP stack alone.
    Health,
}

/// One keep-alive connection.
struct Connection {
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
}

impl Connection {
    fn open(addr: SocketAddr, route: Route) -> anyhow::Result<Self> {
        let stream =
            TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let request = match route {
            Route::Kill => format!(
                "POST /api/kill HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
                BODY.len()
            ),
            Route::Health => format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        }
        .into_bytes();
        Ok(Self {
            reader: BufReader::new(stream),
            request,
        })
    }

    /// Sends one request and reads its whole answer; anything but 200 is an error.
    fn send(&mut self) -> anyhow::Result<()> {
        self.reader.get_mut().write_all(&self.request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("the connection closed in the middle of an answer");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().context("bad Content-Length")?;
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        if status != "200" {
            bail!(
                "{} answered {status}: {}",
                String::from_utf8_lossy(
                    self.request
                        .split(|b| *b == b'\r')
                        .next()
                        .unwrap_or_default()
                ),
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }
}

/// What a load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Answers a second.
    pub throughput: f64,
    /// Every request's latency, in milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
}

/// Runs `connections` threads; each makes `per_connection` requests, starting the next one
/// at `pace` after the previous one was due (none: at once), and makes no more once
/// `within` has passed (none: no bound). A paced request's latency is counted from when
/// it was due, so a slow answer cannot hide the requests it delayed.
fn run(
    addr: SocketAddr,
    route: Route,
    connections: usize,
    per_connection: usize,
    pace: Option<Duration>,
    within: Option<Duration>,
) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let deadline = within.map(|w| start + w);
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                let mut connection = Connection::open(addr, route)?;
                let mut latencies = Vec::with_capacity(per_connection);
                // Paced connections start spread over one interval, not all at once.
                let mut due = Instant::now()
                    + pace.map_or(Duration::ZERO, |p| p * i as u32 / connections as u32);
                for _ in 0..per_connection {
                    if !latencies.is_empty() && deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    if pace.is_some() {
                        let now = Instant::now();
                        if due > now {
                            thread::sleep(due - now);
                        }
                    } else {
                        due = Instant::now();
                    }
                    connection.send()?;
                    latencies.push(due.elapsed().as_secs_f64() * 1e3);
                    if let Some(pace) = pace {
                        due += pace;
                    }
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies_ms = Vec::with_capacity(connections * per_connection);
    for worker in workers {
        match worker.join() {
            Ok(result) => latencies_ms.extend(result?),
            Err(_) => bail!("a load generator thread panicked"),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies_ms.sort_by(f64::total_cmp);
    Ok(LoadResult {
        throughput: latencies_ms.len() as f64 / elapsed,
        latencies_ms,
    })
}

/// As many requests as `connections` connections can make, back to back.
pub fn saturate(
    addr: SocketAddr,
    connections: usize,
    requests: usize,
) -> anyhow::Result<LoadResult> {
    saturate_route(addr, Route::Kill, connections, requests)
}

/// As [`saturate`], for `route`.
pub fn saturate_route(
    addr: SocketAddr,
    route: Route,
    connections: usize,
    requests: usize,
) -> anyhow::Result<LoadResult> {
    let per_connection = requests.div_ceil(connections);
    run(addr, route, connections, per_connection, None, None)
}

/// As [`saturate`], but no request starts once `within` has passed: a slow daemon's
/// rate in bounded time (the original answers about 15 a second among 5,000 processes).
/// At least one request a connection is made.
pub fn saturate_within(
    addr: SocketAddr,
    connections: usize,
    requests: usize,
    within: Duration,
) -> anyhow::Result<LoadResult> {
    let per_connection = requests.div_ceil(connections);
    run(
        addr,
        Route::Kill,
        connections,
        per_connection,
        None,
        Some(within),
    )
}

/// `rate` requests a second over `connections` connections for about `seconds`.
pub fn paced(
    addr: SocketAddr,
    connections: usize,
    rate: f64,
    seconds: f64,
) -> anyhow::Result<LoadResult> {
    let per_connection = ((rate * seconds) / connections as f64).ceil().max(1.0) as usize;
    let pace = Duration::from_secs_f64(connections as f64 / rate);
    run(
        addr,
        Route::Kill,
        connections,
        per_connection,
        Some(pace),
        None,
    )
}
