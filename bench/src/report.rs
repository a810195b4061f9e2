//! BENCHMARKS.md: the machine, the date, the command, the tables, and each target of
//! issue 7 against the numbers just measured.

use std::{env, fmt::Write as _, fs, path::Path, process::Command};

use crate::{measure::num, Args, AtSize, Build, Footprint};

/// The original's dry-run API throughput on the reference machine (issue 7).
const ORIGINAL_RPS: f64 = 600.0;

fn first_line_with(path: &str, key: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

fn machine() -> String {
    let cpu = first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = first_line_with("/proc/meminfo", "MemTotal").unwrap_or_else(|| "?".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {memory} memory, Linux {}",
        kernel.trim()
    )
}

fn git_revision() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match run(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) if run(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()) => {
            format!("{rev} (with uncommitted changes)")
        }
        Some(rev) => rev,
        None => "unknown".to_owned(),
    }
}

fn ratio(a: f64, b: f64) -> String {
    format!("{}x", num(a / b))
}

fn status(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

/// The targets of issue 7, one line each, against the measured numbers.
pub fn targets(sizes: &[AtSize], footprint: &Footprint) -> String {
    let mut out = String::from("| target | measured | |\n|---|---|---|\n");
    let mut line = |target: &str, measured: String, met: Option<bool>| {
        let verdict = met.map_or("not measured", status);
        let _ = writeln!(out, "| {target} | {measured} | {verdict} |");
    };
    for at in sizes.iter().filter(|a| a.processes >= 5000) {
        let (ours, ls, ps) = (at.binary.0.median, at.ls.0.median, at.ps.0.median);
        line(
            &format!("pick at {} processes ≤ 1.5x `ls -f /proc`", at.processes),
            format!("{} ms vs {} ms: {}", num(ours), num(ls), ratio(ours, ls)),
            Some(ours <= 1.5 * ls),
        );
        line(
            &format!("pick at {} processes ≥ 20x cheaper than `ps`", at.processes),
            format!(
                "{} ms vs {} ms: {} cheaper",
                num(ours),
                num(ps),
                ratio(ps, ours)
            ),
            Some(ps >= 20.0 * ours),
        );
    }
    if sizes.iter().all(|a| a.processes < 5000) {
        line(
            "pick at 5,000 and 10,000 processes",
            "sizes not run".into(),
            None,
        );
    }
    if let Some(at) = sizes.last() {
        line(
            &format!(
                "pick with a name filter rejecting 9 in 10, {} processes: about one small read per rejected candidate",
                at.processes
            ),
            format!(
                "{} considered on average (10 expected), {} ms vs {} ms unfiltered",
                num(at.excluded_considered.mean),
                num(at.excluded.0.median),
                num(at.engine.0.median)
            ),
            Some(at.excluded_considered.mean < 0.01 * at.processes as f64 + 30.0),
        );
    }
    if let Some(at) = sizes.first() {
        line(
            &format!(
                "API throughput at {} processes ≥ 20x the original's ~600/s",
                at.processes
            ),
            format!(
                "{} req/s: {} the original",
                at.throughput,
                ratio(at.throughput.median, ORIGINAL_RPS)
            ),
            Some(at.throughput.median >= 20.0 * ORIGINAL_RPS),
        );
        line(
            "API p99 latency under 5 ms at moderate load",
            format!("p99 {} ms", num(at.moderate.1)),
            Some(at.moderate.1 < 5.0),
        );
    }
    let f = footprint;
    line(
        "idle RSS ≤ 6 MB",
        format!("{} KiB ({} KiB private)", f.rss_start, f.anon_start),
        Some(f.rss_start <= 6 * 1024),
    );
    let growth = f.rss_after as i64 - f.rss_warm as i64;
    line(
        "no RSS growth after 100k requests beyond a few hundred KiB",
        format!("{growth:+} KiB ({} → {} KiB)", f.rss_warm, f.rss_after),
        Some(growth <= 512),
    );
    line(
        "zero CPU while idle (no polling)",
        format!(
            "{:.3} ms CPU, {} wake-ups",
            f.idle_cpu.as_secs_f64() * 1e3,
            f.idle_switches
        ),
        Some(f.idle_switches == 0),
    );
    line(
        "start to listening < 50 ms",
        format!("{} ms", f.startup),
        Some(f.startup.median < 50.0),
    );
    match &f.history {
        Some(h) => {
            let n = h.faults;
            line(
                &format!("start with {n} faults journaled within 2x of an empty journal's"),
                format!(
                    "{} ms vs {} ms ({} MB journal; the first start, which builds the checkpoint, {:.0} ms)",
                    h.start_big,
                    h.start_empty,
                    h.bytes / 1_000_000,
                    h.start_first.as_secs_f64() * 1e3
                ),
                Some(h.start_big.median <= 2.0 * h.start_empty.median),
            );
            line(
                &format!("RSS after start with {n} faults within 1 MiB of an empty journal's"),
                format!("{} KiB vs {} KiB", h.rss.1, h.rss.0),
                Some(h.rss.1 <= h.rss.0 + 1024),
            );
            line(
                "/healthz max latency < 50 ms while GET /api/history and history --since 30d run",
                format!(
                    "max {:.1} ms, p50 {:.2} ms (a page: {} ms; history --since 30d: {:.1} s, peak RSS {} KiB)",
                    h.healthz.1,
                    h.healthz.0,
                    h.page,
                    h.cli.0.as_secs_f64(),
                    h.cli.1
                ),
                Some(h.healthz.1 < 50.0),
            );
            line(
                "RSS while serving history ≤ 2x idle",
                format!("{} KiB vs {} KiB", h.rss_history, h.rss.1),
                Some(h.rss_history <= 2 * h.rss.1),
            );
        }
        None => line(
            "start and history with a big journal",
            "not measured (--journal-faults 0)".into(),
            None,
        ),
    }
    match &f.worker {
        Some((here, there)) => line(
            "a plugin file in its worker process adds ≤ 1 ms to an injection",
            format!(
                "{:+.3} ms ({} ms built in, {} ms in a worker)",
                there.median - here.median,
                here,
                there
            ),
            Some(there.median - here.median <= 1.0),
        ),
        None => line(
            "a plugin file in its worker process adds ≤ 1 ms to an injection",
            "libprocess_kill.so not built".into(),
            None,
        ),
    }
    out
}

/// The "Build profiles" section: what each build costs at rest and for a pick.
fn profiles(builds: &[Build]) -> String {
    let mut md = format!(
        "\n## Build profiles\n\nThe same source built twice, measured the same way, among {} \
         processes: `release` (the README's first command: no LTO, quick to build) and `dist` \
         (fat LTO, one codegen unit, the functions a start and a request run laid out \
         together: the .deb, `cargo install` as documented, and the figures above). What \
         `dist` costs is build time, not measured here (a cold build takes minutes): on this \
         2-core machine, 2026-11-26, `dist` took 3m54s from cold (CI's clean clone), \
         `release` 3m24s with the build scripts and macros already built (4m37s from cold \
         with another build beside it). What it gains is below.\n\n",
        builds.first().map_or(0, |b| b.processes)
    );
    md.push_str(&row(&[
        "build".into(),
        "binary".into(),
        "size".into(),
        "start to a listening API".into(),
        "RSS idle".into(),
        "one dry-run `kill`".into(),
    ]));
    md.push_str(&row(&vec!["---".to_owned(); 6]));
    for b in builds {
        let profile = b
            .path
            .parent()
            .and_then(|d| d.file_name())
            .map_or_else(|| "?".to_owned(), |n| n.to_string_lossy().into_owned());
        md.push_str(&row(&[
            format!("`{profile}`"),
            format!("`{}`", b.path.display()),
            format!("{:.1} MB", b.bytes as f64 / 1e6),
            format!("{} ms", b.startup),
            format!("{} KiB", b.rss),
            format!("{} ms", b.kill),
        ]));
    }
    md
}

fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

/// The whole report.
pub fn markdown(
    args: &Args,
    binary: &Path,
    sizes: &[AtSize],
    f: &Footprint,
    builds: &[Build],
) -> String {
    // bench/run says how it was called; run directly, the harness's own arguments.
    let command = env::var("NM_BENCH_COMMAND").unwrap_or_else(|_| {
        let args: Vec<String> = env::args().skip(1).collect();
        format!("target/dist/nm-bench {}", args.join(" "))
    });
    let mut md = String::new();
    let _ = write!(
        md,
        "# Benchmarks\n\n\
         Written by the harness in `bench/` (see `bench/run --help`); do not edit by hand, re-run it:\n\n\
         ```sh\n{}\n```\n\n\
         - Date: {}\n- Revision: {}\n- Machine: {}\n- Binary: `{}` (the `dist` profile: fat LTO, one codegen unit)\n\n\
         Everything runs inside a fresh user+PID+mount namespace the harness makes, with idle \
         processes it forks until `/proc` lists the number in the first column. Every pick is \
         a dry run. A figure is the median of {} runs with the interquartile range in \
         brackets; times are milliseconds.\n\n",
        command.trim(),
        chrono::Local::now().format("%Y-%m-%d %H:%M %Z"),
        git_revision(),
        machine(),
        binary.display(),
        args.runs,
    );

    md.push_str("## One pick\n\n");
    md.push_str(
        "The cost of choosing one victim, dry, as a whole command next to the yardsticks \
         (`ls -f /proc` lists the PIDs and is the floor of a uniform pick; `ps -e -o pid,ppid,comm` \
         reads every process, as the original did), and as the engine's call inside a process \
         already running (the daemon's case): once listing `/proc` anew, once right after \
         another pick, sharing its listing (picks within 100 ms do, as in an API burst). \
         Considered: the processes read before one qualified (mean).\n\n",
    );
    md.push_str(&row(&[
        "processes".into(),
        "`ls -f /proc` wall".into(),
        "`ps` wall".into(),
        "`nightmare-monkey kill` wall".into(),
        "`kill` CPU".into(),
        "`kill` / `ls`".into(),
        "`ps` / `kill`".into(),
        "engine pick wall".into(),
        "engine pick CPU".into(),
        "engine pick, listing reused".into(),
        "considered".into(),
    ]));
    md.push_str(&row(&vec!["---".to_owned(); 11]));
    for at in sizes {
        md.push_str(&row(&[
            at.processes.to_string(),
            at.ls.0.to_string(),
            at.ps.0.to_string(),
            at.binary.0.to_string(),
            at.binary.1.to_string(),
            ratio(at.binary.0.median, at.ls.0.median),
            ratio(at.ps.0.median, at.binary.0.median),
            at.engine.0.to_string(),
            at.engine.1.to_string(),
            at.reused.0.to_string(),
            num(at.considered.mean),
        ]));
    }
    md.push_str(
        "\n### With a name filter\n\nNine idle processes in ten are named `nm-idle-worker`; the \
         fault's config is `(exclude_names: [\"^nm-idle-worker$\"])`. Each rejected candidate \
         costs one read of its `stat`, so about ten are considered on average (a geometric \
         draw: median 7) whatever the count; both picks list `/proc` anew.\n\n",
    );
    md.push_str(&row(&[
        "processes".into(),
        "engine pick wall".into(),
        "CPU".into(),
        "considered (mean)".into(),
        "considered (median, quartiles)".into(),
        "unfiltered wall".into(),
    ]));
    md.push_str(&row(&vec!["---".to_owned(); 6]));
    for at in sizes {
        md.push_str(&row(&[
            at.processes.to_string(),
            at.excluded.0.to_string(),
            at.excluded.1.to_string(),
            num(at.excluded_considered.mean),
            at.excluded_considered.to_string(),
            at.engine.0.to_string(),
        ]));
    }

    let _ = write!(
        md,
        "\n## The API\n\n`POST /api/kill` (dry run) on loopback, from the harness's own load \
         generator (keep-alive HTTP/1.1, one thread a connection, every answer read and checked). \
         Saturated: {} requests over {} connections back to back, repeated up to 5 times (the \
         median rate, the latencies of all runs). Moderate: {} requests a second \
         over 2 connections for {} s, each latency counted from when the request was due.\n\n",
        args.requests, args.connections, args.moderate_rate, args.moderate_seconds
    );
    md.push_str(&row(&[
        "processes".into(),
        "saturated req/s".into(),
        "saturated p50".into(),
        "saturated p99".into(),
        "moderate p50".into(),
        "moderate p99".into(),
        "moderate max".into(),
    ]));
    md.push_str(&row(&vec!["---".to_owned(); 7]));
    for at in sizes {
        md.push_str(&row(&[
            at.processes.to_string(),
            at.throughput.to_string(),
            num(at.saturated.0),
            num(at.saturated.1),
            num(at.moderate.0),
            num(at.moderate.1),
            num(at.moderate.2),
        ]));
    }

    let _ = write!(
        md,
        "\n## The daemon at rest\n\nThe daemon with the original's schedule (a fault hours \
         apart) and the API on, among {} processes. CPU time is the scheduler's, summed over \
         its threads; wake-ups are context switches.\n\n\
         | measure | value |\n|---|---|\n\
         | start to a listening API | {} ms |\n\
         | threads | {} |\n\
         | RSS once listening | {} KiB, of which {} KiB private (the rest: pages of the binary and libc, shared and reclaimable) |\n\
         | CPU over {} idle seconds | {:.3} ms |\n\
         | wake-ups over {} idle seconds | {} |\n\
         | RSS after 1,000 requests | {} KiB |\n\
         | RSS after {} more requests | {} KiB |\n",
        f.processes,
        f.startup,
        f.threads,
        f.rss_start,
        f.anon_start,
        args.idle_seconds,
        f.idle_cpu.as_secs_f64() * 1e3,
        args.idle_seconds,
        f.idle_switches,
        f.rss_warm,
        args.leak_requests,
        f.rss_after,
    );

    if !builds.is_empty() {
        md.push_str(&profiles(builds));
    }

    md.push_str("\n## Targets (issue 7)\n\n");
    md.push_str(&targets(sizes, f));
    md
}
