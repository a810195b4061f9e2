//! No answer of the API is for a cache to keep: each says `Cache-Control` once, errors
//! included; the event stream says `no-cache`, as server-sent events do.

use crate::util::{http, Drill, TestDir};

#[test]
fn every_answer_says_it_is_not_for_a_cache() {
    let dir = TestDir::new("cache-control");
    let mut daemon = Drill::new(&dir).start(&[]);
    let port = daemon.port();
    for (method, path, status) in [
        ("GET", "/api/status", 200),
        ("GET", "/api/history", 200),
        ("GET", "/api/report", 200),
        ("GET", "/metrics", 200),
        ("GET", "/healthz", 200),
        ("POST", "/api/pause", 200),
        ("GET", "/", 200),
        ("POST", "/api/kill", 400),
        ("GET", "/api/nothing", 404),
        ("POST", "/api/faults/nothing", 404),
        ("GET", "/api/history?limit=x", 400),
    ] {
        let answer = http(port, method, path, &[], b"");
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
        let said: Vec<&str> = answer
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("cache-control"))
            .map(|(_, value)| value.as_str())
            .collect();
        assert_eq!(said, ["no-store"], "{method} {path}");
    }
    let (_stream, head) = crate::watchers::watch(port);
    let head = head.to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let said: Vec<&str> = head
        .lines()
        .filter_map(|l| l.strip_prefix("cache-control:"))
        .map(str::trim)
        .collect();
    assert_eq!(said, ["no-cache"], "{head}");
}
