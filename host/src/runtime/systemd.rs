//! systemd's readiness and watchdog protocol (sd_notify): datagrams like `READY=1` to the
//! socket in `$NOTIFY_SOCKET`. Written here in a few lines rather than pulled in as a
//! crate: the protocol is one `sendto`. Without `$NOTIFY_SOCKET` (not under systemd, or
//! not `Type=notify`) every call is a no-op.

use std::{io, os::unix::net::UnixDatagram, time::Duration};

/// Sends `state` (newline-separated `KEY=value` lines) to systemd; `Ok(false)` when not
/// asked to (no `$NOTIFY_SOCKET`).
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    match bytes.strip_prefix(b"@") {
        // An abstract socket: the name after the @.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            socket.send_to(state.as_bytes(), &path)?;
        }
    }
    Ok(true)
}

/// How often to tell systemd the daemon is alive: half of `$WATCHDOG_USEC`, when the
/// unit sets `WatchdogSec=` and the watchdog is meant for this process.
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
