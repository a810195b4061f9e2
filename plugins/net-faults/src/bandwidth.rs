//! `net-bandwidth`: the packets an interface sends, limited to a rate with tc's token
//! bucket filter (`tbf`), which every kernel with traffic control has (netem is not
//! needed).
//!
//! The qdisc is ours by its handle, `4e4d:` ("NM"): it is only added where the interface
//! has the kernel's default root qdisc (an interface with a root qdisc of someone's is
//! refused, nothing replaced), and a revert deletes the root qdisc only while it is a
//! `tbf` with that handle; the kernel's default comes back by itself.

use std::{process::Command, time::Duration};

use nightmare_monkey_plugin_api::sdk::{
    self, process::Scope, results, ErrorKind, FaultPlugin, Outcome, PluginError, Request,
};
use serde::{Deserialize, Serialize};

use crate::{
    netns::{self, Target},
    nft::program,
    qdisc::Phases,
};

pub(crate) const HANDLE: &str = "4e4d:";
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// `net-bandwidth`'s configuration, as written in RON.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BandwidthConfig {
    /// The interface whose outgoing packets are limited (required: `"eth0"`).
    pub interface: Option<String>,
    /// The rate: `"500kbit"`, `"4mbit"`, `"1gbit"` (required).
    pub rate: Option<String>,
    /// How long the fault lasts (default 1m, at most 1h).
    pub duration: Option<sdk::DurationText>,
    /// The network namespace of a process instead of the daemon's (see `net-loss`).
    pub scope: Option<Scope>,
}

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

/// The `net-bandwidth` fault.
#[derive(Debug)]
pub struct NetBandwidth {
    interface: String,
    rate: String,
    bits: u64,
    duration: Duration,
    scope: Option<Scope>,
}

fn config_error(message: String) -> PluginError {
    PluginError::new(ErrorKind::Config, message)
}

/// `4mbit` as bits a second; `None` unless a whole number of bit, kbit, mbit or gbit.
fn rate_bits(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let scale = match unit {
        "bit" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(scale)
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
    let out = Command::new(program("tc"))
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
    if let Some(refused) = crate::netem::unknown_qdisc(args, &first) {
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
    let json: serde_json::Value = serde_json::from_str(listing).unwrap_or_default();
    json.as_array()
        .into_iter()
        .flatten()
        .any(|q| q["root"] == true && q["handle"] == HANDLE && q["kind"] == kind)
}

impl NetBandwidth {
    /// The `tc` arguments that add our qdisc: a burst of 10 ms at the rate, at least
    /// 128 KiB: tbf drops every packet bigger than its burst, and loopback's MTU is 64
    /// KiB (with the link header, a full packet is more; measured: a burst of 65536 on
    /// `lo` lets no full-sized packet through, and TCP stalls).
    fn arguments(&self) -> Vec<String> {
        let burst = (self.bits / 8 / 100).max(131_072);
        [
            "qdisc",
            "add",
            "dev",
            &self.interface,
            "root",
            "handle",
            HANDLE,
            "tbf",
            "rate",
            &self.rate,
            "burst",
            &burst.to_string(),
            "latency",
            "50ms",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Its phases, which net-delay shares.
    fn phases<'a>(&'a self, summary: &'a dyn Fn(&str, Option<&Target>) -> String) -> Phases<'a> {
        Phases {
            fault: Self::NAME,
            action: "Throttle",
            doing: ["will limit", "would limit", "limiting"],
            interface: &self.interface,
            kind: tbf(),
            scope: self.scope.as_ref(),
            duration: self.duration,
            summary,
        }
    }

    fn summary(&self, doing: &str, netns: Option<&Target>) -> String {
        let place = netns.map_or(String::new(), |t| {
            format!(" in the network namespace of PID {}", t.pid)
        });
        format!(
            "{doing} {} to {}{place} for {}",
            self.interface,
            self.rate,
            humantime::format_duration(self.duration)
        )
    }
}

impl FaultPlugin for NetBandwidth {
    const NAME: &'static str = "net-bandwidth";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "limits what an interface sends to a rate (tc tbf on a qdisc of its own)";
    const PREPARES: bool = true;
    type Config = BandwidthConfig;

    fn new(config: BandwidthConfig) -> Result<Self, PluginError> {
        let interface = config.interface.ok_or_else(|| {
            config_error(
                "interface is required: the interface whose sending is limited, e.g. \"eth0\""
                    .to_owned(),
            )
        })?;
        if !is_interface(&interface) {
            return Err(config_error(format!(
                "interface `{interface}`: expected an interface name (at most 15 letters, digits, - _ . @)"
            )));
        }
        let rate = config.rate.ok_or_else(|| {
            config_error("rate is required: e.g. \"500kbit\", \"4mbit\" or \"1gbit\"".to_owned())
        })?;
        let bits = rate_bits(&rate)
            .filter(|b| (8_000..=100_000_000_000).contains(b))
            .ok_or_else(|| {
                config_error(format!(
                    "rate `{rate}`: expected a whole number of kbit, mbit or gbit from 8kbit to 100gbit, e.g. \"4mbit\""
                ))
            })?;
        let duration = sdk::duration(
            "duration",
            config.duration.as_deref(),
            Duration::from_secs(60),
            MAX_DURATION,
        )?;
        Ok(Self {
            interface,
            rate,
            bits,
            duration,
            scope: config.scope,
        })
    }

    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        self.phases(&|doing, netns| self.summary(doing, netns))
            .inject(request, self.arguments())
    }

    /// Pins the namespace and writes the command; changes nothing.
    fn prepare(&self, _request: &Request) -> Result<Outcome, PluginError> {
        self.phases(&|doing, netns| self.summary(doing, netns))
            .prepare(self.arguments())
    }

    fn apply(
        &self,
        _request: &Request,
        prepared: &serde_json::Value,
    ) -> Result<Outcome, PluginError> {
        self.phases(&|doing, netns| self.summary(doing, netns))
            .apply(prepared)
    }

    /// Deletes our qdisc if it is still the interface's root; anything else is left.
    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        remove_qdisc(&sdk::read_state(state)?)
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
    netns::within(namespace.as_ref(), || tc(&words)).map_err(|e| {
        if e.message.contains("NLM_F_REPLACE") || e.message.contains("Exclusivity") {
            PluginError::new(
                ErrorKind::NoTarget,
                format!(
                    "{} has a root qdisc of its own: {fault} does not replace it (nothing applied)",
                    state.interface
                ),
            )
        } else {
            e
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(text: &str) -> Result<NetBandwidth, String> {
        sdk::parse_config::<BandwidthConfig>(text)
            .and_then(NetBandwidth::new)
            .map_err(|e| e.message)
    }

    #[test]
    fn the_command_is_pinned_and_the_config_checked() {
        let f = fault(r#"(interface: "eth0", rate: "40mbit")"#).unwrap();
        assert_eq!(
            f.arguments().join(" "),
            "qdisc add dev eth0 root handle 4e4d: tbf rate 40mbit burst 131072 latency 50ms"
        );
        let fast = fault(r#"(interface: "eth0", rate: "10gbit")"#).unwrap();
        assert!(fast.arguments().join(" ").contains("burst 12500000 "));
        for (text, expected) in [
            (r#"(rate: "1mbit")"#, "interface is required: the interface whose sending is limited, e.g. \"eth0\""),
            (r#"(interface: "eth0; reboot", rate: "1mbit")"#, "interface `eth0; reboot`: expected an interface name (at most 15 letters, digits, - _ . @)"),
            (r#"(interface: "eth0")"#, "rate is required: e.g. \"500kbit\", \"4mbit\" or \"1gbit\""),
            (r#"(interface: "eth0", rate: "fast")"#, "rate `fast`: expected a whole number of kbit, mbit or gbit from 8kbit to 100gbit, e.g. \"4mbit\""),
            (r#"(interface: "eth0", rate: "1kbit")"#, "rate `1kbit`: expected a whole number of kbit, mbit or gbit from 8kbit to 100gbit, e.g. \"4mbit\""),
        ] {
            assert_eq!(fault(text).unwrap_err(), expected, "{text}");
        }
        assert_eq!(rate_bits("4mbit"), Some(4_000_000));
        assert_eq!(rate_bits("64000bit"), Some(64_000));
        assert_eq!(rate_bits("500kbit"), Some(500_000));
        assert_eq!(rate_bits("2gbit"), Some(2_000_000_000));
        assert_eq!(rate_bits("mbit"), None);
        assert_eq!(rate_bits("4Mbit"), None);
        assert_eq!(rate_bits("99999999999gbit"), None, "overflow is no rate");
    }

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

    /// A revert state journaled before `kind` existed is a tbf's.
    #[test]
    fn a_state_without_a_kind_is_a_tbf() {
        let state: Limited = serde_json::from_str(r#"{"interface":"lo"}"#).unwrap();
        assert_eq!(state.kind, "tbf");
    }

    #[test]
    fn a_dry_run_says_the_command() {
        let f = fault(r#"(interface: "lo", rate: "4mbit", duration: "2m")"#).unwrap();
        let dry = f.inject(&Request::default()).unwrap();
        assert_eq!(dry.result, results::DRY_RUN);
        assert_eq!(
            dry.summary,
            "would limit lo to 4mbit for 2m with: tc qdisc add dev lo root handle 4e4d: tbf rate 4mbit burst 131072 latency 50ms"
        );
        assert!(dry.revert.is_none());
    }
}
