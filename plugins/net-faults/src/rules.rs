//! A packet fault's rules as values: what each rule matches and its verdict, in our
//! table's chains. One model, two renderings: nft's own text (`rules::script`, what the
//! dry run prints, the journal keeps and an operator can paste into `nft -f`) and the
//! netlink batch that installs them (`nfexpr`), so the two cannot describe different
//! rules.

use std::net::IpAddr;

/// Where a port or an address is read: the packet's source or its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `sport`, `saddr`.
    Source,
    /// `dport`, `daddr`.
    Destination,
}

impl End {
    fn port(self) -> &'static str {
        match self {
            End::Source => "sport",
            End::Destination => "dport",
        }
    }

    fn addr(self) -> &'static str {
        match self {
            End::Source => "saddr",
            End::Destination => "daddr",
        }
    }
}

/// An nftables hook of a per-fault chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Packets for this host: the peer is the source.
    Input,
    /// Packets from this host: the peer is the destination.
    Output,
}

impl Hook {
    /// The hook's name in nftables.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Input => "input",
            Hook::Output => "output",
        }
    }

    /// The chain name's suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Hook::Input => "in",
            Hook::Output => "out",
        }
    }

    /// Where the peer's address is: the source of what comes in.
    pub(crate) fn peer(self) -> End {
        match self {
            Hook::Input => End::Source,
            Hook::Output => End::Destination,
        }
    }
}

/// A network: an address and a prefix length, host bits clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// Reads `10.0.0.0/8`, `::1` or `127.0.0.1`; host bits set are refused.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an address or a CIDR (10.0.0.0/8, ::1)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(len) => len
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
        };
        let bits = match addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let host = 1u128
            .checked_shl(u32::from(max - len))
            .map_or(u128::MAX, |b| b - 1);
        if bits & host != 0 {
            return Err(format!(
                "`{text}` has host bits set past /{len}: write the network's first address"
            ));
        }
        Ok(Cidr { addr, len })
    }

    /// One address alone (`/32`, `/128`).
    pub fn host(addr: IpAddr) -> Cidr {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, len }
    }

    /// Whether it is an IPv4 network.
    pub fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Its prefix length.
    pub fn prefix(&self) -> u8 {
        self.len
    }

    /// Its address's bytes, in network order (4 or 16).
    pub fn bytes(&self) -> Vec<u8> {
        match self.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    /// As nft writes it: `10.0.0.0/8`, `::1`.
    pub fn render(&self) -> String {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.len == max {
            self.addr.to_string()
        } else {
            format!("{}/{}", self.addr, self.len)
        }
    }
}

/// The IP protocol numbers a rule names.
pub const TCP: u8 = 6;
/// UDP.
pub const UDP: u8 = 17;
/// ICMP.
pub const ICMP: u8 = 1;
/// ICMPv6.
pub const ICMPV6: u8 = 58;

/// One match of a rule (nftables ands them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `meta l4proto tcp`, `meta l4proto { tcp, udp }`.
    L4proto(Vec<u8>),
    /// `tcp dport { 22, 8080 }`: TCP packets with one of these ports.
    TcpPort(End, Vec<u16>),
    /// `th dport { 53, 8000-8100 }`: the transport header's port in one of the ranges.
    Port(End, Vec<(u16, u16)>),
    /// `ip saddr { 10.0.0.0/8 }`, `ip6 daddr ::1`: the peers of one family.
    Peer(End, Vec<Cidr>),
    /// `numgen random mod 100 < 30`: a draw of 0..modulus below `below`.
    Random {
        /// The draw's range.
        modulus: u32,
        /// The draws that match.
        below: u32,
    },
    /// `tcp flags & rst == rst`.
    TcpReset,
    /// `icmp type destination-unreachable`.
    IcmpUnreachable,
    /// `icmpv6 type destination-unreachable`.
    Icmpv6Unreachable,
}

/// What a matching packet gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let through (ends our chain only).
    Accept,
    /// Dropped.
    Drop,
    /// Answered with a TCP reset.
    TcpReset,
    /// Answered with an ICMP (or ICMPv6) port unreachable.
    PortUnreachable,
}

/// One rule: every match, then the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Anded.
    pub matches: Vec<Match>,
    /// What a packet that matches them all gets.
    pub verdict: Verdict,
}

/// One chain of a fault: its name, its hook (priority filter, policy accept) and rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Our name for it (`loss_00000000000000ab_in`).
    pub name: String,
    /// Where it hooks.
    pub hook: Hook,
    /// In order.
    pub rules: Vec<Rule>,
}

/// A protocol's name as nft writes it.
fn protocol(number: u8) -> String {
    match number {
        TCP => "tcp".to_owned(),
        UDP => "udp".to_owned(),
        ICMP => "icmp".to_owned(),
        ICMPV6 => "ipv6-icmp".to_owned(),
        other => other.to_string(),
    }
}

/// One element alone, or `{ a, b }`.
pub fn set(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

/// `53` or `8000-8100`.
pub fn port_range(&(lo, hi): &(u16, u16)) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

impl Match {
    /// As nft writes it.
    pub fn text(&self) -> String {
        match self {
            Match::L4proto(numbers) => {
                format!("meta l4proto {}", set(numbers.iter().map(|&p| protocol(p))))
            }
            Match::TcpPort(end, ports) => {
                format!(
                    "tcp {} {}",
                    end.port(),
                    set(ports.iter().map(u16::to_string))
                )
            }
            Match::Port(end, ranges) => {
                format!("th {} {}", end.port(), set(ranges.iter().map(port_range)))
            }
            Match::Peer(end, cidrs) => {
                let family = if cidrs.first().is_some_and(Cidr::is_v4) {
                    "ip"
                } else {
                    "ip6"
                };
                let addrs = set(cidrs.iter().map(Cidr::render));
                format!("{family} {} {addrs}", end.addr())
            }
            Match::Random { modulus, below } => {
                format!("numgen random mod {modulus} < {below}")
            }
            Match::TcpReset => "tcp flags & rst == rst".to_owned(),
            Match::IcmpUnreachable => "icmp type destination-unreachable".to_owned(),
            Match::Icmpv6Unreachable => "icmpv6 type destination-unreachable".to_owned(),
        }
    }
}

impl Verdict {
    /// As nft writes it.
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
            Verdict::TcpReset => "reject with tcp reset",
            Verdict::PortUnreachable => "reject with icmpx type port-unreachable",
        }
    }
}

impl Rule {
    /// The rule's matches and verdict as nft writes them (`meta l4proto udp drop`).
    pub fn text(&self) -> String {
        let mut parts: Vec<String> = self.matches.iter().map(Match::text).collect();
        parts.push(self.verdict.text().to_owned());
        parts.join(" ")
    }
}

/// The nft script that makes `chains` in `table` (`inet nightmare_monkey`): the table
/// (if missing), each chain (created: a name in use refuses it all), its rules.
pub fn script(table: &str, chains: &[Chain]) -> String {
    let mut script = format!("add table {table}\n");
    for chain in chains {
        script.push_str(&format!(
            "create chain {table} {} {{ type filter hook {} priority filter; policy accept; }}\n",
            chain.name,
            chain.hook.name()
        ));
        for rule in &chain.rules {
            script.push_str(&format!(
                "add rule {table} {} {}\n",
                chain.name,
                rule.text()
            ));
        }
    }
    script
}
