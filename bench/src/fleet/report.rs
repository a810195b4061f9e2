//! The fleet's section of BENCHMARKS.md.

use super::{p, Figures, HEADING, NODES, TTL_S};
use crate::measure::num;

/// One row of the section's table.
fn row(figure: &str, values: &[f64], target: &str) -> String {
    format!(
        "| {figure} | {} | {} | {} | {} | {target} |",
        num(p(values, 0.5)),
        num(p(values, 0.99)),
        num(p(values, 1.0)),
        values.len()
    )
}

/// Whether `value` is at most `target`, for people.
fn met(value: f64, target: f64) -> &'static str {
    if value <= target {
        "met"
    } else {
        "missed"
    }
}

/// The section of BENCHMARKS.md.
pub fn markdown(f: &Figures, revision: &str, command: &str) -> String {
    let added = (
        p(&f.serial, 0.5) - p(&f.serial_alone, 0.5),
        p(&f.serial, 0.99) - p(&f.serial_alone, 0.99),
    );
    let crowded = (
        p(&f.in_fleet, 0.5) - p(&f.alone, 0.5),
        p(&f.in_fleet, 0.99) - p(&f.alone, 0.99),
    );
    let mut s = format!(
        "{HEADING}\n\n{NODES} dry-run daemons on one etcd member (its data on tmpfs: the figures are the monkey's and etcd's, not a disk's fsync), firing dry-run `POST /api/kill` one request at a time (the nodes in turn), then all eight at once (each node one request after another); etcd, the daemons and the harness in the harness's namespaces (loopback only); a lease TTL of {TTL_S} s. Measured at {revision} with `{command}`, on {}. Times in ms; the p99 of the switch's flips and of etcd's losses, a few samples each, is close to their maximum.\n\n| figure | p50 | p99 | max | n | target |\n| --- | ---: | ---: | ---: | ---: | --- |\n",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    let lines = [
        row(
            "dry-run `POST /api/kill` one at a time, in the fleet (admitted by etcd)",
            &f.serial,
            "",
        ),
        row("the same, without `fleet:`", &f.serial_alone, ""),
        row(
            "dry-run `POST /api/kill`, the 8 nodes at once, in the fleet",
            &f.in_fleet,
            "",
        ),
        row("the same, without `fleet:`", &f.alone, ""),
        row(
            "`pause --fleet` → every daemon's status says paused",
            &f.pause,
            "p99 ≤ 1000 ms",
        ),
        row(
            "`resume --fleet` → every daemon's status says playing",
            &f.resume,
            "",
        ),
        row(
            "etcd stopped → every node refuses a fault",
            &f.loss_refusing,
            "",
        ),
        row(
            "etcd stopped → every node cut off (reverting what it holds)",
            &f.loss_cut_off,
            &format!("< TTL ({} ms)", TTL_S * 1000),
        ),
    ];
    for line in lines {
        s += &line;
        s.push('\n');
    }
    s += &format!(
        "\nWhat the admission adds to a fault: {} ms at p50, {} ms at p99 one at a time; {} ms and {} ms with the 8 nodes at once ({} refused of {}{}).{} Double admissions: **{}** of {} admissions, each checked against etcd's history (at its revision its slot is held by its node; just before, the slot was free).\n\nTargets (issue 25): admission p99 ≤ 5 ms (what it adds, one at a time): {} ({} ms); the switch's propagation p99 ≤ 1 s: {} ({} ms); 0 double admissions: {}.\n",
        num(added.0),
        num(added.1),
        num(crowded.0),
        num(crowded.1),
        f.refused.0,
        f.in_fleet.len(),
        if f.refused.1.is_empty() { String::new() } else { format!(", the first: `{}`", f.refused.1.replace('`', "'")) },
        f.timed.map_or_else(String::new, |(mean, p50, p99)| format!(
            " As the daemons time it (`nightmare_monkey_fleet_admission_seconds`, one at a time): {} ms on average, p50 at most {} ms, p99 at most {} ms (bucket bounds).",
            num(mean), num(p50), num(p99)
        )),
        f.double,
        f.admissions,
        met(added.1, 5.0),
        num(added.1),
        met(p(&f.pause, 0.99), 1000.0),
        num(p(&f.pause, 0.99)),
        if f.double == 0 { "met" } else { "missed" },
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_starts_with_its_heading_and_says_the_targets() {
        let figures = Figures {
            in_fleet: vec![3.0, 4.0],
            alone: vec![1.0, 1.0],
            serial: vec![2.0, 3.0],
            serial_alone: vec![1.0, 1.5],
            pause: vec![20.0, 1500.0],
            resume: vec![20.0],
            loss_refusing: vec![10.0],
            loss_cut_off: vec![5000.0],
            admissions: 4,
            ..Figures::default()
        };
        let section = markdown(&figures, "abc1234", "bench/run --fleet");
        assert_eq!(section.lines().next(), Some(HEADING));
        assert!(
            section.contains("Double admissions: **0** of 4"),
            "{section}"
        );
        assert!(section.contains("admission p99 ≤ 5 ms (what it adds, one at a time): met"));
        assert!(
            section.contains("propagation p99 ≤ 1 s: missed"),
            "{section}"
        );
        let doc = crate::versus::splice("# Benchmarks\n\n## The API\n\nx\n", &section);
        assert_eq!(
            crate::versus::recorded_under(&doc, HEADING),
            Some(section.as_str())
        );
    }
}
