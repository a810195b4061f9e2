//! What the faults made of a qdisc of our own (`net-bandwidth`'s tbf, `net-delay`'s
//! netem) share: the handle that makes a root qdisc ours, `tc` and what it says (a
//! kernel without netem among it), adding the qdisc and removing it only while it is
//! ours, and the same three phases around each fault's own tc arguments. Prepare pins
//! the namespace and writes the command; a dry run says it; apply runs it.

use std::{process::Command, time::Duration};

use nightmare_monkey_plugin_api::sdk::{
    self, child::stop_signals_unblocked, process::Scope, results, ErrorKind, Outcome, PluginError,
    Request,
};
use serde::{Deserialize, Serialize};

use crate::{
    netns::{self, Target},
    nft::program,
};

pub(crate) const HANDLE: &str = "4e4d:";

/// What the revert needs: the interface (in its namespace) and the kind of our qdisc
/// there (`tbf` here, `netem` for `net-delay`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Limited {
    pub interface: String,
    /// The `tc` arguments that add the qdisc (prepared only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tc: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<Target>,
    #[serde(default = "tbf")]
    pub kind: String,
}

fn tbf() -> String {
    "tbf".to_owned()
}

/// One qdisc fault as its phases see it.
pub(crate) struct Phases<'a> {
    /// The fault's name (a refusal names it).
    pub fault: &'static str,
    /// The outcome's action: `Throttle`, `Delay`.
    pub action: &'static str,
    /// What the summary says it does when prepared, in a dry run, and applied:
    /// `["will limit", "would limit", "limiting"]`.
    pub doing: [&'static str; 3],
    /// The interface, the qdisc's kind (what tc lists), the scope, the duration.
    pub interface: &'a str,
    pub kind: String,
    pub scope: Option<&'a Scope>,
    pub duration: Duration,
    /// The fault's summary, from what it is doing and where.
    pub summary: &'a dyn Fn(&str, Option<&Target>) -> String,
}

impl Phases<'_> {
    /// The whole injection: prepared, then applied, or said as a dry run.
    pub fn inject(&self, request: &Request, args: Vec<String>) -> Result<Outcome, PluginError> {
        let prepared = self.prepare(args)?;
        if !request.dry_run {
            let state = prepared.revert.as_ref().ok_or_else(|| {
                PluginError::new(ErrorKind::Failed, "the prepared state is missing")
            })?;
            return self.apply(state);
        }
        let command = prepared.details["tc"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let [will, would, _] = self.doing;
        Ok(Outcome {
            result: results::DRY_RUN.to_owned(),
            summary: format!(
                "{} with: {command}",
                prepared.summary.replacen(will, would, 1)
            ),
            revert: None,
            revert_after_ms: None,
            ..prepared
        })
    }

    /// Pins the namespace and writes the command `args`; changes nothing.
    pub fn prepare(&self, args: Vec<String>) -> Result<Outcome, PluginError> {
        let netns = match self.scope {
            Some(scope) => Some(netns::resolve(scope)?),
            None => None,
        };
        Ok(Outcome {
            action: self.action.to_owned(),
            result: "prepared".to_owned(),
            summary: (self.summary)(self.doing[0], netns.as_ref()),
            details: serde_json::json!({ "tc": format!("tc {}", args.join(" ")), "netns": netns }),
            revert: Some(serde_json::json!(Limited {
                interface: self.interface.to_owned(),
                tc: Some(args),
                netns,
                kind: self.kind.clone(),
            })),
            revert_after_ms: Some(self.duration.as_millis() as u64),
            ..Outcome::default()
        })
    }

    /// Adds the qdisc `prepared` holds (in its namespace).
    pub fn apply(&self, prepared: &serde_json::Value) -> Result<Outcome, PluginError> {
        let state: Limited = sdk::read_state(prepared)?;
        let args = add_qdisc(&state, self.fault)?;
        Ok(Outcome {
            action: self.action.to_owned(),
            result: results::INJECTED.to_owned(),
            summary: (self.summary)(self.doing[2], state.netns.as_ref()),
            details: serde_json::json!({ "tc": format!("tc {}", args.join(" ")), "netns": state.netns }),
            revert: Some(serde_json::json!(Limited { tc: None, ..state })),
            revert_after_ms: Some(self.duration.as_millis() as u64),
            ..Outcome::default()
        })
    }
}

/// An interface name as the kernel allows it (at most 15 bytes, no `/`, no space).
pub(crate) fn is_interface(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

/// Runs `tc` with `args`; its output, or its first line of error.
fn tc(args: &[&str]) -> Result<String, PluginError> {
    // Run from the daemon: the stop signals it blocks must reach tc.
    let out = stop_signals_unblocked(&mut Command::new(program("tc")))
        .args(args)
        .output()
        .map_err(|e| {
            PluginError::new(
                ErrorKind::Failed,
                format!("cannot run tc: {e} (install iproute2: net-bandwidth needs it)"),
            )
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let (kind, first) = crate::nft::failure(&out.stderr, "Cannot find device");
    if let Some(refused) = unknown_qdisc(args, &first) {
        return Err(refused);
    }
    if kind == ErrorKind::Denied {
        return Err(PluginError::new(
            kind,
            format!("tc: {first} (tc needs CAP_NET_ADMIN: for a daemon that is not root, an ambient capability, which tc inherits)"),
        ));
    }
    Err(PluginError::new(kind, format!("tc: {first}")))
}

/// Whether the root qdisc of `interface` is ours, of `kind` (`false` too if it has gone).
fn ours(interface: &str, kind: &str) -> Result<bool, PluginError> {
    let listing = match tc(&["-j", "qdisc", "show", "dev", interface, "root"]) {
        Ok(listing) => listing,
        Err(e) if e.kind == ErrorKind::NoTarget => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(lists_ours(&listing, kind))
}

/// Whether `tc -j qdisc show dev IF root` printed our root qdisc, of `kind`: another
/// qdisc there (the host's own, put back by someone) is never ours to delete.
fn lists_ours(listing: &str, kind: &str) -> bool {
    kind_of_ours(listing).as_deref() == Some(kind)
}

/// The kind of our root qdisc in what `tc -j qdisc show dev IF root` printed, if the
/// root is ours.
fn kind_of_ours(listing: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(listing).unwrap_or_default();
    json.as_array()
        .into_iter()
        .flatten()
        .find(|q| q["root"] == true && q["handle"] == HANDLE)
        .map(|q| q["kind"].as_str().unwrap_or("?").to_owned())
}

/// Why a root qdisc could not be added to `interface` beside the one it has: the
/// monkey's own (another fault in effect there), else the interface's own.
fn exclusive(interface: &str, ours: Option<&str>, fault: &str) -> String {
    match ours {
        Some(kind) => format!(
            "{interface} already has the monkey's {kind} qdisc {HANDLE} (another fault in effect there): {fault} waits for its revert (nothing applied)"
        ),
        None => format!(
            "{interface} has a root qdisc of its own: {fault} does not replace it (nothing applied)"
        ),
    }
}

/// Adds the qdisc `state` prepared (in its namespace); the arguments given to tc.
/// `fault` names the fault in the refusal of an interface with a root qdisc of its own.
pub(crate) fn add_qdisc(state: &Limited, fault: &str) -> Result<Vec<String>, PluginError> {
    let args = state.tc.clone().ok_or_else(|| {
        PluginError::new(ErrorKind::Failed, "the prepared state has no tc command")
    })?;
    let namespace = netns::open_to_apply(state.netns.as_ref())?;
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    netns::within(namespace.as_ref(), || {
        tc(&words).map_err(|e| {
            if e.message.contains("NLM_F_REPLACE") || e.message.contains("Exclusivity") {
                let listing = tc(&["-j", "qdisc", "show", "dev", &state.interface, "root"]);
                let ours = listing.ok().and_then(|l| kind_of_ours(&l));
                PluginError::new(
                    ErrorKind::NoTarget,
                    exclusive(&state.interface, ours.as_deref(), fault),
                )
            } else {
                e
            }
        })
    })?;
    Ok(args)
}

/// Deletes our qdisc of `state` if it is still the interface's root; anything else is
/// left.
pub(crate) fn remove_qdisc(state: &Limited) -> Result<Outcome, PluginError> {
    if !is_interface(&state.interface) || !matches!(state.kind.as_str(), "tbf" | "netem") {
        return Err(PluginError::new(
            ErrorKind::Failed,
            format!(
                "unreadable revert state: `{}` is not an interface name, or `{}` not our qdisc",
                state.interface, state.kind
            ),
        ));
    }
    let namespace = match &state.netns {
        None => None,
        Some(target) => match netns::open(target) {
            Some(namespace) => Some(namespace),
            None => {
                return Ok(restored(format!(
                "nothing to remove: the network namespace of PID {} is gone, and its qdisc with it",
                target.pid
            )))
            }
        },
    };
    let (interface, kind) = (state.interface.as_str(), state.kind.as_str());
    let removed = netns::within(namespace.as_ref(), || {
        if !ours(interface, kind)? {
            return Ok(false);
        }
        tc(&["qdisc", "del", "dev", interface, "root", "handle", HANDLE]).map(|_| true)
    })?;
    Ok(restored(if removed {
        format!("removed the {kind} qdisc {HANDLE} of {interface}")
    } else {
        format!("nothing to remove: the root qdisc of {interface} is not ours (gone already)")
    }))
}

fn restored(summary: String) -> Outcome {
    Outcome {
        action: "Restore".to_owned(),
        result: results::REVERTED.to_owned(),
        summary,
        ..Outcome::default()
    }
}

/// The error of a `tc` that says its queueing discipline is unknown: for netem, the
/// refusal that names the module and the proxy.
pub(crate) fn unknown_qdisc(args: &[&str], said: &str) -> Option<PluginError> {
    (said.contains("qdisc kind is unknown") && args.contains(&"netem"))
        .then(|| netem_refusal(&format!("`tc qdisc add ... netem` says: {said}")))
}

/// The one refusal, for a kernel without netem.
pub(crate) fn netem_refusal(why: &str) -> PluginError {
    PluginError::new(
        ErrorKind::Config,
        format!(
            "net-delay needs the kernel's netem queueing discipline (module sch_netem), which this kernel lacks ({why}): load it (`modprobe sch_netem`; some distributions ship it in linux-modules-extra) or add latency without the kernel through the daemon's fault proxy: the net-proxy fault with toxic Latency (doc/guide/network.md)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only our qdisc (root, our handle, the kind we added) is ever removed.
    #[test]
    fn only_our_root_qdisc_is_ours() {
        let ours = r#"[{"kind":"tbf","handle":"4e4d:","root":true,"refcnt":2}]"#;
        assert!(lists_ours(ours, "tbf"));
        assert!(!lists_ours(ours, "netem"), "another kind");
        for other in [
            r#"[{"kind":"tbf","handle":"1:","root":true}]"#,
            r#"[{"kind":"tbf","handle":"4e4d:","root":false}]"#,
            r#"[{"kind":"noqueue","handle":"0:","root":true}]"#,
            "[]",
            "not json",
        ] {
            assert!(!lists_ours(other, "tbf"), "{other}");
        }
    }

    /// A second root qdisc is refused naming whose the first is: the monkey's own, of
    /// another fault in effect, or the interface's.
    #[test]
    fn a_refused_root_qdisc_says_whose_the_root_is() {
        let ours = r#"[{"kind":"netem","handle":"4e4d:","root":true}]"#;
        assert_eq!(kind_of_ours(ours).as_deref(), Some("netem"));
        assert_eq!(
            kind_of_ours(r#"[{"kind":"fq","handle":"1:","root":true}]"#),
            None
        );
        assert_eq!(kind_of_ours("not json"), None);
        assert_eq!(
            exclusive("lo", Some("netem"), "net-bandwidth"),
            "lo already has the monkey's netem qdisc 4e4d: (another fault in effect there): net-bandwidth waits for its revert (nothing applied)"
        );
        assert_eq!(
            exclusive("eth0", None, "net-delay"),
            "eth0 has a root qdisc of its own: net-delay does not replace it (nothing applied)"
        );
    }

    /// A revert state journaled before `kind` existed is a tbf's.
    #[test]
    fn a_state_without_a_kind_is_a_tbf() {
        let state: Limited = serde_json::from_str(r#"{"interface":"lo"}"#).unwrap();
        assert_eq!(state.kind, "tbf");
    }

    #[test]
    fn tc_saying_netem_is_unknown_is_the_refusal() {
        let said = "Error: Specified qdisc kind is unknown.";
        let e = unknown_qdisc(&["qdisc", "add", "dev", "lo", "root", "netem"], said).unwrap();
        assert!(e.message.contains("module sch_netem"), "{}", e.message);
        assert!(unknown_qdisc(&["qdisc", "add", "dev", "lo", "root", "tbf"], said).is_none());
        assert!(
            unknown_qdisc(&["qdisc", "add", "dev", "lo", "root", "netem"], "Error: x").is_none()
        );
    }

    #[test]
    fn the_refusal_names_the_module_and_the_proxy() {
        let e = netem_refusal("no module");
        assert!(e.message.contains("module sch_netem"), "{}", e.message);
        assert!(
            e.message.contains("the net-proxy fault with toxic Latency"),
            "{}",
            e.message
        );
    }
}
