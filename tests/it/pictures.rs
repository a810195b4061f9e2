//! Pictures instead of logs, through the real binary: `report --format html` as one
//! self-contained file, `plan --format svg|html` as week grids (one per node, side by
//! side), and `-o FILE` written whole or failing with the file named.

use std::{fs, path::PathBuf};

use crate::util::{command, monkey, TestDir};

fn golden(name: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/it/report")
        .join(name)
}

/// `report` on the golden journal, in UTC.
fn report(args: &[&str]) -> crate::util::Run {
    command()
        .env("TZ", "UTC")
        .args([
            "report",
            "--journal",
            golden("mixed.jsonl").to_str().unwrap(),
        ])
        .args(["--since", "2026-11-26T00:00:00Z"])
        .args(args)
        .output()
        .unwrap()
        .into()
}

/// What a page must not have to stay one file that works offline: nothing it would
/// fetch or run.
fn assert_self_contained(page: &str) {
    for forbidden in [
        "<script", "src=", "href=", "url(", "@import", "<link", "<iframe", "<object", "<img",
        "<image", "<use",
    ] {
        assert!(!page.contains(forbidden), "{forbidden} in the page");
    }
    // The only URLs: the SVG namespace (a name, never fetched) and what the journal
    // said, as text.
    for (at, _) in page.match_indices("://") {
        let before = &page[..at];
        assert!(
            before.ends_with("xmlns=\"http") || before.ends_with("GET http"),
            "a URL at {}",
            &page[at.saturating_sub(40)..(at + 40).min(page.len())]
        );
    }
}

#[test]
fn the_html_report_of_the_mixed_journal_is_one_self_contained_file() {
    let dir = TestDir::new("pictures-report");
    let file = dir.join("drill.html");
    let run = report(&["--format", "html", "-o", file.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "", "-o writes the file, not stdout");
    let page = fs::read_to_string(&file).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    assert!(page.trim_end().ends_with("</html>"));
    assert_self_contained(&page);
    assert!(page.contains("@media print"));
    // The title and period, the sums.
    for needle in [
        "<h1>Drill report</h1>",
        "6 faults from 2026-11-26 00:00:00 to ",
        "seed 7",
        "<li>Resilience<b>25%</b>",
        "<li>Faults<b>6</b>4 real, 1 dry run, 1 failed</li>",
        "<li>Detected / undetected<b>3 / 1</b>",
        "<li>Recovered / late / not recovered<b>2 / 1 / 1</b>",
        "<li>Time to detect<b>2m / 10m</b>median / p90 of 3 faults</li>",
        "<li>Time to recover<b>40s / 12m</b>median / p90 of 3 faults</li>",
        "<li>Refusals / halts<b>1 / 1</b>",
    ] {
        assert!(page.contains(needle), "{needle}");
    }
    // The timeline: one SVG, every verdict marked, the refusal and the halt.
    assert_eq!(
        page.matches("<svg xmlns=\"http://www.w3.org/2000/svg\"")
            .count(),
        1
    );
    assert!(page.contains("aria-label=\"Timeline of 6 faults from 2026-11-26 10:00 to 2026-11-26 17:00 (UTC): 1 coped, 1 recovered late, 1 not recovered, 1 undetected, 2 not judged; 1 refusal, 1 halt\""));
    for class in [
        "nm-coped",
        "nm-late",
        "nm-notrec",
        "nm-undet",
        "nm-unjudged",
    ] {
        assert!(page.contains(&format!("nm-m {class}")), "{class}");
    }
    assert!(page.contains(r#"class="nm-ref""#) && page.contains(r#"class="nm-halt""#));
    // The table: a row per fault, in the zone (UTC here).
    for row in [
        "<td class=\"nm-t\">2026-11-26 10:00:00</td><td>process-kill</td><td>api-server(PID:101)</td><td>timer</td><td>killed</td><td class=\"nm-n\">2m</td><td>alice</td><td class=\"nm-n\">40s</td><td><span class=\"nm-v nm-coped\">C</span>coped</td>",
        "<td>db(PID:103)</td><td>timer</td><td>paused</td><td class=\"nm-n\">45s</td><td>alertmanager:DbDown</td><td class=\"nm-n\">-</td><td><span class=\"nm-v nm-notrec\">N</span>not recovered</td>",
        "<td>cache(PID:104)</td><td>poller</td><td>killed</td><td class=\"nm-n\">10m</td><td>carol</td><td class=\"nm-n\">12m</td><td><span class=\"nm-v nm-late\">L</span>recovered late</td>",
        "<span class=\"nm-v nm-undet\">U</span>undetected",
        "<span class=\"nm-v nm-unjudged\">D</span>not judged: dry run",
        "<span class=\"nm-v nm-unjudged\">F</span>not judged: failed",
        "<td>prometheus error_rate</td><td>0.2 is above 0.05</td>",
    ] {
        assert!(page.contains(row), "{row}");
    }
    assert_eq!(page.matches("<tr><td class=\"nm-t\">").count(), 6 + 1 + 1);
    // Written whole: no temporary file left beside it; a second run replaces it.
    let again = report(&["--format", "html", "-o", file.to_str().unwrap()]);
    assert_eq!(again.code, Some(0));
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
}

/// `-o` writes every format, the same bytes stdout would have had; and a file that
/// cannot be written is said, by its name, with a failure.
#[test]
fn output_files_are_written_whole_or_the_failure_names_them() {
    let dir = TestDir::new("pictures-output");
    // Each format, to a file: the bytes stdout has.
    for (format, golden_file) in [("text", "mixed.txt"), ("md", "mixed.md"), ("json", "")] {
        let file = dir.join(format!("drill.{format}"));
        let run = report(&["--format", format, "--output", file.to_str().unwrap()]);
        assert_eq!((run.code, run.stdout.as_str()), (Some(0), ""), "{format}");
        let expected = match golden_file {
            "" => report(&["--format", format]).stdout,
            name => fs::read_to_string(golden(name)).unwrap(),
        };
        assert_eq!(fs::read_to_string(&file).unwrap(), expected, "{format}");
    }

    // Under a regular file: no directory there.
    let fails_naming = |run: crate::util::Run, file: &std::path::Path, why: &str| {
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert_eq!(
            run.stderr,
            format!("error: cannot write {}: {why}\n", file.display())
        );
    };
    let blocked = dir.join("drill.text/drill.html");
    fails_naming(
        report(&["--format", "html", "-o", blocked.to_str().unwrap()]),
        &blocked,
        "Not a directory (os error 20)",
    );
    let missing = dir.join("no/such/dir/plan.svg");
    let plan = ["plan", "--seed", "1", "--format", "svg", "-o"];
    fails_naming(
        monkey(&[&plan[..], &[missing.to_str().unwrap()]].concat()),
        &missing,
        "No such file or directory (os error 2)",
    );
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        3,
        "nothing else written"
    );
}

const PLAN: &[&str] = &[
    "plan",
    "--seed",
    "1",
    "--timezone",
    "Europe/Berlin",
    "--from",
    "2026-12-01T09:00:00+01:00",
    "--count",
    "7",
];

#[test]
fn the_plan_as_a_week_grid_is_deterministic_and_marks_every_fire() {
    let svg = monkey(&[PLAN, &["--format", "svg"]].concat());
    assert_eq!(svg.code, Some(0), "{}", svg.stderr);
    assert_eq!(
        svg.stdout,
        monkey(&[PLAN, &["--format", "svg"]].concat()).stdout
    );
    let svg = svg.stdout;
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 "));
    assert!(svg.ends_with("</svg>\n"));
    assert_self_contained(&svg);
    assert!(svg.contains("times in Europe/Berlin (wall clock)"));
    assert!(svg.contains("window: Mon thru Fri from 11:00 to 18:00"));
    // Seven dots, and the legend's.
    assert_eq!(svg.matches("<circle class=\"nm-fire\" cx").count(), 7 + 1);
    // Each of the text plan's times is a dot's tooltip, numbered in order.
    let text = monkey(PLAN).stdout;
    assert_eq!(text.lines().count(), 7);
    for (i, line) in text.lines().enumerate() {
        let at = line.split(' ').next().unwrap();
        assert!(svg.contains(&format!("#{}: ", i + 1)), "{line}");
        assert!(
            svg.contains(&format!(" {at}</title></circle>")),
            "{at} in {svg}"
        );
    }
    // The page: the same picture, every fire time listed under it.
    let html = monkey(&[PLAN, &["--format", "html"]].concat());
    assert_eq!(html.code, Some(0));
    assert_self_contained(&html.stdout);
    assert!(html.stdout.contains(svg.trim_end()));
    assert_eq!(html.stdout.matches("<tr><td class=\"nm-n\">").count(), 7);
}

#[test]
fn several_nodes_are_planned_side_by_side_each_from_its_own_stream() {
    let nodes = |format: &str| {
        monkey(
            &[
                PLAN,
                &["--node", "web-1", "--node", "web-2", "--format", format],
            ]
            .concat(),
        )
    };
    let text = nodes("text");
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 14);
    let of = |node: &str| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{node} ")).map(str::to_owned))
            .collect()
    };
    let (one, two) = (of("web-1"), of("web-2"));
    assert_eq!((one.len(), two.len()), (7, 7));
    assert_ne!(one, two, "each node draws its own fire times");
    // One node alone prints as today, without the prefix, and the same times.
    let alone = monkey(&[PLAN, &["--node", "web-1"]].concat()).stdout;
    assert_eq!(
        alone,
        one.iter().map(|l| format!("{l}\n")).collect::<String>()
    );

    let svg = nodes("svg").stdout;
    assert!(svg.contains("aria-label=\"Week grid of 14 fire times of process-kill, nodes web-1, web-2 in Europe/Berlin"));
    assert!(svg.contains(">web-1 · week of 2026-11-30 (W49)</text>"));
    assert!(svg.contains(">web-2 · week of 2026-11-30 (W49)</text>"));
    for (node, times) in [("web-1", &one), ("web-2", &two)] {
        for (i, line) in times.iter().enumerate() {
            let at = line.split(' ').next().unwrap();
            assert!(
                svg.contains(&format!("<title>{node} #{}: ", i + 1))
                    && svg.contains(&format!(" {at}</title>")),
                "{node} {at}"
            );
        }
    }
    // A node twice is a mistake, said.
    let twice = monkey(&[PLAN, &["--node", "web-1", "--node", "web-1"]].concat());
    assert_eq!(twice.code, Some(2));
    assert_eq!(twice.stderr, "error: --node web-1 is given twice\n");
}

/// A process that named itself with markup and a terminal escape is shown as text in the
/// page, never run; the node and seed the journal holds title it.
#[test]
fn a_hostile_process_name_is_shown_never_obeyed() {
    let dir = TestDir::new("pictures-hostile");
    let journal = dir.join("journal.jsonl");
    fs::write(
        &journal,
        concat!(
            r#"{"type":"intent","id":"1-1","at":"2026-11-26T10:00:00Z","fault":"process-kill","plugin":"process-kill","trigger":"http","desc":"x","dry_run":false,"master_seed":9,"stream":"fault/process-kill@node/web-1","stream_position":0,"seed":1}"#,
            "\n",
            r#"{"type":"outcome","id":"1-1","at":"2026-11-26T10:00:00.1Z","elapsed_ms":2,"result":"killed","action":"Kill","signal":"SIGKILL","summary":"s","process":{"name":"<script>alert(1)</script>\u001b[31m","pid":101,"ppid":1,"cmdline":"x","user":"root","uid":0,"start_time":201}}"#,
            "\n"
        ),
    )
    .unwrap();
    let file = dir.join("drill.html");
    let run = command()
        .env("TZ", "UTC")
        .args(["report", "--journal", journal.to_str().unwrap()])
        .args(["--since", "2026-11-26T00:00:00Z", "--format", "html", "-o"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0));
    let page = fs::read_to_string(&file).unwrap();
    assert_self_contained(&page);
    assert!(!page.contains('\x1b'));
    assert!(page.contains("<td>&lt;script&gt;alert(1)&lt;/script&gt;\\u{1b}[31m(PID:101)</td>"));
    assert!(page.contains(" · node web-1 · seed 9</p>"));
}
