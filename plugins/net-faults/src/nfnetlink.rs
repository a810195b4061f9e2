//! Packet faults spoken to the kernel directly (nfnetlink, the netlink protocol `nft`
//! itself speaks), not through a run of `nft`: the apply (one batch: our table if it is
//! missing, the fault's chains, their rules and the anonymous sets these look up,
//! lowered by `nfexpr`) and the revert.
//!
//! Why not `nft`: a run of `nft` that deletes a chain does not end when the rule is
//! gone. The kernel commits the deletion at once (the hook is unhooked inside the
//! transaction), but frees what it deleted only after an RCU grace period, and it waits
//! for that when the deleting program closes its netlink socket; `nft` closes it before
//! it exits. Measured (`bench/run --proxy`, kernel 6.18, two busy cores): 20-30 ms a
//! revert, of which the close was 17-20 ms and the start of `nft` most of the rest; an
//! apply by `nft -f` took 15 ms, 31 ms right after a revert (its exit waited out the rest
//! of that grace period). Here each transaction takes well under a millisecond, and the
//! socket is closed on a thread of its own, which waits for the kernel's memory instead
//! of the fault.
//!
//! Only messages rendered from checked values (our table, our chain names, the rules'
//! numbers and addresses); the script the dry run shows and the journal keeps is the
//! same rules' text (`rules`), which a test holds equal to what is installed.

use std::{
    os::fd::{AsFd, OwnedFd},
    sync::Mutex,
};

use nightmare_monkey_plugin_api::sdk::{ErrorKind, PluginError};

use crate::{
    nfexpr::{self, Attrs},
    rules::Chain,
};
use rustix::{
    io::Errno,
    net::{
        netlink, recv, send, socket_with, AddressFamily, RecvFlags, SendFlags, SocketFlags,
        SocketType,
    },
};

// From linux/netlink.h, linux/netfilter/nfnetlink.h and nf_tables.h.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
/// On a deletion: refuse (EBUSY) if it holds anything, rather than delete it all.
const NLM_F_NONREC: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
/// `NFTA_TABLE_NAME`, `NFTA_CHAIN_TABLE`, `NFTA_RULE_TABLE`.
const ATTR_TABLE: u16 = 1;
/// `NFTA_RULE_CHAIN`.
const ATTR_RULE_CHAIN: u16 = 2;
/// `NFTA_RULE_EXPRESSIONS`.
const ATTR_RULE_EXPRESSIONS: u16 = 4;
/// `NFTA_CHAIN_NAME`.
const ATTR_CHAIN_NAME: u16 = 3;
const NFPROTO_INET: u8 = 1;
const AF_UNSPEC: u8 = 0;

/// Messages to send at once, numbered from 1 on one socket.
struct Messages {
    buf: Vec<u8>,
    seq: u32,
}

impl Messages {
    fn new() -> Self {
        Self {
            buf: Vec::new(),
            seq: 0,
        }
    }

    /// Appends one message (its header, the nfgenmsg, the string attributes); its
    /// sequence number.
    fn push(
        &mut self,
        kind: u16,
        flags: u16,
        family: u8,
        res_id: u16,
        attrs: &[(u16, &str)],
    ) -> u32 {
        let mut body = Attrs::default();
        for (kind, value) in attrs {
            body.string(*kind, value);
        }
        self.push_attrs(kind, flags, family, res_id, &body)
    }

    /// Appends one message with the attributes `body`; its sequence number.
    fn push_attrs(&mut self, kind: u16, flags: u16, family: u8, res_id: u16, body: &Attrs) -> u32 {
        self.seq += 1;
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 16]);
        self.buf.extend_from_slice(&[family, 0]);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        self.buf.extend_from_slice(&body.0);
        let len = (self.buf.len() - start) as u32;
        let header = &mut self.buf[start..start + 16];
        header[0..4].copy_from_slice(&len.to_ne_bytes());
        header[4..6].copy_from_slice(&kind.to_ne_bytes());
        header[6..8].copy_from_slice(&flags.to_ne_bytes());
        header[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        self.seq
    }

    /// A message of nf_tables about our table (family inet), acknowledged.
    fn nft(&mut self, kind: u16, extra: u16, attrs: &[(u16, &str)]) -> u32 {
        let mut body = Attrs::default();
        for (kind, value) in attrs {
            body.string(*kind, value);
        }
        self.nft_attrs(kind, extra, &body)
    }

    /// The same with the attributes `body`.
    fn nft_attrs(&mut self, kind: u16, extra: u16, body: &Attrs) -> u32 {
        let kind = (NFNL_SUBSYS_NFTABLES << 8) | kind;
        self.push_attrs(
            kind,
            NLM_F_REQUEST | NLM_F_ACK | extra,
            NFPROTO_INET,
            0,
            body,
        )
    }

    fn begin(&mut self) {
        self.push(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            AF_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
    }

    fn end(&mut self) {
        self.push(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            AF_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
    }
}

/// What the kernel answered.
#[derive(Debug, Default, PartialEq)]
struct Heard {
    /// Acknowledgements and errors, as (sequence, errno: 0 for an acknowledgement).
    acks: Vec<(u32, i32)>,
    /// The chains a dump listed, as (table, chain).
    chains: Vec<(String, String)>,
    /// Whether a dump ended.
    done: bool,
}

/// The string attribute `kind` of a message's attributes `attrs`.
fn attribute(mut attrs: &[u8], kind: u16) -> Option<String> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let this = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if this == kind {
            let value = &attrs[4..len];
            let value = value.strip_suffix(&[0]).unwrap_or(value);
            return Some(String::from_utf8_lossy(value).into_owned());
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

/// Reads the messages in `buf` into `heard`.
fn hear(buf: &[u8], heard: &mut Heard) {
    let mut at = 0;
    while buf.len() >= at + 16 {
        let word = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let len = word(at) as usize;
        if len < 16 || at + len > buf.len() {
            return;
        }
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        if kind == NLMSG_ERROR && len >= 20 {
            let error = word(at + 16) as i32;
            // The header of the message answered follows: its sequence number.
            let seq = if len >= 36 {
                word(at + 28)
            } else {
                word(at + 8)
            };
            heard.acks.push((seq, -error));
        } else if kind == NLMSG_DONE {
            heard.done = true;
        } else if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN && len >= 20 {
            let attrs = &buf[at + 20..at + len];
            if let (Some(table), Some(chain)) = (
                attribute(attrs, ATTR_TABLE),
                attribute(attrs, ATTR_CHAIN_NAME),
            ) {
                heard.chains.push((table, chain));
            }
        }
        at += len.next_multiple_of(4);
    }
}

/// A netlink socket to nf_tables in this thread's network namespace (`None` once
/// handed to the thread that closes it). Opened where the fault strikes: the thread
/// has entered the fault's namespace (`netns::within`) when it is.
struct Socket(Option<OwnedFd>);

/// What to do about a netlink socket refused with `e`: a systemd unit whose
/// `RestrictAddressFamilies=` leaves out `AF_NETLINK` makes the kernel answer that the
/// family is not supported.
pub(crate) fn netlink_hint(e: rustix::io::Errno) -> &'static str {
    if e == rustix::io::Errno::AFNOSUPPORT {
        " (a systemd unit must allow AF_NETLINK in RestrictAddressFamilies=)"
    } else {
        ""
    }
}

impl Socket {
    fn open() -> Result<Self, PluginError> {
        socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            Some(netlink::NETFILTER),
        )
        .map(|fd| Self(Some(fd)))
        .map_err(|e| {
            failed(format!(
                "cannot open a netlink socket to nftables: {e}{}",
                netlink_hint(e)
            ))
        })
    }

    /// Sends `messages` and reads every answer: the kernel handles netlink requests
    /// within the send, so they are all queued when it returns (a dump's next part is
    /// queued as its last is read).
    fn exchange(&self, messages: &Messages) -> Result<Heard, PluginError> {
        let Some(fd) = &self.0 else {
            return Err(failed("the netlink socket is closed".to_owned()));
        };
        let mut buf = vec![0u8; 64 * 1024];
        // A kept socket may hold what an exchange that failed midway left: not ours.
        while let Ok((n, _)) = recv(fd.as_fd(), &mut buf[..], RecvFlags::DONTWAIT) {
            if n == 0 {
                break;
            }
        }
        send(fd.as_fd(), &messages.buf, SendFlags::empty())
            .map_err(|e| failed(format!("cannot talk to nftables over netlink: {e}")))?;
        let mut heard = Heard::default();
        loop {
            match recv(fd.as_fd(), &mut buf[..], RecvFlags::DONTWAIT) {
                Ok((0, _)) => break,
                Ok((n, _)) => hear(&buf[..n], &mut heard),
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => {}
                Err(e) => return Err(failed(format!("cannot hear nftables over netlink: {e}"))),
            }
        }
        Ok(heard)
    }
}

impl Drop for Socket {
    /// Closed on a thread of its own: the close waits for the kernel to free what a
    /// deletion removed (an RCU grace period), which the revert need not wait for.
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            // Without a thread (none to be had), closed here.
            let _ = std::thread::Builder::new()
                .name("nft-close".to_owned())
                .spawn(move || drop(fd));
        }
    }
}

/// Which socket a transaction goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The one kept open for the daemon's own network namespace. Closing a socket that
    /// deleted rules makes the kernel finish freeing them (an RCU grace period, 20 ms
    /// and more on a busy host) while it holds nf_tables' commit lock, so the next
    /// transaction, the next fault's apply, waited for it; a socket never closed leaves
    /// the freeing to the kernel's worker, and nobody waits.
    Kept,
    /// One of its own, in the namespace this thread entered (a scoped fault's), closed
    /// after on a thread of its own: kept, it would keep that namespace alive.
    Fresh,
}

/// The socket of the daemon's own namespace, once opened.
static KEPT: Mutex<Option<Socket>> = Mutex::new(None);

/// Runs `work` with a socket `via`.
fn through<R>(
    via: Via,
    work: impl FnOnce(&Socket) -> Result<R, PluginError>,
) -> Result<R, PluginError> {
    if via == Via::Fresh {
        return work(&Socket::open()?);
    }
    let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    let socket = match kept.take() {
        Some(socket) => socket,
        None => Socket::open()?,
    };
    let done = work(&socket);
    *kept = Some(socket);
    done
}

fn failed(message: String) -> PluginError {
    PluginError::new(ErrorKind::Failed, message)
}

/// What errno `code` means, said for an operator.
fn refused(what: &str, code: i32) -> PluginError {
    let errno = Errno::from_raw_os_error(code);
    if errno == Errno::PERM {
        return PluginError::new(
            ErrorKind::Denied,
            format!("nftables refused to {what}: {errno} (network faults need CAP_NET_ADMIN)"),
        );
    }
    failed(format!("nftables refused to {what}: {errno}"))
}

/// The first error among `answers` (none if all were acknowledged).
fn first_error(answers: &[(u32, i32)]) -> Option<i32> {
    answers.iter().map(|a| a.1).find(|&e| e != 0)
}

/// Removes `chains` from `table` (`family name`) in one transaction, those that are
/// gone already being no error, then the table if nothing else was in it, after one
/// listing of its chains (all in-process: well under a millisecond). The table is
/// deleted with `NLM_F_NONREC`, which the kernel refuses while anything is in it: a
/// chain another process added since the listing stays, and nothing but ours is ever
/// touched. Returns the chains that were there.
pub fn remove(table: &str, chains: &[String], via: Via) -> Result<Vec<String>, PluginError> {
    through(via, |socket| remove_through(socket, table, chains))
}

fn remove_through(
    socket: &Socket,
    table: &str,
    chains: &[String],
) -> Result<Vec<String>, PluginError> {
    let name = table.split_once(' ').map_or(table, |(_, name)| name);
    // What is in our table (one dump, filtered by table where the kernel can).
    let mut ask = Messages::new();
    let dump = NLM_F_REQUEST | NLM_F_DUMP;
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN;
    ask.push(kind, dump, NFPROTO_INET, 0, &[(ATTR_TABLE, name)]);
    let heard = socket.exchange(&ask)?;
    if let Some(e) = first_error(&heard.acks) {
        return Err(refused("list our table's chains", e));
    }
    if !heard.done {
        return Err(failed(
            "nftables did not finish listing our table's chains".to_owned(),
        ));
    }
    let listed: Vec<&str> = heard
        .chains
        .iter()
        .filter(|(t, _)| t == name)
        .map(|(_, c)| c.as_str())
        .collect();
    let there: Vec<String> = chains
        .iter()
        .filter(|c| listed.contains(&c.as_str()))
        .cloned()
        .collect();
    let others = listed.iter().any(|c| !chains.iter().any(|ours| ours == c));
    if !there.is_empty() {
        // As `nft` runs `add table; add chain; flush chain; delete chain`: added first
        // (a no-op when there), so that one gone meanwhile fails nothing.
        let mut batch = Messages::new();
        batch.begin();
        batch.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, &[(ATTR_TABLE, name)]);
        for chain in chains {
            let attrs = [(ATTR_TABLE, name), (ATTR_CHAIN_NAME, chain.as_str())];
            batch.nft(NFT_MSG_NEWCHAIN, NLM_F_CREATE, &attrs);
            let rules = [(ATTR_TABLE, name), (ATTR_RULE_CHAIN, chain.as_str())];
            batch.nft(NFT_MSG_DELRULE, 0, &rules);
            batch.nft(NFT_MSG_DELCHAIN, 0, &attrs);
        }
        batch.end();
        let last = batch.seq - 1;
        let heard = socket.exchange(&batch)?;
        if let Some(e) = first_error(&heard.acks) {
            return Err(refused(&format!("remove chains {}", chains.join(", ")), e));
        }
        if !heard.acks.iter().any(|a| a.0 == last) {
            return Err(failed(
                "nftables did not acknowledge the removal of our chains".to_owned(),
            ));
        }
    }
    // The table, only if nothing else was in it. NLM_F_NONREC besides: the kernel
    // refuses (EBUSY) to delete a table that holds anything, such as a chain another
    // process added since the listing; ENOENT: gone already.
    if !others {
        let mut batch = Messages::new();
        batch.begin();
        batch.nft(NFT_MSG_DELTABLE, NLM_F_NONREC, &[(ATTR_TABLE, name)]);
        batch.end();
        let heard = socket.exchange(&batch)?;
        match first_error(&heard.acks) {
            None => {}
            Some(e) if e == Errno::BUSY.raw_os_error() || e == Errno::NOENT.raw_os_error() => {}
            Some(e) => return Err(refused(&format!("delete table {table}"), e)),
        }
    }
    Ok(there)
}

/// Installs `chains` in `table` (`family name`) in one transaction: the table if it is
/// missing, each chain created (a name in use refuses the whole batch), then its rules,
/// each after the anonymous sets it looks up. All of it applies or none. An error names
/// the script's line it came from.
pub fn apply(table: &str, chains: &[Chain], via: Via) -> Result<(), PluginError> {
    let name = table.split_once(' ').map_or(table, |(_, name)| name);
    let mut batch = Messages::new();
    // Each message's sequence number and the line of the script it is.
    let mut lines: Vec<(u32, String)> = Vec::new();
    batch.begin();
    let seq = batch.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, &[(ATTR_TABLE, name)]);
    lines.push((seq, format!("add table {table}")));
    let mut sets = 0;
    for chain in chains {
        let attrs = nfexpr::chain(name, chain);
        let seq = batch.nft_attrs(NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL, &attrs);
        lines.push((seq, format!("create chain {table} {}", chain.name)));
        for rule in &chain.rules {
            let line = format!("add rule {table} {} {}", chain.name, rule.text());
            let (needed, exprs) = nfexpr::rule(rule, &mut sets);
            for set in &needed {
                let seq = batch.nft_attrs(NFT_MSG_NEWSET, NLM_F_CREATE, &set.declaration(name));
                lines.push((seq, line.clone()));
                let seq = batch.nft_attrs(NFT_MSG_NEWSETELEM, NLM_F_CREATE, &set.elements(name));
                lines.push((seq, line.clone()));
            }
            let mut body = Attrs::default();
            body.string(ATTR_TABLE, name)
                .string(ATTR_RULE_CHAIN, &chain.name)
                .nested(ATTR_RULE_EXPRESSIONS, |list| {
                    list.0.extend_from_slice(&exprs.0)
                });
            let seq = batch.nft_attrs(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, &body);
            lines.push((seq, line));
        }
    }
    batch.end();
    let last = batch.seq - 1;
    let heard = through(via, |socket| socket.exchange(&batch))?;
    if let Some(&(seq, e)) = heard.acks.iter().find(|a| a.1 != 0) {
        let line = lines.iter().find(|l| l.0 == seq).map(|l| l.1.as_str());
        let line = line.unwrap_or("apply our rules");
        if e == Errno::EXIST.raw_os_error() && line.starts_with("create chain") {
            return Err(PluginError::new(
                ErrorKind::NoTarget,
                format!("nftables refused `{line}`: {} (a chain of this name is another fault's: nothing applied)", Errno::EXIST),
            ));
        }
        return Err(refused(&format!("apply `{line}`"), e));
    }
    if !heard.acks.iter().any(|a| a.0 == last) {
        return Err(failed("nftables did not acknowledge our rules".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
