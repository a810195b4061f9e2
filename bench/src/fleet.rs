//! The fleet's costs (issue 25): eight dry-run daemons on one etcd member, all inside
//! the harness's namespaces (etcd on its loopback too). Measured: a dry-run `POST
//! /api/kill` in the fleet beside the same without `fleet:` (the admission is the
//! difference), the time from etcd's loss to every node refusing and to every node cut
//! off, the fleet switch's propagation (`pause --fleet` until every daemon's status says
//! paused, and back), and every admission checked against etcd's history (a double
//! admission: a slot taken while another held it). It reports; it never fails on a
//! figure.

mod client;
mod metrics;
mod report;

use std::{
    fs,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use self::client::{free_port, Client, Etcd};
use self::metrics::{admission_histogram, timed};
pub use self::report::markdown;
use crate::measure::{num, quantile};

/// The fleet's name in etcd.
const PREFIX: &str = "/nm-bench";
/// Daemons in the fleet.
const NODES: usize = 8;
/// The lease's TTL (the default): a node is cut off after half of it.
const TTL_S: u64 = 10;
/// What the section is called in BENCHMARKS.md.
pub const HEADING: &str = "## Fleet coordination (issue 25)";

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Requests each daemon answers in each round of the admission's load.
    pub requests: usize,
    /// Rounds, taking turns between the fleet and the daemons alone.
    pub rounds: usize,
    /// Flips of the fleet's switch (each a pause and a resume).
    pub flips: usize,
    /// Times etcd is stopped.
    pub losses: usize,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                requests: 40,
                rounds: 1,
                flips: 5,
                losses: 1,
            }
        } else {
            Plan {
                requests: 150,
                rounds: 2,
                flips: 25,
                losses: 3,
            }
        }
    }
}

/// What was measured; times in ms.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Dry-run `POST /api/kill`, each daemon in the fleet, all at once.
    pub in_fleet: Vec<f64>,
    /// Dry-run `POST /api/kill`, one at a time, the nodes in turn, in the fleet.
    pub serial: Vec<f64>,
    /// The same, without `fleet:`.
    pub serial_alone: Vec<f64>,
    /// The same, without `fleet:`.
    pub alone: Vec<f64>,
    /// Answers in the fleet that were not 200 (refused), and why the first was.
    pub refused: (usize, String),
    /// etcd stopped → every node refusing a fault.
    pub loss_refusing: Vec<f64>,
    /// etcd stopped → every node cut off (reverting what it holds).
    pub loss_cut_off: Vec<f64>,
    /// `pause --fleet` → every daemon paused.
    pub pause: Vec<f64>,
    /// `resume --fleet` → every daemon playing.
    pub resume: Vec<f64>,
    /// The daemons' own timing of their admissions over the one-at-a-time load
    /// (`nightmare_monkey_fleet_admission_seconds`): mean, p50 and p99 bucket bounds, ms.
    pub timed: Option<(f64, f64, f64)>,
    /// Admissions journaled and checked against etcd's history.
    pub admissions: usize,
    /// Of those, a slot taken while it was held (or not held by the admitted node).
    pub double: usize,
}

/// A dry-run daemon of the bench's fleet (or alone); stopped (SIGTERM) when dropped.
struct Node {
    child: Child,
    port: u16,
    dir: PathBuf,
    config: PathBuf,
}

impl Node {
    fn start(binary: &Path, dir: &Path, name: &str, etcd: Option<u16>) -> anyhow::Result<Node> {
        fs::create_dir_all(dir)?;
        let port = free_port()?;
        let fleet = etcd.map_or_else(String::new, |etcd| {
            format!(
                r#"fleet: (coordinator: Etcd(endpoints: ["http://127.0.0.1:{etcd}"], prefix: "{PREFIX}"), max_concurrent: {}, lease_ttl: "{TTL_S}s"),"#,
                2 * NODES
            )
        });
        let config = dir.join("fleet.ron");
        fs::write(
            &config,
            format!(
                "(\n    window: (days: \"*\", time: \"00:00-24:00\"),\n    timer: (enabled: false),\n    http: (listen: \"127.0.0.1:{port}\"),\n    state_dir: {dir:?},\n    plugin_dirs: [],\n    {fleet}\n)\n"
            ),
        )?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .args(["--node", name])
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("daemon.log"))?)
            .stderr(fs::File::create(dir.join("daemon.err"))?)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut node = Node {
            child,
            port,
            dir: dir.to_owned(),
            config,
        };
        let until = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if node.child.try_wait()?.is_some() || Instant::now() > until {
                bail!(
                    "{name} did not listen; see {}",
                    dir.join("daemon.err").display()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(node)
    }

    /// What it printed (its log lines).
    fn log(&self) -> String {
        let mut text = fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        text += &fs::read_to_string(self.dir.join("daemon.err")).unwrap_or_default();
        text
    }

    /// Its state (`playing`, `paused`).
    fn state(client: &mut Client) -> anyhow::Result<String> {
        let (_, body) = client.send("GET", "/api/status", "")?;
        let status: serde_json::Value = serde_json::from_str(&body)?;
        Ok(status["state"].as_str().unwrap_or_default().to_owned())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            #[allow(unsafe_code)]
            // SAFETY: kill(2) on the PID of our child not yet reaped: it cannot be reused.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let _ = self.child.wait();
    }
}

/// Measures the fleet's costs with `binary`, in `scratch`.
pub fn measure(binary: &Path, scratch: &Path, plan: Plan) -> anyhow::Result<Figures> {
    // etcd's data on tmpfs: the figures are the monkey's, not this disk's fsync.
    let data = Path::new("/dev/shm").join(format!("nm-bench-etcd-{}", std::process::id()));
    let mut etcd = Etcd::start(&data)?;
    let start = |fleet: bool| -> anyhow::Result<Vec<Node>> {
        (0..NODES)
            .map(|i| {
                let (kind, port) = if fleet {
                    ("fleet", Some(etcd.port))
                } else {
                    ("alone", None)
                };
                Node::start(
                    binary,
                    &scratch.join(format!("{kind}-{i}")),
                    &format!("node-{i}"),
                    port,
                )
            })
            .collect()
    };
    let (fleet, alone) = (start(true)?, start(false)?);
    wait_until(
        "every node admitted by etcd",
        Duration::from_secs(30),
        || fleet.iter().all(|n| n.log().contains("admitted by etcd")),
    )?;
    let mut figures = Figures::default();
    for _ in 0..plan.rounds {
        figures
            .serial_alone
            .extend(load_serial(&alone, plan.requests)?);
        let before = admission_histogram(&fleet)?;
        figures.serial.extend(load_serial(&fleet, plan.requests)?);
        let after = admission_histogram(&fleet)?;
        figures.timed = timed(&before, &after).or(figures.timed);
        figures.alone.extend(load(&alone, plan.requests)?.0);
        let (times, refused) = load(&fleet, plan.requests)?;
        figures.in_fleet.extend(times);
        figures.refused.0 += refused.0;
        if figures.refused.1.is_empty() {
            figures.refused.1 = refused.1;
        }
    }
    drop(alone);
    eprintln!(
        "  fleet: dry-run kill one at a time p50 {} ms, p99 {} ms; alone p50 {} ms, p99 {} ms",
        num(p(&figures.serial, 0.5)),
        num(p(&figures.serial, 0.99)),
        num(p(&figures.serial_alone, 0.5)),
        num(p(&figures.serial_alone, 0.99))
    );
    eprintln!(
        "  fleet: dry-run kill all at once p50 {} ms, p99 {} ms; alone p50 {} ms, p99 {} ms",
        num(p(&figures.in_fleet, 0.5)),
        num(p(&figures.in_fleet, 0.99)),
        num(p(&figures.alone, 0.5)),
        num(p(&figures.alone, 0.99))
    );
    (figures.admissions, figures.double) = check_admissions(&etcd, &fleet)?;
    eprintln!(
        "  fleet: {} admissions checked against etcd's history, {} double",
        figures.admissions, figures.double
    );
    for _ in 0..plan.flips {
        figures.pause.push(flip(binary, &fleet, true)?);
        figures.resume.push(flip(binary, &fleet, false)?);
    }
    eprintln!(
        "  fleet: switch to every node paused p50 {} ms, max {} ms",
        num(p(&figures.pause, 0.5)),
        num(p(&figures.pause, 1.0))
    );
    for _ in 0..plan.losses {
        let (refusing, cut_off) = lose(&mut etcd, &fleet)?;
        figures.loss_refusing.push(refusing);
        figures.loss_cut_off.push(cut_off);
        eprintln!("  fleet: etcd lost: every node refusing in {refusing:.0} ms, cut off in {cut_off:.0} ms");
    }
    Ok(figures)
}

/// The `q` quantile of `values` (any order).
fn p(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile(&sorted, q)
}

/// Polls `check` until it holds, at most `within`.
fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let until = Instant::now() + within;
    while !check() {
        if Instant::now() > until {
            bail!("not within {within:?}: {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Every node answers `requests` dry-run kills, the nodes in turn, one request at a time:
/// each answer's time (ms). A refusal is an error (there are slots for every node).
fn load_serial(nodes: &[Node], requests: usize) -> anyhow::Result<Vec<f64>> {
    let mut clients = nodes
        .iter()
        .map(|n| Client::open(n.port))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut times = Vec::new();
    for _ in 0..requests {
        for client in &mut clients {
            let start = Instant::now();
            let (status, body) = client.send("POST", "/api/kill", r#"{"desc":"bench"}"#)?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
            if status != 200 {
                bail!("a dry-run kill one at a time was answered {status}: {body}");
            }
        }
    }
    Ok(times)
}

/// Every node answers `requests` dry-run kills, one after another, all nodes at once:
/// each answer's time (ms), and the refusals (how many, the first one's answer).
fn load(nodes: &[Node], requests: usize) -> anyhow::Result<(Vec<f64>, (usize, String))> {
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let threads: Vec<_> = ports
        .into_iter()
        .map(|port| {
            thread::spawn(move || -> anyhow::Result<(Vec<f64>, Vec<String>)> {
                let mut client = Client::open(port)?;
                let (mut times, mut refused) = (Vec::new(), Vec::new());
                for _ in 0..requests {
                    let start = Instant::now();
                    let (status, body) = client.send("POST", "/api/kill", r#"{"desc":"bench"}"#)?;
                    times.push(start.elapsed().as_secs_f64() * 1e3);
                    if status != 200 {
                        refused.push(format!("{status} {body}"));
                    }
                }
                Ok((times, refused))
            })
        })
        .collect();
    let (mut times, mut refused) = (Vec::new(), Vec::new());
    for thread in threads {
        let (t, r) = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        times.extend(t);
        refused.extend(r);
    }
    Ok((
        times,
        (refused.len(), refused.first().cloned().unwrap_or_default()),
    ))
}

/// Checks every admission the fleet's journals hold against etcd's history: at its
/// revision its slot is held by its node, and just before it was free. (admissions,
/// those that fail).
fn check_admissions(etcd: &Etcd, nodes: &[Node]) -> anyhow::Result<(usize, usize)> {
    let (mut admissions, mut double) = (0, 0);
    for (i, node) in nodes.iter().enumerate() {
        let path = node.dir.join("journal.jsonl");
        let journal =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        for line in journal.lines() {
            let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let (Some(slot), Some(revision)) = (
                record["fleet"]["slot"].as_u64(),
                record["fleet"]["revision"].as_i64(),
            ) else {
                continue;
            };
            if record["type"] != "intent" {
                continue;
            }
            admissions += 1;
            let key = format!("{PREFIX}/slots/{slot}");
            let held = etcd.at(&key, revision)?;
            let before = etcd.at(&key, revision - 1)?;
            let ours = held.is_some_and(|h| h["node"] == format!("node-{i}").as_str());
            if !ours || before.is_some() {
                double += 1;
            }
        }
    }
    Ok((admissions, double))
}

/// Turns the fleet's switch on (`pause`) or off with the command line; the time until
/// every daemon's status says so, ms.
fn flip(binary: &Path, nodes: &[Node], pause: bool) -> anyhow::Result<f64> {
    let mut clients = nodes
        .iter()
        .map(|n| Client::open(n.port))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = Instant::now();
    let mut command = Command::new(binary);
    command
        .arg(if pause { "pause" } else { "resume" })
        .arg("--fleet");
    if pause {
        command.args(["--reason", "bench"]);
    }
    let out = command.arg("--config").arg(&nodes[0].config).output()?;
    if !out.status.success() {
        bail!(
            "the fleet's switch: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let want = if pause { "paused" } else { "playing" };
    let mut seen = vec![false; clients.len()];
    while !seen.iter().all(|s| *s) {
        for (client, seen) in clients.iter_mut().zip(&mut seen) {
            *seen = *seen || Node::state(client)? == want;
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the fleet was not {want} within 30 s");
        }
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// Stops etcd: the time until every node refuses a fault, and until every node is cut
/// off (ms); then starts it again and waits until every node admits again.
fn lose(etcd: &mut Etcd, nodes: &[Node]) -> anyhow::Result<(f64, f64)> {
    let cut_before: Vec<usize> = nodes.iter().map(cut_offs).collect();
    // Counted before the loss: a node may be admitted again before etcd's restart
    // returns here.
    let admitted: Vec<usize> = nodes
        .iter()
        .map(|n| n.log().matches("admitted by etcd").count())
        .collect();
    let mut clients = nodes
        .iter()
        .map(|n| Client::open(n.port))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = Instant::now();
    etcd.stop();
    let (mut refusing, mut cut) = (vec![None; nodes.len()], vec![None; nodes.len()]);
    while cut.iter().any(Option::is_none) {
        for (i, node) in nodes.iter().enumerate() {
            if refusing[i].is_none() {
                let (status, _) = clients[i].send("POST", "/api/kill", r#"{"desc":"bench"}"#)?;
                if status != 200 {
                    refusing[i] = Some(start.elapsed());
                }
            }
            if cut[i].is_none() && cut_offs(node) > cut_before[i] {
                cut[i] = Some(start.elapsed());
            }
        }
        if start.elapsed() > Duration::from_secs(4 * TTL_S) {
            bail!(
                "not every node was cut off within {} s of etcd's loss",
                4 * TTL_S
            );
        }
        thread::sleep(Duration::from_millis(5));
    }
    let last = |v: &[Option<Duration>]| {
        v.iter()
            .flatten()
            .max()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    let figures = (last(&refusing), last(&cut));
    etcd.restart()?;
    let again = wait_until(
        "every node admitted again",
        Duration::from_secs(4 * TTL_S),
        || {
            nodes
                .iter()
                .zip(&admitted)
                .all(|(n, &before)| n.log().matches("admitted by etcd").count() > before)
        },
    );
    if let Err(e) = again {
        let log = nodes[0].log();
        let last: Vec<&str> = log.lines().rev().take(6).collect();
        bail!("{e}; node-0 said last: {}", last.join(" | "));
    }
    Ok(figures)
}

/// How many times `node` said it was cut off.
fn cut_offs(node: &Node) -> usize {
    node.log().matches("cut off from the coordinator").count()
}
