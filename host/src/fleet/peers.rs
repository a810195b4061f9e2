//! The coordinator's endpoints as addresses, for the network faults to spare: a node
//! cut off from its coordinator by a drill's own partition would fail closed and revert
//! the very fault that cut it off. Every endpoint is spared, not only the one the node is
//! connected to, so that a failover to another member is spared as well.

use std::net::{IpAddr, ToSocketAddrs};

/// The addresses and ports of the coordinator's `endpoints` (URLs). A name is resolved now (an endpoint
/// that does not resolve is left out: the connection open to it, if any, is still
/// spared as every open connection of the daemon's is).
pub fn endpoint_addrs(endpoints: &[String]) -> Vec<(IpAddr, u16)> {
    let mut addrs: Vec<(IpAddr, u16)> = endpoints
        .iter()
        .filter_map(|endpoint| reqwest::Url::parse(endpoint).ok())
        .flat_map(|url| {
            let port = url.port_or_known_default().unwrap_or(2379);
            let host = url.host_str().unwrap_or_default();
            let literal = host.trim_start_matches('[').trim_end_matches(']');
            match literal.parse::<IpAddr>() {
                Ok(ip) => vec![(ip, port)],
                Err(_) => (host, port)
                    .to_socket_addrs()
                    .map(|found| found.map(|a| (a.ip(), a.port())).collect())
                    .unwrap_or_default(),
            }
        })
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(urls: &[&str]) -> Vec<String> {
        urls.iter().map(|e| (*e).to_owned()).collect()
    }

    #[test]
    fn every_endpoint_is_an_address_and_a_port_names_resolved() {
        let found = endpoint_addrs(&endpoints(&[
            "http://127.0.0.1:2379",
            "https://[::1]:2380",
            "http://10.0.0.5",
            "http://localhost:2381",
            "http://127.0.0.1:2379",
            "not a url",
        ]));
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
