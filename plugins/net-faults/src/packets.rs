//! A packet fault: its filter, what it does to a matching packet, and the nftables
//! script that does it, prepared (and journaled by the host) before it is applied.
//!
//! Each fault gets chains of its own in our table, one per hook it needs, named after
//! its kind and an id drawn from its seed (`loss_1f2e3d4c5b6a7988_in`). A chain is
//! created with `create` (never taken over: a name in use refuses the fault), begins
//! with the spared ports (accepted, which only ends *our* chain: the host's own chains
//! still see the packet), then the fault's rules. A revert deletes exactly these chains.

use std::{net::IpAddr, time::Duration};

use nightmare_monkey_plugin_api::sdk::{
    self, results, ErrorKind, Outcome, PluginError, Request, Rng,
};
use serde::{Deserialize, Serialize};

use crate::{
    filter::{Config, Filter, Hook, Protocol},
    netns::{self, Target},
    nft, own,
};

const MAX_DURATION: Duration = Duration::from_secs(3600);
const SSH: u16 = 22;
/// What a reject answers with, let through its own chains.
const REJECT_ANSWERS: [&str; 3] = [
    "tcp flags & rst == rst",
    "icmp type destination-unreachable",
    "icmpv6 type destination-unreachable",
];

/// What happens to a matching packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Dropped with this chance, in hundredths of a percent (1 to 10,000).
    Loss(u32),
    /// Dropped, always.
    Partition,
    /// Answered: a TCP reset, an ICMP port unreachable for the rest.
    Reject,
}

impl Action {
    /// The fault's name.
    pub const fn name(self) -> &'static str {
        match self {
            Action::Loss(_) => "net-loss",
            Action::Partition => "net-partition",
            Action::Reject => "net-reject",
        }
    }

    fn chain_prefix(self) -> &'static str {
        match self {
            Action::Loss(_) => "loss",
            Action::Partition => "partition",
            Action::Reject => "reject",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Loss(_) => "Drop",
            Action::Partition => "Partition",
            Action::Reject => "Reject",
        }
    }

    /// What it does, as `doing` and as `would do`.
    fn says(self) -> (String, String) {
        match self {
            Action::Loss(h) => (
                format!("dropping {} of", percent(h)),
                format!("would drop {} of", percent(h)),
            ),
            Action::Partition => ("dropping all".into(), "would drop all".into()),
            Action::Reject => ("rejecting".into(), "would reject".into()),
        }
    }
}

/// Hundredths of a percent as text: `30%`, `0.5%`.
fn percent(hundredths: u32) -> String {
    let text = format!("{}.{:02}", hundredths / 100, hundredths % 100);
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// A configured packet fault.
#[derive(Debug)]
pub struct PacketFault {
    action: Action,
    filter: Filter,
    duration: Duration,
    spare_ssh: bool,
    spare_api: bool,
    scope: Option<sdk::process::Scope>,
}

/// What the revert needs: the chains (in our table). Prepared, it also holds the
/// script that `apply` runs, exactly as journaled.
#[derive(Debug, Serialize, Deserialize)]
struct Chains {
    chains: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nft: Option<String>,
    /// The network namespace of a scoped fault (absent: the daemon's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    netns: Option<Target>,
}

fn config_error(message: String) -> PluginError {
    PluginError::new(ErrorKind::Config, message)
}

impl PacketFault {
    /// The fault `kind` (its [`Action`] with any percentage yet unknown) configured by
    /// `config`; every refusal names the setting.
    pub fn new(kind: Action, config: Config) -> Result<Self, PluginError> {
        let filter = Filter::of(&config)?;
        let action = match (kind, config.percent) {
            (Action::Loss(_), None) => {
                return Err(config_error(
                    "percent is required: the share of matching packets to drop, e.g. 10"
                        .to_owned(),
                ))
            }
            (Action::Loss(_), Some(p)) => {
                let hundredths = (p * 100.0).round();
                if !(1.0..=10_000.0).contains(&hundredths) {
                    return Err(config_error(format!(
                        "percent {p}: expected more than 0 and at most 100 (hundredths are kept)"
                    )));
                }
                Action::Loss(hundredths as u32)
            }
            (other, Some(_)) => {
                return Err(config_error(format!(
                    "percent: {} acts on every matching packet; net-loss drops a share",
                    other.name()
                )))
            }
            (other, None) => other,
        };
        if action == Action::Partition && !filter.is_narrowed() {
            return Err(config_error(
                "net-partition needs peers or ports: without them it cuts this host off from everything"
                    .to_owned(),
            ));
        }
        let duration = sdk::duration(
            "duration",
            config.duration.as_deref(),
            Duration::from_secs(60),
            MAX_DURATION,
        )?;
        Ok(Self {
            action,
            filter,
            duration,
            spare_ssh: config.spare_ssh.unwrap_or(true),
            spare_api: config.spare_api.unwrap_or(true),
            scope: config.scope,
        })
    }

    /// The daemon's own sockets, when they are spared: with its API, in its own network
    /// namespace.
    fn own(&self, netns: Option<&Target>) -> own::Own {
        if self.spare_api && netns.is_none() {
            own::read()
        } else {
            own::Own::default()
        }
    }

    /// The TCP ports left alone: SSH and the daemon's listeners (`own`), unless told
    /// otherwise.
    fn spared(&self, own: &own::Own) -> Vec<u16> {
        let mut ports = Vec::new();
        if self.spare_ssh {
            ports.push(SSH);
        }
        ports.extend(&own.listening);
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The nftables script for chains named with `id`, sparing the TCP ports `spared`
    /// and the TCP `peers` (address and port); and the chains.
    pub fn script(
        &self,
        id: u64,
        spared: &[u16],
        peers: &[(IpAddr, u16)],
    ) -> (String, Vec<String>) {
        let table = nft::TABLE;
        let mut script = format!("add table {table}\n");
        let mut chains = Vec::new();
        for hook in self.filter.direction.hooks() {
            let chain = format!("{}_{id:016x}_{}", self.action.chain_prefix(), hook.suffix());
            script.push_str(&format!(
                "create chain {table} {chain} {{ type filter hook {} priority filter; policy accept; }}\n",
                hook.name()
            ));
            let rule = |text: &str| format!("add rule {table} {chain} {text}\n");
            if !spared.is_empty() {
                let ports: Vec<String> = spared.iter().map(u16::to_string).collect();
                let set = if ports.len() == 1 {
                    ports[0].clone()
                } else {
                    format!("{{ {} }}", ports.join(", "))
                };
                script.push_str(&rule(&format!("tcp dport {set} accept")));
                script.push_str(&rule(&format!("tcp sport {set} accept")));
            }
            for (addr, port) in peers {
                let family = if addr.is_ipv4() { "ip" } else { "ip6" };
                script.push_str(&rule(&format!(
                    "{family} daddr {addr} tcp dport {port} accept"
                )));
                script.push_str(&rule(&format!(
                    "{family} saddr {addr} tcp sport {port} accept"
                )));
            }
            if self.action == Action::Reject {
                // The answers a reject sends pass the hooks too: rejected in turn they
                // would be dropped (nothing answers an answer), and the peer would hear
                // silence after all.
                for answer in REJECT_ANSWERS {
                    script.push_str(&rule(&format!("{answer} accept")));
                }
            }
            for (matched, verdict) in self.rules(*hook) {
                let text = [matched.as_str(), verdict.as_str()]
                    .iter()
                    .filter(|p| !p.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" ");
                script.push_str(&rule(&text));
            }
            chains.push(chain);
        }
        (script, chains)
    }

    /// The rules of one chain: each match with its verdict.
    fn rules(&self, hook: Hook) -> Vec<(String, String)> {
        let of = |protocol: Protocol, verdict: &str| -> Vec<(String, String)> {
            self.filter
                .matches(hook, protocol)
                .into_iter()
                .map(|m| (m, verdict.to_owned()))
                .collect()
        };
        let protocol = self.filter.protocol;
        let unreachable = "reject with icmpx type port-unreachable";
        match (self.action, protocol) {
            // nft refuses `< 100` against `mod 100` (out of its range): all is all.
            (Action::Loss(10_000), _) => of(protocol, "drop"),
            // `numgen random mod N` draws 0..N for each packet.
            (Action::Loss(h), _) if h % 100 == 0 => of(
                protocol,
                &format!("numgen random mod 100 < {} drop", h / 100),
            ),
            (Action::Loss(h), _) => of(protocol, &format!("numgen random mod 10000 < {h} drop")),
            (Action::Partition, _) => of(protocol, "drop"),
            (Action::Reject, Protocol::Tcp) => of(Protocol::Tcp, "reject with tcp reset"),
            (Action::Reject, Protocol::Any) => {
                let mut rules = of(Protocol::Tcp, "reject with tcp reset");
                rules.extend(of(Protocol::Any, unreachable));
                rules
            }
            (Action::Reject, other) => of(other, unreachable),
        }
    }

    /// Draws the chains' id and writes the script; changes nothing.
    pub fn prepare(&self, request: &Request) -> Result<Outcome, PluginError> {
        let netns = self.namespace()?;
        let own = self.own(netns.as_ref());
        let spared = self.spared(&own);
        if self.filter.only_spared(&spared) {
            return Err(PluginError::new(
                ErrorKind::NoTarget,
                format!(
                    "every port the filter names is spared ({}): it would match nothing; spare_ssh: false or spare_api: false lets the fault hit them",
                    spared.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let id = Rng::from_seed(request.seed).next_u64();
        let peers = own.peers;
        let (script, chains) = self.script(id, &spared, &peers);
        Ok(Outcome {
            action: self.action.verb().to_owned(),
            result: "prepared".to_owned(),
            summary: self.summary(&chains, netns.as_ref(), None),
            details: self.details(&script, &chains, &spared, netns.as_ref()),
            revert: Some(serde_json::json!(Chains {
                chains,
                nft: Some(script),
                netns,
            })),
            revert_after_ms: Some(self.duration.as_millis() as u64),
            ..Outcome::default()
        })
    }

    /// Injects in one call: a dry run says the exact script; else prepare and apply.
    pub fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        let prepared = self.prepare(request)?;
        if !request.dry_run {
            let state = prepared.revert.as_ref().ok_or_else(|| {
                PluginError::new(ErrorKind::Failed, "the prepared state is missing")
            })?;
            return self.apply(state);
        }
        let script = prepared.details["nft"].as_str().unwrap_or_default();
        let netns: Option<Target> = serde_json::from_value(prepared.details["netns"].clone())
            .ok()
            .flatten();
        Ok(Outcome {
            result: results::DRY_RUN.to_owned(),
            summary: self.summary(&[], netns.as_ref(), Some(script)),
            revert: None,
            revert_after_ms: None,
            ..prepared
        })
    }

    /// Runs the prepared script: all of it, or nothing.
    pub fn apply(&self, prepared: &serde_json::Value) -> Result<Outcome, PluginError> {
        let state: Chains = sdk::read_state(prepared)?;
        let script = state.nft.as_deref().ok_or_else(|| {
            PluginError::new(ErrorKind::Failed, "the prepared state has no nft script")
        })?;
        let namespace = netns::open_to_apply(state.netns.as_ref())?;
        netns::within(namespace.as_ref(), || nft::apply(script))?;
        let netns = state.netns.as_ref();
        Ok(Outcome {
            action: self.action.verb().to_owned(),
            result: results::INJECTED.to_owned(),
            summary: self.summary(&state.chains, netns, None),
            details: self.details(script, &state.chains, &self.spared(&self.own(netns)), netns),
            revert: Some(serde_json::json!(Chains {
                chains: state.chains,
                nft: None,
                netns: state.netns,
            })),
            revert_after_ms: Some(self.duration.as_millis() as u64),
            ..Outcome::default()
        })
    }

    /// The scoped fault's network namespace, now (`None`: the daemon's own).
    fn namespace(&self) -> Result<Option<Target>, PluginError> {
        let Some(scope) = &self.scope else {
            return Ok(None);
        };
        let target = netns::resolve(scope)?;
        let own = std::fs::metadata("/proc/self/ns/net").map(|m| {
            use std::os::unix::fs::MetadataExt as _;
            m.ino()
        });
        Ok((own.ok() != Some(target.inode)).then_some(target))
    }

    fn details(
        &self,
        script: &str,
        chains: &[String],
        spared: &[u16],
        netns: Option<&Target>,
    ) -> serde_json::Value {
        serde_json::json!({ "nft": script, "chains": chains, "spared_tcp_ports": spared, "netns": netns })
    }

    /// One line: what it does (or would do, with the exact script), for how long.
    fn summary(
        &self,
        chains: &[String],
        netns: Option<&Target>,
        dry_script: Option<&str>,
    ) -> String {
        let (doing, would) = self.action.says();
        let mut what = self.filter.describe();
        if let Some(target) = netns {
            what.push_str(&format!(" in the network namespace of PID {}", target.pid));
        }
        let lasting = humantime::format_duration(self.duration);
        match dry_script {
            Some(script) => {
                let lines: Vec<&str> = script.lines().collect();
                format!(
                    "{would} {what} for {lasting} with: nft '{}'",
                    lines.join("; ")
                )
            }
            None => format!(
                "{doing} {what} for {lasting} (chains {} of table {})",
                chains.join(", "),
                nft::TABLE
            ),
        }
    }
}

/// Undoes a fault from its state (prepared or applied): its chains deleted if they are
/// there, and the table once empty. Missing chains are no error, so a revert repeated,
/// or of a fault never applied, succeeds.
pub fn revert(state: &serde_json::Value) -> Result<Outcome, PluginError> {
    let state: Chains = sdk::read_state(state)?;
    // The state may come from a journal someone edited: only our own chain names
    // reach nft.
    if let Some(bad) = state.chains.iter().find(|c| !is_chain_name(c)) {
        return Err(PluginError::new(
            ErrorKind::Failed,
            format!("unreadable revert state: `{bad}` is not a network fault's chain"),
        ));
    }
    let namespace = match &state.netns {
        None => None,
        Some(target) => match netns::open(target) {
            Some(namespace) => Some(namespace),
            None => {
                return Ok(Outcome {
                    action: "Restore".to_owned(),
                    result: results::REVERTED.to_owned(),
                    summary: format!(
                        "nothing to remove: the network namespace of PID {} is gone, and its rules with it",
                        target.pid
                    ),
                    ..Outcome::default()
                })
            }
        },
    };
    let removed = netns::within(namespace.as_ref(), || nft::remove(&state.chains))?;
    let summary = if removed.is_empty() {
        format!(
            "nothing to remove: chains {} are not in table {}",
            state.chains.join(", "),
            nft::TABLE
        )
    } else {
        format!(
            "removed chains {} from table {}",
            removed.join(", "),
            nft::TABLE
        )
    };
    Ok(Outcome {
        action: "Restore".to_owned(),
        result: results::REVERTED.to_owned(),
        summary,
        ..Outcome::default()
    })
}

/// `loss_0123456789abcdef_in` and the like: the names [`PacketFault::script`] gives.
fn is_chain_name(name: &str) -> bool {
    let mut parts = name.split('_');
    let (Some(kind), Some(id), Some(hook), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    ["loss", "partition", "reject"].contains(&kind)
        && id.len() == 16
        && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && ["in", "out"].contains(&hook)
}

#[cfg(test)]
mod tests;
