//! The injection as a client sees it: the original's flat shape (`name`, `desc`, `pid`,
//! `ppid` first, as the 2017 API answered), then what this monkey adds. One rendering,
//! used by `POST /api/kill` and `POST /api/faults/{name}`, by `kill --json` and by JSON
//! notifiers, so all of them say the same thing in the same order.

use chrono::{DateTime, Local, Utc};
use nightmare_monkey_plugin_api::sdk::Outcome;
use serde::Serialize;

use crate::domain::injection::Injection;

/// The flat answer; field order is part of the interface.
#[derive(Debug, Serialize)]
pub struct Answer<'a> {
    /// The process's short name (empty for faults without a process).
    pub name: &'a str,
    /// Why the fault happened.
    pub desc: &'a str,
    /// The process's PID (0 without a process).
    pub pid: u32,
    /// Its parent's PID.
    pub ppid: u32,
    /// The journal id.
    pub id: &'a str,
    /// The configured fault that was injected.
    pub fault: &'a str,
    /// What asked for it (`timer`, `http`, `poller`, `cli`).
    pub trigger: &'a str,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The master seed of the run.
    pub master_seed: u64,
    /// The seed the fault was given, drawn from its stream.
    pub seed: u64,
    /// When the fault was asked for, in local time.
    #[serde(serialize_with = "crate::support::text::rfc3339")]
    pub at: DateTime<Local>,
    /// For a reversible fault now active: when it will be reverted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revert_due: Option<DateTime<Utc>>,
    /// What the plugin reported.
    #[serde(flatten)]
    pub outcome: &'a Outcome,
}

impl<'a> Answer<'a> {
    /// The answer for `injection`.
    pub fn of(injection: &'a Injection) -> Self {
        let intent = &injection.intent;
        let outcome = &injection.outcome;
        let (name, pid, ppid) = outcome
            .process
            .as_ref()
            .map_or(("", 0, 0), |p| (p.name.as_str(), p.pid, p.ppid));
        Self {
            name,
            desc: &intent.desc,
            pid,
            ppid,
            id: &intent.id,
            fault: &intent.fault,
            trigger: &intent.trigger,
            dry_run: intent.dry_run,
            master_seed: intent.master_seed,
            seed: intent.seed,
            at: intent.at.with_timezone(&Local),
            revert_due: injection.revert_due,
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use nightmare_monkey_plugin_api::sdk::ProcessInfo;

    use super::*;
    use crate::domain::injection::Intent;

    #[test]
    fn the_originals_fields_come_first_and_the_outcome_is_flat() {
        let at = Utc.with_ymd_and_hms(2017, 12, 14, 7, 32, 41).unwrap();
        let injection = Injection {
            intent: Intent {
                id: "1-1".into(),
                at,
                fault: "process-kill".into(),
                plugin: "process-kill".into(),
                trigger: "http".into(),
                requested_by: Some("127.0.0.1:5555".into()),
                desc: "I like kill!".into(),
                dry_run: true,
                master_seed: 7,
                stream: "fault/process-kill".into(),
                stream_position: 0,
                seed: 9,
                fleet: None,
            },
            outcome: Outcome {
                action: "Kill".into(),
                result: "dry-run".into(),
                process: Some(ProcessInfo {
                    name: "curl".into(),
                    pid: 30019,
                    ppid: 28674,
                    ..ProcessInfo::default()
                }),
                ..Outcome::default()
            },
            elapsed_ms: 1,
            done: at,
            revert_due: None,
        };
        let text = serde_json::to_string(&Answer::of(&injection)).unwrap();
        assert!(
            text.starts_with(r#"{"name":"curl","desc":"I like kill!","pid":30019,"ppid":28674,"id":"1-1","fault":"process-kill","trigger":"http","dry_run":true,"master_seed":7,"seed":9,"at":""#),
            "{text}"
        );
        assert!(
            !text.contains("revert_due"),
            "absent when nothing is active"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (
                &json["name"],
                &json["pid"],
                &json["ppid"],
                &json["action"],
                &json["result"]
            ),
            (
                &"curl".into(),
                &30019.into(),
                &28674.into(),
                &"Kill".into(),
                &"dry-run".into()
            )
        );
        let at_local: DateTime<Local> = serde_json::from_value(json["at"].clone()).unwrap();
        assert_eq!(at_local, at);
    }
}
