//! Process faults: choosing a process the way the built-in faults do, and signalling
//! exactly the process chosen. `process-kill` and `process-pause` are written on it.
//!
//! - **Who can be chosen.** Any process but PID 1, the process running the plugin (the
//!   daemon, or its plugin worker), its ancestors, kernel threads (`PF_KTHREAD` in the
//!   process's flags, not "PID 2", which inside a PID namespace is an ordinary process),
//!   zombies, stopped processes and the PIDs the host asks to avoid
//!   ([`crate::sdk::Request::avoid`]: processes under another fault). None of these can be
//!   turned off. A [`Selection`] narrows it
//!   further: names, command lines, users, a [`Scope`] (a cgroup, a process tree, a PID
//!   namespace); declare it in your config with [`process_config!`](crate::process_config).
//! - **Stopped is someone's.** A process in state `T` (stopped by a signal or job control)
//!   or `t` (stopped by a debugger or another tracer) is held stopped on purpose by
//!   whoever stopped it. A pause would take that stop for its own and end it with SIGCONT
//!   at its revert; a kill would strike a process that serves nothing meanwhile (and a
//!   catchable signal would wait, pending, until it is continued). So it is never chosen,
//!   by any process fault, even when a scope names it alone (`Tree(PID)` of a process
//!   without children): `kill(1)` is the tool for a stopped process, not a drill. A fault
//!   that acts some time after it chose (`process-pause` between its two phases) looks
//!   again with [`Exact::state`] and [`is_stopped_state`] before it acts.
//! - **Cheap.** `/proc` is listed once; processes are then visited in a seeded random
//!   order and only those actually considered are read, so an unfiltered pick costs one
//!   directory listing and a few small reads however many processes the host runs.
//! - **Reproducible.** The PIDs are put in ascending order before the seeded shuffle, so
//!   the same seed and the same processes give the same victim.
//! - **Exact.** [`Exact::open`] opens a pidfd and checks that the start time is still the
//!   one seen when the process was chosen; signals go through that pidfd only, so a PID
//!   reused in between is never signalled, and [`Exact::act`] runs any other action by
//!   PID (renice, a cgroup move) only while the pidfd says the process is still running.
//!
//! ```no_run
//! use nightmare_monkey_plugin_api::sdk::process::{Exact, Selection, Selector, Signal};
//!
//! let selector = Selector::new(&Selection {
//!     include_names: vec!["^my-worker$".into()],
//!     ..Selection::default()
//! })?;
//! let chosen = selector.choose(42, &[])?; // the request's seed and avoid list
//! if let Some(process) = Exact::of(&chosen.info)? {
//!     let delivered = process.signal(Signal::TERM)?; // false: it was gone meanwhile
//!     let exited = process.wait_exit(std::time::Duration::from_secs(1))?;
//!     println!("{} {delivered} {exited}", chosen.info.name);
//! }
//! # Ok::<(), nightmare_monkey_plugin_api::sdk::PluginError>(())
//! ```

mod config;
mod exact;
pub mod proc;
mod select;
mod signal;

use std::{collections::HashSet, path::Path};

pub use config::Selection;
pub use exact::{signal_exact, Exact};
use regex::RegexSet;
pub use select::{LISTING_KEPT, LISTING_TTL};
pub use signal::Signal;

use crate::sdk::{ErrorKind, PluginError, ProcessInfo, Rng};

/// `PF_KTHREAD` in `/proc/<pid>/stat`'s flags: the process is a kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Where a process fault may strike, as written in RON: `scope: Cgroup("system.slice/nginx.service")`,
/// `scope: Tree(1234)`, `scope: Namespace(1234)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum Scope {
    /// The processes of a cgroup (v2) and its descendants: a path under `/sys/fs/cgroup`
    /// (one systemd service, one container).
    Cgroup(String),
    /// A process and all its descendants.
    Tree(u32),
    /// The processes in the PID namespace of this process (one container).
    Namespace(u32),
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn cgroup_dir(path: &str) -> std::path::PathBuf {
    let relative = path.trim_start_matches(CGROUP_ROOT).trim_start_matches('/');
    Path::new(CGROUP_ROOT).join(relative)
}

/// Every PID in a cgroup and the cgroups below it, ascending.
fn cgroup_pids(dir: &Path) -> std::io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(dir) = todo.pop() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs"))?;
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        for entry in std::fs::read_dir(&dir)?.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(entry.path());
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// `root` and every descendant of it (through each thread's `children` list), ascending.
fn tree_pids(root: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        pids.push(pid);
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            todo.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The PID namespace a process is in (the inode of `/proc/<pid>/ns/pid`).
fn pid_namespace(pid: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|m| m.ino())
}

fn config_error(message: String) -> PluginError {
    PluginError::new(ErrorKind::Config, message)
}

fn regex_set(field: &str, patterns: &[String]) -> Result<Option<RegexSet>, PluginError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    for p in patterns {
        if let Err(e) = regex::Regex::new(p) {
            return Err(config_error(format!(
                "{field}: invalid regex `{p}`: {}",
                one_line(&e)
            )));
        }
    }
    RegexSet::new(patterns)
        .map(Some)
        .map_err(|e| config_error(format!("{field}: {e}")))
}

/// A regex error in one line: the regex crate draws the pattern and a caret over several
/// lines (`regex parse error:` / `    (` / `    ^` / `error: unclosed group`); this says
/// `unclosed group at character 1`.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().collect();
    let Some(what) = lines.last().and_then(|l| l.strip_prefix("error: ")) else {
        return lines.join(" ");
    };
    // The caret line is indented like the pattern's, by four spaces.
    match lines.iter().find_map(|l| l.find('^')) {
        Some(caret) if caret >= 4 => format!("{what} at character {}", caret - 3),
        _ => what.to_owned(),
    }
}

fn resolve_user(user: &str) -> Result<u32, PluginError> {
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        _ => Err(config_error(format!(
            "users: no user named `{user}` on this host: give a user name or a numeric UID"
        ))),
    }
}

/// PID 1, our own PID and every ancestor of ours. An ancestor that cannot be read (too
/// many open files) is an error, not the end of the line: a set cut short there would
/// let the daemon's own parents be chosen for as long as the selector lives.
fn protected_pids() -> Result<HashSet<u32>, PluginError> {
    let mut set = HashSet::from([1, std::process::id()]);
    let mut pid = std::process::id();
    // Stops at PID 1 (already in the set) or at a parent outside our PID namespace (0).
    while let Some(stat) = proc::try_stat(pid).map_err(|e| unreadable(pid, "stat", e))? {
        if stat.ppid <= 0 || !set.insert(stat.ppid as u32) {
            break;
        }
        pid = stat.ppid as u32;
    }
    Ok(set)
}

/// A /proc file of `pid` that could not be read, for a reason other than the process
/// being gone: the pick fails (of kind [`ErrorKind::Failed`], tried again later) rather
/// than skip the process, which would choose another than the seed chooses, or take an
/// unread command line for an empty one that `exclude_cmdlines` lets through.
fn unreadable(pid: u32, file: &str, e: std::io::Error) -> PluginError {
    PluginError::new(
        ErrorKind::Failed,
        format!("cannot read /proc/{pid}/{file}: {e}"),
    )
}

/// A process that passed every filter, with what was read of it on the way.
struct Candidate {
    stat: proc::Stat,
    cmdline: Option<String>,
    uid: Option<u32>,
}

/// The chosen victim.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// Who it is.
    pub info: ProcessInfo,
    /// How many processes `/proc` listed.
    pub listed: usize,
    /// How many were looked at before this one qualified.
    pub considered: usize,
}

/// Chooses victims: compiled filters and the processes that are never chosen.
#[derive(Debug)]
pub struct Selector {
    include_names: Option<RegexSet>,
    exclude_names: Option<RegexSet>,
    include_cmdlines: Option<RegexSet>,
    exclude_cmdlines: Option<RegexSet>,
    users: Option<HashSet<u32>>,
    scope: Option<Scope>,
    /// PID 1, this process and its ancestors. Computed once: the set can only shrink
    /// while we run (an orphan is re-parented to an ancestor or to PID 1), so a cached
    /// set never lets a protected process through.
    protected: HashSet<u32>,
    /// The last listing of `/proc`, shared by picks in quick succession.
    listing: select::Listing,
}

impl Selector {
    /// Compiles a selection; errors name the field.
    pub fn new(selection: &Selection) -> Result<Self, PluginError> {
        let users = if selection.users.is_empty() {
            None
        } else {
            Some(
                selection
                    .users
                    .iter()
                    .map(|u| resolve_user(u))
                    .collect::<Result<HashSet<u32>, _>>()?,
            )
        };
        match &selection.scope {
            Some(Scope::Cgroup(path)) if !cgroup_dir(path).join("cgroup.procs").exists() => {
                return Err(config_error(format!(
                    "scope: no cgroup at {}: expected a cgroup v2 path like system.slice/nginx.service",
                    cgroup_dir(path).display()
                )))
            }
            Some(Scope::Tree(0) | Scope::Namespace(0)) => {
                return Err(config_error("scope: a PID must be at least 1".to_owned()))
            }
            _ => {}
        }
        Ok(Self {
            scope: selection.scope.clone(),
            include_names: regex_set("include_names", &selection.include_names)?,
            exclude_names: regex_set("exclude_names", &selection.exclude_names)?,
            include_cmdlines: regex_set("include_cmdlines", &selection.include_cmdlines)?,
            exclude_cmdlines: regex_set("exclude_cmdlines", &selection.exclude_cmdlines)?,
            users,
            protected: protected_pids()?,
            listing: select::Listing::default(),
        })
    }

    /// The process as it is now, if it may be chosen: `Ok(None)` when it may not, or is
    /// gone; an error when what decides it cannot be read.
    fn examine(&self, pid: u32, avoid: &[u32]) -> Result<Option<Candidate>, PluginError> {
        if self.protected.contains(&pid) || avoid.contains(&pid) {
            return Ok(None);
        }
        let Some(stat) = proc::try_stat(pid).map_err(|e| unreadable(pid, "stat", e))? else {
            return Ok(None);
        };
        if stat.flags & PF_KTHREAD != 0
            || matches!(stat.state, 'Z' | 'X' | 'x')
            || is_stopped_state(stat.state)
        {
            return Ok(None);
        }
        if let Some(Scope::Namespace(anchor)) = &self.scope {
            // One small read per process considered, not per process listed. Unreadable
            // is skipped here, which only narrows the pick.
            match (pid_namespace(pid), pid_namespace(*anchor)) {
                (Some(here), Some(there)) if here == there => {}
                _ => return Ok(None),
            }
        }
        if self
            .include_names
            .as_ref()
            .is_some_and(|s| !s.is_match(&stat.comm))
            || self
                .exclude_names
                .as_ref()
                .is_some_and(|s| s.is_match(&stat.comm))
        {
            return Ok(None);
        }
        let mut cmdline = None;
        if self.include_cmdlines.is_some() || self.exclude_cmdlines.is_some() {
            let Some(line) = proc::try_cmdline(pid).map_err(|e| unreadable(pid, "cmdline", e))?
            else {
                return Ok(None);
            };
            if self
                .include_cmdlines
                .as_ref()
                .is_some_and(|s| !s.is_match(&line))
                || self
                    .exclude_cmdlines
                    .as_ref()
                    .is_some_and(|s| s.is_match(&line))
            {
                return Ok(None);
            }
            cmdline = Some(line);
        }
        let mut uid = None;
        if let Some(users) = &self.users {
            let Some(u) = proc::try_real_uid(pid).map_err(|e| unreadable(pid, "status", e))? else {
                return Ok(None);
            };
            if !users.contains(&u) {
                return Ok(None);
            }
            uid = Some(u);
        }
        Ok(Some(Candidate { stat, cmdline, uid }))
    }

    /// Chooses a victim with the injection's seed, leaving the `avoid` PIDs alone (those
    /// the host says are under another fault).
    pub fn choose(&self, seed: u64, avoid: &[u32]) -> Result<Chosen, PluginError> {
        let cannot_list = |e: std::io::Error| {
            PluginError::new(ErrorKind::Failed, format!("cannot list /proc: {e}"))
        };
        let (pids, old): (std::sync::Arc<[u32]>, bool) = match &self.scope {
            None | Some(Scope::Namespace(_)) => {
                self.listing.pids(Path::new("/proc")).map_err(cannot_list)?
            }
            Some(Scope::Cgroup(path)) => {
                let pids = cgroup_pids(&cgroup_dir(path)).map_err(|e| {
                    PluginError::new(
                        ErrorKind::NoTarget,
                        format!("cannot read cgroup {}: {e}", cgroup_dir(path).display()),
                    )
                })?;
                (pids.into(), false)
            }
            Some(Scope::Tree(root)) => (tree_pids(*root).into(), false),
        };
        // A process that cannot be examined ends the pick with the error.
        let choose = |pids: &[u32]| {
            select::choose(pids, &mut Rng::from_seed(seed), |pid| {
                self.examine(pid, avoid).transpose()
            })
        };
        let (mut chosen, mut considered) = choose(&pids);
        let mut listed = pids.len();
        if chosen.is_none() && old {
            // No process is ever said to be missing on an old listing's word.
            let pids = self.listing.anew(Path::new("/proc")).map_err(cannot_list)?;
            let (again, looked) = choose(&pids);
            (chosen, considered, listed) = (again, considered + looked, pids.len());
        }
        let Some(victim) = chosen.transpose()? else {
            return Err(PluginError::new(
                ErrorKind::NoTarget,
                format!(
                    "no eligible process among {listed} listed in {} (PID 1, the monkey, its ancestors, kernel threads, zombies, stopped processes and processes under another fault are never chosen; check the include/exclude filters)",
                    match &self.scope {
                        None => "/proc".to_owned(),
                        Some(Scope::Cgroup(path)) => format!("cgroup {}", cgroup_dir(path).display()),
                        Some(Scope::Tree(root)) => format!("the process tree under PID {root}"),
                        Some(Scope::Namespace(anchor)) => format!("/proc (scope: the PID namespace of PID {anchor})"),
                    }
                ),
            ));
        };
        Ok(Chosen {
            info: describe(victim.stat, victim.cmdline, victim.uid),
            listed,
            considered,
        })
    }
}

/// Who a process is, from what was read of it (the rest is read now).
fn describe(stat: proc::Stat, cmdline: Option<String>, uid: Option<u32>) -> ProcessInfo {
    let pid = stat.pid;
    let cmdline = cmdline.unwrap_or_else(|| proc::cmdline(pid));
    let uid = uid.or_else(|| proc::real_uid(pid));
    ProcessInfo {
        name: stat.comm,
        pid,
        ppid: stat.ppid.max(0) as u32,
        cmdline,
        user: uid.map_or_else(|| "?".to_owned(), proc::user_name),
        uid: uid.unwrap_or(u32::MAX),
        start_time: stat.starttime,
    }
}

impl ProcessInfo {
    /// The process that holds `pid` now, read from `/proc` (its user's name included), or
    /// `None` when there is none. Its `start_time` tells it from a later process that
    /// reuses the PID: keep it to act on exactly this one later ([`Exact::of`]).
    pub fn of(pid: u32) -> Option<ProcessInfo> {
        proc::stat(pid).map(|stat| describe(stat, None, None))
    }
}

/// The process's state letter now (`S`, `T`, `Z` ...), if it still exists.
pub fn state_of(pid: u32) -> Option<char> {
    proc::stat(pid).map(|s| s.state)
}

/// Whether the process is stopped now (`T`, or `t` under a tracer), if it still exists:
/// what a harness test of a process fault should watch. The state letter itself is no
/// observable (a running process flickers between `R` and `S` on its own), but stopped,
/// running or gone is.
pub fn stopped(pid: u32) -> Option<bool> {
    state_of(pid).map(is_stopped_state)
}

/// Whether a state letter of `/proc/<pid>/stat` is a stopped one: `T` (stopped by a
/// signal or job control) or `t` (stopped by a tracer). Such a process is never chosen
/// (see the module's docs), and a fault that finds its target stopped when it comes to
/// act leaves it alone.
pub fn is_stopped_state(state: char) -> bool {
    matches!(state, 'T' | 't')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk::testing::{
        alone::{alone, Starved},
        Child,
    };

    #[test]
    fn a_process_is_described_with_its_user() {
        let me = ProcessInfo::of(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert_eq!(me.uid, nix::unistd::getuid().as_raw());
        assert_eq!(me.user, proc::user_name(me.uid));
        assert!(!me.user.is_empty() && me.start_time > 0);
        assert_eq!(ProcessInfo::of(u32::MAX), None);
    }

    #[test]
    fn the_guards_cannot_be_selected_away() {
        let selector = Selector::new(&Selection::default()).unwrap();
        let me = std::process::id();
        for pid in [1, me, std::os::unix::process::parent_id()] {
            assert!(
                selector.examine(pid, &[]).unwrap().is_none(),
                "{pid} is protected"
            );
        }
        let child = Child::sleep();
        assert!(selector.examine(child.pid(), &[]).unwrap().is_some());
        assert!(selector
            .examine(child.pid(), &[child.pid()])
            .unwrap()
            .is_none());
        // A kernel thread (kthreadd's children) is never chosen, whatever its PID.
        if let Some(kthread) = proc::stat(2).filter(|s| s.flags & PF_KTHREAD != 0) {
            assert!(selector.examine(kthread.pid, &[]).unwrap().is_none());
        }
    }

    /// A process someone else stopped (`T`) is never chosen, even when the scope names it
    /// alone; continued, it is chosen again. A traced one (`t`) counts as stopped too.
    #[test]
    fn a_stopped_process_is_never_chosen() {
        let child = Child::sleep();
        let pid = child.pid();
        let selector = Selector::new(&Selection {
            scope: Some(Scope::Tree(pid)),
            ..Selection::default()
        })
        .unwrap();
        let info = ProcessInfo::of(pid).unwrap();
        let process = Exact::of(&info).unwrap().unwrap();
        assert!(process.signal(Signal::STOP).unwrap());
        // A signal is delivered a moment after it is sent.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while stopped(pid) != Some(true) {
            assert!(std::time::Instant::now() < deadline, "SIGSTOP never took");
            std::thread::yield_now();
        }
        assert_eq!(process.state().unwrap(), Some('T'));
        assert!(selector.examine(pid, &[]).unwrap().is_none());
        let e = selector.choose(0, &[]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoTarget, "{e}");
        assert!(e.message.contains("stopped processes"), "{e}");

        assert!(process.signal(Signal::CONT).unwrap());
        while stopped(pid) != Some(false) {
            assert!(std::time::Instant::now() < deadline, "SIGCONT never took");
            std::thread::yield_now();
        }
        assert_eq!(selector.choose(0, &[]).unwrap().info.pid, pid);
        assert!(is_stopped_state('T') && is_stopped_state('t'));
        assert!(!['R', 'S', 'D', 'Z', 'I'].into_iter().any(is_stopped_state));
    }

    /// Out of descriptors, a selector is not made with a set of protected processes cut
    /// short (its ancestors unread), and a process that cannot be read is not skipped:
    /// both are errors to try again.
    #[test]
    fn a_selector_short_of_descriptors_fails_rather_than_guess() {
        alone(
            "sdk::process::tests::a_selector_short_of_descriptors_fails_rather_than_guess",
            || {
                let child = Child::sleep();
                // Its command line is `sleep`'s a moment after `spawn` returns.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while proc::cmdline(child.pid()) != "sleep 60" {
                    assert!(std::time::Instant::now() < deadline, "sleep never ran");
                    std::thread::yield_now();
                }
                let selector = Selector::new(&Selection {
                    exclude_cmdlines: vec!["^sleep 60$".to_owned()],
                    ..Selection::default()
                })
                .unwrap();
                let starved = Starved::leaving(0);
                let made = Selector::new(&Selection::default());
                let examined = selector.examine(child.pid(), &[]);
                drop(starved);
                let e = made.unwrap_err();
                assert_eq!(e.kind, ErrorKind::Failed, "{e}");
                assert!(e.message.contains("Too many open files"), "{e}");
                assert_eq!(examined.err().map(|e| e.kind), Some(ErrorKind::Failed));
                // With descriptors, the filter reads the command line and excludes it.
                assert!(selector.examine(child.pid(), &[]).unwrap().is_none());
            },
        );
    }

    #[test]
    fn a_tree_scope_chooses_within_the_tree_only() {
        let child = Child::sleep();
        let selector = Selector::new(&Selection {
            scope: Some(Scope::Tree(child.pid())),
            ..Selection::default()
        })
        .unwrap();
        for seed in 0..5 {
            assert_eq!(selector.choose(seed, &[]).unwrap().info.pid, child.pid());
        }
        let e = selector.choose(0, &[child.pid()]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoTarget);
    }

    /// A process started since the last listing of `/proc` is found by a pick that
    /// would find none in that listing, whatever its age: no pick says "no process" on
    /// the word of an old listing.
    #[test]
    fn a_pick_that_finds_none_in_an_old_listing_lists_anew() {
        let selector = Selector::new(&Selection {
            include_cmdlines: vec![r"^sleep 60\.4242$".to_owned()],
            ..Selection::default()
        })
        .unwrap();
        let e = selector.choose(0, &[]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoTarget, "{e:?}");
        let mut child = std::process::Command::new("sleep")
            .arg("60.4242")
            .spawn()
            .unwrap();
        // `spawn` returns once the exec has begun; the kernel sets the new command line
        // a moment later (a busy machine can stretch that moment).
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::fs::read(format!("/proc/{}/cmdline", child.id()))
            .ok()
            .as_deref()
            != Some(b"sleep\x0060.4242\x00")
        {
            assert!(std::time::Instant::now() < until, "sleep never ran");
            std::thread::yield_now();
        }
        // Old enough to be refreshed on a thread, young enough to serve meanwhile.
        selector.listing.age(select::LISTING_TTL);
        let chosen = selector.choose(0, &[]);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(chosen.unwrap().info.pid, child.id());
    }

    /// Every error a user can cause is one line: a bad pattern included.
    #[test]
    fn a_bad_pattern_is_one_line_naming_the_field_and_where() {
        let e = regex_set("include_names", &["ok".into(), "a(b".into()]).unwrap_err();
        assert_eq!(
            e.message,
            "include_names: invalid regex `a(b`: unclosed group at character 2"
        );
        let e = regex_set("exclude_cmdlines", &["[z-a]".into()]).unwrap_err();
        assert!(!e.message.contains('\n'), "{}", e.message);
        assert!(
            e.message
                .starts_with("exclude_cmdlines: invalid regex `[z-a]`: "),
            "{}",
            e.message
        );
        assert!(regex_set("users", &[]).unwrap().is_none());
    }
}
