//! The coordinator's endpoints as addresses, for the network faults to spare: a node
//! cut off from its coordinator by a drill's own partition would fail closed and revert
//! the very fault that cut it off. Every endpoint is spared, not only the one the node is
//! connected to, so that a failover to another member is spared as well.

use std::{
    net::{IpAddr, ToSocketAddrs},
    sync::mpsc::{self, Receiver},
    time::{Duration, Instant},
};

/// An address and a port.
type Peer = (IpAddr, u16);

/// How long a name of an endpoint may take to resolve (a start waits for it).
const RESOLVE_WAIT: Duration = Duration::from_secs(2);

/// The addresses and ports of the coordinator's `endpoints` (URLs), and the endpoints
/// whose name did not resolve within [`RESOLVE_WAIT`] (all at once: a start waits that
/// long at most). A connection open to one of those is still spared, as every open
/// connection of the daemon's is.
pub fn endpoint_addrs(endpoints: &[String]) -> (Vec<Peer>, Vec<String>) {
    let asked: Vec<(String, Receiver<Vec<Peer>>)> = endpoints
        .iter()
        .filter_map(|endpoint| Some((endpoint, reqwest::Url::parse(endpoint).ok()?)))
        .map(|(endpoint, url)| {
            let port = url.port_or_known_default().unwrap_or(2379);
            let host = url.host_str().unwrap_or_default().to_owned();
            let (tx, rx) = mpsc::channel();
            let literal = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = literal.parse::<IpAddr>() {
                let _ = tx.send(vec![(ip, port)]);
            } else {
                // The resolver cannot be told to give up: it answers on a thread of
                // its own, left to end alone if it is late.
                std::thread::spawn(move || {
                    let found = (host.as_str(), port)
                        .to_socket_addrs()
                        .map(|found| found.map(|a| (a.ip(), a.port())).collect())
                        .unwrap_or_default();
                    let _ = tx.send(found);
                });
            }
            (endpoint.clone(), rx)
        })
        .collect();
    let until = Instant::now() + RESOLVE_WAIT;
    let mut addrs = Vec::new();
    let mut unresolved = Vec::new();
    for (endpoint, rx) in asked {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(found) if !found.is_empty() => addrs.extend(found),
            _ => unresolved.push(endpoint),
        }
    }
    addrs.sort_unstable();
    addrs.dedup();
    (addrs, unresolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(urls: &[&str]) -> Vec<String> {
        urls.iter().map(|e| (*e).to_owned()).collect()
    }

    #[test]
    fn every_endpoint_is_an_address_and_a_port_names_resolved() {
        let (found, unresolved) = endpoint_addrs(&endpoints(&[
            "http://127.0.0.1:2379",
            "https://[::1]:2380",
            "http://10.0.0.5",
            "http://localhost:2381",
            "http://127.0.0.1:2379",
            "not a url",
            "http://no-such-host.invalid:2379",
        ]));
        assert_eq!(unresolved, ["http://no-such-host.invalid:2379"]);
        let v4 = |a, b, c, d, port| (IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)), port);
        assert!(found.contains(&v4(127, 0, 0, 1, 2379)), "{found:?}");
        assert!(found.contains(&(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 2380)));
        assert!(
            found.contains(&v4(10, 0, 0, 5, 80)),
            "a URL's scheme gives its port"
        );
        assert!(
            found
                .iter()
                .any(|(ip, port)| ip.is_loopback() && *port == 2381),
            "{found:?}"
        );
        assert_eq!(
            found
                .iter()
                .filter(|a| **a == v4(127, 0, 0, 1, 2379))
                .count(),
            1
        );
    }
}
