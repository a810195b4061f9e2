//! The original Nightmare Monkey's log lines, byte for byte in format: Go's default `log`
//! prefix (`2017/12/14 16:32:41 `) and `(Dryrun) Kill: sshd(PID:23183 PPID:1) - by monkey`.

use chrono::{DateTime, Datelike, TimeZone, Timelike};

use crate::{
    domain::injection::{who, Injection},
    support::text::{clip_cmdline, escape_controls},
};

/// The original's timestamp prefix, without the trailing space.
pub fn timestamp<Tz: TimeZone>(at: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let mut text = String::with_capacity(STAMP);
    push_timestamp(&mut text, at);
    text
}

/// How long a timestamp is (`2017/12/14 16:32:41`) for years of four digits.
const STAMP: usize = 19;

/// Appends the original's timestamp prefix (without the trailing space) to `text`.
/// Digit by digit, not `format!`: this runs for every line logged, two a fault.
pub fn push_timestamp<Tz: TimeZone>(text: &mut String, at: &DateTime<Tz>) {
    let at = at.naive_local();
    let two = |text: &mut String, n: u32, after: char| {
        text.push(char::from(b'0' + (n / 10 % 10) as u8));
        text.push(char::from(b'0' + (n % 10) as u8));
        text.push(after);
    };
    match u32::try_from(at.year()) {
        Ok(year) if year < 10_000 => {
            for digit in [year / 1000, year / 100 % 10, year / 10 % 10, year % 10] {
                text.push(char::from(b'0' + digit as u8));
            }
        }
        _ => text.push_str(&format!("{:04}", at.year())),
    }
    text.push('/');
    two(text, at.month(), '/');
    two(text, at.day(), ' ');
    two(text, at.hour(), ':');
    two(text, at.minute(), ':');
    text.push(char::from(b'0' + (at.second() / 10 % 10) as u8));
    text.push(char::from(b'0' + (at.second() % 10) as u8));
}

/// The original's fault line (without the timestamp).
pub fn fault_line(injection: &Injection) -> String {
    let dry = if injection.intent.dry_run {
        "(Dryrun) "
    } else {
        ""
    };
    let outcome = &injection.outcome;
    let target = outcome
        .process
        .as_ref()
        .map_or_else(|| escape_controls(&outcome.summary).into_owned(), who);
    // Everything but the timestamp came from outside (a client's description, a
    // process's name, a plugin's words): none of it may start a line of its own.
    format!(
        "{dry}{}: {target} - {}",
        escape_controls(&outcome.action),
        escape_controls(&injection.intent.desc)
    )
}

/// The line after it: what happened, in the plugin's words, with who was hit.
pub fn result_line(injection: &Injection) -> String {
    let outcome = &injection.outcome;
    let (result, summary) = (
        escape_controls(&outcome.result),
        escape_controls(&outcome.summary),
    );
    match &outcome.process {
        // `{:?}` writes the command line quoted, its control characters escaped.
        Some(p) => format!(
            "{result}: {summary} [user {}, cmdline {:?}]",
            escape_controls(&p.user),
            clip_cmdline(&p.cmdline)
        ),
        None => format!("{result}: {summary}"),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};
    use nightmare_monkey_plugin_api::sdk::{Outcome, ProcessInfo};

    use super::*;
    use crate::domain::injection::Intent;

    #[test]
    fn the_timestamp_is_gos_log_prefix() {
        for (y, mo, d, h, mi, se) in [
            (2017, 12, 14, 16, 32, 41),
            (2026, 1, 2, 3, 4, 5),
            (999, 9, 9, 9, 9, 9),
            (12_345, 10, 31, 23, 59, 59),
        ] {
            let at = Utc.with_ymd_and_hms(y, mo, d, h, mi, se).unwrap();
            let expected = format!("{y:04}/{mo:02}/{d:02} {h:02}:{mi:02}:{se:02}");
            assert_eq!(timestamp(&at), expected);
            let mut text = "x ".to_owned();
            push_timestamp(&mut text, &at);
            assert_eq!(text, format!("x {expected}"));
        }
    }

    fn injection(dry_run: bool) -> Injection {
        Injection {
            intent: Intent {
                id: "1-1".into(),
                at: Utc::now(),
                fault: "process-kill".into(),
                plugin: "process-kill".into(),
                trigger: "cli".into(),
                requested_by: None,
                desc: "by monkey".into(),
                dry_run,
                master_seed: 1,
                stream: "fault/process-kill".into(),
                stream_position: 0,
                seed: 2,
                fleet: None,
            },
            elapsed_ms: 0,
            done: Utc::now(),
            revert_due: None,
            outcome: Outcome {
                action: "Kill".into(),
                result: "dry-run".into(),
                process: Some(ProcessInfo {
                    name: "sshd".into(),
                    pid: 23183,
                    ppid: 1,
                    cmdline: "/usr/sbin/sshd -D".into(),
                    user: "root".into(),
                    ..ProcessInfo::default()
                }),
                summary: "would send SIGKILL to sshd(PID:23183)".into(),
                ..Outcome::default()
            },
        }
    }

    #[test]
    fn nothing_from_outside_starts_a_line_and_command_lines_are_cut() {
        let mut forged = injection(true);
        forged.intent.desc = "x\n2026/11/26 12:00:00 Kill: sshd(PID:1 PPID:0) - forged".into();
        let process = forged.outcome.process.as_mut().unwrap();
        process.name = "ev\ril".into();
        process.cmdline = format!("evil {}", "A".repeat(5000));
        forged.outcome.summary = "would send\nSIGKILL".into();
        let fault = fault_line(&forged);
        let result = result_line(&forged);
        assert!(
            !fault.contains('\n') && !result.contains('\n'),
            "{fault}\n{result}"
        );
        assert_eq!(
            fault,
            r"(Dryrun) Kill: ev\ril(PID:23183 PPID:1) - x\n2026/11/26 12:00:00 Kill: sshd(PID:1 PPID:0) - forged"
        );
        assert!(result.starts_with(r"dry-run: would send\nSIGKILL [user root, cmdline "));
        assert!(
            result.len() < crate::support::text::CMDLINE_SHOWN + 120,
            "{}",
            result.len()
        );
        assert!(
            result.ends_with(&format!("{}… (4705 more bytes)\"]", "A".repeat(295))),
            "{result}"
        );
    }

    #[test]
    fn lines_match_the_original_format() {
        let at = Utc.with_ymd_and_hms(2017, 12, 14, 16, 32, 41).unwrap();
        let line = format!("{} {}", timestamp(&at), fault_line(&injection(true)));
        assert_eq!(
            line,
            "2017/12/14 16:32:41 (Dryrun) Kill: sshd(PID:23183 PPID:1) - by monkey"
        );
        assert_eq!(
            fault_line(&injection(false)),
            "Kill: sshd(PID:23183 PPID:1) - by monkey"
        );
        assert_eq!(
            result_line(&injection(true)),
            r#"dry-run: would send SIGKILL to sshd(PID:23183) [user root, cmdline "/usr/sbin/sshd -D"]"#
        );
    }
}
