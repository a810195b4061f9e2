//! `process-kill`: nightmare-monkey's built-in fault. It signals one random process,
//! exactly, and reports what happened to it.
//!
//! The crate is both an `rlib`, which the host links as its built-in fault, and a `cdylib`
//! that loads as a plugin like any other; both go through the same ABI.
//!
//! - **Who can be chosen.** Any process but PID 1, the process running this plugin, its
//!   ancestors, kernel threads (`PF_KTHREAD`) and zombies; narrowed further by the
//!   configuration (names, command lines, users). None of the first four can be turned
//!   off.
//! - **Cheap.** `/proc` is listed once; processes are then visited in a seeded random
//!   order and only those actually considered are read, so an unfiltered pick costs one
//!   directory listing and a few small reads however many processes the host runs.
//! - **Reproducible.** The PIDs are put in ascending order before the seeded shuffle, so
//!   the same seed and the same processes give the same victim.
//! - **Exact.** The victim is signalled through a pidfd opened after checking that its
//!   start time is the one seen when it was chosen; a PID reused in between is never
//!   signalled. The outcome says whether it died (`killed`), was still alive after the
//!   grace period (`survived`) or was gone first (`vanished`).
//!
//! Configuration (RON, every field optional):
//!
//! ```ron
//! (
//!     signal: "SIGKILL",              // name, short name or number
//!     include_names: ["^nginx$"],     // regexes on the short name (comm); empty: all
//!     exclude_names: ["^sshd$"],
//!     include_cmdlines: [],           // regexes on the command line
//!     exclude_cmdlines: ["--critical"],
//!     users: ["www-data", "1000"],    // names or UIDs; empty: all
//!     grace_ms: 1000,                 // how long to wait for the victim to exit
//! )
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod select;
pub mod signal;

use std::{
    collections::HashSet,
    path::Path,
    time::{Duration, Instant},
};

use nightmare_monkey_plugin_api::{
    export_plugin,
    sdk::{results, ErrorKind, FaultPlugin, Outcome, PluginError, ProcessInfo, Request, Rng},
};
use procfs::process::{Process, Stat};
use regex::RegexSet;
use rustix::{
    event::{poll, PollFd, PollFlags, Timespec},
    io::Errno,
    process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal},
};
use serde::Deserialize;

/// `PF_KTHREAD` in `/proc/<pid>/stat`'s flags: the process is a kernel thread.
const PF_KTHREAD: u32 = 0x0020_0000;

/// The fault's configuration, as written in RON.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The signal to send (default `SIGKILL`).
    pub signal: Option<String>,
    /// Only processes whose short name matches one of these regexes (empty: any).
    pub include_names: Vec<String>,
    /// Never processes whose short name matches one of these regexes.
    pub exclude_names: Vec<String>,
    /// Only processes whose command line matches one of these regexes (empty: any).
    pub include_cmdlines: Vec<String>,
    /// Never processes whose command line matches one of these regexes.
    pub exclude_cmdlines: Vec<String>,
    /// Only processes whose real user is one of these names or UIDs (empty: any).
    pub users: Vec<String>,
    /// How long to wait for the victim to exit after the signal (default 1000 ms).
    pub grace_ms: Option<u64>,
}

/// Compiled filters; each reads a per-process file only when it is in use.
#[derive(Debug)]
struct Filters {
    include_names: Option<RegexSet>,
    exclude_names: Option<RegexSet>,
    include_cmdlines: Option<RegexSet>,
    exclude_cmdlines: Option<RegexSet>,
    users: Option<HashSet<u32>>,
}

fn regex_set(field: &str, patterns: &[String]) -> Result<Option<RegexSet>, PluginError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    for p in patterns {
        if let Err(e) = regex::Regex::new(p) {
            return Err(PluginError::new(
                ErrorKind::Config,
                format!("{field}: invalid regex `{p}`: {e}"),
            ));
        }
    }
    RegexSet::new(patterns)
        .map(Some)
        .map_err(|e| PluginError::new(ErrorKind::Config, format!("{field}: {e}")))
}

fn resolve_user(user: &str) -> Result<u32, PluginError> {
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        _ => Err(PluginError::new(
            ErrorKind::Config,
            format!(
                "users: no user named `{user}` on this host: give a user name or a numeric UID"
            ),
        )),
    }
}

fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

/// A process that passed every filter, with what was read of it on the way.
struct Candidate {
    stat: Stat,
    cmdline: Option<String>,
    uid: Option<u32>,
}

/// The `process-kill` fault.
#[derive(Debug)]
pub struct ProcessKill {
    signal: Signal,
    filters: Filters,
    grace: Duration,
    /// PID 1, this process and its ancestors. Computed once: the set can only shrink
    /// while we run (an orphan is re-parented to an ancestor or to PID 1), so a cached
    /// set never lets a protected process through.
    protected: HashSet<u32>,
}

fn read_cmdline(process: &Process) -> String {
    process
        .cmdline()
        .map(|args| args.join(" "))
        .unwrap_or_default()
}

fn read_uid(process: &Process) -> Option<u32> {
    process.status().ok().map(|s| s.ruid)
}

/// PID 1, our own PID and every ancestor of ours.
fn protected_pids() -> HashSet<u32> {
    let mut set = HashSet::from([1, std::process::id()]);
    let mut pid = std::process::id() as i32;
    // Stops at PID 1 (already in the set) or at a parent outside our PID namespace (0).
    while let Ok(stat) = Process::new(pid).and_then(|p| p.stat()) {
        if stat.ppid <= 0 || !set.insert(stat.ppid as u32) {
            break;
        }
        pid = stat.ppid;
    }
    set
}

impl ProcessKill {
    /// The process as it is now, if it may be chosen.
    fn examine(&self, pid: u32) -> Option<Candidate> {
        if self.protected.contains(&pid) {
            return None;
        }
        let process = Process::new(pid as i32).ok()?;
        let stat = process.stat().ok()?;
        if stat.flags & PF_KTHREAD != 0 || matches!(stat.state, 'Z' | 'X' | 'x') {
            return None;
        }
        let f = &self.filters;
        if f.include_names
            .as_ref()
            .is_some_and(|s| !s.is_match(&stat.comm))
            || f.exclude_names
                .as_ref()
                .is_some_and(|s| s.is_match(&stat.comm))
        {
            return None;
        }
        let mut cmdline = None;
        if f.include_cmdlines.is_some() || f.exclude_cmdlines.is_some() {
            let line = read_cmdline(&process);
            if f.include_cmdlines
                .as_ref()
                .is_some_and(|s| !s.is_match(&line))
                || f.exclude_cmdlines
                    .as_ref()
                    .is_some_and(|s| s.is_match(&line))
            {
                return None;
            }
            cmdline = Some(line);
        }
        let mut uid = None;
        if let Some(users) = &f.users {
            let u = read_uid(&process)?;
            if !users.contains(&u) {
                return None;
            }
            uid = Some(u);
        }
        Some(Candidate { stat, cmdline, uid })
    }

    /// Signals the chosen process through a pidfd, after checking it is still the one
    /// chosen, and waits for it to exit. Returns one of [`results`].
    fn signal_exactly(&self, pid: u32, start_time: u64) -> Result<&'static str, PluginError> {
        let failed = |what: &str, e: Errno| {
            let kind = if e == Errno::PERM {
                ErrorKind::Denied
            } else {
                ErrorKind::Failed
            };
            PluginError::new(kind, format!("cannot {what} PID {pid}: {e}"))
        };
        let Some(raw) = Pid::from_raw(pid as i32) else {
            return Ok(results::VANISHED);
        };
        let pidfd = match pidfd_open(raw, PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(Errno::SRCH) => return Ok(results::VANISHED),
            Err(e) => return Err(failed("open a pidfd for", e)),
        };
        // The pidfd names whoever holds the PID now. If that is still the process seen
        // at choice time (same start time), the pidfd is bound to it for good.
        match Process::new(pid as i32).and_then(|p| p.stat()) {
            Ok(now) if now.starttime == start_time => {}
            _ => return Ok(results::VANISHED),
        }
        match pidfd_send_signal(&pidfd, self.signal) {
            Ok(()) => {}
            Err(Errno::SRCH) => return Ok(results::VANISHED),
            Err(e) => return Err(failed("signal", e)),
        }
        // A pidfd polls readable once its process has exited (before it is reaped).
        let deadline = Instant::now() + self.grace;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => return Ok(results::SURVIVED),
                Ok(_) => return Ok(results::KILLED),
                Err(Errno::INTR) if !left.is_zero() => continue,
                Err(e) => return Err(failed("wait for", e)),
            }
        }
    }
}

impl FaultPlugin for ProcessKill {
    const NAME: &'static str = "process-kill";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "signals one random process (never PID 1, the monkey, its ancestors or kernel threads)";
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        let signal = match &config.signal {
            None => Signal::KILL,
            Some(text) => signal::parse(text)
                .map_err(|e| PluginError::new(ErrorKind::Config, format!("signal: {e}")))?,
        };
        let users = if config.users.is_empty() {
            None
        } else {
            Some(
                config
                    .users
                    .iter()
                    .map(|u| resolve_user(u))
                    .collect::<Result<HashSet<u32>, _>>()?,
            )
        };
        Ok(Self {
            signal,
            filters: Filters {
                include_names: regex_set("include_names", &config.include_names)?,
                exclude_names: regex_set("exclude_names", &config.exclude_names)?,
                include_cmdlines: regex_set("include_cmdlines", &config.include_cmdlines)?,
                exclude_cmdlines: regex_set("exclude_cmdlines", &config.exclude_cmdlines)?,
                users,
            },
            grace: Duration::from_millis(config.grace_ms.unwrap_or(1000)),
            protected: protected_pids(),
        })
    }

    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        let mut pids = select::list_pids(Path::new("/proc"))
            .map_err(|e| PluginError::new(ErrorKind::Failed, format!("cannot list /proc: {e}")))?;
        let listed = pids.len();
        let mut rng = Rng::from_seed(request.seed);
        let (chosen, considered) = select::choose(&mut pids, &mut rng, |pid| self.examine(pid));
        let Some(victim) = chosen else {
            return Err(PluginError::new(
                ErrorKind::NoTarget,
                format!(
                    "no eligible process among {listed} listed in /proc (PID 1, the monkey, its ancestors, kernel threads and zombies are never chosen; check the include/exclude filters)"
                ),
            ));
        };
        let pid = victim.stat.pid as u32;
        let process = Process::new(pid as i32).ok();
        let cmdline = victim
            .cmdline
            .or_else(|| process.as_ref().map(read_cmdline))
            .unwrap_or_default();
        let uid = victim
            .uid
            .or_else(|| process.as_ref().and_then(read_uid))
            .unwrap_or(u32::MAX);
        let info = ProcessInfo {
            name: victim.stat.comm.clone(),
            pid,
            ppid: victim.stat.ppid.max(0) as u32,
            cmdline,
            user: if uid == u32::MAX {
                "?".to_owned()
            } else {
                user_name(uid)
            },
            uid,
            start_time: victim.stat.starttime,
        };
        let signal = signal::name(self.signal);
        let result = if request.dry_run {
            results::DRY_RUN
        } else {
            self.signal_exactly(pid, info.start_time)?
        };
        let who = format!("{}(PID:{})", info.name, info.pid);
        let summary = match result {
            results::DRY_RUN => format!("would send {signal} to {who}"),
            results::KILLED => format!("sent {signal} to {who}, it exited"),
            results::SURVIVED => format!(
                "sent {signal} to {who}, still alive after {} ms",
                self.grace.as_millis()
            ),
            _ => format!("{who} was gone before {signal} could be sent"),
        };
        Ok(Outcome {
            action: "Kill".to_owned(),
            result: result.to_owned(),
            process: Some(info),
            signal: Some(signal),
            summary,
            details: serde_json::json!({ "listed": listed, "considered": considered }),
            revert: None,
        })
    }
}

export_plugin!(ProcessKill);
