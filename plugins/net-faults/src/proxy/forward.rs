//! One chunk of a connection through the toxics of its direction.
//!
//! A toxic never outlives its revert: every wait here (a latency, a bandwidth's pace, a
//! slicer's pause, a slow close) also wakes at the proxy's change notification and looks
//! at the toxics again, so what is left of a chunk goes through untouched as soon as the
//! toxic that held it is off. While a bandwidth or a slicer is on, `pump` reads at most
//! one piece at a time (`read_limit`): the sender feels the slow link, and the proxy
//! never holds much more than it is sending.

use std::time::{Duration, Instant};

use nightmare_monkey_plugin_api::sdk::Rng;
use tokio::{io::AsyncWriteExt, net::tcp::WriteHalf, sync::watch, time::sleep_until};

use super::{toxic::Toxic, Active, Proxy};

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Both ways closed, or an error.
    Done,
    /// Closed by a toxic (timeout, limit_data, down).
    Close,
    /// Reset by a toxic (reset_peer): RST to both ends.
    Reset,
}

/// The largest chunk read at once.
pub(super) const CHUNK: usize = 64 * 1024;

/// Waits until `until`, or until the toxics change: whether the time came.
async fn wait(changes: &mut watch::Receiver<u64>, until: Instant) -> bool {
    tokio::select! {
        biased;
        changed = changes.changed() => {
            if changed.is_err() {
                // The proxy lives as long as its connections: never, but a plain wait then.
                sleep_until(until.into()).await;
                return true;
            }
            false
        }
        () = sleep_until(until.into()) => true,
    }
}

/// The toxics of one direction in effect now, as one plan for the next piece.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Plan {
    /// A `timeout`: nothing gets through.
    pub hold: bool,
    /// The sum of the latencies (drawn per chunk).
    pub latency: Vec<(u64, u64)>,
    /// The slowest bandwidth, KB a second.
    pub rate: Option<u64>,
    /// A slicer: average size, variation, pause in microseconds.
    pub slicer: Option<(u64, u64, u64)>,
}

impl Plan {
    pub fn of(toxics: &[Active], to_upstream: bool) -> Self {
        let mut plan = Plan::default();
        for active in mine(toxics, to_upstream) {
            match active.toxic {
                Toxic::Timeout { .. } => plan.hold = true,
                Toxic::Latency {
                    latency_ms,
                    jitter_ms,
                } => plan.latency.push((latency_ms, jitter_ms)),
                Toxic::Bandwidth { rate_kb } => {
                    plan.rate = Some(plan.rate.map_or(rate_kb, |r| r.min(rate_kb)));
                }
                Toxic::Slicer {
                    average_size,
                    size_variation,
                    delay_us,
                } => plan.slicer = Some((average_size, size_variation, delay_us)),
                _ => {}
            }
        }
        plan
    }

    /// The most bytes `pump` reads at once under this plan: one piece while a bandwidth
    /// or a slicer is on, a whole chunk otherwise.
    pub fn read_limit(&self) -> usize {
        let slice = self
            .slicer
            .map(|(average, variation, _)| (average + variation) as usize);
        let paced = self.rate.map(rate_piece);
        match (slice, paced) {
            (Some(s), Some(p)) => s.min(p),
            (Some(s), None) => s,
            (None, Some(p)) => p,
            (None, None) => CHUNK,
        }
        .clamp(1, CHUNK)
    }
}

/// A tenth of a second's worth of bytes at `kb` KB a second.
fn rate_piece(kb: u64) -> usize {
    (kb.saturating_mul(1024) / 10).clamp(1, CHUNK as u64) as usize
}

fn mine(toxics: &[Active], to_upstream: bool) -> impl Iterator<Item = &Active> {
    toxics
        .iter()
        .filter(move |a| a.direction.is_some_and(|d| d.covers(to_upstream)))
}

/// What one direction of a connection keeps for its toxics.
pub(super) struct Toxicity {
    rng: Option<Rng>,
    seed: u64,
    /// Bytes passed under each `limit_data`, by toxic id.
    passed: Vec<(String, u64)>,
}

impl Toxicity {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: None,
            seed,
            passed: Vec::new(),
        }
    }

    fn draw(&mut self) -> u64 {
        let seed = self.seed;
        self.rng
            .get_or_insert_with(|| Rng::from_seed(seed))
            .next_u64()
    }

    /// Holds the end of the stream while a `slow_close` is on, for its delay from now.
    pub async fn slow_close(&mut self, proxy: &Proxy, changes: &mut watch::Receiver<u64>) {
        let from = Instant::now();
        loop {
            changes.borrow_and_update();
            let delay = proxy
                .toxics()
                .iter()
                .filter_map(|a| match a.toxic {
                    Toxic::SlowClose { delay_ms } => Some(delay_ms),
                    _ => None,
                })
                .max();
            let Some(ms) = delay else { return };
            if wait(changes, from + Duration::from_millis(ms)).await {
                return;
            }
        }
    }

    /// How many more bytes the `limit_data` toxics let through (`None`: no limit).
    fn limit_left(&mut self, toxics: &[Active], to_upstream: bool) -> Option<u64> {
        let mut left: Option<u64> = None;
        for active in mine(toxics, to_upstream) {
            if let Toxic::LimitData { bytes } = active.toxic {
                let passed = self
                    .passed
                    .iter()
                    .find(|(id, _)| *id == active.id)
                    .map_or(0, |p| p.1);
                let this = bytes.saturating_sub(passed);
                left = Some(left.map_or(this, |l| l.min(this)));
            }
        }
        left
    }

    /// Counts `n` bytes passed under each `limit_data` on.
    fn count(&mut self, toxics: &[Active], to_upstream: bool, n: u64) {
        for active in mine(toxics, to_upstream) {
            if matches!(active.toxic, Toxic::LimitData { .. }) {
                match self.passed.iter_mut().find(|(id, _)| *id == active.id) {
                    Some((_, passed)) => *passed += n,
                    None => self.passed.push((active.id.clone(), n)),
                }
            }
        }
    }

    /// One chunk through the toxics of its direction, looked at again at every change:
    /// dropped while a `timeout` is on, delayed by the latencies (once), cut in pieces
    /// and paced by a bandwidth or a slicer, cut short by a `limit_data` (which then
    /// closes the connection).
    pub async fn forward(
        &mut self,
        proxy: &Proxy,
        to_upstream: bool,
        changes: &mut watch::Receiver<u64>,
        mut data: &[u8],
        arrived: Instant,
        to: &mut WriteHalf<'_>,
    ) -> Result<(), End> {
        let mut delayed = false;
        loop {
            changes.borrow_and_update();
            let toxics = proxy.toxics();
            let plan = Plan::of(&toxics, to_upstream);
            if plan.hold {
                return Ok(());
            }
            if !delayed {
                let delay: Duration = plan
                    .latency
                    .iter()
                    .map(|&(ms, jitter)| Toxic::delay(ms, jitter, self.draw()))
                    .sum();
                if !delay.is_zero() && !wait(changes, arrived + delay).await {
                    continue;
                }
                delayed = true;
            }
            let limit = self.limit_left(&toxics, to_upstream);
            if limit == Some(0) {
                return Err(End::Close);
            }
            if data.is_empty() {
                return Ok(());
            }
            let piece = match (plan.slicer, plan.rate) {
                (Some((average, variation, _)), _) => Toxic::slice(average, variation, self.draw()),
                (None, Some(kb)) => rate_piece(kb),
                (None, None) => data.len(),
            };
            let piece = limit
                .map_or(piece, |l| piece.min(l as usize))
                .min(data.len());
            let (now, rest) = data.split_at(piece);
            to.write_all(now).await.map_err(|_| End::Done)?;
            data = rest;
            self.count(&toxics, to_upstream, now.len() as u64);
            if limit == Some(now.len() as u64) {
                return Err(End::Close);
            }
            let written = Instant::now();
            if let Some(kb) = plan.rate {
                if !wait(changes, written + Toxic::pace(now.len(), kb)).await {
                    continue;
                }
            }
            // The pause before the next piece, whether of this chunk or of the next.
            if let Some((_, _, us)) = plan.slicer.filter(|s| s.2 > 0) {
                if !wait(changes, written + Duration::from_micros(us)).await {
                    continue;
                }
            }
        }
    }
}
