//! The fault proxy (Toxiproxy's model): TCP proxies the daemon runs, each listening on
//! an address of its own and forwarding to one upstream, passing every byte through
//! untouched until a `net-proxy` fault turns a toxic on (latency, bandwidth, timeout,
//! reset, ...) for its duration.
//!
//! The proxies of a process are one registry: the daemon declares its configuration's
//! (`declare`, so that a fault naming an unknown proxy is refused when the configuration
//! is checked) and starts them (`start_all`); the one-shot `kill` starts the one its
//! fault needs when the fault is applied. They run on one thread of their own with a
//! single-threaded tokio runtime (`run`), so the daemon's API never waits for a byte
//! and a proxy never waits for the API. A proxy dies with its process, its toxics with
//! it: after a crash there is nothing to revert.
//!
//! Why here and not in the host: the `net-proxy` fault is a built-in plugin, reached
//! through the ABI like every other fault, and a plugin crate cannot import the host;
//! the host only declares, starts and shows the proxies through this module's API.

mod fault;
mod forward;
mod run;
mod splice;
pub mod toxic;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, OnceLock, RwLock,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

pub use fault::{NetProxy, ProxyConfig};
pub use run::{limit_files, FILES_PER_CONNECTION};
use toxic::{Described, Direction, Toxic};

/// A proxy as the configuration declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Its name (`db`).
    pub name: String,
    /// Where it listens.
    pub listen: SocketAddr,
    /// Where it forwards: `host:port`, resolved at each connection.
    pub upstream: String,
}

impl Spec {
    /// Checks a proxy as written: `listen` an IP address and port, `upstream` a host (or
    /// address) and a port; the error names the field and what was expected.
    pub fn parse(name: &str, listen: &str, upstream: &str) -> Result<Self, String> {
        let listen: SocketAddr = listen.parse().map_err(|_| {
            format!("listen `{listen}`: expected an IP address and a port, e.g. \"127.0.0.1:15432\" or \"[::1]:15432\"")
        })?;
        let bad = || {
            format!(
                "upstream `{upstream}`: expected a host or an address and a port, e.g. \"10.0.0.5:5432\" or \"db.internal:5432\""
            )
        };
        let (host, port) = upstream.rsplit_once(':').ok_or_else(bad)?;
        let host_ok = !host.is_empty()
            && (host.parse::<std::net::IpAddr>().is_ok()
                || (host.starts_with('[') && host.ends_with(']'))
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
        if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_owned(),
            listen,
            upstream: upstream.to_owned(),
        })
    }
}

/// How long the check of a configuration waits for the system resolver to name the
/// addresses of an upstream given by its host name.
const RESOLVE_WAIT: Duration = Duration::from_secs(2);

impl Spec {
    /// The upstream's host (without the brackets of an IPv6 address) and port.
    fn upstream_host(&self) -> (&str, u16) {
        let (host, port) = self.upstream.rsplit_once(':').unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (host, port.parse().unwrap_or_default())
    }

    /// Whether the upstream is a host name (not an IP address, not `localhost`): its
    /// addresses are the resolver's.
    pub fn upstream_is_a_name(&self) -> bool {
        let (host, _) = self.upstream_host();
        host.parse::<IpAddr>().is_err() && !host.eq_ignore_ascii_case("localhost")
    }

    /// The addresses the upstream names now: itself if it is an IP address, 127.0.0.1
    /// and ::1 for `localhost`, else what the system resolver (`/etc/hosts`, then DNS)
    /// answers within `RESOLVE_WAIT`: nothing if it answers nothing in time (the
    /// proxy resolves the name again at each connection).
    pub fn upstream_addresses(&self) -> Vec<IpAddr> {
        let (host, port) = self.upstream_host();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return vec![ip];
        }
        if host.eq_ignore_ascii_case("localhost") {
            return vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
        }
        // The resolver cannot be told to give up: it answers on a thread of its own,
        // left to end alone if it is late.
        let (tx, rx) = std::sync::mpsc::channel();
        let host = host.to_owned();
        std::thread::spawn(move || {
            use std::net::ToSocketAddrs as _;
            let found = (host.as_str(), port)
                .to_socket_addrs()
                .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>());
            let _ = tx.send(found.unwrap_or_default());
        });
        rx.recv_timeout(RESOLVE_WAIT).unwrap_or_default()
    }

    /// Which of `addresses` (this proxy's upstream's, [`Self::upstream_addresses`])
    /// reaches `listen` (a proxy's listen address, or the daemon's API's), if one
    /// does: this proxy's connections would come back to the daemon itself. An
    /// IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is the IPv4 address it maps: a
    /// socket connecting to it reaches the IPv4 listener.
    pub fn forwards_to(&self, addresses: &[IpAddr], listen: SocketAddr) -> Option<IpAddr> {
        if self.upstream_host().1 != listen.port() {
            return None;
        }
        // An address of this host: loopback, 0.0.0.0, or one of its interfaces' (not
        // "one a socket can be bound to": with ip_nonlocal_bind every address can).
        let local = crate::own::host_addresses();
        let here = |ip: &IpAddr| ip.is_loopback() || ip.is_unspecified() || local.contains(ip);
        let at = listen.ip().to_canonical();
        addresses.iter().copied().find(|ip| {
            let ip = ip.to_canonical();
            ip == at
                // Listening on every address (0.0.0.0): the host's own addresses reach it.
                || (at.is_unspecified() && here(&ip))
                // Connecting to 0.0.0.0 reaches this host.
                || (ip.is_unspecified() && at.is_loopback())
        })
    }
}

/// Whether two listen addresses cannot both be bound: the same port, and the same
/// address, or one of them every address (`0.0.0.0` every IPv4 address; `[::]` every
/// address, IPv4 too, as a socket without `IPV6_V6ONLY` takes both).
pub fn clashes(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() {
        return false;
    }
    let (a, b) = (a.ip().to_canonical(), b.ip().to_canonical());
    let covers = |x: IpAddr, y: IpAddr| x.is_unspecified() && (x.is_ipv6() || y.is_ipv4());
    a == b || covers(a, b) || covers(b, a)
}

/// Whether `listen` is reachable only from this host (a loopback address).
pub fn only_local(listen: SocketAddr) -> bool {
    listen.ip().to_canonical().is_loopback()
}

/// A toxic in effect on a proxy.
#[derive(Debug, Clone)]
pub(crate) struct Active {
    /// The fault's toxic id (from its seed): what the revert removes.
    pub id: String,
    pub toxic: Toxic,
    pub direction: Option<Direction>,
    /// When it was turned on.
    pub since: Instant,
    pub since_wall: SystemTime,
}

/// One proxy's state, shared by its tasks, the faults and `status`.
pub(crate) struct Proxy {
    pub spec: Spec,
    /// Whether any toxic is on: the one atomic load a chunk costs without one.
    pub toxic_on: AtomicBool,
    pub toxics: RwLock<Arc<Vec<Active>>>,
    /// Bumped at every change of `toxics`: connections and the listener wake to it.
    pub changes: tokio::sync::watch::Sender<u64>,
    pub open: AtomicU64,
    /// The most connections open at once (`run::MAX_OPEN`; less in a test).
    pub max_open: AtomicU64,
    pub accepted: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    /// Whether the last connection to the upstream failed (logged once per outage).
    pub upstream_failing: AtomicBool,
    /// Whether it listens now (not while `Down` is on, nor while it cannot listen
    /// again after one).
    pub listening: AtomicBool,
    /// Why it cannot listen again after a `Down`, while it cannot.
    pub relisten_error: Mutex<Option<String>>,
    /// Told at every close of a connection: the accept loop waits for it at the cap.
    pub closed: tokio::sync::Notify,
    /// The chunk buffers its connections hold (one a way while a toxic is on).
    pub buffers: AtomicU64,
}

impl Proxy {
    fn new(spec: Spec) -> Self {
        Self {
            spec,
            toxic_on: AtomicBool::new(false),
            toxics: RwLock::new(Arc::new(Vec::new())),
            changes: tokio::sync::watch::Sender::new(0),
            open: AtomicU64::new(0),
            max_open: AtomicU64::new(run::MAX_OPEN),
            accepted: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            upstream_failing: AtomicBool::new(false),
            listening: AtomicBool::new(true),
            relisten_error: Mutex::new(None),
            closed: tokio::sync::Notify::new(),
            buffers: AtomicU64::new(0),
        }
    }

    /// The toxics in effect now.
    pub fn toxics(&self) -> Arc<Vec<Active>> {
        self.toxics
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn change(&self, edit: impl FnOnce(&mut Vec<Active>)) {
        let mut guard = self
            .toxics
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut list = (**guard).clone();
        edit(&mut list);
        self.toxic_on.store(!list.is_empty(), Ordering::Release);
        *guard = Arc::new(list);
        drop(guard);
        self.changes.send_modify(|n| *n += 1);
    }

    /// Turns a toxic on.
    pub fn add(&self, active: Active) {
        self.change(|list| {
            list.retain(|a| a.id != active.id);
            list.push(active);
        });
    }

    /// Turns the toxic `id` off; whether it was on.
    pub fn remove(&self, id: &str) -> bool {
        let mut found = false;
        self.change(|list| {
            let before = list.len();
            list.retain(|a| a.id != id);
            found = list.len() != before;
        });
        found
    }

    /// Waits (at most 2 s) until the listener is `open` or closed, so that a `Down`
    /// reported on refuses the next connection and one reported off accepts it;
    /// whether it is.
    pub fn await_listening(&self, open: bool) -> bool {
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        while self.listening.load(Ordering::Acquire) != open && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.listening.load(Ordering::Acquire) == open
    }

    /// Why it cannot listen again after a `Down`, if it cannot.
    pub fn relisten_error(&self) -> Option<String> {
        self.relisten_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn status(&self) -> ProxyStatus {
        ProxyStatus {
            name: self.spec.name.clone(),
            listen: self.spec.listen.to_string(),
            upstream: self.spec.upstream.clone(),
            connections: self.open.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            bytes_upstream: self.bytes_up.load(Ordering::Relaxed),
            bytes_downstream: self.bytes_down.load(Ordering::Relaxed),
            upstream_failing: self.upstream_failing.load(Ordering::Relaxed),
            listening: self.listening.load(Ordering::Relaxed),
            toxics: self
                .toxics()
                .iter()
                .map(|a| ToxicStatus {
                    id: a.id.clone(),
                    toxic: a.toxic.name().to_owned(),
                    direction: a.direction,
                    what: Described(&a.toxic, a.direction).to_string(),
                    since: a
                        .since_wall
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                })
                .collect(),
        }
    }
}

/// A proxy as `status` and the API show it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ProxyStatus {
    /// Its name.
    pub name: String,
    /// Where it listens.
    pub listen: String,
    /// Where it forwards.
    pub upstream: String,
    /// Connections open now.
    pub connections: u64,
    /// Connections accepted since it started.
    pub accepted: u64,
    /// Bytes forwarded from clients to the upstream.
    pub bytes_upstream: u64,
    /// Bytes forwarded from the upstream to clients.
    pub bytes_downstream: u64,
    /// Whether the last connection to the upstream failed.
    pub upstream_failing: bool,
    /// Whether it listens: not while `Down` is on, nor while it cannot listen again
    /// after one (another program took its address). Absent from an older daemon's
    /// answer, which showed only proxies that listened.
    #[serde(default = "listening_default")]
    pub listening: bool,
    /// The toxics in effect.
    pub toxics: Vec<ToxicStatus>,
}

fn listening_default() -> bool {
    true
}

/// A toxic in effect, as shown.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ToxicStatus {
    /// The toxic's id (the fault's revert state names it).
    pub id: String,
    /// Toxiproxy's name for it (`latency`).
    pub toxic: String,
    /// The direction it acts in, if it has one.
    pub direction: Option<Direction>,
    /// In words.
    pub what: String,
    /// When it was turned on, in milliseconds since the epoch.
    pub since: u64,
}

/// How the proxies tell the daemon's log something (a line, without the time).
pub type Log = Box<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
struct Registry {
    declared: BTreeMap<String, Spec>,
    running: BTreeMap<String, Arc<Proxy>>,
    log: Option<Arc<Log>>,
}

fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// This process's mark, in a fault's revert state: a revert read back by another
/// process (a start after a crash) finds nothing to undo, the proxy having died with
/// the process that ran it.
pub(crate) fn instance() -> &'static str {
    static INSTANCE: OnceLock<String> = OnceLock::new();
    INSTANCE.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{nanos}", std::process::id())
    })
}

/// Declares the configuration's proxies (replacing any declared before).
pub fn declare(specs: Vec<Spec>) {
    registry().declared = specs.into_iter().map(|s| (s.name.clone(), s)).collect();
}

thread_local! {
    /// The proxies a configuration being checked declares (`checking`), seen by this
    /// thread in place of the declared ones.
    static CHECKING: std::cell::RefCell<Option<BTreeMap<String, Spec>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `check` (which builds a configuration's faults on this thread) with `specs` as
/// the declared proxies, changing nothing of this process's: the check a SIGHUP asks
/// for, in a daemon whose proxies run on.
pub fn checking<T>(specs: &[Spec], check: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CHECKING.with(|c| *c.borrow_mut() = None);
        }
    }
    let map = specs.iter().map(|s| (s.name.clone(), s.clone())).collect();
    CHECKING.with(|c| *c.borrow_mut() = Some(map));
    let _reset = Reset;
    check()
}

/// Whether each of `specs` could listen, for a configuration about to replace the
/// running one: the address of a proxy this process runs is taken by it (and freed
/// when it restarts); any other is bound and let go. One line per proxy that cannot.
///
/// An address that clashes with one of this process's proxies without being its
/// address (`0.0.0.0:15432` while a proxy listens on `127.0.0.1:15432`) cannot be
/// bound now, yet is free once the restart (an exec) lets go of this process's
/// sockets: it is refused only if another program's listener on that port clashes
/// with it too, as the kernel's list of listening sockets tells.
pub fn can_listen(specs: &[Spec]) -> Vec<String> {
    let ours: Vec<SocketAddr> = registry().running.values().map(|p| p.spec.listen).collect();
    specs
        .iter()
        .filter(|s| !ours.contains(&s.listen))
        .filter_map(|s| {
            let e = std::net::TcpListener::bind(s.listen).err()?;
            let held_by_us = ours.iter().any(|&o| clashes(o, s.listen));
            if e.kind() != std::io::ErrorKind::AddrInUse || !held_by_us {
                return Some(run::cannot_bind(s, &e));
            }
            match crate::own::others_listening(s.listen.port()) {
                Ok(others) => others.into_iter().find(|&o| clashes(o, s.listen)).map(|o| {
                    format!(
                        "proxy {}: cannot listen on {}: another program listens on {o}; choose another listen address or stop it",
                        s.name, s.listen
                    )
                }),
                Err(why) => Some(format!(
                    "proxy {}: cannot listen on {}: a proxy of this daemon holds the port, and whether another program does too is unknown ({why}); restart the daemon to apply the change",
                    s.name, s.listen
                )),
            }
        })
        .collect()
}

/// The names of the declared proxies.
pub fn declared() -> Vec<String> {
    if let Some(names) = CHECKING.with(|c| c.borrow().as_ref().map(|m| m.keys().cloned().collect()))
    {
        return names;
    }
    registry().declared.keys().cloned().collect()
}

pub(crate) fn declared_spec(name: &str) -> Option<Spec> {
    if let Some(found) = CHECKING.with(|c| c.borrow().as_ref().map(|m| m.get(name).cloned())) {
        return found;
    }
    registry().declared.get(name).cloned()
}

/// Starts every declared proxy not running yet, logging through `log`; the first that
/// cannot listen is the error (`proxy db: cannot listen on ...`).
pub fn start_all(log: Log) -> Result<(), String> {
    registry().log = Some(Arc::new(log));
    for name in declared() {
        running(&name)?;
    }
    Ok(())
}

/// The running proxy `name`, started now if it is declared but not running.
pub(crate) fn running(name: &str) -> Result<Arc<Proxy>, String> {
    let mut registry = registry();
    if let Some(proxy) = registry.running.get(name) {
        return Ok(proxy.clone());
    }
    let spec = registry.declared.get(name).cloned().ok_or_else(|| {
        format!(
            "no proxy named `{name}` is declared (declare it under proxies: in the configuration)"
        )
    })?;
    let log = registry
        .log
        .get_or_insert_with(|| Arc::new(Box::new(|line: &str| eprintln!("{line}"))))
        .clone();
    let proxy = Arc::new(Proxy::new(spec));
    run::start(proxy.clone(), log)?;
    registry.running.insert(name.to_owned(), proxy.clone());
    Ok(proxy)
}

/// The running proxy `name`, if it runs.
pub(crate) fn find(name: &str) -> Option<Arc<Proxy>> {
    registry().running.get(name).cloned()
}

/// Every running proxy, by name.
pub fn status() -> Vec<ProxyStatus> {
    let proxies: Vec<Arc<Proxy>> = registry().running.values().cloned().collect();
    proxies.iter().map(|p| p.status()).collect()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod spec_tests {
    use super::*;

    #[test]
    fn a_spec_is_checked() {
        let spec = Spec::parse("db", "127.0.0.1:15432", "10.0.0.5:5432").unwrap();
        assert_eq!(spec.listen.port(), 15432);
        assert!(Spec::parse("db", "[::1]:1", "db.internal:5432").is_ok());
        assert!(Spec::parse("db", "[::1]:1", "[fd00::5]:5432").is_ok());
        assert_eq!(
            Spec::parse("db", "localhost:1", "a:1").unwrap_err(),
            "listen `localhost:1`: expected an IP address and a port, e.g. \"127.0.0.1:15432\" or \"[::1]:15432\""
        );
        for bad in ["10.0.0.5", "10.0.0.5:0", ":5432", "a b:1", "x:99999"] {
            assert!(Spec::parse("db", "127.0.0.1:1", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_upstream_that_is_a_listen_address_is_seen() {
        let listen = |a: &str| a.parse::<SocketAddr>().unwrap();
        let to = |up: &str, at: &str| {
            let spec = Spec::parse("a", "127.0.0.1:9", up).unwrap();
            spec.forwards_to(&spec.upstream_addresses(), listen(at))
                .is_some()
        };
        assert!(to("127.0.0.1:15432", "127.0.0.1:15432"));
        assert!(to("localhost:15432", "127.0.0.1:15432"));
        assert!(to("127.0.0.1:15432", "0.0.0.0:15432"));
        assert!(to("0.0.0.0:15432", "127.0.0.1:15432"));
        assert!(to("[::1]:15432", "[::1]:15432"));
        assert!(!to("127.0.0.1:15433", "127.0.0.1:15432"));
        assert!(!to("10.0.0.5:15432", "127.0.0.1:15432"));
        // A name that does not resolve names no address: no loop by what is known.
        assert!(!to("db.invalid:15432", "0.0.0.0:15432"));
        // A name is as good as the addresses it resolves to.
        let named = Spec::parse("a", "127.0.0.1:9", "db.internal:15432").unwrap();
        assert!(named.upstream_is_a_name());
        let at = [IpAddr::from(Ipv4Addr::LOCALHOST)];
        assert!(named.forwards_to(&at, listen("127.0.0.1:15432")).is_some());
        assert!(named.forwards_to(&at, listen("0.0.0.0:15432")).is_some());
        assert!(named.forwards_to(&at, listen("127.0.0.2:15432")).is_none());
    }

    #[test]
    fn an_ipv4_mapped_upstream_is_the_ipv4_address_it_maps() {
        let listen = |a: &str| a.parse::<SocketAddr>().unwrap();
        let to = |up: &str, at: &str| {
            let spec = Spec::parse("a", "127.0.0.1:9", up).unwrap();
            spec.forwards_to(&spec.upstream_addresses(), listen(at))
                .is_some()
        };
        assert!(to("[::ffff:127.0.0.1]:15432", "127.0.0.1:15432"));
        assert!(to("[::ffff:7f00:1]:15432", "127.0.0.1:15432"));
        assert!(to("[::ffff:127.0.0.1]:15432", "0.0.0.0:15432"));
        assert!(to("[::ffff:0.0.0.0]:15432", "127.0.0.1:15432"));
        assert!(to("127.0.0.1:15432", "[::ffff:127.0.0.1]:15432"));
        assert!(!to("[::ffff:10.0.0.5]:15432", "127.0.0.1:15432"));
    }

    #[test]
    fn listen_addresses_clash_on_the_same_port_where_one_takes_the_other() {
        let clash = |a: &str, b: &str| clashes(a.parse().unwrap(), b.parse().unwrap());
        assert!(clash("127.0.0.1:15432", "127.0.0.1:15432"));
        assert!(clash("127.0.0.1:15432", "0.0.0.0:15432"));
        assert!(clash("0.0.0.0:15432", "127.0.0.1:15432"));
        assert!(clash("[::]:15432", "127.0.0.1:15432"));
        assert!(clash("0.0.0.0:15432", "[::]:15432"));
        assert!(clash("[::ffff:127.0.0.1]:15432", "127.0.0.1:15432"));
        assert!(!clash("127.0.0.1:15432", "127.0.0.2:15432"));
        assert!(!clash("127.0.0.1:15432", "0.0.0.0:15433"));
        assert!(!clash("0.0.0.0:15432", "[::1]:15432"));
    }

    #[test]
    fn a_proxy_on_loopback_is_reachable_only_from_this_host() {
        assert!(only_local("[::1]:1".parse().unwrap()));
        assert!(only_local("[::ffff:127.0.0.1]:1".parse().unwrap()));
        assert!(!only_local("0.0.0.0:1".parse().unwrap()));
    }
}
