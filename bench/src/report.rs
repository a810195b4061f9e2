//! BENCHMARKS.md: the machine, the date, the command, the tables, and each target of
//! issues 7 and 27 against the numbers just measured.

use std::{env, fmt::Write as _, fs, path::Path, process::Command};

use crate::{
    measure::{num, ratio, times},
    original, targets, Args, AtSize, Build, Footprint,
};

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

/// This tree's short revision, and whether it has uncommitted changes.
pub fn git_revision() -> String {
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

/// The "Build profiles" section: what each build costs at rest and for a pick.
fn profiles(builds: &[Build]) -> String {
    let mut md = format!(
        "\n## Build profiles\n\nThe same source built twice, measured the same way, among {} \
         processes: `release` (the README's first command: optimisation level 1, no LTO, quick \
         to build) and `dist` (level 3, fat LTO, one codegen unit, the functions a start and \
         a request run laid out together: the .deb, `cargo install` as documented, and the \
         figures above). What `dist` costs is build time, not measured here (a cold build \
         takes minutes): on this 2-core machine `release` took 2m35s from cold (a fresh \
         clone, 2026-12-07), `dist` 3m54s on 2026-11-26 (before the fleet and the network \
         faults; more now). What it gains is below.\n\n",
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

/// The "API" section: ours under load beside `/healthz`, and beside the original's.
fn api(args: &Args, sizes: &[AtSize]) -> String {
    let mut md = format!(
        "\n## The API\n\nDry-run `POST /api/kill` on loopback, from the harness's own load \
         generator (keep-alive HTTP/1.1, one thread a connection, every answer read and checked). \
         Saturated: {} requests over {} connections back to back, then as many `GET /healthz` \
         (the bare HTTP answer) on the same daemon, in up to 5 rounds (the median rate, the \
         latencies of all rounds). Moderate: {} requests a second over 2 connections for {} s, \
         each latency counted from when the request was due.\n\n",
        args.requests, args.connections, args.moderate_rate, args.moderate_seconds
    );
    md.push_str(&row(&[
        "processes".into(),
        "`/api/kill` req/s".into(),
        "saturated p50".into(),
        "saturated p99".into(),
        "`/healthz` req/s".into(),
        "`/api/kill` / `/healthz`".into(),
        "moderate p50".into(),
        "moderate p99".into(),
        "moderate max".into(),
    ]));
    md.push_str(&row(&vec!["---".to_owned(); 9]));
    for at in sizes {
        let a = &at.api;
        md.push_str(&row(&[
            at.processes.to_string(),
            a.kill.to_string(),
            num(a.saturated.0),
            num(a.saturated.1),
            a.health.to_string(),
            times(&a.kill_per_health),
            num(a.moderate.0),
            num(a.moderate.1),
            num(a.moderate.2),
        ]));
    }
    md.push_str("\n### Against the original\n\n");
    if sizes.iter().all(|at| at.api.original.is_none()) {
        let _ = writeln!(
            md,
            "The original was not measured in this run: {}.",
            original::HOW_TO_GIVE
        );
        return md;
    }
    let _ = write!(
        md,
        "The original Nightmare Monkey (the 2017 Go daemon, `{}`), dry, its API on \
         loopback, measured at each process count in the same rounds as ours, taking turns \
         (who goes first alternates): as many requests as ours over the same connections, \
         or as many as it answers in {} s. The ratio is ours / the original's, round by \
         round (the median, the quartiles in brackets).\n\n",
        args.original
            .as_deref()
            .map_or_else(|| "?".into(), |p| p.display().to_string()),
        args.original_seconds
    );
    md.push_str(&row(&[
        "processes".into(),
        "ours req/s".into(),
        "the original req/s".into(),
        "ours / the original".into(),
        "the original p50".into(),
        "the original p99".into(),
        "its requests".into(),
        "its RSS after".into(),
    ]));
    md.push_str(&row(&vec!["---".to_owned(); 8]));
    for at in sizes {
        if let Some(o) = &at.api.original {
            md.push_str(&row(&[
                at.processes.to_string(),
                at.api.kill.to_string(),
                o.kill.to_string(),
                times(&o.ratio),
                num(o.latency.0),
                num(o.latency.1),
                o.requests.to_string(),
                format!("{} KiB", o.rss_kib),
            ]));
        }
    }
    md
}

/// The "One pick" section: a pick as a command beside the yardsticks, and in process.
fn picks(sizes: &[AtSize]) -> String {
    let mut md = String::new();
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
    md
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

    md.push_str(&picks(sizes));

    md.push_str(&api(args, sizes));

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
    if let Some(c) = crate::layout::coverage(binary) {
        let _ = writeln!(md, "| code layout (`host/startup-order.txt`) | {c} |");
    }

    if let Some(e) = &f.execute {
        let _ = write!(
            md,
            "\n## Real faults\n\nWith `--execute`, a fault's intent is written and fsynced before \
             anything happens: a real fault can be no faster than one write and `fdatasync` of \
             its record on the journal's disk, measured beside it in a loop (the floor). The \
             faults send `SIGCONT` to the harness's own idle children, which ignore it; {} \
             faults from one client, back to back.\n\n\
             | | ours | the floor | ours / floor (p50) |\n|---|---|---|---|\n{}\n{}",
            e.faults,
            crate::execute::row(e),
            crate::execute::reading(e)
        );
    }

    if !builds.is_empty() {
        md.push_str(&profiles(builds));
    }

    md.push_str("\n## Targets (issues 7 and 27)\n\n");
    md.push_str(&targets::targets(sizes, f));
    md
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn without_the_original_the_api_section_says_how_to_give_it() {
        let args = Args::try_parse_from(["nm-bench"]).unwrap();
        let text = api(&args, &[AtSize::default()]);
        assert!(text.contains("not measured in this run"), "{text}");
        assert!(text.contains("`bench/run --original PATH`"), "{text}");
        assert!(!text.contains("| ours / the original |"), "{text}");
    }
}
