//! The view of the fleet that `status --fleet`, `check-config --connect` and `GET
//! /api/fleet` show, in no coordinator's terms but [`Reached`]: each coordinator reads it
//! in its own way (etcd: `etcd_admin`).

use super::{Member, Switch};
use serde::Serialize;

/// The fleet as its coordinator holds it now: `status --fleet`, `check-config
/// --connect` (as lines) and `GET /api/fleet` (as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// The coordinator as it was reached, in its own terms (its fields come first in
    /// the JSON: `etcd`, `revision`).
    #[serde(flatten)]
    pub reached: Reached,
    /// Slots in all.
    pub max_concurrent: u32,
    /// The slots held, and by whom.
    pub slots: Vec<HeldSlot>,
    /// The nodes, as each last said of itself.
    pub nodes: Vec<Member>,
    /// The fleet budget, if there is one or a gap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetUsed>,
    /// The fleet's switch, while it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch: Option<Switch>,
}

/// The coordinator as it was reached: one variant per coordinator.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Reached {
    /// etcd: the cluster's members (name, client URLs) and the revision read at.
    Etcd {
        etcd: Vec<(String, Vec<String>)>,
        revision: i64,
    },
}

impl Reached {
    /// The first line of the view, for people.
    fn line(&self) -> String {
        match self {
            Reached::Etcd { etcd, revision } => {
                let members: Vec<String> = etcd
                    .iter()
                    .map(|(name, urls)| format!("{name} ({})", urls.join(" ")))
                    .collect();
                format!(
                    "etcd: {} member(s) listed at revision {revision}: {}",
                    members.len(),
                    members.join(", ")
                )
            }
        }
    }
}

/// A slot held.
#[derive(Debug, Clone, Serialize)]
pub struct HeldSlot {
    pub slot: String,
    pub node: String,
    pub fault: String,
    pub since: String,
}

/// The fleet budget used.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetUsed {
    /// Admissions counted against it.
    pub used: usize,
    /// `max` per `per_s` seconds, if there is a budget (else only a gap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_s: Option<u64>,
    /// Seconds until the next admission fits (0: now).
    pub next_fits_in_s: u64,
}

impl View {
    /// The view as lines, for people.
    pub fn lines(&self) -> Vec<String> {
        let slots: Vec<String> = self
            .slots
            .iter()
            .map(|s| {
                format!(
                    "slot {}: {} ({}, since {})",
                    s.slot, s.node, s.fault, s.since
                )
            })
            .collect();
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|m| {
                format!(
                    "{} ({}, {} in effect, version {})",
                    m.node,
                    m.paused
                        .as_ref()
                        .map_or_else(|| "playing".to_owned(), |why| format!("paused: {why}")),
                    m.in_effect,
                    m.version
                )
            })
            .collect();
        let mut lines = vec![
            self.reached.line(),
            format!(
                "slots: {} of {} held{}{}",
                slots.len(),
                self.max_concurrent,
                if slots.is_empty() { "" } else { ": " },
                slots.join("; ")
            ),
            format!("nodes: {}: {}", nodes.len(), nodes.join("; ")),
        ];
        if let Some(b) = &self.budget {
            let used = match (b.max, b.per_s) {
                (Some(max), Some(per)) => format!(
                    "{} of {max} per {} used",
                    b.used,
                    humantime::format_duration(std::time::Duration::from_secs(per))
                ),
                _ => "no budget".to_owned(),
            };
            lines.push(match b.next_fits_in_s {
                0 => format!("fleet budget: {used}; the next admission fits now"),
                s => format!("fleet budget: {used}; the next admission fits in {s} s"),
            });
        }
        lines.push(match &self.switch {
            Some(switch) => format!("switch: {switch}"),
            None => "switch: off (the fleet plays)".to_owned(),
        });
        // Node names, faults and times are as each node (or whoever can write the
        // coordinator) wrote them: one line each, with no terminal escape.
        lines
            .into_iter()
            .map(|line| crate::support::text::escape_controls(&line).into_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coordinator's own part stays flat and first in the JSON (`GET /api/fleet`,
    /// the dashboard reads `etcd` and `revision`), and first in the lines.
    #[test]
    fn the_coordinators_part_is_flat_and_first() {
        let view = View {
            reached: Reached::Etcd {
                etcd: vec![("m1".to_owned(), vec!["http://127.0.0.1:2379".to_owned()])],
                revision: 7,
            },
            max_concurrent: 2,
            slots: vec![],
            nodes: vec![],
            budget: None,
            switch: None,
        };
        assert_eq!(
            serde_json::to_string(&view).unwrap(),
            r#"{"etcd":[["m1",["http://127.0.0.1:2379"]]],"revision":7,"max_concurrent":2,"slots":[],"nodes":[]}"#
        );
        assert_eq!(
            view.lines(),
            [
                "etcd: 1 member(s) listed at revision 7: m1 (http://127.0.0.1:2379)",
                "slots: 0 of 2 held",
                "nodes: 0: ",
                "switch: off (the fleet plays)",
            ]
        );
    }
}
