//! A command line that explains itself: help with examples, the version, completions,
//! the man page.

use super::repo_file;
use crate::util::monkey;

const SUBCOMMANDS: &[&str] = &[
    "plan",
    "history",
    "pause",
    "resume",
    "status",
    "sandbox",
    "check-config",
    "kill",
    "plugins check",
    "plugins list",
    "completions",
    "man",
];

#[test]
fn every_subcommand_explains_itself_with_examples() {
    for sub in SUBCOMMANDS {
        let mut args: Vec<&str> = sub.split(' ').collect();
        args.push("--help");
        let run = monkey(&args);
        assert_eq!(run.code, Some(0), "{sub}: {}", run.stderr);
        assert!(
            run.stdout.contains("Examples:"),
            "{sub} --help:\n{}",
            run.stdout
        );
    }
    let top = monkey(&["--help"]);
    assert!(top
        .stdout
        .contains("Exit codes: 0 success, 1 runtime failure"));
}

#[test]
fn version_names_the_revision() {
    let run = monkey(&["--version"]);
    assert_eq!(run.code, Some(0));
    let text = run.stdout.trim();
    // In a git checkout (CI's clone included) it is exactly the commit built.
    let repo = repo_file("");
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .current_dir(&repo)
        .output()
        .ok()
        .filter(|o| o.status.success() && repo.join(".git").exists());
    let expected = match head {
        Some(o) => format!("git {}", String::from_utf8_lossy(&o.stdout).trim()),
        None => "not built from a git checkout".to_owned(),
    };
    assert_eq!(
        text,
        format!(
            "nightmare-monkey {} ({expected})",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn completions_for_each_shell_and_a_clear_error_for_others() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = monkey(&["completions", shell]);
        assert_eq!(run.code, Some(0), "{shell}: {}", run.stderr);
        for word in ["nightmare-monkey", "check-config", "min-interval"] {
            assert!(run.stdout.contains(word), "{shell} lacks {word}");
        }
    }
    let run = monkey(&["completions", "tcsh"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("possible values: bash"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_man_page_in_doc_is_the_one_the_cli_generates() {
    let run = monkey(&["man"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../doc/nightmare-monkey.1"),
    )
    .unwrap();
    assert!(
        run.stdout == committed,
        "doc/nightmare-monkey.1 is stale: run `cargo run -- man > doc/nightmare-monkey.1`"
    );
    assert!(committed.contains(".SH SUBCOMMANDS") && committed.contains("check\\-config"));
}

/// A command asked for JSON answers its errors in JSON too, on stdout, with the exit
/// code: a script never has to parse a human's line.
#[test]
fn json_modes_print_their_errors_as_json() {
    let bad = monkey(&["kill", "--json", "--fault-config", "(signal: \"KILLL\")"]);
    assert_eq!(bad.code, Some(2));
    let answer: serde_json::Value = serde_json::from_str(&bad.stdout).unwrap();
    assert_eq!(answer["error"]["code"], 2);
    assert_eq!(
        answer["error"]["message"],
        "invalid --fault-config for process-kill: signal: unknown signal `KILLL`: expected a name like SIGKILL, TERM or a number like 9"
    );
    let missing = monkey(&[
        "history",
        "--journal",
        "/nonexistent/journal.jsonl",
        "--json",
    ]);
    assert_eq!(missing.code, Some(1));
    let answer: serde_json::Value = serde_json::from_str(&missing.stdout).unwrap();
    assert_eq!(
        answer["error"]["message"],
        "no journal at /nonexistent/journal.jsonl: nothing was journaled there (another path? --journal FILE, or --config FILE for the daemon's)"
    );
    // A usage error clap finds itself (an unknown flag, a bad value) too.
    for (args, message) in [
        (
            vec!["kill", "--json", "--bogus"],
            "unexpected argument '--bogus' found",
        ),
        (
            vec!["status", "--json", "--url"],
            "a value is required for '--url <URL>' but none was supplied",
        ),
    ] {
        let run = monkey(&args);
        assert_eq!(run.code, Some(2), "{args:?}");
        let answer: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", run.stdout));
        assert_eq!(answer["error"]["code"], 2);
        assert_eq!(answer["error"]["message"], message, "{args:?}");
        assert!(
            run.stderr.starts_with(&format!("error: {message}")),
            "{}",
            run.stderr
        );
    }
    // Without --json, stdout stays empty and the error is a line on stderr.
    let plain = monkey(&["history", "--journal", "/nonexistent/journal.jsonl"]);
    assert_eq!((plain.code, plain.stdout.as_str()), (Some(1), ""));
    assert!(plain
        .stderr
        .starts_with("error: no journal at /nonexistent/journal.jsonl: "));
}

/// A subcommand's help lists the flags that act there: `plan` takes a daemon's command
/// line as it is, but shows only what changes a plan.
#[test]
fn plan_help_shows_only_the_flags_that_change_a_plan() {
    let help = monkey(&["plan", "--help"]).stdout;
    for shown in ["--day", "--time", "--seed", "--config", "--from", "--count"] {
        assert!(help.contains(shown), "{shown}: {help}");
    }
    for hidden in [
        "--execute",
        "--listen",
        "--port",
        "--plugin-dir",
        "--log-format",
    ] {
        assert!(!help.contains(hidden), "{hidden}: {help}");
    }
    let copied = monkey(&[
        "plan",
        "--execute",
        "-p",
        "9",
        "--seed",
        "3",
        "--count",
        "1",
    ]);
    assert_eq!(copied.code, Some(0), "{}", copied.stderr);
    let sandbox = monkey(&["sandbox", "--help"]).stdout;
    assert!(!sandbox.contains("  --execute"));
    // It takes a free port and a state directory of its own: its help says so.
    assert!(!sandbox.contains("8080"), "{sandbox}");
    assert!(sandbox.contains("[default: a free one]"), "{sandbox}");
    assert!(
        sandbox.contains("~/.local/state/nightmare-monkey/sandbox]"),
        "{sandbox}"
    );
}

/// `plan --count` is bounded as every number is: no plan of nothing, and no million
/// lines ending in a claim that the schedule and the window do not meet.
#[test]
fn plan_count_is_one_to_ten_thousand() {
    let plan = |count: &str| {
        monkey(&[
            "plan",
            "--seed",
            "1",
            "-d",
            "*",
            "-t",
            "00:00-24:00",
            "--count",
            count,
        ])
    };
    for count in ["0", "10001", "100000000", "many"] {
        let run = plan(count);
        assert_eq!(run.code, Some(2), "{count}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{count}");
        let first = run.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!(
                "error: invalid value '{count}' for '--count <K>': expected "
            )) && first.contains("1 to 10000"),
            "{count}: {}",
            run.stderr
        );
    }
    let run = plan("10000");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 10000);
}

/// A `--url` that cannot be a daemon's address is a usage error (2) naming the flag, not
/// a daemon out of reach (1) with a URL parser's words in parentheses.
#[test]
fn a_url_that_is_no_address_is_a_usage_error() {
    for url in ["ht!tp://x", "ftp://127.0.0.1:8080", "http://"] {
        for command in ["status", "pause", "resume", "ack", "revert"] {
            let run = monkey(
                &[command, "--url", url, "--all"][..if command == "revert" { 4 } else { 3 }],
            );
            assert_eq!(run.code, Some(2), "{command} --url {url}: {}", run.stderr);
            assert_eq!(
                run.stderr,
                format!("error: --url: invalid URL `{url}`: expected the daemon's address, e.g. http://127.0.0.1:8080 or 127.0.0.1:8080\n"),
                "{command}"
            );
        }
    }
}

/// The one manual page names no page that does not ship, and has the sections a man
/// page reader looks for.
#[test]
fn the_man_page_has_files_configuration_api_and_exit_status() {
    let page = monkey(&["man"]).stdout;
    assert!(!page.contains("(1)"), "a page that does not exist is named");
    for section in [
        ".SH FILES",
        ".SH CONFIGURATION",
        ".SH API",
        ".SH \"EXIT STATUS\"",
    ] {
        assert!(page.contains(section), "{section} missing");
    }
    assert!(
        page.contains("nightmare\\-monkey plan\n"),
        "subcommands as typed"
    );
}
