//! Processes that escaped the ones the daemon started. A plugin's worker and a probe's
//! command run in process groups of their own, killed whole when they end; a child that
//! calls `setsid()` or `setpgid()` leaves that group and would outlive them, the daemon
//! too. The daemon is made a child subreaper ([`adopt`]): such an orphan becomes its
//! child when its parent ends, and [`sweep`] kills and reaps every child of the daemon
//! that is in a session other than its own, or in a process group that is neither its
//! own nor one it started ([`start_group`]). The daemon's other children (a built-in
//! fault's `tc`) stay in its own group.
//!
//! The daemon and a one-shot `kill` adopt; the sandbox does not: there, PID 1 adopts
//! every orphan of the command under drill, which are not the monkey's to end.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::fd::{AsFd as _, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use rustix::process::{
    pidfd_open, pidfd_send_signal, waitid, Pid, PidfdFlags, Signal, WaitId, WaitIdOptions,
};

/// Whether this process adopts orphans (the daemon).
static ADOPTING: AtomicBool = AtomicBool::new(false);

/// The process groups this process started and has not yet reaped the leader of (see
/// [`start_group`]), each with how many handles name it (a PID reused between a reap and
/// its handle's drop is counted twice, not lost). A sweep holds the lock from the moment
/// it lists the children, so a child is never seen between its start and its group's
/// entry here.
static STARTED: Mutex<BTreeMap<u32, usize>> = Mutex::new(BTreeMap::new());

fn started() -> MutexGuard<'static, BTreeMap<u32, usize>> {
    STARTED.lock().unwrap_or_else(|p| p.into_inner())
}

/// A process group this process started, known as its own until this is dropped: after
/// the group's leader is reaped (a sweep may reap a leader whose group is not known).
#[derive(Debug)]
pub struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let mut groups = started();
        if let Some(handles) = groups.get_mut(&self.0) {
            *handles -= 1;
            if *handles == 0 {
                groups.remove(&self.0);
            }
        }
    }
}

/// Starts a child in a process group of its own (`spawn` does, with `process_group(0)`)
/// and records that group as this process's, with no sweep in between. `pid` gives the
/// child's PID, which is its group's ID.
pub fn start_group<C>(
    spawn: impl FnOnce() -> std::io::Result<C>,
    pid: impl FnOnce(&C) -> Option<u32>,
) -> std::io::Result<(C, Option<Group>)> {
    let mut groups = started();
    let child = spawn()?;
    let group = pid(&child).map(|pid| {
        *groups.entry(pid).or_default() += 1;
        Group(pid)
    });
    Ok((child, group))
}

/// How often the daemon looks for orphans if it cannot hear its children end (SIGCHLD:
/// a child's child that outlives its own parent is adopted as that parent ends).
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Makes this process a child subreaper, and [`sweep`] effective; `Err` says why not.
///
/// The children this process has already (inherited through `exec` from a shell's
/// background jobs) are not its orphans, and never swept.
pub fn adopt() -> std::io::Result<()> {
    let me = rustix::process::getpid();
    rustix::process::set_child_subreaper(Some(me))?;
    *INHERITED.lock().unwrap_or_else(|p| p.into_inner()) = children().into_iter().collect();
    ADOPTING.store(true, Ordering::SeqCst);
    Ok(())
}

/// Runs a short-lived command's `work` as the parent of what it leaves behind: what a
/// plugin file's worker or a probe's command starts and leaves with setsid() or setpgid()
/// is adopted and ended (at the worker's end and at the command's), so it never outlives
/// the command. Not as PID 1 (a container's), where every orphan of the namespace comes
/// and none is ours.
pub fn ending_what_escapes<T>(work: impl FnOnce() -> T) -> T {
    if !rustix::process::getpid().is_init() {
        let _ = adopt();
    }
    let done = work();
    sweep_to_the_end(TO_THE_END);
    done
}

/// The children this process had when it began to adopt ([`adopt`]). Their PIDs stay
/// theirs until this process reaps them, which no sweep does.
static INHERITED: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Kills and reaps every child of this process that is an orphan it adopted (see
/// [`is_orphan`]); how many it signalled or reaped. Never waits long (it may run on the
/// async runtime): it reads `/proc` with [`start_group`]'s lock held. What an orphan
/// leaves when it dies is adopted then, and swept at the next child's end (the daemon
/// sweeps at every SIGCHLD) or by [`sweep_to_the_end`]. Nothing unless [`adopt`] was
/// called.
pub fn sweep() -> usize {
    sweep_once().len()
}

/// How long [`sweep_to_the_end`] waits, at most, where it is used: a process killed ends
/// at once unless it sits in an uninterruptible sleep.
pub const TO_THE_END: Duration = Duration::from_secs(2);

/// Sweeps, waits for what it signalled to end, and sweeps again what those left (their
/// own children, adopted as they end), until a sweep finds nothing or `within` has
/// passed (a process in an uninterruptible sleep ends later); how many it signalled or
/// reaped.
/// For a thread that may wait, and a process that does not sweep at every SIGCHLD (a
/// one-shot command).
pub fn sweep_to_the_end(within: Duration) -> usize {
    let until = Instant::now() + within;
    let mut swept = 0;
    loop {
        let signalled = sweep_once();
        if signalled.is_empty() {
            return swept;
        }
        swept += signalled.len();
        for pidfd in &signalled {
            reap(pidfd, until.saturating_duration_since(Instant::now()));
        }
        if Instant::now() >= until {
            return swept;
        }
    }
}

/// Waits up to `within` for the child `pidfd` names to end, and reaps it if it has (not
/// if another thread has already).
pub fn reap(pidfd: &OwnedFd, within: Duration) {
    if let Ok(timeout) = rustix::event::Timespec::try_from(within) {
        // Readable once the process has ended.
        let mut fds = [rustix::event::PollFd::new(
            pidfd,
            rustix::event::PollFlags::IN,
        )];
        let _ = rustix::event::poll(&mut fds, Some(&timeout));
    }
    let _ = waitid(
        WaitId::PidFd(pidfd.as_fd()),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
    );
}

/// One sweep: the pidfds of the orphans it signalled or reaped.
fn sweep_once() -> Vec<OwnedFd> {
    let mut signalled = Vec::new();
    if !ADOPTING.load(Ordering::SeqCst) {
        return signalled;
    }
    let groups = started();
    let inherited = INHERITED.lock().unwrap_or_else(|p| p.into_inner());
    let Some(ours) = ids_of("self") else {
        return signalled;
    };
    let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
    // Still this process's child (read again after the pidfd is open: a PID reaped and
    // reused meanwhile names another process, whose parent is not this one).
    let orphan = |pid: i32| {
        !inherited.contains(&pid)
            && ids_of(&pid.to_string())
                .is_some_and(|theirs| theirs.parent == me && is_orphan(theirs, ours, &groups))
    };
    for pid in children() {
        // Through its pidfd, so that a PID reused meanwhile is never signalled.
        if !orphan(pid) {
            continue;
        }
        let Some(pid) = Pid::from_raw(pid) else {
            continue;
        };
        let Ok(pidfd) = pidfd_open(pid, PidfdFlags::empty()) else {
            continue;
        };
        // Checked again through the pidfd's process: still an orphan.
        if !orphan(pid.as_raw_nonzero().get()) {
            continue;
        }
        // Reaped if it is gone already; if not yet (it dies in an instant, or sits in an
        // uninterruptible sleep), the next sweep reaps it: a sweep never waits.
        let sent = pidfd_send_signal(pidfd.as_fd(), Signal::KILL).is_ok();
        let reaped = matches!(
            waitid(
                WaitId::PidFd(pidfd.as_fd()),
                WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
            ),
            Ok(Some(_))
        );
        // Reaped, even if it had ended before: what it left is adopted, to sweep next.
        if sent || reaped {
            signalled.push(pidfd);
        }
    }
    signalled
}

/// The children of this process, every thread's.
fn children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut all: Vec<i32> = tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// A process's parent, group and session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ids {
    parent: u32,
    group: u32,
    session: u32,
}

/// Whether a child with `theirs` is an orphan to end, for a process with `ours` that
/// started the groups in `started`: one in another session (it called `setsid()`), or
/// in a group that is neither this process's own nor one it started (it called
/// `setpgid()`). A child of a started group that is not its leader (adopted when its
/// parent in that group ended) goes down with that group.
fn is_orphan(theirs: Ids, ours: Ids, started: &BTreeMap<u32, usize>) -> bool {
    theirs.session != ours.session
        || (theirs.group != ours.group && !started.contains_key(&theirs.group))
}

/// The parent, group and session of process `pid` (`self` for this one), from
/// `/proc/PID/stat`.
fn ids_of(pid: &str) -> Option<Ids> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    ids_in(&stat)
}

/// The parent, group and session fields of a `/proc/PID/stat` line: the second to the
/// fourth after the command's `)` (state, ppid, pgrp, session); the command may hold
/// spaces and parentheses.
fn ids_in(stat: &str) -> Option<Ids> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(1);
    let parent = fields.next()?.parse().ok()?;
    let group = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    Some(Ids {
        parent,
        group,
        session,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(group: u32, session: u32) -> Ids {
        Ids {
            parent: 1,
            group,
            session,
        }
    }

    #[test]
    fn the_group_and_session_are_read_after_the_last_parenthesis() {
        assert_eq!(
            ids_in("123 (a) b (c)) S 1 123 4567 0 -1 4194560"),
            Some(ids(123, 4567))
        );
        assert_eq!(
            ids_in("1 (init) S 0 1 1 0"),
            Some(Ids {
                parent: 0,
                ..ids(1, 1)
            })
        );
        assert_eq!(ids_in("garbage"), None);
        assert_eq!(ids_in("1 (x) S 0 1"), None);
        assert_eq!(ids_in("1 (x) S 0 x 1"), None);
        assert_eq!(ids_in("1 (x) S x 1 1"), None);
        assert_eq!(
            ids_in("9 (x) S 5 6 7").map(|i| (i.parent, i.group, i.session)),
            Some((5, 6, 7))
        );
    }

    #[test]
    fn an_orphan_left_the_session_or_went_to_a_group_nobody_started() {
        let ours = ids(100, 100);
        let started = BTreeMap::from([(200, 1), (300, 2)]);
        // The daemon's own group (a built-in fault's `tc`), and groups it started (a
        // worker, a probe's command, or a child of theirs adopted).
        assert!(!is_orphan(ids(100, 100), ours, &started));
        assert!(!is_orphan(ids(200, 100), ours, &started));
        assert!(!is_orphan(ids(300, 100), ours, &started));
        // setpgid(): a group of its own in the daemon's session.
        assert!(is_orphan(ids(400, 100), ours, &started));
        // setsid(): a session of its own, whatever its group's number.
        assert!(is_orphan(ids(400, 400), ours, &started));
        assert!(is_orphan(ids(100, 400), ours, &started));
        assert!(is_orphan(ids(200, 400), ours, &started));
    }

    #[test]
    fn a_group_is_the_starters_until_its_handle_goes() {
        let (pid, group) = start_group(|| Ok(4_000_000u32), |pid| Some(*pid)).unwrap();
        assert!(started().contains_key(&pid));
        // The same number again (a PID reused before the first handle went): both
        // handles must go before the group is no longer known.
        let (_, again) = start_group(|| Ok(4_000_000u32), |pid| Some(*pid)).unwrap();
        drop(group);
        assert!(started().contains_key(&pid));
        drop(again);
        assert!(!started().contains_key(&pid));
        let failed = start_group(|| Err::<u32, _>(std::io::Error::other("no")), |p| Some(*p));
        assert!(failed.is_err());
        assert!(!started().contains_key(&4_000_000));
    }

    #[test]
    fn nothing_is_swept_unless_adopting() {
        assert!(!ADOPTING.load(Ordering::SeqCst));
        assert_eq!(sweep(), 0);
    }
}
