//! The API at one process count: dry-run `POST /api/kill` saturated and at a moderate
//! pace, `GET /healthz` on the same daemon (the bare HTTP answer it is set beside), and,
//! when its binary is given, the original's dry-run `POST /api/kill` in the same run,
//! in rounds that take turns (who goes first alternates), so that noise on the machine
//! falls on both alike.

use std::{fs, path::Path, time::Duration};

use crate::{
    daemon::{Daemon, Usage},
    load::{self, LoadResult, Route},
    measure::{quantile, Summary},
    Args,
};

/// Rounds of the saturating loads at each process count.
const ROUNDS: usize = 5;

/// What was measured of the API at one process count.
#[derive(Debug, Clone, Default)]
pub struct Api {
    /// Dry-run `POST /api/kill`, saturated: answers a second, over the rounds.
    pub kill: Summary,
    /// Its p50 and p99 latency in ms, over all the rounds' requests.
    pub saturated: (f64, f64),
    /// `GET /healthz` on the same daemon, saturated: answers a second.
    pub health: Summary,
    /// `/api/kill`'s rate as a share of `/healthz`'s, round by round.
    pub kill_per_health: Summary,
    /// Moderate load: p50, p99 and max latency in ms.
    pub moderate: (f64, f64, f64),
    /// The original, when its binary was given.
    pub original: Option<Original>,
}

/// The original's dry-run `POST /api/kill`, measured in the same rounds.
#[derive(Debug, Clone)]
pub struct Original {
    /// Answers a second, over the rounds.
    pub kill: Summary,
    /// Its p50 and p99 latency in ms.
    pub latency: (f64, f64),
    /// Requests it answered over all the rounds.
    pub requests: usize,
    /// Ours / the original's rate, round by round.
    pub ratio: Summary,
    /// Its RSS after the rounds, KiB.
    pub rss_kib: u64,
}

/// The saturating loads' latencies, gathered over the rounds.
#[derive(Default)]
struct Gathered {
    rates: Vec<f64>,
    latencies_ms: Vec<f64>,
}

impl Gathered {
    fn add(&mut self, run: LoadResult) -> f64 {
        self.rates.push(run.throughput);
        self.latencies_ms.extend(run.latencies_ms);
        run.throughput
    }

    fn percentiles(&mut self) -> (f64, f64) {
        self.latencies_ms.sort_by(f64::total_cmp);
        (
            quantile(&self.latencies_ms, 0.5),
            quantile(&self.latencies_ms, 0.99),
        )
    }
}

/// Measures the API among the processes running now: our daemon (its state in `dir`)
/// and, with `--original`, the original's.
pub fn measure(args: &Args, binary: &Path, dir: &Path) -> anyhow::Result<Api> {
    let ours = Daemon::start(binary, dir, false)?;
    let original = match &args.original {
        Some(path) => Some(Daemon::start_original(path)?),
        None => None,
    };
    // Throughput is the noisiest figure (the load generator shares the machine): the
    // median of several rounds, the latencies of all of them together.
    let (mut kill, mut health, mut theirs) = (
        Gathered::default(),
        Gathered::default(),
        Gathered::default(),
    );
    let (mut per_health, mut ratios) = (Vec::new(), Vec::new());
    let within = Duration::from_secs_f64(args.original_seconds);
    for round in 0..args.runs.min(ROUNDS) {
        let mut ours_rate = None;
        let mut their_rate = None;
        for turn in 0..2 {
            if (round + turn) % 2 == 0 {
                let k = kill.add(load::saturate(ours.addr, args.connections, args.requests)?);
                let h = health.add(load::saturate_route(
                    ours.addr,
                    Route::Health,
                    args.connections,
                    args.requests,
                )?);
                per_health.push(k / h);
                ours_rate = Some(k);
            } else if let Some(original) = &original {
                let run =
                    load::saturate_within(original.addr, args.connections, args.requests, within)?;
                their_rate = Some(theirs.add(run));
            }
        }
        if let (Some(a), Some(b)) = (ours_rate, their_rate) {
            ratios.push(a / b);
        }
    }
    let moderate = load::paced(ours.addr, 2, args.moderate_rate, args.moderate_seconds)?;
    let original = match original {
        Some(daemon) => {
            let rss_kib = Usage::of(daemon.pid())?.rss_kib;
            Some(Original {
                kill: Summary::of(theirs.rates.iter().copied()),
                requests: theirs.latencies_ms.len(),
                latency: theirs.percentiles(),
                ratio: Summary::of(ratios),
                rss_kib,
            })
        }
        None => None,
    };
    drop(ours);
    fs::remove_dir_all(dir)?;
    let q = |q: f64| quantile(&moderate.latencies_ms, q);
    Ok(Api {
        kill: Summary::of(kill.rates.iter().copied()),
        saturated: kill.percentiles(),
        health: Summary::of(health.rates),
        kill_per_health: Summary::of(per_health),
        moderate: (q(0.5), q(0.99), q(1.0)),
        original,
    })
}
