//! The messages laid out and read, and a revert against a real kernel in a namespace of
//! the test's own.

use super::*;
use crate::testns;

fn nft(script: &str) -> String {
    testns::nft(&["-f", "-"], script)
}

/// A real kernel, in a user and network namespace of the test's own: a revert
/// removes exactly its chains, the table only once nothing else is in it, never
/// another table; again, and with everything gone, it still succeeds.
#[test]
fn a_revert_removes_its_chains_and_only_an_empty_table() {
    if !testns::inside("nfnetlink::tests::a_revert_removes_its_chains_and_only_an_empty_table") {
        return;
    }
    let (a, b) = ("loss_00000000000000aa_in", "loss_00000000000000bb_out");
    nft(&format!(
        "add table inet host\nadd chain inet host keep {{ type filter hook input priority 0; }}\n\
         add table {t}\n\
         add chain {t} {a} {{ type filter hook input priority -150; }}\n\
         add rule {t} {a} udp dport 9 drop\n\
         add chain {t} {b} {{ type filter hook output priority -150; }}\n\
         add rule {t} {b} udp dport 9 drop\n",
        t = crate::nft::TABLE
    ));
    let listing = || nft("list ruleset\n");
    assert_eq!(
        remove(crate::nft::TABLE, &[a.to_owned()], Via::Fresh).unwrap(),
        vec![a.to_owned()]
    );
    let after = listing();
    assert!(!after.contains(a) && after.contains(b), "{after}");
    assert!(
        after.contains("table inet host") && after.contains("chain keep"),
        "{after}"
    );
    assert_eq!(
        remove(crate::nft::TABLE, &[b.to_owned()], Via::Kept).unwrap(),
        vec![b.to_owned()]
    );
    let after = listing();
    assert!(
        !after.contains("nightmare_monkey"),
        "the empty table goes: {after}"
    );
    assert!(after.contains("chain keep"), "{after}");
    // Again (a revert after a crash that had done it): nothing there, no error.
    assert!(remove(crate::nft::TABLE, &[b.to_owned()], Via::Kept)
        .unwrap()
        .is_empty());
    assert!(listing().contains("chain keep"));
}

#[test]
fn a_message_is_laid_out_as_netlink_wants() {
    let mut m = Messages::new();
    let seq = m.nft(NFT_MSG_DELTABLE, NLM_F_NONREC, &[(ATTR_TABLE, "nm")]);
    assert_eq!(seq, 1);
    // 16 header + 4 nfgenmsg + 4 attribute header + "nm\0" padded to 4.
    assert_eq!(m.buf.len(), 28);
    assert_eq!(u32::from_ne_bytes(m.buf[0..4].try_into().unwrap()), 28);
    assert_eq!(u16::from_ne_bytes([m.buf[4], m.buf[5]]), 0x0a02);
    assert_eq!(u16::from_ne_bytes([m.buf[6], m.buf[7]]), 0x105);
    assert_eq!(&m.buf[16..20], &[NFPROTO_INET, 0, 0, 0]);
    assert_eq!(
        u16::from_ne_bytes([m.buf[20], m.buf[21]]),
        7,
        "unpadded length"
    );
    assert_eq!(&m.buf[24..28], b"nm\0\0");
    m.begin();
    assert_eq!(
        &m.buf[28 + 16..28 + 20],
        &[0, 0, 0, 10],
        "res_id: nf_tables"
    );
}

#[test]
fn answers_are_read_as_sequence_and_errno() {
    // An NLMSG_ERROR answering sequence 7 with -EBUSY (16), the request's header echoed.
    let mut buf = Vec::new();
    buf.extend_from_slice(&36u32.to_ne_bytes());
    buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
    buf.extend_from_slice(&[0; 10]);
    buf.extend_from_slice(&(-16i32).to_ne_bytes());
    buf.extend_from_slice(&20u32.to_ne_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&7u32.to_ne_bytes());
    buf.extend_from_slice(&[0; 4]);
    let mut heard = Heard::default();
    hear(&buf, &mut heard);
    assert_eq!(heard.acks, vec![(7, 16)]);
    // A truncated one is left alone.
    hear(&buf[..30], &mut heard);
    assert_eq!(heard.acks.len(), 1);
    // A chain of a dump: its table and name; then the end of the dump.
    let mut m = Messages::new();
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN;
    m.push(
        kind,
        0,
        NFPROTO_INET,
        0,
        &[(ATTR_TABLE, "nm"), (ATTR_CHAIN_NAME, "c")],
    );
    m.push(NLMSG_DONE, 0, 0, 0, &[]);
    hear(&m.buf, &mut heard);
    assert_eq!(heard.chains, vec![("nm".to_owned(), "c".to_owned())]);
    assert!(heard.done);
}

#[test]
fn a_netlink_family_refused_says_what_the_unit_must_allow() {
    let hint = super::netlink_hint(rustix::io::Errno::AFNOSUPPORT);
    assert!(
        hint.contains("RestrictAddressFamilies=") && hint.contains("AF_NETLINK"),
        "{hint}"
    );
    assert_eq!(super::netlink_hint(rustix::io::Errno::PERM), "");
}
