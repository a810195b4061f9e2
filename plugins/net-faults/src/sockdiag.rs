//! This network namespace's TCP sockets in the states asked, from the kernel's
//! sock_diag (the netlink protocol `ss` speaks), for [`crate::own`].
//!
//! Why not `/proc/self/net/tcp`: each reading of it walks the kernel's whole hash of
//! TCP connections (every namespace's, 262,144 buckets on the machine measured), and
//! the text interface restarts that walk for each read call, so the two files took
//! 8-10 ms each on two busy cores. sock_diag walks it once per address family, filters
//! the states in the kernel, and answers fixed binary records (BENCHMARKS.md).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsFd,
    time::Duration,
};

use rustix::{
    io::Errno,
    net::{
        netlink, recv, send, socket_with, sockopt, AddressFamily, RecvFlags, SendFlags,
        SocketFlags, SocketType,
    },
};

// From linux/netlink.h, linux/sock_diag.h and linux/inet_diag.h.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
/// `TCP_ESTABLISHED`.
pub const ESTABLISHED: u8 = 1;
/// `TCP_LISTEN`.
pub const LISTEN: u8 = 10;
/// The length of a `struct inet_diag_msg`.
const RECORD: usize = 72;

/// One TCP socket of this namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    /// [`ESTABLISHED`], [`LISTEN`], ...
    pub state: u8,
    /// Its address and port (IPv4-mapped IPv6 as IPv4).
    pub local: (IpAddr, u16),
    /// Its peer's (unspecified for a listener).
    pub remote: (IpAddr, u16),
    /// Its inode, as `/proc/self/fd` names it (`socket:[INODE]`).
    pub inode: u64,
}

/// A `SOCK_DIAG_BY_FAMILY` dump request of the TCP sockets of `family` in `states`.
fn request(family: u8, states: &[u8]) -> Vec<u8> {
    let mask = states.iter().fold(0u32, |m, s| m | (1 << s));
    // nlmsghdr (16), then inet_diag_req_v2: family, protocol, ext, pad, states, and a
    // socket id left empty (48).
    let mut buf = Vec::with_capacity(72);
    buf.extend_from_slice(&72u32.to_ne_bytes());
    buf.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    buf.extend_from_slice(&[0; 8]);
    buf.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    buf.extend_from_slice(&mask.to_ne_bytes());
    buf.resize(72, 0);
    buf
}

/// The address of `family` in the 16 bytes `bytes` (IPv4 in the first four).
fn address(family: u8, bytes: &[u8]) -> IpAddr {
    if family == AF_INET {
        return IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]));
    }
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&bytes[..16]);
    let v6 = Ipv6Addr::from(octets);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

/// One `inet_diag_msg` (at least [`RECORD`] bytes).
fn record(msg: &[u8]) -> TcpSocket {
    let family = msg[0];
    let port = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
    let inode = u32::from_ne_bytes([msg[68], msg[69], msg[70], msg[71]]);
    TcpSocket {
        state: msg[1],
        local: (address(family, &msg[8..24]), port(4)),
        remote: (address(family, &msg[24..40]), port(6)),
        inode: u64::from(inode),
    }
}

/// Reads the messages in `buf` into `found`; whether the dump is done. An error the
/// kernel answered is returned as its errno.
fn hear(buf: &[u8], found: &mut Vec<TcpSocket>) -> Result<bool, Errno> {
    let mut at = 0;
    while buf.len() >= at + 16 {
        let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if len < 16 || at + len > buf.len() {
            break;
        }
        let body = &buf[at + 16..at + len];
        match u16::from_ne_bytes([buf[at + 4], buf[at + 5]]) {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR if body.len() >= 4 => {
                let error = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
                return Err(Errno::from_raw_os_error(-error));
            }
            SOCK_DIAG_BY_FAMILY if body.len() >= RECORD => found.push(record(body)),
            _ => {}
        }
        at += len.next_multiple_of(4);
    }
    Ok(false)
}

/// The TCP sockets of this thread's network namespace in `states`, both families.
pub fn tcp(states: &[u8]) -> Result<Vec<TcpSocket>, Errno> {
    let fd = socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )?;
    // The kernel answers within the call; a second is far more than it takes.
    sockopt::set_socket_timeout(&fd, sockopt::Timeout::Recv, Some(Duration::from_secs(1)))?;
    let mut found = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    // One dump at a time on a socket: the second family once the first is done.
    for family in [AF_INET, AF_INET6] {
        send(fd.as_fd(), &request(family, states), SendFlags::empty())?;
        loop {
            let (n, _) = match recv(fd.as_fd(), &mut buf[..], RecvFlags::empty()) {
                Err(Errno::INTR) => continue,
                other => other?,
            };
            if n == 0 || hear(&buf[..n], &mut found)? {
                break;
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_asks_for_the_states_of_one_family() {
        let r = request(AF_INET6, &[ESTABLISHED, LISTEN]);
        assert_eq!(r.len(), 72);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), 20);
        assert_eq!(u16::from_ne_bytes([r[6], r[7]]), 0x301);
        assert_eq!(&r[16..20], &[AF_INET6, IPPROTO_TCP, 0, 0]);
        assert_eq!(u32::from_ne_bytes([r[20], r[21], r[22], r[23]]), 0x402);
    }

    #[test]
    fn a_record_reads_as_its_ends_state_and_inode() {
        let mut msg = vec![0u8; RECORD];
        msg[0] = AF_INET6;
        msg[1] = ESTABLISHED;
        msg[4..6].copy_from_slice(&8080u16.to_be_bytes());
        msg[6..8].copy_from_slice(&2379u16.to_be_bytes());
        // Local ::ffff:127.0.0.1, remote ::1.
        msg[18..20].copy_from_slice(&[0xff, 0xff]);
        msg[20..24].copy_from_slice(&[127, 0, 0, 1]);
        msg[39] = 1;
        msg[68..72].copy_from_slice(&4242u32.to_ne_bytes());
        let s = record(&msg);
        assert_eq!(s.local, (IpAddr::V4(Ipv4Addr::LOCALHOST), 8080));
        assert_eq!(s.remote, (IpAddr::V6(Ipv6Addr::LOCALHOST), 2379));
        assert_eq!((s.state, s.inode), (ESTABLISHED, 4242));
        msg[0] = AF_INET;
        msg[8..12].copy_from_slice(&[10, 0, 0, 9]);
        assert_eq!(record(&msg).local.0, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)));
    }

    #[test]
    fn an_error_answered_is_its_errno_and_done_ends_the_dump() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&20u32.to_ne_bytes());
        buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        buf.extend_from_slice(&[0; 10]);
        buf.extend_from_slice(&(-2i32).to_ne_bytes());
        assert_eq!(hear(&buf, &mut Vec::new()), Err(Errno::NOENT));
        buf[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert_eq!(hear(&buf, &mut Vec::new()), Ok(true));
        assert_eq!(hear(&buf[..10], &mut Vec::new()), Ok(false));
    }

    /// The real kernel: a listener and a connection of this process are found.
    #[test]
    fn this_processs_sockets_are_listed() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let found = tcp(&[ESTABLISHED, LISTEN]).unwrap();
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(found
            .iter()
            .any(|s| s.state == LISTEN && s.local == (localhost, port)));
        let from = client.local_addr().unwrap().port();
        assert!(found.iter().any(|s| s.state == ESTABLISHED
            && s.local == (localhost, from)
            && s.remote == (localhost, port)
            && s.inode != 0));
    }
}
