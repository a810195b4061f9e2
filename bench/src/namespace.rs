//! The namespaces the harness runs in: its own user, PID, mount and network namespaces,
//! so that every process it sees is its own and every socket it opens is on a loopback
//! no one else uses (the original binds every interface: here, loopback is the only one).

use std::{env, os::unix::process::CommandExt as _, process::Command};

use anyhow::bail;

/// Set in the re-executed harness, so it never re-executes itself twice.
const IN_NAMESPACE: &str = "NM_BENCH_IN_NAMESPACE";

/// Runs this same command again as PID 1 of a new user, PID, mount and network
/// namespace; it is killed if `unshare` is.
pub fn reexec() -> anyhow::Result<()> {
    if env::var_os(IN_NAMESPACE).is_some() {
        bail!("the harness is not PID 1 inside the namespace it made (nested unshare?)");
    }
    let error = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount-proc",
            "--net",
            "--kill-child",
        ])
        .arg(env::current_exe()?)
        .args(env::args_os().skip(1))
        .env(IN_NAMESPACE, "1")
        .exec();
    bail!("cannot run unshare (util-linux) to make a PID and network namespace: {error}")
}

/// Brings up `lo` of the fresh network namespace (it starts down), as `ip link set lo
/// up` would.
#[allow(unsafe_code)]
pub fn loopback_up() -> anyhow::Result<()> {
    if env::var_os(IN_NAMESPACE).is_none() {
        bail!("refusing to touch a network interface outside the harness's own namespace");
    }
    // SAFETY: a plain socket, closed below; the ioctls read and write the ifreq they are
    // given and nothing else; the name is NUL-terminated (the struct is zeroed).
    unsafe {
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            bail!("cannot open a socket: {}", std::io::Error::last_os_error());
        }
        let mut request = std::mem::zeroed::<libc::ifreq>();
        for (to, from) in request.ifr_name.iter_mut().zip(b"lo") {
            *to = *from as libc::c_char;
        }
        let mut result = libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request);
        if result == 0 {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            result = libc::ioctl(socket, libc::SIOCSIFFLAGS, &request);
        }
        let error = std::io::Error::last_os_error();
        libc::close(socket);
        if result != 0 {
            bail!("cannot bring up the loopback interface of the harness's network namespace: {error}");
        }
    }
    Ok(())
}
