//! Samples and what is made of them: the cost of one command (wall and CPU), of one call
//! in this process, and the median with its spread.

use std::{
    fmt,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

/// What one run cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    /// Elapsed time.
    pub wall: Duration,
    /// CPU time, user plus system.
    pub cpu: Duration,
}

/// CPU time (user plus system) of every child this process has reaped so far.
fn children_cpu() -> Duration {
    rusage_cpu(libc::RUSAGE_CHILDREN)
}

/// CPU time of the calling thread, to the nanosecond (getrusage counts in ticks).
pub fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of this whole process (every thread), to the nanosecond.
pub fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

#[allow(unsafe_code)]
fn cpu_clock(clock: libc::clockid_t) -> Duration {
    // SAFETY: clock_gettime fills the struct it is given and nothing else.
    let ts = unsafe {
        let mut ts = std::mem::zeroed::<libc::timespec>();
        libc::clock_gettime(clock, &mut ts);
        ts
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[allow(unsafe_code)]
fn rusage_cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage fills the struct it is given and nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(who, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs `command` to its end with its output thrown away (or kept, when `keep` is set)
/// and measures it. Children are reaped one at a time, so the growth of the reaped
/// children's CPU time is this command's. A failing command is an error: a benchmark of
/// an error message is worth nothing.
pub fn run_command(command: &mut Command, keep: bool) -> anyhow::Result<(Cost, Vec<u8>)> {
    let cpu_before = children_cpu();
    let start = Instant::now();
    command.stdin(Stdio::null()).stderr(Stdio::piped());
    command.stdout(if keep { Stdio::piped() } else { Stdio::null() });
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    let wall = start.elapsed();
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let cpu = children_cpu().saturating_sub(cpu_before);
    Ok((Cost { wall, cpu }, output.stdout))
}

/// Measures one call in this thread.
pub fn in_process<T>(f: impl FnOnce() -> T) -> (Cost, T) {
    let cpu_before = thread_cpu();
    let start = Instant::now();
    let value = f();
    let wall = start.elapsed();
    (
        Cost {
            wall,
            cpu: thread_cpu().saturating_sub(cpu_before),
        },
        value,
    )
}

/// The median of some samples with their interquartile range.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// The middle value.
    pub median: f64,
    /// The 25th percentile.
    pub p25: f64,
    /// The 75th percentile.
    pub p75: f64,
    /// The mean.
    pub mean: f64,
    /// How many samples.
    pub n: usize,
}

/// The `q` quantile (0..=1) of sorted values, interpolated linearly between neighbours.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let at = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let low = at.floor() as usize;
            let high = (low + 1).min(n - 1);
            sorted[low] + (sorted[high] - sorted[low]) * (at - low as f64)
        }
    }
}

impl Summary {
    /// Summarises `values` (any order).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut sorted: Vec<f64> = values.into_iter().collect();
        sorted.sort_by(f64::total_cmp);
        Self {
            median: quantile(&sorted, 0.5),
            p25: quantile(&sorted, 0.25),
            p75: quantile(&sorted, 0.75),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            n: sorted.len(),
        }
    }

    /// Summarises durations in milliseconds.
    pub fn of_ms(values: impl IntoIterator<Item = Duration>) -> Self {
        Self::of(values.into_iter().map(|d| d.as_secs_f64() * 1e3))
    }
}

/// Shows a number with as many decimals as its size deserves.
pub fn num(value: f64) -> String {
    let magnitude = value.abs();
    if value.is_nan() {
        "n/a".to_owned()
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// Ratios taken round by round: `9.45x (9.02–10.5)`, the median, then the quartiles.
pub fn times(ratios: &Summary) -> String {
    format!(
        "{}x ({}–{})",
        num(ratios.median),
        num(ratios.p25),
        num(ratios.p75)
    )
}

/// `a / b` as a multiple: `9.45x`.
pub fn ratio(a: f64, b: f64) -> String {
    format!("{}x", num(a / b))
}

impl fmt::Display for Summary {
    /// `4.12 (3.90–4.40)`: the median, then the interquartile range.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}–{})",
            num(self.median),
            num(self.p25),
            num(self.p75)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let s = Summary::of([4.0, 1.0, 3.0, 2.0, 5.0]);
        assert_eq!(
            (s.median, s.p25, s.p75, s.mean, s.n),
            (3.0, 2.0, 4.0, 3.0, 5)
        );
        let even = Summary::of([1.0, 2.0, 3.0, 4.0]);
        assert_eq!(even.median, 2.5);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
        assert_eq!(quantile(&[0.0, 10.0], 0.99), 9.9);
    }

    #[test]
    fn numbers_keep_three_significant_digits_or_so() {
        assert_eq!(num(1234.4), "1234");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(1.2345), "1.23");
        assert_eq!(num(0.012345), "0.012");
        assert_eq!(Summary::of([1.0, 2.0, 3.0]).to_string(), "2.00 (1.50–2.50)");
    }

    #[test]
    fn a_command_is_measured_and_a_failure_is_an_error() {
        let (cost, out) = run_command(Command::new("echo").arg("hi"), true).unwrap();
        assert_eq!(out, b"hi\n");
        assert!(cost.wall > Duration::ZERO);
        let err = run_command(&mut Command::new("false"), false).unwrap_err();
        assert!(err.to_string().contains("failed"), "{err}");
    }
}
