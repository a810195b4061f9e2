//! Helpers: run the real binary, run a script in a fresh PID namespace, find the built
//! plugin libraries (here); fresh namespaces to run the daemon `--execute` in
//! (`namespace`); a test's directory and drill config (`fixture`), the daemon
//! (`daemon`), the API client (`http`) and a scripted HTTP server (`fake_server`) beside.

mod daemon;
mod fake_server;
mod fixture;
mod http;
mod namespace;
pub mod webdriver;

pub use daemon::{Daemon, DEADLINE};
pub use fake_server::{hung_server, raw_server, FakeServer, Reply};
pub use fixture::{Drill, TestDir};
pub use http::{http, Answer};
pub use namespace::{in_namespace, in_network_namespace, namespace};

use std::{
    path::PathBuf,
    process::{Command, Output},
};

/// SIGHUP, SIGINT and SIGTERM as bits of a `/proc/PID/status` signal mask (bit n-1 is
/// signal n): the stop signals the daemon blocks in every thread and its children must
/// not inherit blocked.
pub const STOP_SIGNALS: u64 = (1 << 0) | (1 << 1) | (1 << 14);

/// The signal mask `key` (`SigBlk:`, `SigCgt:`...) of a `/proc/PID/status` text.
pub fn signal_mask(status: &str, key: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix(key))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nightmare-monkey"))
}

/// The state directory every run of the binary gets (journal, pause file, poller state),
/// so no test writes to this machine's /var/lib/nightmare-monkey.
pub fn state_dir() -> PathBuf {
    std::env::temp_dir().join(format!("nm-it-state-{}", std::process::id()))
}

/// The binary, ready to run, with its state kept under [`state_dir`].
pub fn command() -> Command {
    let mut c = Command::new(bin());
    c.env("STATE_DIRECTORY", state_dir())
        .env_remove("RUST_BACKTRACE");
    c
}

/// The plugin libraries cargo built for this test run, copied once into a directory of
/// this test process's own under the system's temporary directory. Cargo puts them
/// beside the test binary, in `target/<profile>/deps` (the copies one level up are
/// refreshed only by `cargo build`, so they may be stale); but the daemon loads a plugin
/// only from a tree no one else can write, and the directories above a checkout are
/// not the tests' to vouch for. `/tmp` is root's and sticky: it passes.
pub fn lib_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let deps = std::env::current_exe()
            .expect("the test binary has a path")
            .parent()
            .expect("the test binary has a directory")
            .to_owned();
        remove_left_behind();
        let dir = std::env::temp_dir().join(format!("nm-it-libs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        trusted_mode(&dir);
        for entry in std::fs::read_dir(&deps).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("lib") && name.ends_with(".so") {
                // A hard link where it can be (the libraries weigh hundreds of MB with
                // their debug information), else a copy.
                if std::fs::hard_link(&path, dir.join(&name)).is_err() {
                    std::fs::copy(&path, dir.join(&name)).unwrap();
                }
                trusted_mode(&dir.join(&name));
            }
        }
        dir
    })
    .clone()
}

/// Removes what earlier test runs left in the temporary directory (the plugin libraries
/// and state directories of test processes that are gone): a run cannot clean up after
/// itself, so the next one does.
fn remove_left_behind() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // The README's prepared tree links the binary and every plugin: left behind, each
        // keeps about 500 MB of old builds alive.
        let pid = ["nm-it-libs-", "nm-it-state-", "nm-it-readme-"]
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix))
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// rwxr-xr-x: what the daemon's trust checks ask of plugin files and their directories.
pub fn trusted_mode(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A plugin library built for this run (`libprocess_kill.so`, `libpanic_plugin.so`).
pub fn built_lib(name: &str) -> PathBuf {
    let path = lib_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// What a finished command left.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs the binary with `args` (on this machine: use only for dry runs).
pub fn monkey(args: &[&str]) -> Run {
    command()
        .args(args)
        .output()
        .expect("the binary runs")
        .into()
}

/// The JSON objects printed one a line.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l}: {e}")))
        .collect()
}

/// Whether the one `KEY STATE` line a script printed (`cut -d' ' -f3 /proc/PID/stat`)
/// says the process runs again: `S`, or `R` (woken by SIGCONT, a process on a busy
/// machine may not be asleep again yet); not `T`.
pub fn resumed(text: &str, key: &str) -> bool {
    matches!(pairs(text, key).as_slice(), [state] if state == "S" || state == "R")
}

/// The `key value` lines a script printed, as pairs.
pub fn pairs(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(str::to_owned))
        .collect()
}

/// A fresh, empty directory for one test, left to the caller to remove: a test should
/// hold a [`TestDir`] instead, which removes it even when the test fails.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nm-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    trusted_mode(&dir);
    dir
}

/// A loopback port kept for one test while it lives, for another process to listen on
/// (or for nobody: a connection to it is refused). A port bound and let go at once may
/// be taken by any test beside, whose `127.0.0.1:0` the kernel answers with a free port;
/// this one stays bound, without listening, with `SO_REUSEADDR`: the kernel never hands
/// it out for a `127.0.0.1:0`, while a program that binds it by its number with the
/// same option (Rust's and Go's listeners: the daemon, its proxies, etcd) gets it.
pub struct ReservedPort(socket2::Socket);

impl ReservedPort {
    pub fn reserve() -> ReservedPort {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
        socket.set_reuse_address(true).expect("SO_REUSEADDR");
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        socket.bind(&any.into()).expect("a free loopback port");
        ReservedPort(socket)
    }

    /// `count` ports at once.
    pub fn many(count: usize) -> Vec<ReservedPort> {
        (0..count).map(|_| ReservedPort::reserve()).collect()
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.0
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("a bound IPv4 address")
    }
}

/// A process of our own for dry runs to choose (killed, by its PID, when dropped).
pub struct Sleeper(std::process::Child);

impl Sleeper {
    pub fn start() -> Sleeper {
        Sleeper::named(std::path::Path::new("sleep"))
    }
    /// Runs a copy of `sleep` under another name, so its short name (comm) is that name.
    pub fn named(program: &std::path::Path) -> Sleeper {
        Sleeper(
            Command::new(program)
                .arg("1000")
                .spawn()
                .expect("sleep starts"),
        )
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How many live processes (zombies aside) have exactly this command line (its NUL
/// separated arguments, as /proc shows it).
pub fn alive_with_cmdline(cmdline: &[u8]) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == cmdline)
                && std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| !s.contains(") Z "))
        })
        .count()
}
