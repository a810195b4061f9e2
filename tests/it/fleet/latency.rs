//! What an admission costs: `POST /api/kill` (dry run) on eight daemons, one at a time
//! and all at once (each asking again as soon as it is answered), in a fleet on one
//! etcd and alone. A measurement, run on demand:
//! `cargo test -p nightmare-monkey --test it fleet::latency -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use super::{config, etcd::Etcd, kill};
use crate::util::{http, Daemon, Sleeper, TestDir};

const DAEMONS: usize = 8;
const ASKS: usize = 150;

fn ask(port: u16) -> (Duration, bool) {
    let asked = Instant::now();
    let answer = kill(port);
    assert!(
        answer.status == 200 || answer.body.contains("\"fleet: "),
        "{}",
        answer.body
    );
    (asked.elapsed(), answer.status != 200)
}

/// The daemons' admission histograms summed: (upper bound, admissions up to it).
fn admissions(ports: &[u16]) -> Vec<(String, u64)> {
    let mut sum: Vec<(String, u64)> = Vec::new();
    for &port in ports {
        let metrics = http(port, "GET", "/metrics", &[], b"").body;
        let buckets = metrics.lines().filter_map(|l| {
            let rest = l.strip_prefix("nightmare_monkey_fleet_admission_seconds_bucket{le=\"")?;
            let (le, count) = rest.split_once("\"} ")?;
            Some((le.to_owned(), count.parse::<u64>().ok()?))
        });
        for (i, (le, count)) in buckets.enumerate() {
            match sum.get_mut(i) {
                Some(bucket) => bucket.1 += count,
                None => sum.push((le, count)),
            }
        }
    }
    sum
}

/// The bucket of quantile `q` of the admissions between two readings.
fn bucket_of(before: &[(String, u64)], after: &[(String, u64)], q: f64) -> String {
    let counts: Vec<(String, u64)> = after
        .iter()
        .enumerate()
        .map(|(i, (le, n))| (le.clone(), n - before.get(i).map_or(0, |b| b.1)))
        .collect();
    let total = counts.last().map_or(0, |b| b.1);
    let wanted = (total as f64 * q).ceil() as u64;
    counts
        .into_iter()
        .find(|(_, n)| *n >= wanted)
        .map_or_else(|| "?".to_owned(), |(le, _)| format!("<= {le} s"))
}

/// Every answer's time from the daemons of `cfgs`: asked one after the other, then all
/// at once; and the admissions' quantiles as the daemons timed them, if in a fleet.
fn measure(cfgs: &[String]) -> (Vec<Duration>, Vec<Duration>) {
    let mut daemons: Vec<Daemon> = cfgs
        .iter()
        .enumerate()
        .map(|(i, cfg)| Daemon::start(&["--config", cfg, "--node", &format!("n{i}")]))
        .collect();
    let ports: Vec<u16> = daemons.iter_mut().map(Daemon::port).collect();
    let start = admissions(&ports);
    let one_by_one = (0..ASKS * DAEMONS)
        .map(|i| ask(ports[i % DAEMONS]))
        .collect();
    let middle = admissions(&ports);
    let at_once: Vec<(Duration, bool)> = std::thread::scope(|s| {
        let asking: Vec<_> = ports
            .iter()
            .map(|&port| s.spawn(move || (0..ASKS).map(|_| ask(port)).collect::<Vec<_>>()))
            .collect();
        asking.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    let end = admissions(&ports);
    if end.last().is_some_and(|b| b.1 > 0) {
        let phases = [
            ("one at a time", &start, &middle),
            ("eight at once", &middle, &end),
        ];
        for (what, before, after) in phases {
            eprintln!(
                "{what}, admissions as the daemons timed them: p50 {}, p99 {}",
                bucket_of(before, after, 0.5),
                bucket_of(before, after, 0.99)
            );
        }
    }
    (sorted(one_by_one), sorted(at_once))
}

fn sorted(answers: Vec<(Duration, bool)>) -> Vec<Duration> {
    let lost = answers.iter().filter(|(_, lost)| *lost).count();
    if lost > 0 {
        eprintln!("{lost} of {} refused by the fleet", answers.len());
    }
    let mut all: Vec<Duration> = answers.into_iter().map(|(took, _)| took).collect();
    all.sort();
    all
}

/// Prints the p50 and p99 of `fleet`, of `alone`, and their difference.
fn compare(what: &str, fleet: &[Duration], alone: &[Duration]) {
    let at = |all: &[Duration], q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    let (p50, p99) = (at(fleet, 0.5), at(fleet, 0.99));
    let (a50, a99) = (at(alone, 0.5), at(alone, 0.99));
    eprintln!(
        "{what}: in a fleet p50 {p50:?} p99 {p99:?}; alone p50 {a50:?} p99 {a99:?}; the admission's share p50 {:?} p99 {:?}",
        p50.saturating_sub(a50),
        p99.saturating_sub(a99)
    );
}

#[test]
#[ignore = "a measurement, run on demand"]
fn what_an_admission_costs_with_eight_daemons_on_one_etcd() {
    let etcd = Etcd::start("latency");
    let _sleeper = Sleeper::start();
    let dirs: Vec<TestDir> = (0..DAEMONS)
        .map(|i| TestDir::new(&format!("fleet-latency-{i}")))
        .collect();
    let fleet: Vec<String> = dirs
        .iter()
        .map(|dir| config(dir, &etcd, "/nm/latency", "max_concurrent: 16"))
        .collect();
    let (fleet_one, fleet_all) = measure(&fleet);
    // The same daemons in no fleet.
    let alone: Vec<String> = fleet
        .iter()
        .map(|cfg| {
            let text = std::fs::read_to_string(cfg).unwrap();
            let plain = format!("{})\n", text.split("    fleet: (").next().unwrap());
            let file = format!("{cfg}.alone.ron");
            std::fs::write(&file, plain).unwrap();
            file
        })
        .collect();
    let (alone_one, alone_all) = measure(&alone);
    compare("one at a time", &fleet_one, &alone_one);
    compare("eight at once", &fleet_all, &alone_all);
}
