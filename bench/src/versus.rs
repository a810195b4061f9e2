//! Two builds of the daemon side by side (`--versus`): the API's rates, dry-run
//! `POST /api/kill` and `GET /healthz`, and its memory, idle and after the load, measured
//! in rounds that take turns (who goes first alternates), so that noise on the machine
//! falls on both alike. Printed as each figure's median and the ratio of this build's to
//! the other's, and recorded in the report (BENCHMARKS.md or `--out`) as a section of its
//! own, which the next comparison replaces and the full run keeps.

use std::{env, fmt::Write as _, fs, io, path::Path, thread, time::Duration};

use anyhow::Context as _;

use crate::{
    daemon::Daemon,
    instructions,
    load::{self, Route},
    measure::{self, num},
    procs::Crowd,
    report, Args,
};

/// The heading of the section a comparison writes.
pub const HEADING: &str = "## Against another revision";

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
    let this = report::git_revision();
    let that = match &args.versus_label {
        Some(label) => label.clone(),
        None => other.display().to_string(),
    };
    println!(
        "\n{} against {}, {size} processes, {} alternating rounds:\n",
        binary.display(),
        other.display(),
        args.runs
    );
    let mut table = format!(
        "| figure | this: {this} | other: {that} | this / other | round by round |\n\
         |---|---|---|---|---|\n"
    );
    let figures: [Figure; 5] = [
        ("dry-run POST /api/kill, req/s", |r| r.kill),
        ("GET /healthz, req/s", |r| r.health),
        ("/api/kill as a share of /healthz", |r| r.kill / r.health),
        ("RSS idle, KiB", |r| r.rss_idle),
        ("RSS after the load, KiB", |r| r.rss_after),
    ];
    for (name, f) in figures {
        let (this, that) = (median(0, f), median(1, f));
        // The same build against itself spreads as far as the machine's noise does.
        let paired = rounds[0].iter().zip(&rounds[1]).map(|(a, b)| f(a) / f(b));
        let _ = writeln!(
            table,
            "| {name} | {} | {} | {:.2}x | {} |",
            num(this),
            num(that),
            this / that,
            measure::times(&measure::Summary::of(paired))
        );
    }
    // The work itself, which the machine's noise does not move (see instructions.rs).
    let counted = [binary, other]
        .into_iter()
        .enumerate()
        .map(|(i, build)| instructions::per_fault(build, &scratch.join(format!("ir{i}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    match counted[..] {
        [Some(this), Some(that)] => {
            let _ = writeln!(
                table,
                "| user-space instructions a dry-run fault (callgrind) | {} | {} | {:.2}x | one run each |",
                num(this),
                num(that),
                this / that
            );
            eprintln!("  instructions a dry-run fault: this {this:.0}, other {that:.0}");
        }
        _ => table.push_str(
            "
(Instructions a fault not counted: valgrind is not installed; Debian: apt-get install valgrind.)
",
        ),
    }
    // Memory follows the code's layout (see layout.rs): say whether each build's holds.
    for (label, build) in [("this", binary), ("other", other)] {
        if let Some(c) = crate::layout::coverage(build) {
            let _ = writeln!(table, "\nLayout of {label}: {c}.");
        }
    }
    println!("{table}");
    // bench/run says how it was called; run directly, the harness's own arguments.
    let command = env::var("NM_BENCH_COMMAND").unwrap_or_else(|_| {
        let args: Vec<String> = env::args().skip(1).collect();
        format!("target/dist/nm-bench {}", args.join(" "))
    });
    let section = format!(
        "{HEADING}\n\n\
         The last `bench/run --compare REV`: this tree's `dist` build set beside REV's, \
         dry-run `POST /api/kill` and `GET /healthz` saturated ({} requests over {} \
         connections each) and the daemon's memory, in rounds that take turns (who goes \
         first alternates). Each figure is the median over the rounds; the last column is \
         the ratio taken in each round (the median, the quartiles in brackets), whose \
         spread is the noise to read a ratio against. Each comparison replaces this \
         section; the full run keeps it.\n\n\
         - Command: `{}`\n- Date: {}\n- This tree: {this} (`{}`)\n- Against: {that} (`{}`)\n\
         - Among {size} processes, {} rounds\n\n{table}",
        args.requests,
        args.connections,
        command.trim(),
        chrono::Local::now().format("%Y-%m-%d %H:%M %Z"),
        binary.display(),
        other.display(),
        args.runs,
    );
    record(&args.out, &section)?;
    println!("recorded in {}", args.out.display());
    Ok(())
}

/// Writes `section` into the report at `out`, in place of the one there or at its end;
/// the rest of the file stays as it is. A missing file is made with only a title.
pub fn record(out: &Path, section: &str) -> anyhow::Result<()> {
    let old = match fs::read_to_string(out) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => "# Benchmarks\n".to_owned(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", out.display())),
    };
    fs::write(out, splice(&old, section)).with_context(|| format!("cannot write {}", out.display()))
}

/// Where the section under `heading` is in `doc`: from its heading to the next heading
/// of the same level, or the end.
fn span(doc: &str, heading: &str) -> Option<(usize, usize)> {
    let start = if doc.starts_with(heading) {
        0
    } else {
        doc.find(&format!("\n{heading}"))? + 1
    };
    let after = start + heading.len();
    if !doc[after..].starts_with('\n') && after != doc.len() {
        return None; // a longer heading that only begins the same way
    }
    let end = doc[after..]
        .find("\n## ")
        .map_or(doc.len(), |at| after + at + 1);
    Some((start, end))
}

/// The comparison's section recorded in `doc`, if any.
pub fn recorded(doc: &str) -> Option<&str> {
    recorded_under(doc, HEADING)
}

/// The section under `heading` recorded in `doc`, if any.
pub fn recorded_under<'a>(doc: &'a str, heading: &str) -> Option<&'a str> {
    span(doc, heading).map(|(start, end)| &doc[start..end])
}

/// `doc` with `section` in place of the section under the same heading (its first
/// line), or after its end.
pub fn splice(doc: &str, section: &str) -> String {
    let heading = section.lines().next().unwrap_or(HEADING);
    let section = format!("{}\n", section.trim_end());
    match span(doc, heading) {
        Some((start, end)) => {
            let rest = &doc[end..];
            let gap = if rest.is_empty() { "" } else { "\n" };
            format!("{}{section}{gap}{rest}", &doc[..start])
        }
        None => format!("{}\n\n{section}", doc.trim_end()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECTION: &str = "## Against another revision\n\n| figure | a | b |\n";

    #[test]
    fn a_comparison_is_appended_then_replaced_and_the_rest_stays() {
        let doc = "# Benchmarks\n\n## The API\n\ntext\n";
        let once = splice(doc, SECTION);
        assert_eq!(once, format!("{}\n{SECTION}", doc));
        let newer = "## Against another revision\n\nnewer\n";
        assert_eq!(splice(&once, newer), format!("{}\n{newer}", doc));
        let middle = format!("# B\n\n{SECTION}\n## Targets\n\nt\n");
        assert_eq!(
            splice(&middle, newer),
            format!("# B\n\n{newer}\n## Targets\n\nt\n")
        );
        assert_eq!(recorded(&middle), Some(format!("{SECTION}\n").as_str()));
    }

    #[test]
    fn only_the_exact_heading_is_the_comparison() {
        let doc = "# B\n\n## Against another revision, by hand\n\nkeep\n";
        assert_eq!(recorded(doc), None);
        assert!(splice(doc, SECTION).contains("by hand\n\nkeep\n\n## Against"));
        assert_eq!(recorded("# B\n"), None);
        assert_eq!(recorded(SECTION), Some(SECTION));
    }
}
