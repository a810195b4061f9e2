//! `net-bandwidth`: the packets an interface sends, limited to a rate with tc's token
//! bucket filter (`tbf`), which every kernel with traffic control has (netem is not
//! needed).
//!
//! The qdisc is ours by its handle, `4e4d:` ("NM"): it is only added where the interface
//! has the kernel's default root qdisc (an interface with a root qdisc of someone's is
//! refused, nothing replaced), and a revert deletes the root qdisc only while it is a
//! `tbf` with that handle; the kernel's default comes back by itself.

use std::time::Duration;

use nightmare_monkey_plugin_api::sdk::{
    self, process::Scope, ErrorKind, FaultPlugin, Outcome, PluginError, Request,
};
use serde::Deserialize;

use crate::{
    netns::Target,
    qdisc::{is_interface, remove_qdisc, Phases, HANDLE},
};

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
            kind: "tbf".to_owned(),
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

#[cfg(test)]
mod tests {
    use nightmare_monkey_plugin_api::sdk::results;

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
