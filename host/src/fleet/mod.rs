//! Fleet coordination: what spans nodes (how many faults at once, the fleet's budget and
//! gap, the fleet's switch) decided by a coordinator that already solves agreement. The
//! seam is [`Coordinator`] for a node of the fleet and [`FleetAdmin`] for an operator
//! outside it; etcd v3 is their first implementation (`etcd` and `etcd_admin`, through
//! the JSON gateway in `gateway`). A layer beside `probe`: it imports only `support` and
//! `domain`.
//!
//! A node holds a slot only while its lease lives, and fails closed: past
//! [`config::FleetConfig::fail_after`] without a renewal it is `cut_off` (admissions
//! refused) and the daemon reverts what it holds, before the lease can end.

pub mod admin;
mod admission;
pub mod config;
pub mod etcd;
mod etcd_admin;
mod gateway;
pub mod history;
mod lease;
pub mod peers;
pub mod rule;
mod shared;
pub mod tls;
mod watch;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::domain::injection::Admission;

/// What coordinates a fleet. Blocking calls, each within a deadline: the engine calls
/// them from its injection threads.
pub trait Coordinator: Send + Sync {
    /// Admits one fault of `fault` now, in one transaction (a free slot claimed with
    /// the node's lease, the fleet budget and gap checked and advanced), or says why
    /// not.
    fn admit(&self, fault: &str) -> Result<Admission, Refused>;
    /// Whether `admission` still holds now (a fresh read, just before its fault is
    /// applied): its slot carries it, under a live lease.
    fn confirm(&self, admission: &Admission) -> Result<(), Refused>;
    /// Gives back the slot of `admission` (in the background: a slot not given back
    /// frees when the lease ends).
    fn release(&self, admission: &Admission);
    /// The fleet as last seen: its switch, whether this node is cut off.
    fn state(&self) -> FleetState;
    /// Told of every change of [`Coordinator::state`].
    fn changes(&self) -> tokio::sync::watch::Receiver<FleetState>;
    /// Turns the fleet's switch on (`Some`) or off, for every node of the fleet.
    /// Blocking, within a deadline.
    fn set_switch(&self, switch: Option<Switch>) -> Result<(), String>;
    /// The fleet as its coordinator holds it now (`GET /api/fleet`). Blocking, within
    /// a deadline.
    fn view(&self) -> Result<admin::View, String>;
    /// Says what this node is doing now, for `status --fleet`: kept under
    /// `<prefix>/members/<node>`, tied to the node's lease (gone with it).
    fn announce(&self, member: Member);
    /// This node's name in the fleet (`--node`, else the host's name).
    fn node(&self) -> &str;
    /// Leaves the fleet, going to bed with nothing in effect: every slot of this node
    /// frees at once rather than when its lease would end. Blocking, within a deadline.
    fn close(&self);
}

/// What an operator asks of the fleet's coordinator without joining the fleet (no
/// lease, no slot): `pause --fleet` / `resume --fleet`, `status --fleet`, `history
/// --fleet` and `check-config --connect`. Blocking calls; an `Err` says the coordinator
/// could not be reached or could not answer.
pub trait FleetAdmin {
    /// Where the coordinator is, for messages (`etcd at http://127.0.0.1:2379`).
    fn place(&self) -> String;
    /// Turns the fleet's switch on (`Some`) or off, for every node of the fleet.
    fn set_switch(&self, switch: Option<Switch>) -> anyhow::Result<()>;
    /// The fleet as its coordinator holds it now.
    fn view(&self) -> anyhow::Result<admin::View>;
    /// The fleet's admissions kept in the coordinator (at least [`history::keep`]),
    /// oldest first.
    fn admissions(&self) -> anyhow::Result<Vec<history::Admitted>>;
}

/// The operator's side of the coordinator that `config` names. Nothing is reached
/// until it is asked something.
pub fn admin(config: &config::FleetConfig) -> Box<dyn FleetAdmin> {
    Box::new(etcd_admin::EtcdAdmin::new(config))
}

/// Why the fleet refused a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why, for people (`slots full (1 of 1 held: web-2)`).
    pub why: String,
    /// When an admission may fit again, if known.
    pub retry_after: Option<Duration>,
    /// Whether the coordinator could not be asked (503, rather than 429).
    pub unreachable: bool,
}

/// The fleet as a node last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetState {
    /// Why this node refuses every fault now (its lease could not be renewed).
    pub cut_off: Option<String>,
    /// The fleet's switch, while it is on.
    pub switch: Option<Switch>,
    /// The node's lease now (hex, as [`Admission::lease`]): a fault admitted under
    /// another no longer counts in the fleet, however quickly the lease changed.
    pub lease: Option<String>,
}

/// The fleet's switch, as stored in etcd under `<prefix>/switch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switch {
    /// Who set it (`user@host`).
    pub by: String,
    /// Why, as they said.
    #[serde(default)]
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
}

impl Switch {
    /// Checks a reason as it is given (`pause --fleet --reason`, `POST
    /// /api/pause?scope=fleet&reason=`): a sentence, as long as a fault's description
    /// at most.
    pub fn check_reason(reason: &str) -> Result<(), String> {
        let max = crate::domain::injection::MAX_DESC_BYTES;
        if reason.len() > max {
            return Err(format!(
                "the reason is {} bytes long, more than {max}: say why in a sentence",
                reason.len()
            ));
        }
        Ok(())
    }
}

/// As every node logs it and `status` shows it. Whoever can write the coordinator wrote
/// it: its controls are escaped (no forged line, no terminal escape) and its reason cut
/// to what the API takes.
impl std::fmt::Display for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::support::text::{clip, escape_controls};
        let (by, at) = (clip(&self.by, 256), clip(&self.at, 64));
        write!(
            f,
            "the fleet is paused by {} since {}",
            escape_controls(&by),
            escape_controls(&at)
        )?;
        if !self.reason.is_empty() {
            let reason = clip(&self.reason, crate::domain::injection::MAX_DESC_BYTES);
            write!(f, ": {}", escape_controls(&reason))?;
        }
        Ok(())
    }
}

/// A node of the fleet as it says itself (`<prefix>/members/<node>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's name.
    pub node: String,
    /// The daemon's version.
    pub version: String,
    /// Why it is paused, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Its faults in effect now.
    pub in_effect: usize,
}

#[cfg(test)]
mod tests {
    use super::Switch;

    /// Whoever can write the coordinator wrote the switch: each node shows it as one
    /// line, escaped, its reason cut to what the API takes.
    #[test]
    fn a_switch_is_shown_on_one_line_whoever_wrote_it() {
        let switch = Switch {
            by: "ops\n2026/12/08 forged".to_owned(),
            reason: format!("\u{1b}[2J{}", "r".repeat(2000)),
            at: "2026-12-08T00:00:00Z".to_owned(),
        };
        let shown = switch.to_string();
        assert!(
            shown.starts_with(
                "the fleet is paused by ops\\n2026/12/08 forged since 2026-12-08T00:00:00Z: \\u{1b}[2Jrrr"
            ),
            "{shown}"
        );
        assert!(shown.ends_with("… (980 more bytes)"), "{shown}");
        assert!(!shown.contains(['\n', '\u{1b}']));
        assert_eq!(Switch::check_reason(&"r".repeat(1024)), Ok(()));
        assert_eq!(
            Switch::check_reason(&"r".repeat(1025)),
            Err("the reason is 1025 bytes long, more than 1024: say why in a sentence".to_owned())
        );
    }
}
