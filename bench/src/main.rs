//! `nm-bench`: what nightmare-monkey costs its host, measured inside a PID namespace of
//! its own with N idle processes, next to the yardsticks `ls -f /proc` and `ps`. Run it
//! with `bench/run`; it writes BENCHMARKS.md. Never a timed test: it reports, it does
//! not fail on a number.

mod daemon;
mod journal;
mod load;
mod measure;
mod procs;
mod report;
mod versus;

use std::{
    env, fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use clap::Parser;
use nightmare_monkey::{
    domain::injection::Ask,
    engine::{Engine, Guards},
    plugin,
    storage::journal::Journal,
};
use nightmare_monkey_plugin_api::sdk::process::LISTING_TTL;

use crate::{
    daemon::{Daemon, Usage},
    measure::{in_process, run_command, Cost, Summary},
    procs::Crowd,
};

/// Set in the re-executed harness, so it never re-executes itself twice.
const IN_NAMESPACE: &str = "NM_BENCH_IN_NAMESPACE";

/// Measures nightmare-monkey inside a fresh PID namespace and writes BENCHMARKS.md.
///
/// The harness re-executes itself as PID 1 of a new user+PID+mount namespace (unshare),
/// forks idle processes until /proc lists N, and measures at each N: the cost of one
/// dry-run pick (the real binary, and the engine in this process), the yardsticks
/// `ls -f /proc` and `ps -e -o pid,ppid,comm`, and dry-run `POST /api/kill` under load on
/// loopback. At the smallest N it also measures the idle daemon (RSS, CPU time, wake-ups)
/// and the time from start to a listening API. Nothing is ever executed for real.
#[derive(Debug, Clone, Parser)]
#[command(
    after_help = "Examples:\n  bench/run                      the full run (a few minutes), writes BENCHMARKS.md\n  bench/run --quick --out /tmp/b.md   a smoke run in well under a minute\n  bench/run --compare e1ac80a --quick   this tree's API against that revision's, ratios"
)]
pub struct Args {
    /// Process counts to measure at, ascending
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000,10000")]
    sizes: Vec<usize>,

    /// Repetitions of each cost measurement (median and quartiles are reported)
    #[arg(long, default_value_t = 15)]
    runs: usize,

    /// Requests of each saturating load run
    #[arg(long, default_value_t = 20_000)]
    requests: usize,

    /// Connections of the saturating load
    #[arg(long, default_value_t = 4)]
    connections: usize,

    /// Requests a second of the moderate load, for its latency percentiles
    #[arg(long, default_value_t = 1000.0)]
    moderate_rate: f64,

    /// How long the moderate load lasts, in seconds
    #[arg(long, default_value_t = 5.0)]
    moderate_seconds: f64,

    /// Requests sent before the daemon's memory is read again, to see it grow or not
    #[arg(long, default_value_t = 100_000)]
    leak_requests: usize,

    /// Seconds the idle daemon is watched
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,

    /// A quick smoke run: sizes 100,1000, 5 runs, 5 idle seconds, 10k leak requests
    #[arg(long)]
    quick: bool,

    /// The nightmare-monkey binary [default: next to this one]
    #[arg(long, value_name = "FILE")]
    binary: Option<PathBuf>,

    /// Only run the in-process engine pick this many times among the processes of
    /// --sizes' first value, and print its mean: a workload to profile, e.g. under
    /// `perf record -g` or `valgrind --tool=callgrind`
    #[arg(long, value_name = "N")]
    pick_loop: Option<usize>,

    /// Another build of the binary to set beside it, in the "Build profiles" table
    /// (bench/run gives the `release` build, the README's first command's)
    #[arg(long, value_name = "FILE")]
    compare: Option<PathBuf>,

    /// Only set the API of another build of the binary beside this one's: dry-run
    /// `POST /api/kill` and `GET /healthz` rates and memory, in rounds taking turns, each
    /// figure's ratio printed (`bench/run --compare REV` builds REV for it)
    #[arg(long, value_name = "FILE")]
    versus: Option<PathBuf>,

    /// Faults in the generated journal the history costs are measured on (0: not
    /// measured)
    #[arg(long, value_name = "N", default_value_t = 250_000)]
    journal_faults: usize,

    /// Where the Markdown report goes
    #[arg(long, value_name = "FILE", default_value = "BENCHMARKS.md")]
    out: PathBuf,
}

impl Args {
    fn apply_quick(&mut self) {
        if self.quick {
            self.journal_faults = self.journal_faults.min(50_000);
            self.sizes = vec![100, 1000];
            self.runs = 5;
            self.requests = 5_000;
            self.moderate_seconds = 2.0;
            self.leak_requests = 10_000;
            self.idle_seconds = 5;
        }
    }
}

/// What was measured at one process count.
#[derive(Debug, Clone)]
pub struct AtSize {
    /// Processes `/proc` listed during the measurement.
    pub processes: usize,
    /// `ls -f /proc`, wall and CPU in ms.
    pub ls: (Summary, Summary),
    /// `ps -e -o pid,ppid,comm`.
    pub ps: (Summary, Summary),
    /// `nightmare-monkey kill` (dry run), the whole process.
    pub binary: (Summary, Summary),
    /// The engine's dry-run pick in this process, listing `/proc` anew.
    pub engine: (Summary, Summary),
    /// The same right after another, sharing its listing (an API burst).
    pub reused: (Summary, Summary),
    /// Processes the unfiltered pick considered.
    pub considered: Summary,
    /// The engine's pick with `exclude_names` rejecting nine processes in ten.
    pub excluded: (Summary, Summary),
    /// Processes that pick considered.
    pub excluded_considered: Summary,
    /// Saturating load: answers a second, over the repeated runs.
    pub throughput: Summary,
    /// Saturating load: p50 and p99 latency in ms.
    pub saturated: (f64, f64),
    /// Moderate load: p50, p99 and max latency in ms.
    pub moderate: (f64, f64, f64),
}

/// What one build of the binary costs at rest and for one pick (the "Build profiles"
/// table).
#[derive(Debug, Clone)]
pub struct Build {
    /// The binary.
    pub path: PathBuf,
    /// Its size, bytes.
    pub bytes: u64,
    /// Start to a listening API, ms.
    pub startup: Summary,
    /// RSS once listening and settled, KiB.
    pub rss: u64,
    /// One dry-run `kill`, the whole process, wall ms.
    pub kill: Summary,
    /// Processes listed while it was measured.
    pub processes: usize,
}

/// What was measured of the daemon itself.
#[derive(Debug, Clone)]
pub struct Footprint {
    /// Processes listed while it was measured.
    pub processes: usize,
    /// Start to a listening API, ms.
    pub startup: Summary,
    /// RSS once listening, KiB.
    pub rss_start: u64,
    /// Its anonymous (private) part, KiB.
    pub anon_start: u64,
    /// RSS after the first thousand requests, KiB.
    pub rss_warm: u64,
    /// RSS after `leak_requests` more, KiB.
    pub rss_after: u64,
    /// Threads once listening.
    pub threads: usize,
    /// CPU time over the idle period.
    pub idle_cpu: Duration,
    /// Context switches over the idle period.
    pub idle_switches: u64,
    /// One dry-run injection of `process-kill` built in, then loaded from its `.so` into
    /// a worker process, ms (`None`: the `.so` was not built beside the binary).
    pub worker: Option<(Summary, Summary)>,
    /// Start and history on a big journal (`None`: not measured).
    pub history: Option<journal::HistoryCost>,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    args.apply_quick();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    if args.sizes.is_empty() || args.sizes.windows(2).any(|w| w[0] >= w[1]) {
        bail!("--sizes must be ascending process counts, like 100,1000,5000");
    }
    if args.runs == 0 || args.connections == 0 || args.moderate_rate <= 0.0 {
        bail!("--runs, --connections and --moderate-rate must be positive");
    }
    if std::process::id() != 1 {
        return reexec_in_namespace();
    }
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => env::current_exe()?.with_file_name("nightmare-monkey"),
    };
    if !binary.exists() {
        bail!(
            "{} does not exist: build it first (bench/run does) or give --binary",
            binary.display()
        );
    }
    if let Some(n) = args.pick_loop {
        return pick_loop(args.sizes[0], n);
    }
    if let Some(other) = &args.versus {
        let scratch = env::temp_dir().join(format!("nm-bench-versus-{}", std::process::id()));
        fs::create_dir_all(&scratch)?;
        let result = versus::versus(args, &binary, other, &scratch);
        let _ = fs::remove_dir_all(&scratch);
        return result;
    }
    let scratch = env::temp_dir().join(format!(
        "nm-bench-{}",
        chrono::Utc::now().timestamp_millis()
    ));
    fs::create_dir_all(&scratch)?;
    let result = measure_all(args, &binary, &scratch);
    let _ = fs::remove_dir_all(&scratch);
    let (sizes, footprint, builds) = result?;
    let text = report::markdown(args, &binary, &sizes, &footprint, &builds);
    fs::write(&args.out, &text).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("\n{}", report::targets(&sizes, &footprint));
    println!("wrote {}", args.out.display());
    Ok(())
}

/// Repeats the in-process pick `n` times among `size` processes, for a profiler.
fn pick_loop(size: usize, n: usize) -> anyhow::Result<()> {
    Crowd::default().grow_to(size)?;
    let scratch = env::temp_dir().join(format!("nm-bench-loop-{}", std::process::id()));
    let journal = scratch.join("journal.jsonl");
    let engine = engine("", &journal)?;
    let ask = benchmark_ask();
    let start = Instant::now();
    for _ in 0..n {
        engine.inject(&ask)?;
    }
    let each = start.elapsed() / n.max(1) as u32;
    let _ = fs::remove_dir_all(&scratch);
    println!("{n} in-process picks among {size} processes: {each:?} each");
    Ok(())
}

/// Runs this same command again as PID 1 of a new user, PID and mount namespace, where
/// every process is the harness's own; it is killed if `unshare` is.
fn reexec_in_namespace() -> anyhow::Result<()> {
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
            "--kill-child",
        ])
        .arg(env::current_exe()?)
        .args(env::args_os().skip(1))
        .env(IN_NAMESPACE, "1")
        .exec();
    bail!("cannot run unshare (util-linux) to make a PID namespace: {error}")
}

fn measure_all(
    args: &Args,
    binary: &Path,
    scratch: &Path,
) -> anyhow::Result<(Vec<AtSize>, Footprint, Vec<Build>)> {
    let mut crowd = Crowd::default();
    let mut sizes = Vec::new();
    let mut footprint = None;
    let mut builds = Vec::new();
    for &size in &args.sizes {
        eprint!("starting idle processes up to {size}... ");
        crowd.grow_to(size)?;
        eprintln!("{} forked", crowd.len());
        let at = measure_size(args, binary, scratch)?;
        eprintln!(
            "  {} processes: ls {} ms, ps {} ms, kill {} ms, engine {} ms, {} req/s",
            at.processes, at.ls.0, at.ps.0, at.binary.0, at.engine.0, at.throughput
        );
        sizes.push(at);
        if footprint.is_none() {
            footprint = Some(measure_footprint(args, binary, scratch)?);
            // The builds side by side, taking turns, among the fewest processes.
            if let Some(other) = &args.compare {
                for b in [binary, other.as_path()] {
                    builds.push(measure_build(args, b, scratch)?);
                }
            }
        }
    }
    Ok((sizes, footprint.context("no size was measured")?, builds))
}

/// One build's size, start, settled RSS and one dry-run `kill`.
fn measure_build(args: &Args, binary: &Path, scratch: &Path) -> anyhow::Result<Build> {
    let bytes = fs::metadata(binary)
        .with_context(|| format!("cannot read {}", binary.display()))?
        .len();
    let mut startups = Vec::new();
    for run in 0..args.runs {
        let daemon = Daemon::start(binary, &scratch.join(format!("build-{run}")), true)?;
        startups.push(daemon.startup);
    }
    let daemon = Daemon::start(binary, &scratch.join("build-idle"), true)?;
    thread::sleep(Duration::from_millis(500));
    let rss = daemon.usage()?.rss_kib;
    drop(daemon);
    let journal = scratch.join("build.jsonl");
    let mut kills = Vec::new();
    run_command(
        Command::new(binary)
            .args(["kill", "--seed", "0", "--journal"])
            .arg(&journal),
        false,
    )?;
    for run in 0..args.runs {
        let (cost, _) = run_command(
            Command::new(binary)
                .args(["kill", "--seed", &run.to_string(), "--journal"])
                .arg(&journal),
            false,
        )?;
        kills.push(cost.wall);
    }
    let _ = fs::remove_file(&journal);
    let build = Build {
        path: binary.to_owned(),
        bytes,
        startup: Summary::of_ms(startups),
        rss,
        kill: Summary::of_ms(kills),
        processes: procs::count_processes()?,
    };
    eprintln!(
        "  {}: {} bytes, start {} ms, RSS {} KiB, kill {} ms",
        binary.display(),
        build.bytes,
        build.startup,
        build.rss,
        build.kill
    );
    Ok(build)
}

/// The wall and CPU summaries of some costs.
fn summarise(costs: &[Cost]) -> (Summary, Summary) {
    (
        Summary::of_ms(costs.iter().map(|c| c.wall)),
        Summary::of_ms(costs.iter().map(|c| c.cpu)),
    )
}

/// How many processes an outcome's `details` says were considered.
fn considered(details: &serde_json::Value) -> anyhow::Result<f64> {
    details
        .get("considered")
        .and_then(serde_json::Value::as_f64)
        .context("the outcome has no details.considered")
}

/// What every in-process pick asks for.
fn benchmark_ask() -> Ask {
    Ask {
        fault: "process-kill".to_owned(),
        desc: "benchmark".to_owned(),
        trigger: "cli",
        requested_by: None,
    }
}

/// An engine with `process-kill` configured by `config`, dry, journaling to `journal`.
fn engine(config: &str, journal: &Path) -> anyhow::Result<Engine> {
    let plugin = plugin::builtins()
        .into_iter()
        .find(|p| p.manifest.name == "process-kill")
        .context("no built-in process-kill")?;
    let fault = plugin.new_fault(config)?;
    let mut engine = Engine::new(1, false, Guards::default(), Some(Journal::open(journal)?));
    engine.add_fault("process-kill", "process-kill", fault)?;
    Ok(engine)
}

fn measure_size(args: &Args, binary: &Path, scratch: &Path) -> anyhow::Result<AtSize> {
    let processes = procs::count_processes()?;
    let journal = scratch.join("journal.jsonl");
    let plain = engine("", &journal)?;
    let filtered = engine(
        &format!("(exclude_names: [\"^{}$\"])", procs::COMMON),
        &journal,
    )?;
    let ask = benchmark_ask();
    let [mut ls, mut ps, mut ours, mut inproc, mut reused, mut excl]: [Vec<Cost>; 6] =
        Default::default();
    let (mut seen, mut seen_excl) = (Vec::new(), Vec::new());
    // Interleaved, so a burst of noise on the machine spreads over all of them.
    // One round unmeasured first: the idle processes were just forked, and the first
    // listing of them fills the kernel's dentry cache for whoever runs it.
    for command in [
        Command::new("ls").args(["-f", "/proc"]),
        Command::new("ps").args(["-e", "-o", "pid,ppid,comm"]),
        Command::new(binary)
            .args(["kill", "--seed", "0", "--journal"])
            .arg(&journal),
    ] {
        run_command(command, false)?;
    }
    for run in 0..args.runs {
        // `ls` and the monkey take turns going first. `ps` runs on its own, below: it
        // reads every process and leaves the kernel's caches full of them, which slows
        // whatever runs next (measured: 6.9 ms for the monkey's pick after `ps` at 5,000
        // processes, 4.5 ms otherwise), so it must not run just before either.
        for turn in 0..2 {
            if (run + turn) % 2 == 0 {
                let (cost, _) = run_command(Command::new("ls").args(["-f", "/proc"]), false)?;
                ls.push(cost);
            } else {
                let (cost, out) = run_command(
                    Command::new(binary)
                        .args(["kill", "--json", "--seed", &run.to_string(), "--journal"])
                        .arg(&journal),
                    true,
                )?;
                ours.push(cost);
                let answer: serde_json::Value = serde_json::from_slice(&out)?;
                seen.push(considered(&answer["details"])?);
            }
        }
        // A pick lists /proc anew once the last listing is older than its TTL; the
        // second pick, at once, shares the first one's. After the wait, one listing by
        // the harness wakes the CPU and its caches up, so the pick is measured in the
        // state the commands above are, not fresh from an idle sleep.
        thread::sleep(LISTING_TTL + Duration::from_millis(5));
        procs::count_processes()?;
        let (cost, injection) = in_process(|| plain.inject(&ask));
        inproc.push(cost);
        seen.push(considered(&injection?.outcome.details)?);
        let (cost, injection) = in_process(|| plain.inject(&ask));
        reused.push(cost);
        injection?;
        let (cost, injection) = in_process(|| filtered.inject(&ask));
        excl.push(cost);
        seen_excl.push(considered(&injection?.outcome.details)?);
    }
    for _ in 0..args.runs {
        let (cost, _) = run_command(
            Command::new("ps").args(["-e", "-o", "pid,ppid,comm"]),
            false,
        )?;
        ps.push(cost);
    }
    fs::remove_file(&journal)?;

    let api = Daemon::start(binary, &scratch.join("api"), false)?;
    // Throughput is the noisiest figure (the load generator shares the machine): the
    // median of several runs, the latencies of all of them together.
    let mut rates = Vec::new();
    let mut saturated = load::LoadResult::default();
    for _ in 0..args.runs.min(5) {
        let run = load::saturate(api.addr, args.connections, args.requests)?;
        rates.push(run.throughput);
        saturated.latencies_ms.extend(run.latencies_ms);
    }
    saturated.latencies_ms.sort_by(f64::total_cmp);
    let moderate = load::paced(api.addr, 2, args.moderate_rate, args.moderate_seconds)?;
    drop(api);
    fs::remove_dir_all(scratch.join("api"))?;
    let q = |r: &load::LoadResult, q: f64| measure::quantile(&r.latencies_ms, q);
    Ok(AtSize {
        processes,
        ls: summarise(&ls),
        ps: summarise(&ps),
        binary: summarise(&ours),
        engine: summarise(&inproc),
        reused: summarise(&reused),
        considered: Summary::of(seen),
        excluded: summarise(&excl),
        excluded_considered: Summary::of(seen_excl),
        throughput: Summary::of(rates),
        saturated: (q(&saturated, 0.5), q(&saturated, 0.99)),
        moderate: (q(&moderate, 0.5), q(&moderate, 0.99), q(&moderate, 1.0)),
    })
}

fn measure_footprint(args: &Args, binary: &Path, scratch: &Path) -> anyhow::Result<Footprint> {
    let processes = procs::count_processes()?;
    let mut startups = Vec::new();
    for run in 0..args.runs {
        let daemon = Daemon::start(binary, &scratch.join(format!("start-{run}")), true)?;
        startups.push(daemon.startup);
    }
    eprintln!(
        "  start to listening: {} ms",
        Summary::of_ms(startups.iter().copied())
    );

    let daemon = Daemon::start(binary, &scratch.join("idle"), true)?;
    // Let whatever a start leaves behind settle before watching.
    thread::sleep(Duration::from_millis(500));
    let before = daemon.usage()?;
    eprintln!("  watching the idle daemon for {} s...", args.idle_seconds);
    let watch = Instant::now();
    thread::sleep(Duration::from_secs(args.idle_seconds));
    let after = daemon.usage()?;
    let idle = watch.elapsed();
    eprintln!(
        "  idle {} s: {:?} CPU, {} wake-ups, RSS {} KiB",
        idle.as_secs(),
        after.cpu.saturating_sub(before.cpu),
        after.switches.saturating_sub(before.switches),
        after.rss_kib
    );
    // Warm up at the same concurrency as the long run, so that the threads and malloc
    // arenas a burst needs exist before the memory is read: what grows after is a leak.
    load::saturate(daemon.addr, args.connections, 1000)?;
    let warm = daemon.usage()?;
    eprintln!("  {} requests...", args.leak_requests);
    load::saturate(daemon.addr, args.connections, args.leak_requests)?;
    let loaded: Usage = daemon.usage()?;
    let worker = measure_worker(args, binary, scratch)?;
    let history = if args.journal_faults == 0 {
        None
    } else {
        let cost = journal::measure(binary, scratch, args.journal_faults, args.runs.min(5))?;
        eprintln!(
            "  {} faults journaled: start {} ms (empty {} ms, first {:?}), RSS {} vs {} KiB, /healthz max {:.1} ms during history",
            cost.faults, cost.start_big, cost.start_empty, cost.start_first, cost.rss.1, cost.rss.0, cost.healthz.1
        );
        Some(cost)
    };
    Ok(Footprint {
        processes,
        startup: Summary::of_ms(startups),
        rss_start: before.rss_kib,
        anon_start: before.anon_kib,
        rss_warm: warm.rss_kib,
        rss_after: loaded.rss_kib,
        threads: before.threads,
        idle_cpu: after.cpu.saturating_sub(before.cpu),
        idle_switches: after.switches.saturating_sub(before.switches),
        worker,
        history,
    })
}

/// What running a plugin file in a worker process adds to an injection: the same dry
/// pick, by `process-kill` built in and by `libprocess_kill.so` in its worker, taking
/// turns. The pick lists /proc at most once per listing TTL either way; the difference
/// is the round trip through the worker's pipes.
fn measure_worker(
    args: &Args,
    binary: &Path,
    scratch: &Path,
) -> anyhow::Result<Option<(Summary, Summary)>> {
    let Some(so) = binary
        .parent()
        .map(|d| d.join("libprocess_kill.so"))
        .filter(|p| p.exists())
    else {
        eprintln!("  no libprocess_kill.so beside the binary: worker cost not measured");
        return Ok(None);
    };
    let mut supervision = plugin::Supervision::new(
        Duration::from_secs(30),
        std::sync::Arc::new(|line| eprintln!("  {line}")),
    );
    supervision.program = binary.to_owned();
    let loaded = plugin::Plugin::load(&so, plugin::Trust::Checked, supervision)?;
    let journal = scratch.join("worker.jsonl");
    let linked = engine("", &journal)?;
    let mut isolated = Engine::new(1, false, Guards::default(), Some(Journal::open(&journal)?));
    isolated.add_fault("process-kill", "process-kill", loaded.new_fault("")?)?;
    let ask = benchmark_ask();
    let (mut here, mut there) = (Vec::new(), Vec::new());
    for run in 0..args.runs * 20 {
        let mut turn = [(&linked, &mut here), (&isolated, &mut there)];
        if run % 2 == 1 {
            turn.reverse();
        }
        for (engine, costs) in turn {
            let (cost, injection) = in_process(|| engine.inject(&ask));
            injection?;
            costs.push(cost.wall);
        }
    }
    fs::remove_file(&journal)?;
    let (here, there) = (Summary::of_ms(here), Summary::of_ms(there));
    eprintln!("  injection built in {here} ms, in a worker {there} ms");
    Ok(Some((here, there)))
}
