//! A packet fault: its filter, what it does to a matching packet, and the nftables
//! rules that do it (shown and journaled as nft's script), prepared (and journaled by
//! the host) before they are applied.
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
    filter::{Config, Filter, Protocol},
    netns::{self, Target},
    nft, own,
    rules::{self, Chain, Cidr, End, Hook, Match, Rule, Verdict},
};

const MAX_DURATION: Duration = Duration::from_secs(3600);
const SSH: u16 = 22;

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
/// script the dry run shows, as journaled, and what `apply` makes the same rules from
/// again (the chains' id, the ports and peers spared), checked against that script.
#[derive(Debug, Serialize, Deserialize)]
struct Chains {
    chains: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nft: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    spared: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    peers: Vec<(IpAddr, u16)>,
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
                // The value as written is bounded, then kept to the hundredth (0.005
                // is 0.01; 100.004 is past 100).
                let hundredths = (p * 100.0).round();
                if !(p > 0.0 && p <= 100.0 && hundredths >= 1.0) {
                    return Err(config_error(format!(
                        "percent {p}: expected 0.01 to 100 (hundredths are kept)"
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
    /// namespace. Not found, the fault is refused: it would not spare them.
    fn own(&self, netns: Option<&Target>) -> Result<own::Own, PluginError> {
        if !self.spare_api || netns.is_some() {
            return Ok(own::Own::default());
        }
        own::read().map_err(|e| {
            PluginError::new(
                ErrorKind::Failed,
                format!("{e}: the API cannot be spared (spare_api: false goes without)"),
            )
        })
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

    /// The chains named with `id` and their rules, sparing the TCP ports `spared` and
    /// the TCP `peers` (address and port).
    pub fn chains(&self, id: u64, spared: &[u16], peers: &[(IpAddr, u16)]) -> Vec<Chain> {
        let accept = |matches: Vec<Match>| Rule {
            matches,
            verdict: Verdict::Accept,
        };
        let mut chains = Vec::new();
        for &hook in self.filter.direction.hooks() {
            let name = format!("{}_{id:016x}_{}", self.action.chain_prefix(), hook.suffix());
            let mut rules = Vec::new();
            if !spared.is_empty() {
                for end in [End::Destination, End::Source] {
                    rules.push(accept(vec![Match::TcpPort(end, spared.to_vec())]));
                }
            }
            for &(addr, port) in peers {
                for end in [End::Destination, End::Source] {
                    let peer = Match::Peer(end, vec![Cidr::host(addr)]);
                    rules.push(accept(vec![peer, Match::TcpPort(end, vec![port])]));
                }
            }
            if self.action == Action::Reject {
                // The answers a reject sends pass the hooks too: rejected in turn they
                // would be dropped (nothing answers an answer), and the peer would hear
                // silence after all.
                for answer in [
                    Match::TcpReset,
                    Match::IcmpUnreachable,
                    Match::Icmpv6Unreachable,
                ] {
                    rules.push(accept(vec![answer]));
                }
            }
            rules.extend(self.rules(hook));
            chains.push(Chain { name, hook, rules });
        }
        chains
    }

    /// The nftables script of [`Self::chains`], and the chains' names.
    pub fn script(
        &self,
        id: u64,
        spared: &[u16],
        peers: &[(IpAddr, u16)],
    ) -> (String, Vec<String>) {
        let chains = self.chains(id, spared, peers);
        let names = chains.iter().map(|c| c.name.clone()).collect();
        (rules::script(nft::TABLE, &chains), names)
    }

    /// The fault's own rules in the chain of `hook`: each match with its verdict.
    fn rules(&self, hook: Hook) -> Vec<Rule> {
        let of = |protocol: Protocol, extra: Option<Match>, verdict: Verdict| -> Vec<Rule> {
            self.filter
                .matches(hook, protocol)
                .into_iter()
                .map(|mut matches| {
                    matches.extend(extra.clone());
                    Rule { matches, verdict }
                })
                .collect()
        };
        let protocol = self.filter.protocol;
        let random = |modulus, below| Some(Match::Random { modulus, below });
        match (self.action, protocol) {
            // nft refuses `< 100` against `mod 100` (out of its range): all is all.
            (Action::Loss(10_000), _) => of(protocol, None, Verdict::Drop),
            // `numgen random mod N` draws 0..N for each packet.
            (Action::Loss(h), _) if h % 100 == 0 => {
                of(protocol, random(100, h / 100), Verdict::Drop)
            }
            (Action::Loss(h), _) => of(protocol, random(10_000, h), Verdict::Drop),
            (Action::Partition, _) => of(protocol, None, Verdict::Drop),
            (Action::Reject, Protocol::Tcp) => of(Protocol::Tcp, None, Verdict::TcpReset),
            (Action::Reject, Protocol::Any) => {
                let mut rules = of(Protocol::Tcp, None, Verdict::TcpReset);
                rules.extend(of(Protocol::Any, None, Verdict::PortUnreachable));
                rules
            }
            (Action::Reject, other) => of(other, None, Verdict::PortUnreachable),
        }
    }

    /// Draws the chains' id and writes the script; changes nothing.
    pub fn prepare(&self, request: &Request) -> Result<Outcome, PluginError> {
        let netns = self.namespace()?;
        let own = self.own(netns.as_ref())?;
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
                id: Some(id),
                spared,
                peers,
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

    /// Installs the prepared rules: all of them, or nothing. They are made again from
    /// the prepared state and must read as its script, byte for byte (what the dry run
    /// showed and the journal keeps), before anything is sent.
    pub fn apply(&self, prepared: &serde_json::Value) -> Result<Outcome, PluginError> {
        let state: Chains = sdk::read_state(prepared)?;
        let failed = |what: &str| PluginError::new(ErrorKind::Failed, what.to_owned());
        let script = state
            .nft
            .as_deref()
            .ok_or_else(|| failed("the prepared state has no nft script"))?;
        let id = state
            .id
            .ok_or_else(|| failed("the prepared state has no id for its chains"))?;
        let chains = self.chains(id, &state.spared, &state.peers);
        if rules::script(nft::TABLE, &chains) != script {
            return Err(failed(
                "the prepared script is not what this fault's configuration makes now (changed since it was prepared?): nothing applied",
            ));
        }
        let namespace = netns::open_to_apply(state.netns.as_ref())?;
        let via = via(namespace.as_ref());
        netns::within(namespace.as_ref(), || nft::apply(&chains, via))?;
        let netns = state.netns.as_ref();
        Ok(Outcome {
            action: self.action.verb().to_owned(),
            result: results::INJECTED.to_owned(),
            summary: self.summary(&state.chains, netns, None),
            details: self.details(script, &state.chains, &state.spared, netns),
            revert: Some(serde_json::json!(Chains {
                chains: state.chains,
                nft: None,
                id: None,
                spared: Vec::new(),
                peers: Vec::new(),
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
    let via = via(namespace.as_ref());
    let removed = netns::within(namespace.as_ref(), || nft::remove(&state.chains, via))?;
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

/// The socket to speak to nf_tables through: the daemon's kept one in its own namespace,
/// one of its own in a scoped fault's.
fn via(namespace: Option<&std::fs::File>) -> nft::Via {
    match namespace {
        None => nft::Via::Kept,
        Some(_) => nft::Via::Fresh,
    }
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
