//! The ports this process listens on (the daemon's API): a network fault leaves them
//! alone unless its configuration says otherwise, so the kill switch stays reachable.
//!
//! The built-in faults run inside the daemon, so its listeners are this process's: the
//! TCP sockets in LISTEN state (`/proc/self/net/tcp`, `tcp6`) whose inodes are among
//! its open descriptors. Nothing has to be configured twice.

use std::collections::BTreeSet;

/// The TCP ports this process listens on, in order.
pub fn listening_ports() -> Vec<u16> {
    let inodes: BTreeSet<u64> = std::fs::read_dir("/proc/self/fd")
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
        .collect();
    let mut ports = BTreeSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        ports.extend(
            text.lines()
                .skip(1)
                .filter_map(|line| listener(line, &inodes)),
        );
    }
    ports.into_iter().collect()
}

/// The local port of a line of `/proc/net/tcp` that is a listener of ours.
fn listener(line: &str, inodes: &BTreeSet<u64>) -> Option<u16> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
    // 0A is TCP_LISTEN.
    if *state != "0A" || !inodes.contains(&inode.parse().ok()?) {
        return None;
    }
    u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_of_this_process_is_found_and_no_other() {
        let ours = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = ours.local_addr().unwrap().port();
        assert!(listening_ports().contains(&port));
        drop(ours);
        assert!(!listening_ports().contains(&port));
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0";
        assert_eq!(listener(line, &BTreeSet::from([4242])), Some(8080));
        assert_eq!(listener(line, &BTreeSet::from([1])), None);
        let established = line.replace(" 0A ", " 01 ");
        assert_eq!(listener(&established, &BTreeSet::from([4242])), None);
    }
}
