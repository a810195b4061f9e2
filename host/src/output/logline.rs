//! The original Nightmare Monkey's log lines, byte for byte in format: Go's default `log`
//! prefix (`2017/12/14 16:32:41 `) and `(Dryrun) Kill: sshd(PID:23183 PPID:1) - by monkey`.

use chrono::{DateTime, TimeZone};

use crate::domain::injection::{who, Injection};

/// The original's timestamp prefix, without the trailing space.
pub fn timestamp<Tz: TimeZone>(at: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    at.format("%Y/%m/%d %H:%M:%S").to_string()
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
        .map_or_else(|| outcome.summary.clone(), who);
    format!(
        "{dry}{}: {target} - {}",
        outcome.action, injection.intent.desc
    )
}

/// The line after it: what happened, in the plugin's words, with who was hit.
pub fn result_line(injection: &Injection) -> String {
    let outcome = &injection.outcome;
    match &outcome.process {
        Some(p) => format!(
            "{}: {} [user {}, cmdline {:?}]",
            outcome.result, outcome.summary, p.user, p.cmdline
        ),
        None => format!("{}: {}", outcome.result, outcome.summary),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};
    use nightmare_monkey_plugin_api::sdk::{Outcome, ProcessInfo};

    use super::*;
    use crate::domain::injection::Intent;

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
