//! Processes that escaped the ones the daemon started. A plugin's worker and a probe's
//! command run in process groups of their own, killed whole when they end; a child that
//! calls `setsid()` leaves that group (and the session) and would outlive them, the
//! daemon too. The daemon is made a child subreaper ([`adopt`]): such an orphan becomes
//! its child when its parent ends, and [`sweep`] kills and reaps every child of the
//! daemon in a session other than its own: the daemon starts none (its workers and
//! commands stay in its session, in groups of their own).
//!
//! Only the daemon adopts: in the sandbox, PID 1 adopts every orphan of the command
//! under drill, which are not the monkey's to end.

use std::{
    os::fd::AsFd as _,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use rustix::process::{
    pidfd_open, pidfd_send_signal, waitid, Pid, PidfdFlags, Signal, WaitId, WaitIdOptions,
};

/// Whether this process adopts orphans (the daemon).
static ADOPTING: AtomicBool = AtomicBool::new(false);

/// How often the daemon looks for orphans if it cannot hear its children end (SIGCHLD:
/// a child's child that outlives its own parent is adopted as that parent ends).
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Makes this process a child subreaper, and [`sweep`] effective; `Err` says why not.
pub fn adopt() -> std::io::Result<()> {
    let me = rustix::process::getpid();
    rustix::process::set_child_subreaper(Some(me))?;
    ADOPTING.store(true, Ordering::SeqCst);
    Ok(())
}

/// Kills and reaps every child of this process in a session other than its own (an
/// orphan it adopted); how many it signalled. Never waits (it may run on the async
/// runtime). Nothing unless [`adopt`] was called.
pub fn sweep() -> usize {
    if !ADOPTING.load(Ordering::SeqCst) {
        return 0;
    }
    let Some(ours) = session_of("self") else {
        return 0;
    };
    let mut swept = 0;
    for pid in children() {
        // A child in another session: an orphan that called setsid(), adopted. Through
        // its pidfd, so that a PID reused meanwhile is never signalled.
        if session_of(&pid.to_string()).is_none_or(|s| s == ours) {
            continue;
        }
        let Some(pid) = Pid::from_raw(pid) else {
            continue;
        };
        let Ok(pidfd) = pidfd_open(pid, PidfdFlags::empty()) else {
            continue;
        };
        // Checked again through the pidfd's process: still a child in another session.
        if session_of(&pid.as_raw_nonzero().to_string()).is_none_or(|s| s == ours) {
            continue;
        }
        // Reaped if it is gone already; if not yet (it dies in an instant, or sits in an
        // uninterruptible sleep), the next sweep reaps it: a sweep never waits.
        if pidfd_send_signal(pidfd.as_fd(), Signal::KILL).is_ok() {
            swept += 1;
        }
        let _ = waitid(
            WaitId::PidFd(pidfd.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        );
    }
    swept
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

/// The session of process `pid` (`self` for this one), from `/proc/PID/stat`.
fn session_of(pid: &str) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    session_in(&stat)
}

/// The session field of a `/proc/PID/stat` line: the fourth after the command's `)`
/// (state, ppid, pgrp, session); the command may hold spaces and parentheses.
fn session_in(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_read_after_the_last_parenthesis() {
        assert_eq!(
            session_in("123 (a) b (c)) S 1 123 4567 0 -1 4194560"),
            Some(4567)
        );
        assert_eq!(session_in("1 (init) S 0 1 1 0"), Some(1));
        assert_eq!(session_in("garbage"), None);
        assert_eq!(session_in("1 (x) S 0 1"), None);
    }

    #[test]
    fn nothing_is_swept_unless_adopting() {
        assert!(!ADOPTING.load(Ordering::SeqCst));
        assert_eq!(sweep(), 0);
    }
}
