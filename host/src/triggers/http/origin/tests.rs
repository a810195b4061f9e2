//! The rules of `origin`, request head by request head.

use super::*;

fn head(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(*name, value.parse().unwrap());
    }
    headers
}

fn token_less() -> Guard {
    Guard::new(
        "127.0.0.1".parse().unwrap(),
        false,
        &["Monkey.example.com".to_owned()],
    )
}

fn status(guard: &Guard, method: Method, path: &str, pairs: &[(&'static str, &str)]) -> u16 {
    match guard.check(&method, path, &head(pairs)) {
        Ok(()) => 200,
        Err(refused) => refused.status.as_u16(),
    }
}

#[test]
fn only_names_that_cannot_be_rebound_reach_a_token_less_api() {
    let guard = token_less();
    for host in [
        "localhost",
        "LOCALHOST:8080",
        "127.0.0.1",
        "127.0.0.1:8080",
        "[::1]",
        "[::1]:9000",
        "monkey.example.com",
        "monkey.example.com:443",
    ] {
        assert_eq!(
            status(&guard, Method::POST, "/api/kill", &[("host", host)]),
            200,
            "{host}"
        );
    }
    for host in [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
        "10.0.0.5:8080",
        "127.0.0.1:99999",
        "[::1",
        "",
        "monkey.example.com.evil.example",
    ] {
        assert_eq!(
            status(&guard, Method::GET, "/api/history", &[("host", host)]),
            421,
            "{host}"
        );
    }
    // Not a browser's request (HTTP/1.0 without a Host): nothing to rebind.
    assert_eq!(status(&guard, Method::GET, "/api/history", &[]), 200);
    // Listening on all addresses: any of this host's addresses, names still not.
    let all = Guard::new("0.0.0.0".parse().unwrap(), false, &[]);
    assert_eq!(
        status(&all, Method::GET, "/metrics", &[("host", "10.0.0.5:8080")]),
        200
    );
    assert_eq!(
        status(&all, Method::GET, "/metrics", &[("host", "evil.example")]),
        421
    );
    // An address named in allowed_hosts (a proxy that passes its own on).
    let proxied = Guard::new(
        "127.0.0.1".parse().unwrap(),
        false,
        &["10.0.0.9".to_owned()],
    );
    assert_eq!(
        status(
            &proxied,
            Method::GET,
            "/metrics",
            &[("host", "10.0.0.9:8080")]
        ),
        200
    );
    // With a token: a rebound page has none; Service names keep working.
    let tokens = Guard::new("0.0.0.0".parse().unwrap(), true, &[]);
    assert_eq!(
        status(
            &tokens,
            Method::GET,
            "/metrics",
            &[("host", "monkey.svc:8080")]
        ),
        200
    );
}

#[test]
fn a_page_of_another_site_is_refused_and_the_api_s_own_is_not() {
    let guard = token_less();
    let own = [
        ("host", "127.0.0.1:8080"),
        ("origin", "http://127.0.0.1:8080"),
        ("sec-fetch-site", "same-origin"),
    ];
    assert_eq!(status(&guard, Method::POST, "/api/pause", &own), 200);
    assert_eq!(
        status(
            &guard,
            Method::GET,
            "/api/events",
            &[
                ("host", "localhost:8080"),
                ("sec-fetch-site", "same-origin")
            ]
        ),
        200
    );
    assert_eq!(
        status(
            &guard,
            Method::GET,
            "/",
            &[("host", "localhost:8080"), ("sec-fetch-site", "none")]
        ),
        200
    );
    // Behind a proxy that rewrites Host, its name in allowed_hosts.
    assert_eq!(
        status(
            &guard,
            Method::POST,
            "/api/pause",
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "https://monkey.example.com")
            ]
        ),
        200
    );
    let foreign: &[&[(&'static str, &str)]] = &[
        &[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:3000"),
        ],
        &[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ],
        &[("host", "127.0.0.1:8080"), ("origin", "null")],
        &[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://monkey.example.com:8443"),
        ],
        &[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")],
        &[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")],
        &[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ],
    ];
    for pairs in foreign {
        for (method, path) in [
            (Method::POST, "/api/kill"),
            (Method::POST, "/api/pause"),
            (Method::GET, "/api/history"),
            (Method::GET, "/metrics"),
        ] {
            assert_eq!(status(&guard, method, path, pairs), 403, "{path} {pairs:?}");
        }
    }
    // A link from a runbook opens the page (it holds no data), and only the page.
    let link = [("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")];
    assert_eq!(status(&guard, Method::GET, "/", &link), 200);
    assert_eq!(status(&guard, Method::POST, "/", &link), 403);
    // A token does not let another site's page in.
    let tokens = Guard::new("127.0.0.1".parse().unwrap(), true, &[]);
    assert_eq!(status(&tokens, Method::POST, "/api/kill", foreign[0]), 403);
}

#[test]
fn a_refusal_names_what_came_and_what_was_expected() {
    let guard = token_less();
    let refused = guard
        .check(
            &Method::GET,
            "/api/history",
            &head(&[("host", "evil.example:8080")]),
        )
        .unwrap_err();
    assert_eq!(refused.message, "refused: Host `evil.example:8080` is not this API's: expected localhost, 127.0.0.1, [::1] (any port), or a name in http.allowed_hosts; a page whose name points here (DNS rebinding) is not the API's");
    let refused = guard
        .check(
            &Method::POST,
            "/api/kill",
            &head(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:3000"),
            ]),
        )
        .unwrap_err();
    assert_eq!(refused.message, "refused: a page from another site may not call this API (Origin `http://127.0.0.1:3000`); only the dashboard it serves may, or a client that is not a browser (curl); behind a reverse proxy, name it in http.allowed_hosts");
    let long = format!("http://{}.example", "a".repeat(300));
    let refused = guard
        .check(&Method::POST, "/api/kill", &head(&[("origin", &long)]))
        .unwrap_err();
    assert!(refused.message.len() < 400, "{}", refused.message);
}

#[test]
fn allowed_hosts_are_names_with_an_optional_port() {
    for ok in [
        "monkey.example.com",
        "monkey.example.com:8443",
        "10.0.0.5",
        "[::1]:8080",
        "monkey_1",
    ] {
        assert_eq!(allowed_host_error(ok), None, "{ok}");
    }
    for bad in [
        "https://monkey.example.com",
        "monkey.example.com/x",
        "",
        "a b",
        "m:port",
        "::1",
    ] {
        assert!(allowed_host_error(bad).is_some(), "{bad}");
    }
    // A scheme or a path alone is named for what it is: a URL, not a host.
    for url in ["https://monkey.example.com", "monkey.example.com/x"] {
        let e = allowed_host_error(url).unwrap_or_default();
        assert!(e.contains("is a URL: give the name only"), "{url}: {e}");
    }
}

#[test]
fn a_refusal_names_the_listen_address_when_it_is_not_loopback() {
    for (listen, named) in [
        ("127.0.0.2", ""),
        ("::1", ""),
        ("0.0.0.0", ", any address of this host"),
        ("::", ", any address of this host"),
        ("10.0.0.5", ", 10.0.0.5"),
        ("fd00::5", ", [fd00::5]"),
    ] {
        let guard = Guard::new(listen.parse().unwrap(), false, &[]);
        let refused = guard
            .check(
                &Method::GET,
                "/api/status",
                &head(&[("host", "evil.example")]),
            )
            .unwrap_err();
        assert!(
            refused.message.contains(&format!(
                "expected localhost, 127.0.0.1, [::1]{named} (any port), or"
            )),
            "{listen}: {}",
            refused.message
        );
    }
}
