//! Acting on exactly the process that was chosen, never on one that took its PID since.
//!
//! A process is known by its PID and its start time ([`ProcessInfo::start_time`]): a PID
//! is reused once its process is gone and reaped, a start time is not. [`Exact`] checks
//! the start time once, when it opens a pidfd for the PID; from then on the pidfd is
//! bound to that process for good. A signal goes through the pidfd, so it can never
//! reach another process. Any other action (renice, a cgroup move, reading its files)
//! goes through [`Exact::act`], which runs it only while the pidfd says the process has
//! not exited (so its PID cannot name another), and says so when that changed meanwhile.
//!
//! Where the kernel has no pidfds (Linux before 5.3), [`Exact::act`] reads the start time
//! again instead, before and after the action: the same answers, with the window of a few
//! microseconds between the check and the system call left open. Signals are refused
//! there: a signal is never sent by bare PID.

use std::{
    io,
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use rustix::{
    event::{poll, PollFd, PollFlags, Timespec},
    io::Errno,
    process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags},
};

use super::{proc, Signal};
use crate::sdk::{ErrorKind, PluginError, ProcessInfo};

/// An error of the system as a plugin reports it: [`ErrorKind::Denied`] when it refused
/// (EPERM, EACCES), [`ErrorKind::Failed`] otherwise.
pub(super) fn os_error(pid: u32, what: &str, e: Errno) -> PluginError {
    let kind = if e == Errno::PERM || e == Errno::ACCESS {
        ErrorKind::Denied
    } else {
        ErrorKind::Failed
    };
    PluginError::new(kind, format!("cannot {what} PID {pid}: {e}"))
}

/// `/proc/<pid>/stat` now: `None` only when there is no such process. Failing to read it
/// (too many open files, say) is an error of kind [`ErrorKind::Failed`], which a revert
/// tries again soon: never taken for a process gone, which would leave a paused process
/// stopped for good.
fn stat_now(pid: u32) -> Result<Option<proc::Stat>, PluginError> {
    proc::try_stat(pid).map_err(|e| {
        let kind = if e.kind() == io::ErrorKind::PermissionDenied {
            ErrorKind::Denied
        } else {
            ErrorKind::Failed
        };
        PluginError::new(kind, format!("cannot read /proc/{pid}/stat: {e}"))
    })
}

/// One process, exactly: a pidfd bound to it, opened only after checking that the process
/// holding the PID is the one that started at the time seen when it was chosen. Signals go
/// through the pidfd, and [`Exact::act`] runs any other action only while it is still that
/// process, so a process that later reuses the PID is never touched.
#[derive(Debug)]
pub struct Exact {
    /// `None` on a kernel without pidfds: the start time is checked instead.
    pidfd: Option<OwnedFd>,
    pid: u32,
    start_time: u64,
}

impl Exact {
    /// The process `pid` if it is still the one that started at `start_time` (clock ticks
    /// after boot, [`ProcessInfo::start_time`]); `None` when it is gone or its PID now
    /// names another process. Only the system saying so (no such process) counts as
    /// gone: failing to look (too many open files) is an error of kind
    /// [`ErrorKind::Failed`], to be tried again.
    pub fn open(pid: u32, start_time: u64) -> Result<Option<Exact>, PluginError> {
        let Some(raw) = Pid::from_raw(pid as i32) else {
            return Ok(None);
        };
        let pidfd = match pidfd_open(raw, PidfdFlags::empty()) {
            Ok(fd) => Some(fd),
            Err(Errno::SRCH) => return Ok(None),
            // Linux before 5.3: identity by start time alone, checked at every use.
            Err(Errno::NOSYS) => None,
            Err(e) => return Err(os_error(pid, "open a pidfd for", e)),
        };
        // The pidfd names whoever holds the PID now. If that is still the process seen at
        // choice time (same start time), the pidfd is bound to it for good.
        let exact = Exact {
            pidfd,
            pid,
            start_time,
        };
        Ok(exact.same_start()?.then_some(exact))
    }

    /// The process `info` describes, exactly ([`Exact::open`] with its PID and start time).
    pub fn of(info: &ProcessInfo) -> Result<Option<Exact>, PluginError> {
        Self::open(info.pid, info.start_time)
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its start time, in clock ticks after boot.
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// Whether the PID names the process that started at our start time (a zombie too).
    fn same_start(&self) -> Result<bool, PluginError> {
        Ok(stat_now(self.pid)?.is_some_and(|now| now.starttime == self.start_time))
    }

    /// Whether the process is still running: not exited (a zombie has). While it runs,
    /// its PID cannot name another process.
    pub fn alive(&self) -> Result<bool, PluginError> {
        match &self.pidfd {
            Some(pidfd) => Ok(!self.exited_within(pidfd, Duration::ZERO)?),
            None => Ok(stat_now(self.pid)?.is_some_and(|now| {
                now.starttime == self.start_time && !matches!(now.state, 'Z' | 'X' | 'x')
            })),
        }
    }

    /// Runs `action` with the PID, only if the process is still running (checked through
    /// its pidfd, so the PID cannot name another process); `Ok(None)` when it has exited,
    /// and `action` did not run. Use it for whatever the system does by PID only (renice,
    /// a cgroup move, `/proc/<pid>/...`), instead of checking the start time by hand.
    ///
    /// A check and a system call by PID are two steps: if the process exits and its PID is
    /// taken by a new process between them, the action may reach that one. The PID is
    /// looked at again afterwards: when it names another process by then, the answer is
    /// an error of kind [`ErrorKind::Failed`] saying so, whatever `action` returned (the
    /// plugin should not report a fault that may have struck elsewhere as done). A
    /// process that merely exited during the action is not an error.
    ///
    /// ```no_run
    /// use nightmare_monkey_plugin_api::sdk::{process::Exact, ErrorKind, PluginError, ProcessInfo};
    ///
    /// fn renice(info: &ProcessInfo, nice: i32) -> Result<bool, PluginError> {
    ///     let Some(process) = Exact::of(info)? else {
    ///         return Ok(false); // gone, or its PID names another process now
    ///     };
    ///     let done = process.act(|pid| {
    ///         let pid = rustix::process::Pid::from_raw(pid as i32);
    ///         rustix::process::setpriority_process(pid, nice).map_err(|e| {
    ///             PluginError::new(ErrorKind::Denied, format!("cannot renice PID {}: {e}", info.pid))
    ///         })
    ///     })?;
    ///     Ok(done.is_some())
    /// }
    /// ```
    pub fn act<T>(
        &self,
        action: impl FnOnce(u32) -> Result<T, PluginError>,
    ) -> Result<Option<T>, PluginError> {
        if !self.alive()? {
            return Ok(None);
        }
        let done = action(self.pid);
        let exited = !self.alive()?;
        // Who holds the PID matters only once the process has exited; and then a PID
        // that cannot be read is no PID found free.
        let now = if exited {
            stat_now(self.pid)?.map(|s| s.starttime)
        } else {
            None
        };
        after_act(self.pid, self.start_time, exited, now)?;
        done.map(Some)
    }

    /// Its state letter now (`R`, `S`, `T`, `t` ...), read only while it is still the
    /// process chosen ([`Exact::act`]); `None` once it has exited.
    pub fn state(&self) -> Result<Option<char>, PluginError> {
        Ok(self.act(stat_now)?.flatten().map(|stat| stat.state))
    }

    /// Sends `signal` through the pidfd; `false` when the process has exited meanwhile.
    /// An error is the system refusing (of kind [`ErrorKind::Denied`] for EPERM), or a
    /// kernel without pidfds: a signal is never sent by bare PID.
    pub fn signal(&self, signal: Signal) -> Result<bool, PluginError> {
        let Some(pidfd) = &self.pidfd else {
            return Err(PluginError::new(
                ErrorKind::Failed,
                format!(
                    "cannot signal PID {}: this kernel has no pidfds (Linux 5.3 or later), and a signal is never sent by bare PID",
                    self.pid
                ),
            ));
        };
        match pidfd_send_signal(pidfd, signal.0) {
            Ok(()) => Ok(true),
            Err(Errno::SRCH) => Ok(false),
            Err(e) => Err(os_error(self.pid, "signal", e)),
        }
    }

    /// Waits up to `grace` for the process to exit; `true` when it did. A pidfd polls
    /// readable once its process has exited (before it is reaped).
    pub fn wait_exit(&self, grace: Duration) -> Result<bool, PluginError> {
        match &self.pidfd {
            Some(pidfd) => self.exited_within(pidfd, grace),
            None => {
                // Without a pidfd nothing wakes a waiter: look every few milliseconds.
                let deadline = Instant::now() + grace;
                loop {
                    if !self.alive()? {
                        return Ok(true);
                    }
                    if Instant::now() >= deadline {
                        return Ok(false);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    fn exited_within(&self, pidfd: &OwnedFd, grace: Duration) -> Result<bool, PluginError> {
        let deadline = Instant::now() + grace;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => return Ok(false),
                Ok(_) => return Ok(true),
                Err(Errno::INTR) if !left.is_zero() => continue,
                Err(e) => return Err(os_error(self.pid, "wait for", e)),
            }
        }
    }
}

/// After an action by PID: an error when the process exited meanwhile and its PID names
/// another process now (`now`: the start time of whoever holds the PID, if anyone).
fn after_act(pid: u32, start_time: u64, exited: bool, now: Option<u64>) -> Result<(), PluginError> {
    match now {
        Some(now) if exited && now != start_time => Err(PluginError::new(
            ErrorKind::Failed,
            format!(
                "PID {pid} exited while it was acted on, and names another process now: the action may have reached that process"
            ),
        )),
        _ => Ok(()),
    }
}

/// Sends `signal` to exactly the process `pid` that started at `start_time`: `false` when
/// it is gone (or its PID names another process now), and nothing is sent.
pub fn signal_exact(pid: u32, start_time: u64, signal: Signal) -> Result<bool, PluginError> {
    match Exact::open(pid, start_time)? {
        Some(process) => process.signal(signal),
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use rustix::process::{getpriority_process, setpriority_process};

    use super::*;
    use crate::sdk::{
        process::state_of,
        testing::{
            alone::{alone, Starved},
            Child,
        },
    };

    fn info(child: &Child) -> ProcessInfo {
        ProcessInfo::of(child.pid()).unwrap()
    }

    fn nice_of(pid: u32) -> i32 {
        getpriority_process(Pid::from_raw(pid as i32)).unwrap()
    }

    /// A renice, the kind of action a pidfd cannot carry: done on the child seen.
    fn renice(pid: u32) -> Result<(), PluginError> {
        setpriority_process(Pid::from_raw(pid as i32), 7).map_err(|e| os_error(pid, "renice", e))
    }

    /// `exact` without its pidfd: what a kernel before 5.3 gives.
    fn without_pidfd(exact: Exact) -> Exact {
        Exact {
            pidfd: None,
            ..exact
        }
    }

    /// Signals go to the child spawned here only, by its exact PID and start time.
    #[test]
    fn signals_reach_exactly_the_process_that_was_seen() {
        let child = Child::sleep();
        let info = info(&child);
        assert_eq!(info.name, "sleep");
        // Another start time: a process that reused the PID. Nothing is sent.
        assert!(Exact::open(info.pid, info.start_time + 1)
            .unwrap()
            .is_none());
        assert!(!signal_exact(info.pid, info.start_time + 1, Signal::KILL).unwrap());
        assert_ne!(state_of(info.pid), Some('Z'));
        let process = Exact::of(&info).unwrap().unwrap();
        assert_eq!(
            (process.pid(), process.start_time()),
            (info.pid, info.start_time)
        );
        assert!(signal_exact(info.pid, info.start_time, Signal::STOP).unwrap());
        assert!(process.signal(Signal::KILL).unwrap());
        assert!(process.wait_exit(Duration::from_secs(10)).unwrap());
        assert!(!process.alive().unwrap());
    }

    /// Any action by PID runs on the process seen while it runs, and not at all once it
    /// has exited, with a pidfd or without.
    #[test]
    fn an_action_runs_only_while_the_process_is_the_one_seen() {
        for pidfd in [true, false] {
            let mut child = Child::sleep();
            let info = info(&child);
            let mut process = Exact::of(&info).unwrap().unwrap();
            if !pidfd {
                process = without_pidfd(process);
            }
            assert!(process.alive().unwrap());
            assert_eq!(process.act(renice).unwrap(), Some(()), "pidfd: {pidfd}");
            if !pidfd {
                let e = process.signal(Signal::STOP).unwrap_err();
                assert!(e.message.contains("never sent by bare PID"), "{e}");
                assert_ne!(crate::sdk::process::stopped(info.pid), Some(true));
            }
            assert_eq!(nice_of(info.pid), 7);
            // The action's own error comes back as it is.
            let refused = process
                .act(|pid| Err::<(), _>(os_error(pid, "renice", Errno::PERM)))
                .unwrap_err();
            assert_eq!(refused.kind, ErrorKind::Denied);

            // Exited (a zombie, not yet reaped: the PID is still its own), then reaped.
            let killer = Exact::of(&info).unwrap().unwrap();
            assert!(killer.signal(Signal::KILL).unwrap());
            assert!(process.wait_exit(Duration::from_secs(10)).unwrap());
            let ran = Cell::new(false);
            let act = || {
                process
                    .act(|_| {
                        ran.set(true);
                        Ok(())
                    })
                    .unwrap()
            };
            assert_eq!(act(), None, "pidfd: {pidfd}");
            child.end();
            assert_eq!(act(), None, "pidfd: {pidfd}");
            assert!(!ran.get(), "the action ran on a process that had exited");
        }
    }

    /// With one descriptor left, the pidfd takes it and `/proc/<pid>/stat` cannot be
    /// opened (EMFILE): that is an error to try again, never a process gone. Taken for
    /// gone, process-pause's revert said "nothing to resume" and left its victim stopped
    /// for good.
    #[test]
    fn a_process_that_cannot_be_looked_at_is_not_gone() {
        alone(
            "sdk::process::exact::tests::a_process_that_cannot_be_looked_at_is_not_gone",
            || {
                let child = Child::sleep();
                let info = info(&child);
                assert!(signal_exact(info.pid, info.start_time, Signal::STOP).unwrap());
                // A signal is delivered a moment after it is sent.
                let deadline = Instant::now() + Duration::from_secs(30);
                while crate::sdk::process::stopped(info.pid) != Some(true) {
                    assert!(Instant::now() < deadline, "SIGSTOP never took");
                    std::thread::yield_now();
                }
                for free in [1, 0] {
                    let starved = Starved::leaving(free);
                    let answer = signal_exact(info.pid, info.start_time, Signal::CONT);
                    let opened = Exact::of(&info).map(|e| e.is_some());
                    drop(starved);
                    let e = answer.unwrap_err();
                    assert_eq!(e.kind, ErrorKind::Failed, "{free} left: {e}");
                    assert!(e.message.contains("Too many open files"), "{e}");
                    assert_eq!(opened.unwrap_err().kind, ErrorKind::Failed);
                    assert_eq!(crate::sdk::process::stopped(info.pid), Some(true));
                }
                // With descriptors again, the same call resumes it.
                assert!(signal_exact(info.pid, info.start_time, Signal::CONT).unwrap());
                let process = Exact::of(&info).unwrap().unwrap();
                // Without a pidfd, `alive` reads the stat file, and says so when it cannot.
                let process = without_pidfd(process);
                let starved = Starved::leaving(0);
                let alive = process.alive();
                drop(starved);
                assert_eq!(alive.unwrap_err().kind, ErrorKind::Failed);
                assert!(process.alive().unwrap());
            },
        );
    }

    /// A process that exits during the action is no error; a PID that names another
    /// process afterwards is, whatever the action said.
    #[test]
    fn a_pid_taken_over_during_the_action_is_an_error() {
        assert!(after_act(9, 100, false, Some(100)).is_ok());
        assert!(after_act(9, 100, true, Some(100)).is_ok(), "a zombie");
        assert!(after_act(9, 100, true, None).is_ok(), "reaped, PID free");
        let e = after_act(9, 100, true, Some(200)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Failed);
        assert_eq!(
            e.message,
            "PID 9 exited while it was acted on, and names another process now: the action may have reached that process"
        );

        // And for real: the child killed and reaped by the action itself.
        let mut child = Child::sleep();
        let process = Exact::of(&info(&child)).unwrap().unwrap();
        let done = process.act(|_| {
            child.end();
            Ok("done")
        });
        assert_eq!(done.unwrap(), Some("done"));
    }
}
