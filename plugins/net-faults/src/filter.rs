//! What a packet fault matches: its configuration as written, checked into a [`Filter`]
//! that cannot match nothing, and turned into the matches of nftables rules.

use nightmare_monkey_plugin_api::sdk::{self, ErrorKind, PluginError};
use serde::Deserialize;

use crate::rules::{self, Cidr, End, Hook, Match};

/// A packet fault's configuration, as written in RON (every fault of this crate reads
/// the same fields and refuses those that are not its own).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `in`, `out` or `both` (default): the packets this host receives, sends, or both.
    pub direction: Option<String>,
    /// `tcp`, `udp`, `icmp` (ICMP and ICMPv6) or `any` (default).
    pub protocol: Option<String>,
    /// Ports (`5432`) or ranges (`"8000-8100"`) at either end of the packet; only TCP and
    /// UDP packets have them. Absent: every port.
    pub ports: Option<Vec<Port>>,
    /// The other end: addresses or CIDRs (`"10.0.0.0/8"`, `"::1"`). Absent: every peer.
    pub peers: Option<Vec<String>>,
    /// `net-loss`: the share of matching packets dropped, more than 0 and at most 100
    /// (hundredths are kept: `0.5`).
    pub percent: Option<f64>,
    /// How long the fault lasts (default 1m, at most 1h).
    pub duration: Option<sdk::DurationText>,
    /// Leave SSH (TCP port 22 at either end) alone (default true).
    pub spare_ssh: Option<bool>,
    /// Leave the daemon's own listening ports (its API) alone (default true).
    pub spare_api: Option<bool>,
    /// Strike in the network namespace of a process (`Namespace(PID)`, `Tree(PID)`) or
    /// of a cgroup's processes (`Cgroup("system.slice/app.service")`) rather than the
    /// daemon's own.
    pub scope: Option<sdk::process::Scope>,
}

/// A port or a range of ports as written: `5432` or `"8000-8100"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Port {
    /// One port.
    One(u64),
    /// A range, `"low-high"` (or one port as text).
    Text(String),
}

/// Which packets, by the way they travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received by this host (the `input` hook).
    In,
    /// Sent by this host (the `output` hook).
    Out,
    /// Both.
    Both,
}

impl Direction {
    /// The hooks a fault in this direction needs, each with its chain's suffix.
    pub fn hooks(self) -> &'static [Hook] {
        match self {
            Direction::In => &[Hook::Input],
            Direction::Out => &[Hook::Output],
            Direction::Both => &[Hook::Input, Hook::Output],
        }
    }

    fn word(self) -> &'static str {
        match self {
            Direction::In => "incoming",
            Direction::Out => "outgoing",
            Direction::Both => "incoming and outgoing",
        }
    }
}

/// The transport protocol matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Every packet.
    Any,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
}

/// What a packet fault matches, checked: it matches something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Which way the packets travel.
    pub direction: Direction,
    /// Their protocol.
    pub protocol: Protocol,
    /// Port ranges at either end (empty: every port).
    pub ports: Vec<(u16, u16)>,
    /// IPv4 peers (with `peers6`, empty both: every peer).
    pub peers4: Vec<Cidr>,
    /// IPv6 peers.
    pub peers6: Vec<Cidr>,
}

fn config_error(message: String) -> PluginError {
    PluginError::new(ErrorKind::Config, message)
}

impl Filter {
    /// The filter of `config`, or the one reason it is refused.
    pub fn of(config: &Config) -> Result<Filter, PluginError> {
        let direction = match config.direction.as_deref() {
            None | Some("both") => Direction::Both,
            Some("in") => Direction::In,
            Some("out") => Direction::Out,
            Some(other) => {
                return Err(config_error(format!(
                    "direction `{other}`: expected in, out or both"
                )))
            }
        };
        let protocol = match config.protocol.as_deref() {
            None | Some("any") => Protocol::Any,
            Some("tcp") => Protocol::Tcp,
            Some("udp") => Protocol::Udp,
            Some("icmp") => Protocol::Icmp,
            Some(other) => {
                return Err(config_error(format!(
                    "protocol `{other}`: expected tcp, udp, icmp or any"
                )))
            }
        };
        let ports = match &config.ports {
            None => Vec::new(),
            Some(ports) if ports.is_empty() => {
                return Err(config_error(
                    "ports: an empty list matches no packet; leave it out for every port"
                        .to_owned(),
                ))
            }
            Some(ports) => ports.iter().map(port_range).collect::<Result<_, _>>()?,
        };
        if !ports.is_empty() && protocol == Protocol::Icmp {
            return Err(config_error(
                "ports: ICMP packets have no ports, so this filter matches nothing; use protocol tcp, udp or any".to_owned(),
            ));
        }
        let (mut peers4, mut peers6) = (Vec::new(), Vec::new());
        if let Some(peers) = &config.peers {
            if peers.is_empty() {
                return Err(config_error(
                    "peers: an empty list matches no packet; leave it out for every peer"
                        .to_owned(),
                ));
            }
            for peer in peers {
                let cidr = Cidr::parse(peer).map_err(|e| config_error(format!("peers: {e}")))?;
                if cidr.is_v4() {
                    peers4.push(cidr);
                } else {
                    peers6.push(cidr);
                }
            }
        }
        Ok(Filter {
            direction,
            protocol,
            ports,
            peers4,
            peers6,
        })
    }

    /// Whether it names peers or ports (a partition must: else it cuts the host off).
    pub fn is_narrowed(&self) -> bool {
        !self.ports.is_empty() || !self.peers4.is_empty() || !self.peers6.is_empty()
    }

    /// Whether every port it names is in `spared`, TCP's alone (then it matches nothing
    /// this fault may touch).
    pub fn only_spared(&self, spared: &[u16]) -> bool {
        self.protocol == Protocol::Tcp
            && !self.ports.is_empty()
            && self
                .ports
                .iter()
                .all(|&(lo, hi)| (lo..=hi).all(|p| spared.contains(&p)))
    }

    /// The matches of the rules for `hook`, one rule each (nftables has no "or" inside
    /// a rule: both port ends, and each address family, are rules of their own).
    /// `protocol` overrides the filter's (a reject answers TCP apart).
    pub fn matches(&self, hook: Hook, protocol: Protocol) -> Vec<Vec<Match>> {
        let proto = match (protocol, self.ports.is_empty()) {
            (Protocol::Tcp, _) => Some(vec![rules::TCP]),
            (Protocol::Udp, _) => Some(vec![rules::UDP]),
            (Protocol::Icmp, _) => Some(vec![rules::ICMP, rules::ICMPV6]),
            (Protocol::Any, true) => None,
            (Protocol::Any, false) => Some(vec![rules::TCP, rules::UDP]),
        };
        let ports: Vec<Option<Match>> = if self.ports.is_empty() {
            vec![None]
        } else {
            [End::Destination, End::Source]
                .into_iter()
                .map(|end| Some(Match::Port(end, self.ports.clone())))
                .collect()
        };
        let mut peers = Vec::new();
        for family in [&self.peers4, &self.peers6] {
            if !family.is_empty() {
                peers.push(Some(Match::Peer(hook.peer(), family.clone())));
            }
        }
        if peers.is_empty() {
            peers.push(None);
        }
        let mut rules = Vec::new();
        for peer in &peers {
            for port in &ports {
                let proto = proto.clone().map(Match::L4proto);
                rules.push(
                    [peer.clone(), proto, port.clone()]
                        .into_iter()
                        .flatten()
                        .collect(),
                );
            }
        }
        rules
    }

    /// The packets it matches, for a summary: `incoming udp packets on ports 53 from 10.0.0.0/8`.
    pub fn describe(&self) -> String {
        let proto = match self.protocol {
            Protocol::Any => "",
            Protocol::Tcp => " tcp",
            Protocol::Udp => " udp",
            Protocol::Icmp => " icmp",
        };
        let mut text = format!("{}{proto} packets", self.direction.word());
        if !self.ports.is_empty() {
            let ports: Vec<String> = self.ports.iter().map(rules::port_range).collect();
            text.push_str(&format!(" on ports {}", ports.join(",")));
        }
        let peers: Vec<String> = self
            .peers4
            .iter()
            .chain(&self.peers6)
            .map(Cidr::render)
            .collect();
        if !peers.is_empty() {
            text.push_str(&format!(" with {}", peers.join(",")));
        }
        text
    }
}

fn port_range(port: &Port) -> Result<(u16, u16), PluginError> {
    let number = |text: &str| -> Option<u16> { text.trim().parse::<u16>().ok().filter(|p| *p > 0) };
    let range = match port {
        Port::One(n) => u16::try_from(*n).ok().filter(|p| *p > 0).map(|p| (p, p)),
        Port::Text(text) => match text.split_once('-') {
            Some((lo, hi)) => number(lo).zip(number(hi)),
            None => number(text).map(|p| (p, p)),
        },
    };
    let shown = match port {
        Port::One(n) => n.to_string(),
        Port::Text(t) => format!("\"{t}\""),
    };
    match range {
        Some((lo, hi)) if lo <= hi => Ok((lo, hi)),
        _ => Err(config_error(format!(
            "ports: {shown}: expected a port from 1 to 65535 or a range \"low-high\""
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(text: &str) -> Result<Filter, String> {
        sdk::parse_config::<Config>(text)
            .and_then(|c| Filter::of(&c))
            .map_err(|e| e.message)
    }

    /// The matches of each rule as nft writes them.
    fn texts(rules: Vec<Vec<Match>>) -> Vec<String> {
        rules
            .iter()
            .map(|r| r.iter().map(Match::text).collect::<Vec<_>>().join(" "))
            .collect()
    }

    #[test]
    fn every_field_renders_as_nft_matches() {
        let f = filter(r#"(direction: "in", protocol: "udp", ports: [53, "8000-8100"], peers: ["10.0.0.0/8", "::1", "192.168.1.7"])"#).unwrap();
        assert_eq!(
            texts(f.matches(Hook::Input, f.protocol)),
            [
                "ip saddr { 10.0.0.0/8, 192.168.1.7 } meta l4proto udp th dport { 53, 8000-8100 }",
                "ip saddr { 10.0.0.0/8, 192.168.1.7 } meta l4proto udp th sport { 53, 8000-8100 }",
                "ip6 saddr ::1 meta l4proto udp th dport { 53, 8000-8100 }",
                "ip6 saddr ::1 meta l4proto udp th sport { 53, 8000-8100 }",
            ]
        );
        assert_eq!(
            f.describe(),
            "incoming udp packets on ports 53,8000-8100 with 10.0.0.0/8,192.168.1.7,::1"
        );
        let all = filter("()").unwrap();
        assert_eq!(texts(all.matches(Hook::Output, all.protocol)), [""]);
        assert_eq!(all.direction.hooks(), [Hook::Input, Hook::Output]);
        let ports = filter("(ports: [9000])").unwrap();
        assert_eq!(
            texts(ports.matches(Hook::Output, Protocol::Any)),
            [
                "meta l4proto { tcp, udp } th dport 9000",
                "meta l4proto { tcp, udp } th sport 9000"
            ]
        );
        let peer = filter(r#"(protocol: "icmp", peers: ["127.0.0.2"])"#).unwrap();
        assert_eq!(
            texts(peer.matches(Hook::Output, peer.protocol)),
            ["ip daddr 127.0.0.2 meta l4proto { icmp, ipv6-icmp }"]
        );
    }

    #[test]
    fn a_filter_that_matches_nothing_is_refused_saying_why() {
        for (text, expected) in [
            ("(ports: [])", "ports: an empty list matches no packet; leave it out for every port"),
            ("(peers: [])", "peers: an empty list matches no packet; leave it out for every peer"),
            (r#"(protocol: "icmp", ports: [80])"#, "ports: ICMP packets have no ports, so this filter matches nothing; use protocol tcp, udp or any"),
            (r#"(direction: "sideways")"#, "direction `sideways`: expected in, out or both"),
            (r#"(protocol: "sctp")"#, "protocol `sctp`: expected tcp, udp, icmp or any"),
            ("(ports: [0])", "ports: 0: expected a port from 1 to 65535 or a range \"low-high\""),
            ("(ports: [70000])", "ports: 70000: expected a port from 1 to 65535 or a range \"low-high\""),
            (r#"(ports: ["90-80"])"#, "ports: \"90-80\": expected a port from 1 to 65535 or a range \"low-high\""),
            (r#"(peers: ["10.0.0.1/8"])"#, "peers: `10.0.0.1/8` has host bits set past /8: write the network's first address"),
            (r#"(peers: ["10.0.0.0/33"])"#, "peers: `10.0.0.0/33`: the prefix length must be 0 to 32"),
            (r#"(peers: ["db.local"])"#, "peers: `db.local` is not an address or a CIDR (10.0.0.0/8, ::1)"),
        ] {
            assert_eq!(filter(text).unwrap_err(), expected, "{text}");
        }
        assert!(filter(r#"(peers: ["0.0.0.0/0", "::/0", "fd00::/8"])"#).is_ok());
        for zero in [
            r#"(ports: ["0"])"#,
            r#"(ports: ["0-80"])"#,
            r#"(ports: ["80-0"])"#,
        ] {
            assert!(
                filter(zero)
                    .unwrap_err()
                    .contains("expected a port from 1 to 65535"),
                "{zero}"
            );
        }
        assert!(filter(r#"(ports: ["1-65535"])"#).is_ok());
    }

    /// A partition needs peers or ports, of either family: any one of them narrows it.
    #[test]
    fn peers_of_either_family_or_ports_narrow_a_filter() {
        for narrowed in [
            r#"(ports: [5432])"#,
            r#"(peers: ["10.0.0.5"])"#,
            r#"(peers: ["fd00::5"])"#,
        ] {
            assert!(filter(narrowed).unwrap().is_narrowed(), "{narrowed}");
        }
        assert!(!filter(r#"(protocol: "tcp", direction: "in")"#)
            .unwrap()
            .is_narrowed());
    }

    #[test]
    fn ports_all_spared_match_nothing() {
        let f = filter(r#"(protocol: "tcp", ports: [22, 8080])"#).unwrap();
        assert!(f.only_spared(&[22, 8080]));
        assert!(!f.only_spared(&[22]));
        let udp = filter(r#"(protocol: "udp", ports: [22])"#).unwrap();
        assert!(!udp.only_spared(&[22]), "only TCP is spared");
        let any = filter("(ports: [22])").unwrap();
        assert!(!any.only_spared(&[22]), "UDP port 22 is still matched");
        assert!(!filter("()").unwrap().only_spared(&[22]));
    }
}
