//! The targets of issues 7 and 27, one line each, against the numbers just measured:
//! met, missed, or not measured (and why).

use std::fmt::Write as _;

use crate::{
    measure::{num, ratio, times},
    AtSize, Footprint,
};

/// The original's dry-run API throughput on the reference machine (issue 7).
const ORIGINAL_RPS: f64 = 600.0;

fn status(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

/// The targets of issues 7 and 27, one line each, against the measured numbers.
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
                at.api.kill,
                ratio(at.api.kill.median, ORIGINAL_RPS)
            ),
            Some(at.api.kill.median >= 20.0 * ORIGINAL_RPS),
        );
        line(
            "API p99 latency under 5 ms at moderate load",
            format!("p99 {} ms", num(at.api.moderate.1)),
            Some(at.api.moderate.1 < 5.0),
        );
        line(
            &format!(
                "dry-run `POST /api/kill` at {} processes ≥ 0.35x `GET /healthz` on the same daemon",
                at.processes
            ),
            format!(
                "{} req/s vs {} req/s: {}, round by round",
                at.api.kill,
                at.api.health,
                times(&at.api.kill_per_health)
            ),
            Some(at.api.kill_per_health.median >= 0.35),
        );
    }
    against_original(sizes, &mut line);
    let f = footprint;
    line(
        "idle RSS ≤ 6 MB",
        format!("{} KiB ({} KiB private)", f.rss_start, f.anon_start),
        Some(f.rss_start <= 6 * 1024),
    );
    line(
        "RSS ≤ 7 MB after 10,000 requests",
        format!("{} KiB after {} requests", f.rss_after, f.requests),
        (f.requests >= 10_000).then_some(f.rss_after <= 7 * 1024),
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
    journal_and_worker(footprint, &mut line);
    line(
        "real (`--execute`) faults within 1.5x of the disk's write + fdatasync floor",
        f.execute.as_ref().map_or_else(
            || "not measured".into(),
            |e| {
                format!(
                    "p50 {:.3} ms vs {:.3} ms: {:.2}x ({:.0} vs {:.0} a second); a dry run \
                     alone {:.3} ms: holds where the floor is {:.3} ms or more",
                    e.latency.0,
                    e.floor.0,
                    e.over_floor,
                    e.rate,
                    e.floor_rate,
                    e.dry.0,
                    e.floor_for_target()
                )
            },
        ),
        f.execute.as_ref().map(|e| e.over_floor <= 1.5),
    );
    out
}

/// The targets against the original measured in the same run (issue 27): ours at least
/// 25 times its rate at 100 processes and 1,000 times at 5,000.
fn against_original(sizes: &[AtSize], line: &mut impl FnMut(&str, String, Option<bool>)) {
    let targets = [
        (sizes.first().filter(|a| a.processes < 1000), 100, 25.0),
        (sizes.iter().find(|a| a.processes >= 5000), 5000, 1000.0),
    ];
    for (at, processes, factor) in targets {
        let target = |n: usize| {
            format!(
                "dry-run `POST /api/kill` at {n} processes ≥ {factor}x the original's, same run"
            )
        };
        match at {
            Some(at) => match &at.api.original {
                Some(o) => line(
                    &target(at.processes),
                    format!(
                        "{} req/s vs {} req/s: {}, round by round",
                        at.api.kill,
                        o.kill,
                        times(&o.ratio)
                    ),
                    Some(o.ratio.median >= factor),
                ),
                None => line(
                    &target(at.processes),
                    "the original not given (`--original PATH`)".into(),
                    None,
                ),
            },
            None => line(&target(processes), "size not run".into(), None),
        }
    }
}

/// The targets of a big journal (start, history) and of a plugin in its worker.
fn journal_and_worker(f: &Footprint, line: &mut impl FnMut(&str, String, Option<bool>)) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::Original, measure::Summary};

    fn at(processes: usize, ratio: Option<f64>) -> AtSize {
        let mut at = AtSize {
            processes,
            ..AtSize::default()
        };
        at.api.kill = Summary::of([9000.0]);
        at.api.original = ratio.map(|r| Original {
            kill: Summary::of([9000.0 / r]),
            latency: (1.0, 2.0),
            requests: 10,
            ratio: Summary::of([r]),
            rss_kib: 9000,
        });
        at
    }

    fn lines(sizes: &[AtSize]) -> Vec<String> {
        let mut out = Vec::new();
        against_original(sizes, &mut |target, measured, met| {
            out.push(format!("{target} | {measured} | {met:?}"));
        });
        out
    }

    #[test]
    fn the_original_s_targets_are_met_missed_or_say_what_is_missing() {
        let measured = lines(&[at(101, Some(30.0)), at(5002, Some(900.0))]);
        assert!(measured[0].starts_with("dry-run `POST /api/kill` at 101 processes ≥ 25x"));
        assert!(measured[0].ends_with("30.0x (30.0–30.0), round by round | Some(true)"));
        assert!(measured[1].contains("at 5002 processes ≥ 1000x"));
        assert!(measured[1].ends_with("| Some(false)"), "{measured:?}");
        let without = lines(&[at(101, None)]);
        assert!(without[0].ends_with("the original not given (`--original PATH`) | None"));
        assert!(without[1].contains("at 5000 processes") && without[1].contains("size not run"));
    }
}
