//! The harness's command line: what to measure and how long, and `--quick`'s smaller
//! values of what was not given explicitly.

use std::path::PathBuf;

use clap::{parser::ValueSource, ArgMatches, Parser};

/// Measures nightmare-monkey inside a fresh PID namespace and writes BENCHMARKS.md.
///
/// The harness re-executes itself as PID 1 of a new user+PID+mount+network namespace
/// (unshare), forks idle processes until /proc lists N, and measures at each N: the cost
/// of one dry-run pick (the real binary, and the engine in this process), the yardsticks
/// `ls -f /proc` and `ps -e -o pid,ppid,comm`, and dry-run `POST /api/kill` under load on
/// loopback, beside `GET /healthz` and, given its binary, the original's. At the smallest
/// N it also measures the idle daemon (RSS, CPU time, wake-ups) and the time from start
/// to a listening API. Nothing is ever executed for real.
#[derive(Debug, Clone, Parser)]
#[command(
    after_help = "Examples:\n  bench/run                      the full run (a few minutes), writes BENCHMARKS.md\n  bench/run --quick --out /tmp/b.md   a smoke run in well under a minute\n  bench/run --compare e1ac80a --quick   this tree's API against that revision's, ratios,\n                                        recorded in BENCHMARKS.md (or --out)\n  bench/run --original ~/nightmare-monkey   with the original's API measured in the same run\n  bench/run --fleet --quick   only the fleet's costs on etcd, recorded in BENCHMARKS.md\n  bench/run --proxy           only the fault proxy's and nft's costs, recorded in BENCHMARKS.md"
)]
pub struct Args {
    /// Process counts to measure at, ascending [--quick: 100,1000]
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000,10000")]
    pub sizes: Vec<usize>,

    /// Repetitions of each cost measurement (median and quartiles are reported)
    #[arg(long, default_value_t = 15)]
    pub runs: usize,

    /// Requests of each saturating load run
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,

    /// Connections of the saturating load
    #[arg(long, default_value_t = 4)]
    pub connections: usize,

    /// Requests a second of the moderate load, for its latency percentiles
    #[arg(long, default_value_t = 1000.0)]
    pub moderate_rate: f64,

    /// How long the moderate load lasts, in seconds
    #[arg(long, default_value_t = 5.0)]
    pub moderate_seconds: f64,

    /// Requests sent before the daemon's memory is read again, to see it grow or not
    #[arg(long, default_value_t = 100_000)]
    pub leak_requests: usize,

    /// Seconds the idle daemon is watched
    #[arg(long, default_value_t = 60)]
    pub idle_seconds: u64,

    /// A quick smoke run: sizes 100,1000, 5 runs, 5 idle seconds, 10k leak requests,
    /// 2 s of the original's load (options given explicitly are kept)
    #[arg(long)]
    pub quick: bool,

    /// The original Nightmare Monkey's binary (the 2017 Go daemon): its dry-run
    /// `POST /api/kill` is measured at each process count in the same rounds as ours,
    /// taking turns, and ours is reported as a multiple of it
    #[arg(long, value_name = "FILE")]
    pub original: Option<PathBuf>,

    /// The longest one round of load on the original lasts, in seconds (it answers about
    /// 15 requests a second among 5,000 processes)
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub original_seconds: f64,

    /// The nightmare-monkey binary [default: next to this one]
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,

    /// Only run the in-process engine pick this many times among the processes of
    /// --sizes' first value, and print its mean: a workload to profile, e.g. under
    /// `perf record -g` or `valgrind --tool=callgrind`
    #[arg(long, value_name = "N")]
    pub pick_loop: Option<usize>,

    /// Another build of the binary to set beside it, in the "Build profiles" table
    /// (bench/run gives the `release` build, the README's first command's)
    #[arg(long, value_name = "FILE")]
    pub compare: Option<PathBuf>,

    /// Only set the API of another build of the binary beside this one's: dry-run
    /// `POST /api/kill` and `GET /healthz` rates and memory, in rounds taking turns, each
    /// figure's ratio printed and written into --out's section "Against another
    /// revision" (`bench/run --compare REV` builds REV for it)
    #[arg(long, value_name = "FILE")]
    pub versus: Option<PathBuf>,

    /// What --versus's build is called in the report: bench/run --compare REV gives
    /// REV's short hash [default: its path]
    #[arg(long, value_name = "TEXT", requires = "versus")]
    pub versus_label: Option<String>,

    /// Faults in the generated journal the history costs are measured on (0: not
    /// measured)
    #[arg(long, value_name = "N", default_value_t = 250_000)]
    pub journal_faults: usize,

    /// Only measure the fleet's costs (issue 25): eight dry-run daemons on one etcd
    /// (Debian's etcd-server) in the harness's namespaces; written into --out's section
    /// "Fleet coordination", the rest left as it is. The full run measures them too
    #[arg(long)]
    pub fleet: bool,

    /// Only measure the network faults' costs (issue 26): the fault proxy without a
    /// toxic against a direct loopback copy, and applying and reverting a `net-loss`
    /// rule; written into --out's section "Network faults", the rest left as it is. The
    /// full run measures them too
    #[arg(long, conflicts_with = "fleet")]
    pub proxy: bool,

    /// Where the Markdown report goes (with --versus: the file whose comparison section
    /// is written, the rest left as it is)
    #[arg(long, value_name = "FILE", default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
}

impl Args {
    /// With `--quick`, the smoke run's values of every option not given explicitly.
    pub fn apply_quick(&mut self, matches: &ArgMatches) {
        if !self.quick {
            return;
        }
        let default = |id: &str| matches.value_source(id) != Some(ValueSource::CommandLine);
        if default("journal_faults") {
            self.journal_faults = 50_000;
        }
        if default("sizes") {
            self.sizes = vec![100, 1000];
        }
        if default("runs") {
            self.runs = 5;
        }
        if default("requests") {
            self.requests = 5_000;
        }
        if default("moderate_seconds") {
            self.moderate_seconds = 2.0;
        }
        if default("leak_requests") {
            self.leak_requests = 10_000;
        }
        if default("idle_seconds") {
            self.idle_seconds = 5;
        }
        if default("original_seconds") {
            self.original_seconds = 2.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, FromArgMatches as _};

    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        let matches = Args::command().try_get_matches_from(argv)?;
        let mut args = Args::from_arg_matches(&matches)?;
        args.apply_quick(&matches);
        Ok(args)
    }

    #[test]
    fn quick_keeps_what_was_given_explicitly() {
        let given = parse(&["nm-bench", "--quick", "--sizes", "100"]).unwrap();
        assert_eq!((given.sizes, given.runs), (vec![100], 5));
        assert_eq!(given.original_seconds, 2.0);
        let quick = parse(&["nm-bench", "--quick", "--original-seconds", "3"]).unwrap();
        assert_eq!(
            (quick.sizes, quick.original_seconds),
            (vec![100, 1000], 3.0)
        );
        let full = parse(&["nm-bench", "--sizes", "100"]).unwrap();
        assert_eq!((full.runs, full.requests), (15, 20_000));
    }

    #[test]
    fn a_label_needs_a_build_to_name() {
        assert!(parse(&["nm-bench", "--versus-label", "abc1234"]).is_err());
        let args = parse(&["nm-bench", "--versus", "x", "--versus-label", "abc1234"]).unwrap();
        assert_eq!(args.versus_label.as_deref(), Some("abc1234"));
    }
}
