//! What the faults made of a qdisc of our own (`net-bandwidth`'s tbf, `net-delay`'s
//! netem) share: the same three phases around their own tc arguments. Prepare pins the
//! namespace and writes the command; a dry run says it; apply runs it.

use std::time::Duration;

use nightmare_monkey_plugin_api::sdk::{
    self, process::Scope, results, ErrorKind, Outcome, PluginError, Request,
};

use crate::{
    bandwidth::{add_qdisc, Limited},
    netns::{self, Target},
};

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
