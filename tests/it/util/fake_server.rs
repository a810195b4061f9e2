//! `FakeServer`: a scripted HTTP server on loopback, standing in for the Qiita API, a
//! JSON counter or a webhook, recording what it was sent.

use super::DEADLINE;

/// One scripted answer of the fake HTTP server.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (to provoke client timeouts).
    pub delay: std::time::Duration,
}

impl Reply {
    /// 200 with `{"likes_count": N}`, as Qiita answers.
    pub fn likes(n: i64) -> Reply {
        Reply::body(200, &format!("{{\"id\":\"abc\",\"likes_count\":{n}}}"))
    }
    pub fn body(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
            delay: std::time::Duration::ZERO,
        }
    }
}

/// What the fake server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// When the request arrived.
    pub at: std::time::Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn serve_one(mut stream: std::net::TcpStream, state: &Shared) {
    use std::io::{BufRead as _, Write as _};
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let method = first.split(' ').next().unwrap_or_default().to_owned();
    let path = first.split(' ').nth(1).unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let reply = {
        let (lock, seen) = &**state;
        let mut guard = lock.lock().unwrap();
        let reply = if guard.0.len() > 1 {
            guard.0.pop_front().unwrap()
        } else {
            guard.0[0].clone()
        };
        guard.1.push(Seen {
            method,
            path,
            headers,
            body,
            at: std::time::Instant::now(),
        });
        seen.notify_all();
        reply
    };
    std::thread::sleep(reply.delay);
    let mut answer = format!(
        "HTTP/1.1 {} Status\r\nConnection: close\r\nContent-Length: {}\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        answer.push_str(&format!("{k}: {v}\r\n"));
    }
    answer.push_str("\r\n");
    answer.push_str(&reply.body);
    let _ = stream.write_all(answer.as_bytes());
}

type Shared = std::sync::Arc<(
    std::sync::Mutex<(std::collections::VecDeque<Reply>, Vec<Seen>)>,
    std::sync::Condvar,
)>;

/// A fake HTTP server on loopback answering a script, one reply a request, the last one
/// again once the script is spent. It stands in for the Qiita API.
pub struct FakeServer {
    pub port: u16,
    shared: Shared,
}

impl FakeServer {
    pub fn start(script: Vec<Reply>) -> FakeServer {
        assert!(!script.is_empty());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared: Shared = Default::default();
        shared.0.lock().unwrap().0 = script.into();
        let state = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = state.clone();
                // One thread a connection: a reply that hangs must not hold up the next.
                std::thread::spawn(move || serve_one(stream, &state));
            }
        });
        FakeServer { port, shared }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until it has answered at least `n` requests, and returns what it saw.
    pub fn wait_requests(&self, n: usize) -> Vec<Seen> {
        let (lock, seen) = &*self.shared;
        let guard = lock.lock().unwrap();
        let (guard, timeout) = seen
            .wait_timeout_while(guard, DEADLINE, |g| g.1.len() < n)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "only {} requests within {DEADLINE:?}",
            guard.1.len()
        );
        guard.1.clone()
    }
}

/// A server on loopback that reads each request's head and hands the connection to
/// `answer`, on a thread of its own: for answers [`FakeServer`] cannot script (a body
/// without end, one that drips). Its URL.
pub fn raw_server(answer: fn(&mut std::net::TcpStream)) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::BufRead as _;
                let Ok(clone) = stream.try_clone() else {
                    return;
                };
                let mut reader = std::io::BufReader::new(clone);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                answer(&mut stream);
            });
        }
    });
    url
}

/// A loopback server that accepts and never answers (a service that hangs), kept as
/// long as the test runs: its URL, and how many connections it has taken.
pub fn hung_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = taken.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    (url, taken)
}
