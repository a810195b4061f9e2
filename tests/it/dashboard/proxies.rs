//! The dashboard's "Fault proxies" table, against a daemon with one proxy: where it
//! listens and forwards, its connections and bytes as traffic passes, and a toxic shown
//! while it is on and gone once it is turned off. The daemon runs `--execute` in a PID
//! namespace of its own (`Namespace`, as for "revert now") on this machine's loopback,
//! where the browser reaches it: a toxic adds no rule anywhere, it lives in the proxy.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
};

use super::*;

/// An echo server of the test's own on a free loopback port, for as long as the test runs.
fn echo_upstream() -> std::net::SocketAddr {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = upstream.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in upstream.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0; 4096];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    if conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    address
}

/// The proxies table's one row, as the page shows it, once `check` (a JS expression over
/// `row`, its text, cells apart by tabs) holds.
fn row_until(browser: &Browser, what: &str, check: &str) -> String {
    text_until(
        browser,
        what,
        r##"const section = document.getElementById("proxies").closest("section");
           const tr = document.querySelector("#proxies tbody tr");
           const row = section.hidden || !tr ? "" : tr.innerText;"##,
        "row",
        check,
    )
}

#[test]
fn the_proxy_table_shows_the_traffic_and_a_toxic_until_it_is_turned_off() {
    let dir = TestDir::new("dashboard-proxy");
    let upstream = echo_upstream();
    // A free port, kept for the proxy to take (a port let go may be any other test's
    // next).
    let reserved = crate::util::ReservedPort::reserve();
    let listen = reserved.addr();
    let file = Drill::new(&dir)
        .named("proxy.ron")
        .config(&format!(
            r#"proxies: {{ "db": (listen: "{listen}", upstream: "{upstream}") }},
    faults: {{ "slow-db": (plugin: "net-proxy", config: (proxy: "db", toxic: Latency(latency: "50ms"), duration: "10m")) }}"#
        ))
        .write();
    let namespace = Namespace::start(&dir, file.as_ref());
    let port = namespace.port();

    // Traffic: 1,000 bytes there and back on a connection left open.
    let mut client = TcpStream::connect(listen).expect("the proxy listens");
    client.write_all(&[b'x'; 1000]).unwrap();
    let mut back = [0; 1000];
    client.read_exact(&mut back).unwrap();

    let browser = Browser::start(1280, 1000);
    browser.goto(&format!("http://127.0.0.1:{port}/"));
    let row = row_until(
        &browser,
        "the proxy with its connection and bytes",
        r#"row.includes("1000 / 1000")"#,
    );
    let cells: Vec<&str> = row.split('\t').map(str::trim).collect();
    assert_eq!(
        cells,
        [
            "db",
            &format!("{listen} \u{2192} {upstream}"),
            "1",
            "1000 / 1000",
            "none"
        ],
        "{row}"
    );

    // A toxic on: shown in its row.
    let fault = http(
        port,
        "POST",
        "/api/faults/slow-db",
        &[],
        br#"{"desc":"slow database"}"#,
    )
    .json();
    assert_eq!(fault["result"], "injected", "{fault}");
    let row = row_until(
        &browser,
        "the toxic in effect",
        r#"row.endsWith("latency 50ms (downstream)")"#,
    );
    assert!(row.starts_with("db\t"), "{row}");
    browser.screenshot(&shots().join("dashboard-proxies.png"));

    // Turned off (revert now, through the API): gone from the row; the traffic stays.
    let id = fault["id"].as_str().unwrap();
    let revert = http(port, "POST", &format!("/api/revert/{id}"), &[], b"");
    assert_eq!(revert.status, 200, "{}", revert.body);
    let row = row_until(&browser, "no toxic any more", r#"row.endsWith("none")"#);
    assert!(row.contains("1000 / 1000"), "{row}");
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}
