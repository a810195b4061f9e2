//! `nm-bench`: what nightmare-monkey costs its host, measured inside a PID namespace of
//! its own with N idle processes, next to the yardsticks `ls -f /proc` and `ps`. Run it
//! with `bench/run`; it writes BENCHMARKS.md. Never a timed test: it reports, it does
//! not fail on a number.

mod api;
mod args;
mod daemon;
mod execute;
mod fleet;
mod instructions;
mod journal;
mod layout;
mod load;
mod measure;
mod namespace;
mod original;
mod procs;
mod proxy;
mod report;
mod targets;
mod versus;

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use clap::{CommandFactory as _, FromArgMatches as _};
use nightmare_monkey::{
    domain::injection::Ask,
    engine::{Engine, Guards},
    plugin,
    storage::journal::Journal,
};
use nightmare_monkey_plugin_api::sdk::process::LISTING_TTL;

pub use crate::args::Args;
use crate::{
    daemon::{Daemon, Usage},
    measure::{in_process, run_command, Cost, Summary},
    procs::Crowd,
};

/// What was measured at one process count.
#[derive(Debug, Clone, Default)]
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
    /// The API under load, beside `/healthz` and the original's.
    pub api: api::Api,
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
    /// Requests it had answered then (the first thousand and `leak_requests`).
    pub requests: usize,
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
    /// Real faults beside the disk's floor (`None`: not measured).
    pub execute: Option<execute::Execute>,
}

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    args.apply_quick(&matches);
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
    if !matches!(Duration::try_from_secs_f64(args.original_seconds), Ok(d) if !d.is_zero()) {
        bail!("--original-seconds must be a positive number of seconds");
    }
    if let Some(path) = &args.original {
        if args.versus.is_some() {
            bail!("--original is measured by the full run (bench/run --original PATH), not beside --compare or --versus");
        }
        if !path.is_file() {
            bail!(
                "--original {}: no such file; {}",
                path.display(),
                original::HOW_TO_GIVE
            );
        }
    }
    if std::process::id() != 1 {
        return namespace::reexec();
    }
    namespace::loopback_up()?;
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
    if args.proxy {
        return proxy_only(args, &binary);
    }
    if let Some(n) = args.pick_loop {
        return pick_loop(args.sizes[0], n);
    }
    if args.fleet {
        return fleet_only(args, &binary);
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
    let proxied = proxy::measure(&binary, &scratch);
    let _ = fs::remove_dir_all(&scratch);
    let (sizes, footprint, builds) = result?;
    let mut text = report::markdown(args, &binary, &sizes, &footprint, &builds);
    let command = env::var("NM_BENCH_COMMAND").unwrap_or_else(|_| "nm-bench".to_owned());
    text.push('\n');
    text.push_str(&proxy::markdown(
        &proxied?,
        &report::git_revision(),
        &command,
    ));
    let old = fs::read_to_string(&args.out).unwrap_or_default();
    // The fleet's section measured now, or as last recorded (no etcd here).
    match measure_fleet(args, &binary)? {
        Some(section) => text = versus::splice(&text, &section),
        None => {
            if let Some(section) = versus::recorded_under(&old, fleet::HEADING) {
                text = versus::splice(&text, section);
            }
        }
    }
    // The last comparison with another revision (bench/run --compare) stays.
    if let Some(section) = versus::recorded(&old) {
        text = versus::splice(&text, section);
    }
    fs::write(&args.out, &text).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("\n{}", targets::targets(&sizes, &footprint));
    println!("wrote {}", args.out.display());
    Ok(())
}

/// `--fleet`: only the fleet's section, written into `--out`.
fn fleet_only(args: &Args, binary: &Path) -> anyhow::Result<()> {
    let section = measure_fleet(args, binary)?.context(
        "the fleet is measured on etcd: install it (Debian: apt-get install etcd-server)",
    )?;
    versus::record(&args.out, &section)?;
    println!("\n{section}");
    println!("recorded in {}", args.out.display());
    Ok(())
}

/// Only the network faults' section (`--proxy`), recorded in `--out`.
fn proxy_only(args: &Args, binary: &Path) -> anyhow::Result<()> {
    let scratch = env::temp_dir().join(format!("nm-bench-proxy-{}", std::process::id()));
    fs::create_dir_all(&scratch)?;
    let figures = proxy::measure(binary, &scratch);
    let _ = fs::remove_dir_all(&scratch);
    let command = env::var("NM_BENCH_COMMAND").unwrap_or_else(|_| "nm-bench".to_owned());
    let section = proxy::markdown(&figures?, &report::git_revision(), &command);
    versus::record(&args.out, &section)?;
    println!("\n{section}");
    println!("recorded in {}", args.out.display());
    Ok(())
}

/// The fleet's section, measured on etcd; `None`: no etcd on the PATH.
fn measure_fleet(args: &Args, binary: &Path) -> anyhow::Result<Option<String>> {
    if Command::new("etcd").arg("--version").output().is_err() {
        eprintln!("no etcd on the PATH: the fleet's costs are not measured");
        return Ok(None);
    }
    eprintln!("the fleet: {} daemons on one etcd...", 8);
    let scratch = env::temp_dir().join(format!("nm-bench-fleet-{}", std::process::id()));
    fs::create_dir_all(&scratch)?;
    let figures = fleet::measure(binary, &scratch, fleet::Plan::new(args.quick));
    let _ = fs::remove_dir_all(&scratch);
    let command = env::var("NM_BENCH_COMMAND").unwrap_or_else(|_| "nm-bench".to_owned());
    Ok(Some(fleet::markdown(
        &figures?,
        &report::git_revision(),
        &command,
    )))
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
            "  {} processes: ls {} ms, ps {} ms, kill {} ms, engine {} ms, {} req/s ({} /healthz{})",
            at.processes,
            at.ls.0,
            at.ps.0,
            at.binary.0,
            at.engine.0,
            at.api.kill,
            at.api.health,
            at.api.original.as_ref().map_or_else(String::new, |o| format!(
                ", the original {} req/s: ours {}",
                o.kill,
                measure::times(&o.ratio)
            ))
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

    let api = api::measure(args, binary, &scratch.join("api"))?;
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
        api,
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
    let execute = execute::measure(binary, &scratch.join("execute"), 3.0)?;
    eprintln!("  {}", execute::row(&execute).trim());
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
        requests: 1000 + args.leak_requests,
        threads: before.threads,
        idle_cpu: after.cpu.saturating_sub(before.cpu),
        idle_switches: after.switches.saturating_sub(before.switches),
        worker,
        history,
        execute: Some(execute),
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
