//! Real faults: what a fault costs when `--execute` is given, beside the floor of the
//! disk its journal is on. A real fault's intent is on disk (written and fsynced) before
//! anything happens, so a fault can be no faster than one write and `fdatasync` of its
//! record; the floor is exactly that, in a loop, in the same directory.
//!
//! The victims are the harness's own idle children, in the PID namespace it made, and
//! the signal is `SIGCONT`, which a running process ignores: every fault is real (the
//! signal is sent, by pidfd, after the intent is on disk) and none harms anything.

use std::{
    fs,
    io::Write as _,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::{daemon::Daemon, load, measure::quantile};

/// What was measured.
#[derive(Debug, Clone)]
pub struct Execute {
    /// Real faults made, one client, back to back.
    pub faults: usize,
    /// Faults a second.
    pub rate: f64,
    /// Each fault's time from the client's side, ms: p50, p99.
    pub latency: (f64, f64),
    /// The bytes of one intent record (what the floor writes).
    pub record_bytes: usize,
    /// The floor: write + `fdatasync` of `record_bytes`, a second, and p50/p99 in ms.
    pub floor_rate: f64,
    pub floor: (f64, f64),
    /// Ours against the floor, p50 / p50.
    pub over_floor: f64,
}

/// The config: process-kill sending `SIGCONT`, to the harness's idle children only.
const FAULT: &str = r#"
    faults: {"process-kill": (config: (signal: "CONT", grace_ms: 0, include_names: ["^nm-idle-"]))},"#;

/// Runs real faults for `seconds` against a daemon whose journal is in `dir`, then the
/// floor for as many writes.
pub fn measure(binary: &Path, dir: &Path, seconds: f64) -> anyhow::Result<Execute> {
    // Never outside the PID namespace the harness made (where it is PID 1): the
    // victims must be its own children.
    if std::process::id() != 1 {
        bail!("real faults are measured only inside the harness's own PID namespace");
    }
    let daemon = Daemon::start_with(binary, dir, false, FAULT, &["--execute"])?;
    let within = Duration::from_secs_f64(seconds);
    // A warm-up, then the run.
    load::saturate_within(daemon.addr, 1, 50, within / 10)?;
    // Bounded by time; the count only bounds it too (a real fault takes an fsync).
    let run = load::saturate_within(daemon.addr, 1, 100_000, within)?;
    drop(daemon);
    let journal = fs::read_to_string(dir.join("journal.jsonl"))
        .with_context(|| format!("cannot read {}/journal.jsonl", dir.display()))?;
    let intents: Vec<usize> = journal
        .lines()
        .filter(|l| l.contains(r#""type":"intent""#) && l.contains(r#""dry_run":false"#))
        .map(|l| l.len() + 1)
        .collect();
    if intents.is_empty() || !journal.contains(r#""result":"survived""#) {
        bail!(
            "the daemon made no real fault (its journal: {})",
            dir.join("journal.jsonl").display()
        );
    }
    let record_bytes = intents.iter().sum::<usize>() / intents.len();
    let (floor_rate, floor) = floor(dir, record_bytes, run.latencies_ms.len())?;
    let latency = (
        quantile(&run.latencies_ms, 0.5),
        quantile(&run.latencies_ms, 0.99),
    );
    Ok(Execute {
        faults: run.latencies_ms.len(),
        rate: run.throughput,
        latency,
        record_bytes,
        floor_rate,
        floor: (quantile(&floor, 0.5), quantile(&floor, 0.99)),
        over_floor: latency.0 / quantile(&floor, 0.5),
    })
}

/// `n` appends of `bytes` to a file in `dir`, each followed by `fdatasync`: the rate,
/// and the times in ms.
fn floor(dir: &Path, bytes: usize, n: usize) -> anyhow::Result<(f64, Vec<f64>)> {
    let path = dir.join("floor.jsonl");
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let line = [b"x".repeat(bytes.saturating_sub(1)), b"\n".to_vec()].concat();
    let mut times = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n.max(1) {
        let one = Instant::now();
        file.write_all(&line)?;
        file.sync_data()?;
        times.push(one.elapsed().as_secs_f64() * 1e3);
    }
    let rate = times.len() as f64 / start.elapsed().as_secs_f64();
    let _ = fs::remove_file(&path);
    times.sort_by(f64::total_cmp);
    Ok((rate, times))
}

/// The line of the report.
pub fn row(e: &Execute) -> String {
    format!(
        "| real faults (`--execute`, one client) | {:.0} a second, p50 {:.3} ms, p99 {:.3} ms | \
         write + fdatasync of {} bytes: {:.0} a second, p50 {:.3} ms, p99 {:.3} ms | {:.2}x |\n",
        e.rate,
        e.latency.0,
        e.latency.1,
        e.record_bytes,
        e.floor_rate,
        e.floor.0,
        e.floor.1,
        e.over_floor
    )
}
