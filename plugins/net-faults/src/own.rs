//! The ports this process listens on (the daemon's API) and the peers it connects to
//! (the fleet's coordinator): a network fault leaves them alone unless its configuration
//! says otherwise, so the kill switch stays reachable and a fleet's node its coordinator.
//!
//! The built-in faults run inside the daemon, so its listeners are this process's: the
//! TCP sockets in LISTEN state (as sock_diag lists them, `sockdiag`) whose inodes are
//! among its open descriptors. Nothing has to be configured twice. The peers are those it is
//! connected to when the fault is prepared, and those the host declared
//! ([`declare_peers`]: every endpoint of the fleet's coordinator, so that a failover to
//! a member it was not connected to is spared as well).

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Mutex,
};

use crate::sockdiag;

/// The peers the host declared its own, connected or not.
static DECLARED: Mutex<Vec<(IpAddr, u16)>> = Mutex::new(Vec::new());

/// Declares the addresses and ports the daemon must always reach (the fleet's
/// coordinator's endpoints), in place of those declared before: a network fault spares
/// them as it spares an open connection of the daemon's.
pub fn declare_peers(peers: Vec<(IpAddr, u16)>) {
    *DECLARED.lock().unwrap_or_else(|e| e.into_inner()) = peers;
}

/// The ports the host declared its daemon's, listening here or not.
static DECLARED_PORTS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Declares the TCP ports of the daemon's API and proxies, in place of those declared
/// before: a network fault spares them as it spares this process's own listeners. A
/// one-shot `kill` declares those of the daemon its config describes, which runs in
/// another process (its kill switch stays reachable).
pub fn declare_listening(ports: Vec<u16>) {
    *DECLARED_PORTS.lock().unwrap_or_else(|e| e.into_inner()) = ports;
}

/// The inodes of this process's sockets.
fn socket_inodes() -> BTreeSet<u64> {
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.path()).ok()?;
            let text = target.to_str()?;
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The addresses other processes' TCP listeners of this namespace hold on `port` (not
/// this process's own, by the inodes of its descriptors).
pub fn others_listening(port: u16) -> Result<Vec<std::net::SocketAddr>, String> {
    let inodes = socket_inodes();
    let sockets = sockdiag::tcp(&[sockdiag::LISTEN])
        .map_err(|e| format!("cannot list the listening TCP sockets (sock_diag): {e}"))?;
    Ok(sockets
        .iter()
        .filter(|s| s.local.1 == port && !inodes.contains(&s.inode))
        .map(|s| std::net::SocketAddr::new(s.local.0, port))
        .collect())
}

/// This process's listening ports and the peers it connected to, from one listing of
/// the namespace's TCP sockets (`sockdiag`: one walk of the kernel's table per address
/// family; `/proc/self/net/tcp` took 8-10 ms a file).
#[derive(Debug, Default)]
pub struct Own {
    /// The TCP ports it listens on, in order.
    pub listening: Vec<u16>,
    /// The addresses and ports it is connected to, its listeners' clients aside.
    pub peers: Vec<(IpAddr, u16)>,
}

/// Reads [`Own`] now; the kernel's refusal to list the sockets, as a sentence.
pub fn read() -> Result<Own, String> {
    let inodes = socket_inodes();
    let sockets = sockdiag::tcp(&[sockdiag::ESTABLISHED, sockdiag::LISTEN]).map_err(|e| {
        format!(
            "cannot list this daemon's TCP sockets (sock_diag): {e}{}",
            crate::nfnetlink::netlink_hint(e)
        )
    })?;
    let ours: Vec<&sockdiag::TcpSocket> = sockets
        .iter()
        .filter(|s| inodes.contains(&s.inode))
        .collect();
    let listening: BTreeSet<u16> = ours
        .iter()
        .filter(|s| s.state == sockdiag::LISTEN)
        .map(|s| s.local.1)
        .collect();
    let declared = DECLARED_PORTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let own_ports: Vec<u16> = listening.iter().copied().collect();
    let listening: Vec<u16> = listening
        .into_iter()
        .chain(declared)
        .collect::<BTreeSet<u16>>()
        .into_iter()
        .collect();
    // A connection this process made: established, from none of its listeners' ports.
    let mut peers: BTreeSet<(IpAddr, u16)> = ours
        .iter()
        .filter(|s| s.state == sockdiag::ESTABLISHED && !own_ports.contains(&s.local.1))
        .map(|s| s.remote)
        .collect();
    peers.extend(
        DECLARED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied(),
    );
    Ok(Own {
        listening,
        peers: peers.into_iter().collect(),
    })
}

/// The addresses of this network namespace's interfaces: the IPv4 ones the kernel
/// routes locally (`/32 host LOCAL` in `/proc/net/fib_trie`) and the IPv6 ones of
/// `/proc/net/if_inet6`. A socket can be bound to others too (`ip_nonlocal_bind`), so
/// binding is no test of what is this host's.
pub fn host_addresses() -> Vec<IpAddr> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let mut all: Vec<IpAddr> = local_v4(&read("/proc/net/fib_trie"))
        .into_iter()
        .map(IpAddr::V4)
        .chain(
            local_v6(&read("/proc/net/if_inet6"))
                .into_iter()
                .map(IpAddr::V6),
        )
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// The `|-- ADDRESS` lines of `fib_trie` followed by a `/32 host LOCAL` line.
fn local_v4(fib_trie: &str) -> Vec<Ipv4Addr> {
    let lines: Vec<&str> = fib_trie.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|pair| pair[1] == "/32 host LOCAL")
        .filter_map(|pair| pair[0].strip_prefix("|-- ")?.parse().ok())
        .collect()
}

/// The first field of each line of `if_inet6`: 32 hex digits.
fn local_v6(if_inet6: &str) -> Vec<Ipv6Addr> {
    if_inet6
        .lines()
        .filter_map(|line| u128::from_str_radix(line.split_whitespace().next()?, 16).ok())
        .map(Ipv6Addr::from)
        .collect()
}

/// The TCP ports this process listens on, in order.
#[cfg(test)]
pub fn listening_ports() -> Vec<u16> {
    read().unwrap().listening
}

/// The addresses and ports this process is connected to, its own listeners' clients
/// aside (the fleet's coordinator, say), and those declared. A network fault spares them
/// (by address and port, so a reconnection is spared too), as it spares the API.
#[cfg(test)]
pub fn connected_peers() -> Vec<(IpAddr, u16)> {
    read().unwrap().peers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_addresses_are_its_local_routes_and_its_v6_interfaces() {
        let fib = "Local:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n           |-- 127.0.0.1\n              /32 host LOCAL\n           |-- 192.0.2.2\n              /32 host LOCAL\n        |-- 192.0.2.255\n           /32 link BROADCAST\n";
        assert_eq!(
            local_v4(fib),
            [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 2)]
        );
        let v6 = "fd000000000000000000000000000002 04 40 00 82     eth0\n00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(
            local_v6(v6),
            ["fd00::2".parse::<Ipv6Addr>().unwrap(), Ipv6Addr::LOCALHOST]
        );
        assert!(host_addresses().contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(!host_addresses().contains(&IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200))));
    }

    #[test]
    fn declared_peers_are_spared_though_no_connection_is_open() {
        let member: (IpAddr, u16) = (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)), 2379);
        assert!(!connected_peers().contains(&member));
        declare_peers(vec![member]);
        assert!(connected_peers().contains(&member));
        declare_peers(Vec::new());
        assert!(
            !connected_peers().contains(&member),
            "a new declaration replaces the old"
        );
    }

    #[test]
    fn a_listener_of_this_process_is_found_and_no_other() {
        let ours = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = ours.local_addr().unwrap().port();
        assert!(listening_ports().contains(&port));
        drop(ours);
        assert!(!listening_ports().contains(&port));
    }

    #[test]
    fn a_connection_this_process_made_is_a_peer_and_its_listeners_clients_are_not() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (accepted, _) = server.accept().unwrap();
        let peers = connected_peers();
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(peers.contains(&(localhost, port)), "{peers:?}");
        let client_port = client.local_addr().unwrap().port();
        assert!(
            !peers.contains(&(localhost, client_port)),
            "the accepted end is a client of our listener: {peers:?}"
        );
        drop((client, accepted));
        // Over IPv6, where the host has it.
        if let Ok(server) = std::net::TcpListener::bind("[::1]:0") {
            let port = server.local_addr().unwrap().port();
            let _client = std::net::TcpStream::connect(("::1", port)).unwrap();
            let peers = connected_peers();
            assert!(
                peers.contains(&(IpAddr::V6(Ipv6Addr::LOCALHOST), port)),
                "{peers:?}"
            );
        }
    }
}
