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
    /// The same faults dry (the same config, no `--execute`, one client): p50/p99 in
    /// ms. A real fault is this, the floor, and its own few system calls.
    pub dry: (f64, f64),
}

impl Execute {
    /// What a real fault costs beyond the floor at p50, ms.
    pub fn beyond_floor(&self) -> f64 {
        self.latency.0 - self.floor.0
    }

    /// The slowest `fdatasync` (p50, ms) on which ours would stay within 1.5x of the
    /// floor, paying what it pays beyond it: floor + beyond <= 1.5 floor.
    pub fn floor_for_target(&self) -> f64 {
        2.0 * self.beyond_floor()
    }
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
    let dry = dry_run(binary, &dir.with_extension("dry"), within / 2)?;
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
        dry,
    })
}

/// The same faults dry, one client, for `within`: p50 and p99 in ms.
fn dry_run(binary: &Path, dir: &Path, within: Duration) -> anyhow::Result<(f64, f64)> {
    let daemon = Daemon::start_with(binary, dir, false, FAULT, &[])?;
    load::saturate_within(daemon.addr, 1, 50, within / 10)?;
    let run = load::saturate_within(daemon.addr, 1, 100_000, within)?;
    Ok((
        quantile(&run.latencies_ms, 0.5),
        quantile(&run.latencies_ms, 0.99),
    ))
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
         write + fdatasync of {} bytes: {:.0} a second, p50 {:.3} ms, p99 {:.3} ms | {:.2}x |\n\
         | the same faults dry (one client) | p50 {:.3} ms, p99 {:.3} ms | | |\n",
        e.rate,
        e.latency.0,
        e.latency.1,
        e.record_bytes,
        e.floor_rate,
        e.floor.0,
        e.floor.1,
        e.over_floor,
        e.dry.0,
        e.dry.1,
    )
}

/// What the table says, in a sentence: where a real fault's time goes beyond the floor,
/// and the disk on which it would be within 1.5x of it.
pub fn reading(e: &Execute) -> String {
    format!(
        "A real fault takes {:.3} ms beyond the floor at p50, of which a dry run of the same \
         fault through the API (the request, the hand-off, the pick, the journal's records, \
         the answer) is {:.3} ms; the rest is what only a real fault does (a pidfd opened \
         and the victim's start time checked again, the signal, the outcome appended on its \
         own after the intent's fsync) and waking from that fsync. Within 1.5x of the floor \
         holds on a disk whose write + `fdatasync` takes {:.3} ms or more.\n",
        e.beyond_floor(),
        e.dry.0,
        e.floor_for_target()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_the_target_needs_is_twice_what_a_fault_adds_to_it() {
        let e = Execute {
            faults: 10,
            rate: 4000.0,
            latency: (0.210, 0.9),
            record_bytes: 330,
            floor_rate: 13000.0,
            floor: (0.074, 0.16),
            over_floor: 0.210 / 0.074,
            dry: (0.086, 0.2),
        };
        assert!((e.beyond_floor() - 0.136).abs() < 1e-9);
        assert!((e.floor_for_target() - 0.272).abs() < 1e-9);
        // On that floor, the fault would be exactly 1.5x of it.
        let floor = e.floor_for_target();
        assert!(((floor + e.beyond_floor()) / floor - 1.5).abs() < 1e-9);
        let text = reading(&e);
        assert!(text.contains("0.136 ms beyond the floor"), "{text}");
        assert!(text.contains("is 0.086 ms"), "{text}");
        assert!(text.contains("takes 0.272 ms or more"), "{text}");
    }
}
