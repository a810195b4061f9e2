//! The fleet's costs (issue 25): eight dry-run daemons on one etcd member, all inside
//! the harness's namespaces (etcd on its loopback too). Measured: a dry-run `POST
//! /api/kill` in the fleet beside the same without `fleet:` (the admission is the
//! difference), the time from etcd's loss to every node refusing and to every node cut
//! off, the fleet switch's propagation (`pause --fleet` until every daemon's status says
//! paused, and back), and every admission checked against etcd's history (a double
//! admission: a slot taken while another held it). It reports; it never fails on a
//! figure.

mod client;

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

/// The fleet's admission histogram summed over `nodes`: (bucket bound in s, cumulative
/// count), the sum in s and the count, from each daemon's `GET /metrics`.
type Histogram = (Vec<(f64, f64)>, f64, f64);

fn admission_histogram(nodes: &[Node]) -> anyhow::Result<Histogram> {
    const NAME: &str = "nightmare_monkey_fleet_admission_seconds";
    let (mut buckets, mut sum, mut count): Histogram = (Vec::new(), 0.0, 0.0);
    for node in nodes {
        let (_, text) = client::request(node.port, "GET", "/metrics", "")?;
        for line in text.lines() {
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if let Some(le) = key
                .strip_prefix(&format!("{NAME}_bucket{{le=\""))
                .and_then(|rest| rest.strip_suffix("\"}"))
            {
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse()?
                };
                match buckets.iter_mut().find(|(b, _)| *b == le) {
                    Some((_, n)) => *n += value,
                    None => buckets.push((le, value)),
                }
            } else if key == format!("{NAME}_sum") {
                sum += value;
            } else if key == format!("{NAME}_count") {
                count += value;
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok((buckets, sum, count))
}

/// What the daemons timed between two readings: the mean, and the bucket bounds the
/// p50 and p99 fall under, in ms (`None`: nothing timed, or no such metric).
fn timed(before: &Histogram, after: &Histogram) -> Option<(f64, f64, f64)> {
    let count = after.2 - before.2;
    if count <= 0.0 {
        return None;
    }
    let under = |q: f64| {
        after
            .0
            .iter()
            .map(|(le, n)| {
                let was = before.0.iter().find(|(b, _)| b == le).map_or(0.0, |b| b.1);
                (*le, n - was)
            })
            .find(|(_, n)| *n >= q * count)
            .map_or(f64::NAN, |(le, _)| le * 1e3)
    };
    Some(((after.1 - before.1) / count * 1e3, under(0.5), under(0.99)))
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

/// One row of the section's table.
fn row(figure: &str, values: &[f64], target: &str) -> String {
    format!(
        "| {figure} | {} | {} | {} | {} | {target} |",
        num(p(values, 0.5)),
        num(p(values, 0.99)),
        num(p(values, 1.0)),
        values.len()
    )
}

/// Whether `value` is at most `target`, for people.
fn met(value: f64, target: f64) -> &'static str {
    if value <= target {
        "met"
    } else {
        "missed"
    }
}

/// The section of BENCHMARKS.md.
pub fn markdown(f: &Figures, revision: &str, command: &str) -> String {
    let added = (
        p(&f.serial, 0.5) - p(&f.serial_alone, 0.5),
        p(&f.serial, 0.99) - p(&f.serial_alone, 0.99),
    );
    let crowded = (
        p(&f.in_fleet, 0.5) - p(&f.alone, 0.5),
        p(&f.in_fleet, 0.99) - p(&f.alone, 0.99),
    );
    let mut s = format!(
        "{HEADING}\n\n{NODES} dry-run daemons on one etcd member (its data on tmpfs: the figures are the monkey's and etcd's, not a disk's fsync), firing dry-run `POST /api/kill` one request at a time (the nodes in turn), then all eight at once (each node one request after another); etcd, the daemons and the harness in the harness's namespaces (loopback only); a lease TTL of {TTL_S} s. Measured at {revision} with `{command}`, on {}. Times in ms; the p99 of the switch's flips and of etcd's losses, a few samples each, is close to their maximum.\n\n| figure | p50 | p99 | max | n | target |\n| --- | ---: | ---: | ---: | ---: | --- |\n",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    let lines = [
        row(
            "dry-run `POST /api/kill` one at a time, in the fleet (admitted by etcd)",
            &f.serial,
            "",
        ),
        row("the same, without `fleet:`", &f.serial_alone, ""),
        row(
            "dry-run `POST /api/kill`, the 8 nodes at once, in the fleet",
            &f.in_fleet,
            "",
        ),
        row("the same, without `fleet:`", &f.alone, ""),
        row(
            "`pause --fleet` → every daemon's status says paused",
            &f.pause,
            "p99 ≤ 1000 ms",
        ),
        row(
            "`resume --fleet` → every daemon's status says playing",
            &f.resume,
            "",
        ),
        row(
            "etcd stopped → every node refuses a fault",
            &f.loss_refusing,
            "",
        ),
        row(
            "etcd stopped → every node cut off (reverting what it holds)",
            &f.loss_cut_off,
            &format!("< TTL ({} ms)", TTL_S * 1000),
        ),
    ];
    for line in lines {
        s += &line;
        s.push('\n');
    }
    s += &format!(
        "\nWhat the admission adds to a fault: {} ms at p50, {} ms at p99 one at a time; {} ms and {} ms with the 8 nodes at once ({} refused of {}{}).{} Double admissions: **{}** of {} admissions, each checked against etcd's history (at its revision its slot is held by its node; just before, the slot was free).\n\nTargets (issue 25): admission p99 ≤ 5 ms (what it adds, one at a time): {} ({} ms); the switch's propagation p99 ≤ 1 s: {} ({} ms); 0 double admissions: {}.\n",
        num(added.0),
        num(added.1),
        num(crowded.0),
        num(crowded.1),
        f.refused.0,
        f.in_fleet.len(),
        if f.refused.1.is_empty() { String::new() } else { format!(", the first: `{}`", f.refused.1.replace('`', "'")) },
        f.timed.map_or_else(String::new, |(mean, p50, p99)| format!(
            " As the daemons time it (`nightmare_monkey_fleet_admission_seconds`, one at a time): {} ms on average, p50 at most {} ms, p99 at most {} ms (bucket bounds).",
            num(mean), num(p50), num(p99)
        )),
        f.double,
        f.admissions,
        met(added.1, 5.0),
        num(added.1),
        met(p(&f.pause, 0.99), 1000.0),
        num(p(&f.pause, 0.99)),
        if f.double == 0 { "met" } else { "missed" },
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_timing_is_read_between_two_readings() {
        let before: Histogram = (
            vec![(0.001, 10.0), (0.002, 10.0), (f64::INFINITY, 10.0)],
            0.01,
            10.0,
        );
        let after: Histogram = (
            vec![(0.001, 60.0), (0.002, 109.0), (f64::INFINITY, 110.0)],
            0.16,
            110.0,
        );
        let (mean, p50, p99) = timed(&before, &after).unwrap();
        assert!((mean - 1.5).abs() < 1e-9, "{mean}");
        assert_eq!((p50, p99), (1.0, 2.0));
        assert_eq!(timed(&after, &after), None);
    }

    #[test]
    fn the_section_starts_with_its_heading_and_says_the_targets() {
        let figures = Figures {
            in_fleet: vec![3.0, 4.0],
            alone: vec![1.0, 1.0],
            serial: vec![2.0, 3.0],
            serial_alone: vec![1.0, 1.5],
            pause: vec![20.0, 1500.0],
            resume: vec![20.0],
            loss_refusing: vec![10.0],
            loss_cut_off: vec![5000.0],
            admissions: 4,
            ..Figures::default()
        };
        let section = markdown(&figures, "abc1234", "bench/run --fleet");
        assert_eq!(section.lines().next(), Some(HEADING));
        assert!(
            section.contains("Double admissions: **0** of 4"),
            "{section}"
        );
        assert!(section.contains("admission p99 ≤ 5 ms (what it adds, one at a time): met"));
        assert!(
            section.contains("propagation p99 ≤ 1 s: missed"),
            "{section}"
        );
        let doc = crate::versus::splice("# Benchmarks\n\n## The API\n\nx\n", &section);
        assert_eq!(
            crate::versus::recorded_under(&doc, HEADING),
            Some(section.as_str())
        );
    }
}
