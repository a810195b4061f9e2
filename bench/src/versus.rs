//! Two builds of the daemon side by side (`--versus`): the API's rates, dry-run
//! `POST /api/kill` and `GET /healthz`, and its memory, idle and after the load, measured
//! in rounds that take turns (who goes first alternates), so that noise on the machine
//! falls on both alike. Printed as each figure's median and the ratio of this build's to
//! the other's.

use std::{path::Path, thread, time::Duration};

use anyhow::Context as _;

use crate::{
    daemon::Daemon,
    load::{self, Route},
    measure,
    procs::Crowd,
    Args,
};

/// A figure's name, and how it is read off a round.
type Figure = (&'static str, fn(&Round) -> f64);

/// One build's figures in one round.
#[derive(Debug, Default, Clone, Copy)]
struct Round {
    kill: f64,
    health: f64,
    rss_idle: f64,
    rss_after: f64,
}

/// Measures `binary` against `other` among `args.sizes[0]` processes, `args.runs` rounds.
pub fn versus(args: &Args, binary: &Path, other: &Path, scratch: &Path) -> anyhow::Result<()> {
    let size = args.sizes[0];
    Crowd::default().grow_to(size)?;
    let builds = [binary, other];
    let mut rounds: [Vec<Round>; 2] = Default::default();
    for run in 0..args.runs {
        for turn in 0..2 {
            let which = (run + turn) % 2;
            let round = measure(
                args,
                builds[which],
                &scratch.join(format!("v{run}-{which}")),
            )?;
            eprintln!(
                "  round {} {}: kill {:.0} req/s, healthz {:.0} req/s, RSS {:.0} -> {:.0} KiB",
                run + 1,
                if which == 0 { "this" } else { "other" },
                round.kill,
                round.health,
                round.rss_idle,
                round.rss_after
            );
            rounds[which].push(round);
        }
    }
    let median = |which: usize, f: fn(&Round) -> f64| {
        let mut v: Vec<f64> = rounds[which].iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        measure::quantile(&v, 0.5)
    };
    println!(
        "\n{} against {}, {size} processes, {} alternating rounds:\n",
        binary.display(),
        other.display(),
        args.runs
    );
    println!("| figure | this | other | this / other |\n|---|---|---|---|");
    let figures: [Figure; 5] = [
        ("dry-run POST /api/kill, req/s", |r| r.kill),
        ("GET /healthz, req/s", |r| r.health),
        ("/api/kill as a share of /healthz", |r| r.kill / r.health),
        ("RSS idle, KiB", |r| r.rss_idle),
        ("RSS after the load, KiB", |r| r.rss_after),
    ];
    for (name, f) in figures {
        let (this, that) = (median(0, f), median(1, f));
        println!("| {name} | {this:.2} | {that:.2} | {:.2}x |", this / that);
    }
    Ok(())
}

/// One daemon of `binary`: its idle memory, the two loads, its memory after them.
fn measure(args: &Args, binary: &Path, dir: &Path) -> anyhow::Result<Round> {
    let daemon = Daemon::start(binary, dir, false)?;
    thread::sleep(Duration::from_millis(300));
    let rss_idle = daemon.usage()?.rss_kib as f64;
    let kill = load::saturate_route(daemon.addr, Route::Kill, args.connections, args.requests)?;
    let health = load::saturate_route(daemon.addr, Route::Health, args.connections, args.requests)?;
    let rss_after = daemon.usage()?.rss_kib as f64;
    drop(daemon);
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    Ok(Round {
        kill: kill.throughput,
        health: health.throughput,
        rss_idle,
        rss_after,
    })
}
