//! The network faults' costs (issue 26): the fault proxy without a toxic against a
//! direct loopback connection (bulk throughput, and the round trip of one byte), and the
//! time to apply and to revert a `net-loss` rule (in-process, as the daemon calls it:
//! both speak netlink to nf_tables). Runs inside the harness's network namespace: its loopback and its nftables
//! are the harness's own.

use std::{
    fs,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use nightmare_monkey_plugin_api::sdk::{self, FaultPlugin, Request};

use crate::measure::{num, process_cpu, quantile, thread_cpu, Summary};

/// Bytes of one bulk transfer.
const BULK: usize = 512 << 20;
/// Rounds of each measurement, direct and proxied taking turns.
const ROUNDS: usize = 5;
/// One-byte round trips per round.
const TRIPS: usize = 5_000;
/// Applications and reverts of the loss rule.
const RULES: usize = 20;

/// What was measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Bulk throughput, MB/s (10^6 bytes), direct and through the proxy.
    pub direct_mbs: Summary,
    /// See `direct_mbs`.
    pub proxied_mbs: Summary,
    /// The lowest and highest round, MB/s: direct and proxied.
    pub ranges: [(f64, f64); 2],
    /// CPU seconds a GiB of bulk over every round, each stage of the copy.
    pub cpu_per_gib: Cpu,
    /// One-byte round trips, microseconds: p50 and p90, direct and proxied.
    pub rtt_direct: (f64, f64),
    /// See `rtt_direct`.
    pub rtt_proxied: (f64, f64),
    /// Applying a net-loss rule (prepare and apply) 100 ms after the last revert, ms;
    /// `None` without nf_tables.
    pub apply_ms: Option<Summary>,
    /// The same right after a revert (when the kernel may still be freeing what the
    /// revert deleted).
    pub apply_after_ms: Option<Summary>,
    /// The apply alone (the netlink batch), every application, ms.
    pub batch_ms: Option<Summary>,
    /// Of which the prepare (the script written, the daemon's ports found), ms.
    pub prepare_ms: Option<Summary>,
    /// Reverting it, ms.
    pub revert_ms: Option<Summary>,
    /// Why the rules were not measured, if they were not.
    pub rules_error: Option<String>,
}

/// CPU seconds a GiB of bulk (see [`Figures::cpu_per_gib`]), each stage of the copy:
/// the client's thread, the sink's, and (proxied) the daemon's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// The client and the sink, direct.
    pub direct: [f64; 2],
    /// The client, the sink and the proxy, through the proxy.
    pub proxied: [f64; 3],
}

impl Cpu {
    /// The most the proxied copy can reach, as a share of direct, on `cores` CPUs: a
    /// copy whose stages run side by side goes at most as fast as its busiest stage,
    /// and at most as fast as the CPUs can run every stage's work together.
    pub fn bound(&self, cores: usize) -> f64 {
        let most = |stages: &[f64]| {
            let busiest = stages.iter().copied().fold(0.0, f64::max);
            busiest.max(stages.iter().sum::<f64>() / cores as f64)
        };
        most(&self.direct) / most(&self.proxied)
    }
}

/// CPU time process `pid` has used, every thread, seconds: the scheduler's own count
/// (`schedstat`, in nanoseconds), not the clock ticks of `stat` (10 ms apiece, as long
/// as a whole round through the proxy).
fn cpu_of(pid: u32) -> f64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum::<u64>() as f64
        / 1e9
}

/// [`bulk`] to `to`, adding the CPU it took to `cpu`: the client's (this thread), the
/// sink's (the rest of this process) and `daemon`'s if given.
fn bulk_counted(to: SocketAddr, daemon: Option<u32>, cpu: &mut [f64; 3]) -> anyhow::Result<f64> {
    let seconds = || {
        let client = thread_cpu().as_secs_f64();
        let all = process_cpu().as_secs_f64();
        [client, all - client, daemon.map_or(0.0, cpu_of)]
    };
    let before = seconds();
    let rate = bulk(to)?;
    for (sum, (after, before)) in cpu.iter_mut().zip(seconds().into_iter().zip(before)) {
        *sum += after - before;
    }
    Ok(rate)
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A server on a thread of its own: each connection read to its end, then answered
/// with one byte (the sink), or each byte sent back (the echo).
fn server(echo: bool) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream, echo));
        }
    });
    Ok(addr)
}

fn serve(mut stream: TcpStream, echo: bool) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) if echo => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Ok(_) => {}
        }
    }
    if !echo {
        let _ = stream.write_all(b"k");
    }
}

/// Sends [`BULK`] bytes to the sink at `to`; MB/s until its answer.
fn bulk(to: SocketAddr) -> anyhow::Result<f64> {
    let mut stream = TcpStream::connect(to)?;
    let chunk = vec![7u8; 256 << 10];
    let start = Instant::now();
    let mut sent = 0;
    while sent < BULK {
        stream.write_all(&chunk)?;
        sent += chunk.len();
    }
    stream.shutdown(Shutdown::Write)?;
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack)?;
    Ok(sent as f64 / start.elapsed().as_secs_f64() / 1e6)
}

/// [`TRIPS`] one-byte round trips to the echo at `to`, each in microseconds.
fn trips(to: SocketAddr, into: &mut Vec<f64>) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(to)?;
    stream.set_nodelay(true)?;
    let mut byte = [1u8; 1];
    for _ in 0..TRIPS {
        let start = Instant::now();
        stream.write_all(&byte)?;
        stream.read_exact(&mut byte)?;
        into.push(start.elapsed().as_secs_f64() * 1e6);
    }
    Ok(())
}

/// The daemon (dry) with two proxies, `bulk` to the sink and `echo` to the echo;
/// killed when dropped.
struct Proxies {
    child: Child,
    bulk: SocketAddr,
    echo: SocketAddr,
}

impl Drop for Proxies {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(binary: &Path, dir: &Path, sink: SocketAddr, echo: SocketAddr) -> anyhow::Result<Proxies> {
    let (bulk_at, echo_at, api) = (free_addr()?, free_addr()?, free_addr()?);
    fs::create_dir_all(dir)?;
    let config = dir.join("proxy.ron");
    fs::write(
        &config,
        format!(
            r#"(
    window: (days: "*", time: "00:00-24:00"),
    http: (enabled: true, listen: "{api}"),
    timer: (enabled: false),
    state_dir: "{dir}",
    plugin_dirs: [],
    proxies: {{
        "bulk": (listen: "{bulk_at}", upstream: "{sink}"),
        "echo": (listen: "{echo_at}", upstream: "{echo}"),
    }},
)
"#,
            dir = dir.display()
        ),
    )?;
    let child = Command::new(binary)
        .arg("--config")
        .arg(&config)
        .env("STATE_DIRECTORY", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let proxies = Proxies {
        child,
        bulk: bulk_at,
        echo: echo_at,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(api).is_err() {
        if Instant::now() > deadline {
            bail!("the daemon with proxies did not listen within 10 s: run `{} --config {}` to see why", binary.display(), config.display());
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(proxies)
}

/// Measures everything, with the daemon at `binary`.
pub fn measure(binary: &Path, scratch: &Path) -> anyhow::Result<Figures> {
    eprint!("proxy: bulk and round trips, direct and through the proxy... ");
    let (sink, echo) = (server(false)?, server(true)?);
    let proxies = start(binary, &scratch.join("proxy"), sink, echo)?;
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    let (mut rtt_direct, mut rtt_proxied) = (Vec::new(), Vec::new());
    // CPU seconds over every round (client, sink, daemon), direct and proxied.
    let (mut cpu_direct, mut cpu_proxied) = ([0.0; 3], [0.0; 3]);
    let daemon = Some(proxies.child.id());
    // Each first in every other round: neither gets the warmer or the quieter turn.
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            direct.push(bulk_counted(sink, None, &mut cpu_direct)?);
            proxied.push(bulk_counted(proxies.bulk, daemon, &mut cpu_proxied)?);
            trips(echo, &mut rtt_direct)?;
            trips(proxies.echo, &mut rtt_proxied)?;
        } else {
            proxied.push(bulk_counted(proxies.bulk, daemon, &mut cpu_proxied)?);
            direct.push(bulk_counted(sink, None, &mut cpu_direct)?);
            trips(proxies.echo, &mut rtt_proxied)?;
            trips(echo, &mut rtt_direct)?;
        }
    }
    drop(proxies);
    let gib = (ROUNDS * BULK) as f64 / (1u64 << 30) as f64;
    let cpu_per_gib = Cpu {
        direct: [cpu_direct[0] / gib, cpu_direct[1] / gib],
        proxied: cpu_proxied.map(|seconds| seconds / gib),
    };
    let p = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (quantile(v, 0.5), quantile(v, 0.9))
    };
    let range = |v: &[f64]| {
        let low = v.iter().copied().fold(f64::INFINITY, f64::min);
        (low, v.iter().copied().fold(0.0, f64::max))
    };
    let ranges = [range(&direct), range(&proxied)];
    let (direct_mbs, proxied_mbs) = (Summary::of(direct), Summary::of(proxied));
    eprintln!("done");
    eprint!("proxy: applying and reverting a net-loss rule... ");
    let (prepare_ms, apply_ms, apply_after_ms, revert_ms, batch_ms, rules_error) = match rules() {
        Ok([p, a, after, r, b]) => (Some(p), Some(a), Some(after), Some(r), Some(b), None),
        Err(e) => (None, None, None, None, None, Some(format!("{e:#}"))),
    };
    eprintln!("done");
    Ok(Figures {
        direct_mbs,
        proxied_mbs,
        ranges,
        cpu_per_gib,
        rtt_direct: p(&mut rtt_direct),
        rtt_proxied: p(&mut rtt_proxied),
        apply_ms,
        apply_after_ms,
        batch_ms,
        prepare_ms,
        revert_ms,
        rules_error,
    })
}

/// [`RULES`] times: a net-loss rule prepared and applied, then reverted, each timed;
/// every other application 100 ms after the last revert, the others right after it.
/// The prepare, the spaced applications, the others, the reverts, the applies alone.
fn rules() -> anyhow::Result<[Summary; 5]> {
    let config = sdk::parse_config::<net_faults::Config>(
        r#"(percent: 10, protocol: "udp", ports: [9999], duration: "10m")"#,
    )
    .map_err(|e| anyhow::anyhow!(e.message))?;
    let fault = net_faults::NetLoss::new(config).map_err(|e| anyhow::anyhow!(e.message))?;
    let (mut prepare, mut apply, mut after, mut revert, mut batch) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for seed in 0..RULES as u64 {
        let request = Request {
            seed,
            dry_run: false,
            ..Request::default()
        };
        let spaced = seed % 2 == 0;
        if spaced {
            thread::sleep(Duration::from_millis(100));
        }
        let start = Instant::now();
        let prepared = fault
            .prepare(&request)
            .map_err(|e| anyhow::anyhow!(e.message))?;
        prepare.push(start.elapsed());
        let state = prepared
            .revert
            .context("net-loss prepared no revert state")?;
        let applying = Instant::now();
        fault
            .apply(&request, &state)
            .map_err(|e| anyhow::anyhow!("apply: {}", e.message))?;
        batch.push(applying.elapsed());
        if spaced {
            apply.push(start.elapsed());
        } else {
            after.push(start.elapsed());
        }
        let start = Instant::now();
        fault
            .revert(&state)
            .map_err(|e| anyhow::anyhow!("revert: {}", e.message))?;
        revert.push(start.elapsed());
    }
    Ok([
        Summary::of_ms(prepare),
        Summary::of_ms(apply),
        Summary::of_ms(after),
        Summary::of_ms(revert),
        Summary::of_ms(batch),
    ])
}

/// The heading of the section.
pub const HEADING: &str = "## Network faults: the fault proxy and nft (issue 26)";

/// The section of BENCHMARKS.md, measured at `revision` by `command`.
pub fn markdown(f: &Figures, revision: &str, command: &str) -> String {
    let share = 100.0 * f.proxied_mbs.median / f.direct_mbs.median;
    let added = f.rtt_proxied.0 - f.rtt_direct.0;
    let mut out = format!(
        "{HEADING}\n\n\
         Measured in the harness's network namespace, at {revision} with `{command}`, on {}: a daemon (dry) with two proxies on loopback, no toxic on; {ROUNDS} rounds, direct and proxied taking turns (each first in every other round), the same client and server both ways; the bulk's range is the rounds' lowest and highest.\n\n\
         | | direct | through the proxy | target | verdict |\n|---|---|---|---|---|\n\
         | bulk, {} MiB a round, MB/s (median; range) | {} ({}-{}) | {} ({}-{}; {share:.0}% of direct) | >= 80% of direct | {} |\n\
         | one-byte round trip, p50 / p90, us | {} / {} | {} / {} (+{} at p50) | <= +50 us at p50 | {} |\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        BULK >> 20,
        num(f.direct_mbs.median),
        num(f.ranges[0].0),
        num(f.ranges[0].1),
        num(f.proxied_mbs.median),
        num(f.ranges[1].0),
        num(f.ranges[1].1),
        verdict(share >= 80.0),
        num(f.rtt_direct.0),
        num(f.rtt_direct.1),
        num(f.rtt_proxied.0),
        num(f.rtt_proxied.1),
        num(added),
        verdict(added <= 50.0),
    );
    let (cpu, cores) = (
        f.cpu_per_gib,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    // Without the daemon's scheduler counts (no schedstat) the bound would be made up.
    let bound = if cpu.proxied[2] > 0.0 {
        format!(
            "from these figures, the proxied copy can reach at most {:.0}% of direct on this machine",
            100.0 * cpu.bound(cores)
        )
    } else {
        "the daemon's CPU was not measured (no /proc/PID/task/*/schedstat), so no bound is drawn"
            .to_owned()
    };
    out.push_str(&format!(
        "\nCPU a GiB of bulk, seconds (every round), client / sink: direct {} / {}; through the proxy {} / {}, and the proxy (the daemon) {}. A copy goes at most as fast as its busiest stage, and at most as fast as {cores} cores run all of its stages: {bound}.\n",
        num(cpu.direct[0]),
        num(cpu.direct[1]),
        num(cpu.proxied[0]),
        num(cpu.proxied[1]),
        num(cpu.proxied[2]),
    ));
    match (&f.apply_ms, &f.apply_after_ms, &f.revert_ms, &f.rules_error) {
        (Some(a), Some(after), Some(r), _) => out.push_str(&format!(
            "\n`net-loss`, {RULES} times, ms, median (quartiles): apply (prepare + the netlink batch) {} ({}-{}; the prepare {}, the batch {}), revert (over netlink) {} ({}-{}); target <= 20 ms each: apply {}, revert {}. \\\n\
             Half of the applications come 100 ms after the last revert, as above; the other half right after it: {} ({}-{}).\n",
            num(a.median), num(a.p25), num(a.p75),
            f.prepare_ms.map_or("?".to_owned(), |p| num(p.median)),
            f.batch_ms.map_or("?".to_owned(), |b| num(b.median)),
            num(r.median), num(r.p25), num(r.p75),
            verdict(a.median <= 20.0), verdict(r.median <= 20.0),
            num(after.median), num(after.p25), num(after.p75),
        )),
        (_, _, _, Some(e)) => out.push_str(&format!("\n`net-loss` not measured: {e}\n")),
        _ => {}
    }
    out
}

/// How a figure stands against its target, as the table says it.
fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

#[cfg(test)]
mod tests {
    use super::Cpu;

    #[test]
    fn the_bound_is_the_busiest_stage_or_the_cores_whichever_is_slower() {
        // Direct: 0.2 and 0.1 s a GiB; through the proxy the client and sink as much,
        // and the proxy 0.1 more.
        let cpu = Cpu {
            direct: [0.2, 0.1],
            proxied: [0.2, 0.1, 0.1],
        };
        // Enough cores: both copies go as fast as the client, the busiest stage.
        assert!((cpu.bound(4) - 1.0).abs() < 1e-9);
        // Two cores: direct still waits on the client (0.2 > 0.3 / 2); proxied, the
        // cores are slower than any stage (0.4 / 2 = 0.2 ties the client).
        assert!((cpu.bound(2) - 1.0).abs() < 1e-9);
        // One core: every stage's work in turn, 0.3 against 0.4.
        assert!((cpu.bound(1) - 0.75).abs() < 1e-9);
        // A proxy busier than the client is the bound, however many cores.
        let busy = Cpu {
            direct: [0.2, 0.1],
            proxied: [0.2, 0.1, 0.4],
        };
        assert!((busy.bound(8) - 0.5).abs() < 1e-9);
    }
}
