//! Rules ([`crate::rules`]) as nf_tables netlink messages: each match lowered to the
//! expressions `nft` itself generates for its text (a dependency first, such as `meta
//! nfproto ipv4` before `ip saddr`; a payload load; a comparison or a lookup in an
//! anonymous set), so that `nft list` reads back exactly the script the dry run printed
//! (a test in a namespace of its own holds the two listings equal).

use crate::rules::{Chain, Cidr, End, Hook, Match, Rule, Verdict, ICMP, ICMPV6, TCP};

// From linux/netlink.h and linux/netfilter/nf_tables.h.
const NLA_F_NESTED: u16 = 0x8000;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
/// `NFT_REG_1`: a 16-byte register; `NFT_REG_VERDICT`.
const REG_1: u32 = 1;
const REG_VERDICT: u32 = 0;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const BASE_NETWORK: u32 = 1;
const BASE_TRANSPORT: u32 = 2;
const CMP_EQ: u32 = 0;
const CMP_LT: u32 = 2;
const CMP_LTE: u32 = 3;
const CMP_GTE: u32 = 5;
const NFT_NG_RANDOM: u32 = 1;
const NFT_BYTEORDER_HTON: u32 = 1;
const NFT_REJECT_TCP_RST: u32 = 1;
const NFT_REJECT_ICMPX_UNREACH: u32 = 2;
const NFT_REJECT_ICMPX_PORT_UNREACH: u8 = 1;
const NFT_SET_ANONYMOUS: u32 = 0x1;
const NFT_SET_CONSTANT: u32 = 0x2;
const NFT_SET_INTERVAL: u32 = 0x4;
const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;
/// nft's own key types (its datatypes), which `nft list` reads the elements with.
const TYPE_IPV4_ADDR: u32 = 7;
const TYPE_IPV6_ADDR: u32 = 8;
const TYPE_INET_PROTO: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
/// The name of every anonymous set: the kernel numbers them (`__set0`, ...).
pub const ANONYMOUS_SET: &str = "__set%d";

/// Netlink attributes, appended one after another (each padded to 4 bytes).
#[derive(Debug, Default)]
pub struct Attrs(pub Vec<u8>);

impl Attrs {
    /// Appends attribute `kind` holding `value`.
    pub fn bytes(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = (4 + value.len()) as u16;
        self.0.extend_from_slice(&len.to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }

    /// A string, with its terminating NUL.
    pub fn string(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        self.bytes(kind, &bytes)
    }

    /// A 32-bit number, in network order as nf_tables wants its numbers.
    pub fn u32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    /// A nested attribute: what `fill` appends, inside.
    pub fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut Attrs)) -> &mut Self {
        let start = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        fill(self);
        let len = (self.0.len() - start) as u16;
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.0[start + 2..start + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    /// A value (`nft_data`) nested in `kind`.
    fn data(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        self.nested(kind, |d| {
            d.bytes(NFTA_DATA_VALUE, value);
        })
    }
}

/// An anonymous set a rule looks up, sent before the rule in the same batch.
#[derive(Debug, PartialEq)]
pub struct Set {
    /// Its id within the batch (the rule's lookup names it).
    pub id: u32,
    flags: u32,
    key_type: u32,
    key_len: u32,
    /// The size nft announces (its elements before the open end of an interval).
    size: u32,
    /// Each element: key, flags, and whether it starts an interval open to the top.
    elements: Vec<(Vec<u8>, u32, bool)>,
}

impl Set {
    /// The attributes of its `NFT_MSG_NEWSET`.
    pub fn declaration(&self, table: &str) -> Attrs {
        let mut a = Attrs::default();
        a.string(1, table)
            .string(2, ANONYMOUS_SET)
            .u32(3, self.flags)
            .u32(4, self.key_type)
            .u32(5, self.key_len)
            .nested(9, |desc| {
                desc.u32(1, self.size);
            })
            .u32(10, self.id);
        a
    }

    /// The attributes of its `NFT_MSG_NEWSETELEM`.
    pub fn elements(&self, table: &str) -> Attrs {
        let mut a = Attrs::default();
        a.string(1, table).string(2, ANONYMOUS_SET);
        a.nested(3, |list| {
            for (key, flags, open) in &self.elements {
                list.nested(NFTA_LIST_ELEM, |e| {
                    e.data(1, key);
                    if *flags != 0 {
                        e.u32(3, *flags);
                    }
                    if *open {
                        // nft's note on the element: an interval open to the top.
                        e.bytes(6, &[1, 4, 1, 0, 0, 0]);
                    }
                });
            }
        });
        a.u32(4, self.id);
        a
    }
}

/// One rule lowered: the sets it needs and its expressions (`NFTA_RULE_EXPRESSIONS`).
struct Lowering<'a> {
    exprs: Attrs,
    sets: Vec<Set>,
    next_set: &'a mut u32,
}

impl Lowering<'_> {
    fn expr(&mut self, name: &str, fill: impl FnOnce(&mut Attrs)) {
        self.exprs.nested(NFTA_LIST_ELEM, |e| {
            e.string(NFTA_EXPR_NAME, name).nested(NFTA_EXPR_DATA, fill);
        });
    }

    fn meta(&mut self, key: u32) {
        self.expr("meta", |d| {
            d.u32(2, key).u32(1, REG_1);
        });
    }

    fn cmp(&mut self, op: u32, value: &[u8]) {
        self.expr("cmp", |d| {
            d.u32(1, REG_1).u32(2, op).data(3, value);
        });
    }

    fn payload(&mut self, base: u32, offset: u32, len: u32) {
        self.expr("payload", |d| {
            d.u32(1, REG_1).u32(2, base).u32(3, offset).u32(4, len);
        });
    }

    fn bitwise(&mut self, mask: &[u8]) {
        let xor = vec![0; mask.len()];
        self.expr("bitwise", |d| {
            d.u32(1, REG_1)
                .u32(2, REG_1)
                .u32(3, mask.len() as u32)
                .data(4, mask)
                .data(5, &xor);
        });
    }

    /// `meta nfproto ipv4` (or ipv6), `meta l4proto tcp`: a dependency nft adds.
    fn is(&mut self, key: u32, value: u8) {
        self.meta(key);
        self.cmp(CMP_EQ, &[value]);
    }

    /// Register 1 in one of `values` (ranges of numbers `width` bytes wide, of nft's
    /// type `key_type`): compared when one, looked up in an anonymous set when more.
    fn one_of(&mut self, width: usize, key_type: u32, values: &[(u128, u128)]) {
        let key = |v: u128| v.to_be_bytes()[16 - width..].to_vec();
        match values {
            [(lo, hi)] if lo == hi => self.cmp(CMP_EQ, &key(*lo)),
            [(lo, hi)] => {
                self.cmp(CMP_GTE, &key(*lo));
                self.cmp(CMP_LTE, &key(*hi));
            }
            _ => {
                let set = set(width, key_type, values, key);
                self.lookup(set);
            }
        }
    }

    fn lookup(&mut self, mut set: Set) {
        *self.next_set += 1;
        set.id = *self.next_set;
        let id = set.id;
        self.sets.push(set);
        self.expr("lookup", |d| {
            d.u32(2, REG_1).string(1, ANONYMOUS_SET).u32(4, id);
        });
    }

    fn port(&mut self, end: End, ranges: &[(u16, u16)]) {
        let offset = match end {
            End::Source => 0,
            End::Destination => 2,
        };
        self.payload(BASE_TRANSPORT, offset, 2);
        let values: Vec<(u128, u128)> = ranges
            .iter()
            .map(|&(lo, hi)| (u128::from(lo), u128::from(hi)))
            .collect();
        self.one_of(2, TYPE_INET_SERVICE, &values);
    }

    fn peer(&mut self, end: End, cidrs: &[Cidr]) {
        let v4 = cidrs.first().is_none_or(Cidr::is_v4);
        let (family, width, offset, key_type) = match (v4, end) {
            (true, End::Source) => (NFPROTO_IPV4, 4, 12, TYPE_IPV4_ADDR),
            (true, End::Destination) => (NFPROTO_IPV4, 4, 16, TYPE_IPV4_ADDR),
            (false, End::Source) => (NFPROTO_IPV6, 16, 8, TYPE_IPV6_ADDR),
            (false, End::Destination) => (NFPROTO_IPV6, 16, 24, TYPE_IPV6_ADDR),
        };
        self.is(NFT_META_NFPROTO, family);
        let prefix = usize::from(cidrs.first().map_or(0, Cidr::prefix));
        match cidrs {
            // A whole network: only its bytes loaded when it ends on a byte (`/8`),
            // else masked (`/12`, and `/0` as nft does it).
            [cidr] if prefix < width * 8 => {
                let bytes = cidr.bytes();
                if prefix % 8 == 0 && prefix > 0 {
                    self.payload(BASE_NETWORK, offset, (prefix / 8) as u32);
                    self.cmp(CMP_EQ, &bytes[..prefix / 8]);
                } else {
                    self.payload(BASE_NETWORK, offset, width as u32);
                    let mask: Vec<u8> = (0..width)
                        .map(|i| {
                            let bits = prefix.saturating_sub(i * 8).min(8);
                            (0xff00u16 >> bits) as u8
                        })
                        .collect();
                    self.bitwise(&mask);
                    self.cmp(CMP_EQ, &bytes);
                }
            }
            _ => {
                self.payload(BASE_NETWORK, offset, width as u32);
                let values: Vec<(u128, u128)> = cidrs.iter().map(range).collect();
                self.one_of(width, key_type, &values);
            }
        }
    }

    fn lower(&mut self, m: &Match) {
        match m {
            Match::L4proto(numbers) => {
                self.meta(NFT_META_L4PROTO);
                let values: Vec<(u128, u128)> = numbers
                    .iter()
                    .map(|&p| (u128::from(p), u128::from(p)))
                    .collect();
                self.one_of(1, TYPE_INET_PROTO, &values);
            }
            Match::TcpPort(end, ports) => {
                self.is(NFT_META_L4PROTO, TCP);
                let ranges: Vec<(u16, u16)> = ports.iter().map(|&p| (p, p)).collect();
                self.port(*end, &ranges);
            }
            Match::Port(end, ranges) => self.port(*end, ranges),
            Match::Peer(end, cidrs) => self.peer(*end, cidrs),
            Match::Random { modulus, below } => {
                self.expr("numgen", |d| {
                    d.u32(1, REG_1)
                        .u32(2, *modulus)
                        .u32(3, NFT_NG_RANDOM)
                        .u32(4, 0);
                });
                // The draw is a number of the host's order; the comparison reads bytes.
                self.expr("byteorder", |d| {
                    d.u32(1, REG_1)
                        .u32(2, REG_1)
                        .u32(3, NFT_BYTEORDER_HTON)
                        .u32(4, 4)
                        .u32(5, 4);
                });
                self.cmp(CMP_LT, &below.to_be_bytes());
            }
            Match::TcpReset => {
                self.is(NFT_META_L4PROTO, TCP);
                self.payload(BASE_TRANSPORT, 13, 1);
                self.bitwise(&[0x04]);
                self.cmp(CMP_EQ, &[0x04]);
            }
            Match::IcmpUnreachable => {
                self.is(NFT_META_NFPROTO, NFPROTO_IPV4);
                self.is(NFT_META_L4PROTO, ICMP);
                self.payload(BASE_TRANSPORT, 0, 1);
                self.cmp(CMP_EQ, &[3]);
            }
            Match::Icmpv6Unreachable => {
                self.is(NFT_META_NFPROTO, NFPROTO_IPV6);
                self.is(NFT_META_L4PROTO, ICMPV6);
                self.payload(BASE_TRANSPORT, 0, 1);
                self.cmp(CMP_EQ, &[1]);
            }
        }
    }

    fn verdict(&mut self, verdict: Verdict) {
        let code = match verdict {
            Verdict::Accept => NF_ACCEPT,
            Verdict::Drop => NF_DROP,
            Verdict::TcpReset => {
                return self.expr("reject", |d| {
                    d.u32(1, NFT_REJECT_TCP_RST).bytes(2, &[0]);
                })
            }
            Verdict::PortUnreachable => {
                return self.expr("reject", |d| {
                    d.u32(1, NFT_REJECT_ICMPX_UNREACH)
                        .bytes(2, &[NFT_REJECT_ICMPX_PORT_UNREACH]);
                })
            }
        };
        self.expr("immediate", |d| {
            d.u32(1, REG_VERDICT).nested(2, |data| {
                data.nested(NFTA_DATA_VERDICT, |v| {
                    v.u32(NFTA_VERDICT_CODE, code);
                });
            });
        });
    }
}

/// A network's first and last address, as numbers.
fn range(cidr: &Cidr) -> (u128, u128) {
    let bytes = cidr.bytes();
    let bits = bytes.len() as u32 * 8;
    let value = bytes.iter().fold(0u128, |v, &b| (v << 8) | u128::from(b));
    let host = 1u128
        .checked_shl(bits - u32::from(cidr.prefix()))
        .map_or(u128::MAX, |b| b - 1);
    (value, value | host)
}

/// The anonymous set of `values`: of single values as given; of intervals (when one is
/// a range) sorted and merged where they touch or overlap, each written as its start
/// and the end's successor (flagged an end), after a leading end at zero, as nft does.
fn set(width: usize, key_type: u32, values: &[(u128, u128)], key: impl Fn(u128) -> Vec<u8>) -> Set {
    let flags = NFT_SET_ANONYMOUS | NFT_SET_CONSTANT;
    if values.iter().all(|(lo, hi)| lo == hi) {
        return Set {
            id: 0,
            flags,
            key_type,
            key_len: width as u32,
            size: values.len() as u32,
            elements: values.iter().map(|(v, _)| (key(*v), 0, false)).collect(),
        };
    }
    let max = if width >= 16 {
        u128::MAX
    } else {
        (1u128 << (width * 8)) - 1
    };
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::new();
    for (lo, hi) in sorted {
        match merged.last_mut() {
            Some(last) if last.1 == max || lo <= last.1 + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    let mut elements = Vec::new();
    let mut size = 2 * merged.len() as u32;
    if merged.first().is_some_and(|r| r.0 != 0) {
        elements.push((key(0), NFT_SET_ELEM_INTERVAL_END, false));
        size += 1;
    }
    for (lo, hi) in merged {
        elements.push((key(lo), 0, hi == max));
        if hi != max {
            elements.push((key(hi + 1), NFT_SET_ELEM_INTERVAL_END, false));
        }
    }
    Set {
        id: 0,
        flags: flags | NFT_SET_INTERVAL,
        key_type,
        key_len: width as u32,
        size,
        elements,
    }
}

/// `rule` lowered: the sets it needs (numbered on from `next_set`) and its expressions.
pub fn rule(rule: &Rule, next_set: &mut u32) -> (Vec<Set>, Attrs) {
    let mut lowering = Lowering {
        exprs: Attrs::default(),
        sets: Vec::new(),
        next_set,
    };
    for m in &rule.matches {
        lowering.lower(m);
    }
    lowering.verdict(rule.verdict);
    (lowering.sets, lowering.exprs)
}

/// The attributes of a chain's `NFT_MSG_NEWCHAIN`: a base chain of type filter at
/// priority filter (0), policy accept.
pub fn chain(table: &str, chain: &Chain) -> Attrs {
    let hook = match chain.hook {
        Hook::Input => 1,
        Hook::Output => 3,
    };
    let mut a = Attrs::default();
    a.string(1, table)
        .string(3, &chain.name)
        .string(7, "filter")
        .u32(5, NF_ACCEPT)
        .nested(4, |h| {
            h.u32(1, hook).u32(2, 0);
        });
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_merged_and_ended_as_nft_writes_them() {
        let key = |v: u128| vec![(v >> 8) as u8, v as u8];
        // { 53, 8000-8100 }: a leading end at 0, each start and its end's successor.
        let s = set(2, 13, &[(53, 53), (8000, 8100)], key);
        assert_eq!(s.flags, 7);
        let keys: Vec<(u128, u32, bool)> = s
            .elements
            .iter()
            .map(|(k, f, o)| ((u128::from(k[0]) << 8) | u128::from(k[1]), *f, *o))
            .collect();
        assert_eq!(
            keys,
            [
                (0, 1, false),
                (53, 0, false),
                (54, 1, false),
                (8000, 0, false),
                (8101, 1, false)
            ]
        );
        assert_eq!(s.size, 5);
        // Touching and overlapping ranges merge; one up to 65535 is open at the top.
        let s = set(
            2,
            13,
            &[(61, 70), (53, 60), (60000, 65535), (65000, 65535)],
            key,
        );
        assert_eq!(s.elements.len(), 4);
        assert_eq!(s.elements[3], (vec![0xea, 0x60], 0, true));
        assert_eq!(s.size, 5);
        // Single values: a plain set, as given.
        let s = set(2, 13, &[(80, 80), (53, 53)], key);
        assert_eq!((s.flags, s.size, s.elements.len()), (3, 2, 2));
        assert_eq!(s.elements[0].0, vec![0, 80]);
    }

    #[test]
    fn a_network_is_its_first_and_last_address() {
        let cidr = Cidr::parse("10.16.0.0/12").unwrap();
        assert_eq!(range(&cidr), (0x0a10_0000, 0x0a1f_ffff));
        assert_eq!(range(&Cidr::parse("0.0.0.0/0").unwrap()), (0, 0xffff_ffff));
        assert_eq!(range(&Cidr::parse("::/0").unwrap()), (0, u128::MAX));
        assert_eq!(range(&Cidr::parse("::1").unwrap()), (1, 1));
    }

    #[test]
    fn a_nested_attribute_holds_its_length_and_flag() {
        let mut a = Attrs::default();
        a.nested(4, |h| {
            h.u32(1, 3);
        });
        assert_eq!(a.0.len(), 12);
        assert_eq!(u16::from_ne_bytes([a.0[0], a.0[1]]), 12);
        assert_eq!(u16::from_ne_bytes([a.0[2], a.0[3]]), 4 | NLA_F_NESTED);
        assert_eq!(&a.0[8..12], &[0, 0, 0, 3]);
    }
}
