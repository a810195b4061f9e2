//! A plugin file runs in a worker process of its own, never in the daemon: a plugin that
//! segfaults, aborts, calls `exit` or hangs takes its worker down, not the monkey.
//!
//! The worker is this very binary (`/proc/self/exe __plugin-worker FILE`), in a process
//! group of its own. The host checks the file and reads its bytes once; the worker gets
//! those bytes on its stdin (a length line, then the image), loads them through the
//! loader's checks and the ABI, and then serves calls, one JSON object a line: the host
//! writes [`Call`]s on the worker's stdin and reads [`Reply`]s, tagged with the call's
//! id, on its stdout. A restarted worker gets the same bytes, so replacing the file
//! changes nothing until the daemon loads it anew (SIGHUP). Before loading, the worker
//! moves the protocol off descriptors 0 and 1 (to close-on-exec copies), so neither the
//! plugin's own output nor a program it starts can touch the protocol. Each injection
//! and revert runs on a thread of the worker's own, so a hung call holds up no other.
//! What the worker writes on stderr (and on stdout, which is stderr now) comes back one
//! line at a time through the caller's `stderr_lines`, each line cut at 4 KiB.
//!
//! The host side, [`Client`], gives every call a deadline. A worker with a call past
//! its caller's deadline ([`injections_due_by`]: the dispatch's, which answers 504 at
//! it) takes no new call: the next goes to a fresh worker, so a call asked right after a
//! 504 is not lost with the hung one. The retired worker may still answer what it was
//! asked (a late answer is recorded); [`deadline::GRACE`] past a call's own deadline
//! (`plugin_timeout` from when it was sent) it is killed (through a pidfd: exactly that
//! process), with everything else in flight on it. The host learns that a worker ended
//! from the pidfd, not from its pipes (which a child of the plugin may hold open): it
//! then kills the worker's process group, reads the replies it wrote before its end, and
//! fails every call still waiting. A worker that died is started afresh on the next
//! call, with every fault built again from its configuration. A fault's revert state is
//! data, so a revert works on the new worker as it did on the old. A reply line longer
//! than [`MAX_REPLY`] stops the worker: nothing a plugin writes can fill the daemon's
//! memory.

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Write as _},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    process::{ChildStdin, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use nightmare_monkey_plugin_api::sdk::{ErrorKind, PluginError};
use serde::{Deserialize, Serialize};

use super::Plugin;

mod deadline;
mod lines;
mod serve;
mod spawn;

use crate::support::{
    backoff::Backoff, child::stop_signals_unblocked, lock::lock, text::escape_controls,
};
pub(crate) use deadline::injections_due_by;
use deadline::{deadlines, overdue, Waiting};
use lines::{read_capped, PanicReports};
pub(crate) use serve::serve;

/// What the host asks of a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Call {
    id: u64,
    op: Op,
    /// The fault, by the order it was built in.
    #[serde(default)]
    fault: usize,
    /// The config (`NewFault`), the request (`Inject`) or the revert state (`Revert`).
    #[serde(default)]
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Op {
    NewFault,
    Inject,
    Revert,
}

/// A worker's answer to call `id`: the text the plugin answered, or its error (as the
/// ABI's JSON). Id 0 is the answer to loading: the manifest, or why it cannot load.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Reply {
    id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    err: Option<String>,
}

impl Reply {
    fn of(id: u64, answer: Result<String, String>) -> Self {
        match answer {
            Ok(text) => Reply {
                id,
                ok: Some(text),
                err: None,
            },
            Err(text) => Reply {
                id,
                ok: None,
                err: Some(text),
            },
        }
    }

    fn answer(self) -> Result<String, PluginError> {
        match (self.ok, self.err) {
            (Some(text), _) => Ok(text),
            (None, Some(err)) => Err(PluginError::from_json(&err)),
            (None, None) => Err(failed("its worker answered nothing")),
        }
    }
}

fn failed(message: impl Into<String>) -> PluginError {
    PluginError::new(ErrorKind::Failed, message)
}

/// Where a worker's stderr lines go (the daemon's log, a command's stderr).
pub type StderrLines = Arc<dyn Fn(String) + Send + Sync>;

/// How a plugin file is run: the deadline of each call, and where its worker's stderr
/// goes.
#[derive(Clone)]
pub struct Supervision {
    /// How long one call (loading, building a fault, an injection, a revert) may take.
    pub timeout: Duration,
    /// Told each line the worker writes on stderr.
    pub stderr_lines: StderrLines,
    /// The program that serves as the worker: this very binary (`/proc/self/exe`),
    /// unless a harness that is not the monkey says where the monkey is.
    pub program: PathBuf,
}

impl Supervision {
    /// Workers of this very binary, each call within `timeout`, their stderr to `stderr_lines`.
    pub fn new(timeout: Duration, stderr_lines: StderrLines) -> Self {
        Self {
            timeout,
            stderr_lines,
            program: PathBuf::from("/proc/self/exe"),
        }
    }
}

/// The host side: one worker for one plugin file, started when first needed and again
/// after it died.
pub struct Client {
    path: PathBuf,
    /// The file's bytes as checked when it was loaded: what every worker runs.
    image: Arc<Vec<u8>>,
    supervision: Supervision,
    /// The plugin's name once known, for what its worker says.
    name: Arc<Mutex<String>>,
    next_id: AtomicU64,
    inner: Mutex<Inner>,
    /// Workers that take no new call (one of theirs is past its deadline), kept while a
    /// call on them may still be answered. Its own lock, so that stopping one never waits
    /// for a fresh worker's start (taken after `inner` where both are held).
    retired: Mutex<Vec<Running>>,
}

#[derive(Default)]
struct Inner {
    running: Option<Running>,
    /// Every fault built, by number: what a fresh worker builds again.
    configs: Vec<String>,
    /// Which start this is (a call that times out stops only the worker it was sent to).
    generation: u64,
    /// When the running (or last) worker started.
    started: Option<Instant>,
    /// Workers in a row that died within [`QUICK_DEATH`] of their start.
    quick_deaths: u32,
}

/// A worker that dies sooner than this after its start counts towards a crash loop.
const QUICK_DEATH: Duration = Duration::from_secs(10);

/// Fresh workers started at once after quick deaths; past these, each waits.
const FREE_RESTARTS: u32 = 5;

/// The waits between fresh workers of a plugin in a crash loop (after the free ones).
const RESTART_BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(100),
    ceiling: Duration::from_secs(30),
};

/// A call as sent: where to wait for its reply, to which worker it went, when that worker
/// is stopped if it has not answered.
struct Sent {
    answer: mpsc::Receiver<Reply>,
    generation: u64,
    stop_at: Instant,
}

type Pending = Arc<Mutex<HashMap<u64, Waiting>>>;

struct Running {
    stdin: ChildStdin,
    pidfd: Arc<OwnedFd>,
    pending: Pending,
    alive: Arc<AtomicBool>,
    generation: u64,
    /// Disconnected once the worker has ended and been reaped.
    watched: mpsc::Receiver<()>,
    /// Disconnected once everything the worker wrote on stderr has been passed on.
    relayed: mpsc::Receiver<()>,
}

impl Running {
    /// Whether a call on this worker is past its deadline at `now`.
    fn overdue(&self, now: Instant) -> bool {
        overdue(&lock(&self.pending), now)
    }

    /// Whether this worker may still answer a call: alive, with calls unanswered.
    fn owes_answers(&self) -> bool {
        self.alive.load(Ordering::SeqCst) && !lock(&self.pending).is_empty()
    }
}

/// How long, once a worker has ended, what it wrote on its stdout is still read for
/// replies before the calls left are failed (its end comes at once: the protocol's
/// descriptor is the worker's alone); and how long a call whose worker was stopped waits
/// for one of them.
const LAST_REPLIES: Duration = Duration::from_millis(500);

/// How long a client that goes away gives its worker to end by itself once its stdin is
/// closed; one still running then (a call hung) is killed.
const TO_END: Duration = Duration::from_millis(500);

/// How long, once its worker has been killed, a client that goes away waits for it to be
/// reaped; then as long again for the rest of what the worker wrote on stderr to be passed
/// on. The pipe ends with the worker's process group and what escaped it (in a process
/// that adopts orphans), so the second bound is met only if a child of the plugin left
/// the group (`setsid()`, `setpgid()`) in a process that adopts none, and holds the pipe.
const LAST_WORDS: Duration = Duration::from_secs(2);

impl Drop for Client {
    /// Closes the worker's stdin, which ends it, waits for it to be reaped, then for
    /// everything it wrote on stderr to be passed on: a command's last line (its error)
    /// then comes after what the plugin said (a panic's report, written before the answer
    /// that reported it), however busy the machine. It waits for the worker and the pipe
    /// to end, not for a time to pass: a worker slow to end is killed, and what it wrote
    /// is still in the pipe.
    fn drop(&mut self) {
        let running = self
            .inner
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .running
            .take();
        let retired = self.retired.get_mut().unwrap_or_else(|p| p.into_inner());
        let workers: Vec<Running> = running.into_iter().chain(retired.drain(..)).collect();
        let mut waiting = Vec::with_capacity(workers.len());
        for worker in workers {
            let Running {
                stdin,
                watched,
                relayed,
                pidfd,
                ..
            } = worker;
            drop(stdin);
            waiting.push((watched, relayed, pidfd));
        }
        let ends_by = Instant::now() + TO_END;
        let mut killed = None;
        for (watched, _, pidfd) in &waiting {
            let left = ends_by.saturating_duration_since(Instant::now());
            if watched.recv_timeout(left) == Err(mpsc::RecvTimeoutError::Timeout) {
                kill(pidfd);
                let reaped_by = *killed.get_or_insert_with(|| Instant::now() + LAST_WORDS);
                let _ = watched.recv_timeout(reaped_by.saturating_duration_since(Instant::now()));
            }
        }
        let relayed_by = Instant::now() + LAST_WORDS;
        for (_, relayed, _) in &waiting {
            let _ = relayed.recv_timeout(relayed_by.saturating_duration_since(Instant::now()));
        }
    }
}

/// The longest reply line a worker may write (an outcome is a few KiB): past it, the
/// worker is stopped.
pub const MAX_REPLY: usize = 8 * 1024 * 1024;

/// The longest stderr line passed on; the rest of it is dropped.
const MAX_SAID: usize = 4 * 1024;

/// The PIDs of the workers running now, every plugin's: no process fault may choose
/// one (a worker is the monkey too). A PID leaves the list before its process is
/// reaped, so it never names another process while listed.
static LIVE: Mutex<std::collections::BTreeSet<u32>> = Mutex::new(std::collections::BTreeSet::new());

/// The PIDs of the plugin workers running now.
pub(crate) fn live_workers() -> Vec<u32> {
    lock(&LIVE).iter().copied().collect()
}

impl Client {
    /// Starts a worker for the plugin file at `path` whose checked bytes are `image`,
    /// and waits for it to load them: the manifest's text, or why it cannot load (one
    /// sentence naming the file).
    pub fn start(
        path: &Path,
        image: Vec<u8>,
        supervision: Supervision,
    ) -> Result<(Arc<Client>, String), String> {
        let client = Arc::new(Client {
            path: path.to_owned(),
            image: Arc::new(image),
            supervision,
            name: Arc::new(Mutex::new(path.display().to_string())),
            next_id: AtomicU64::new(1),
            inner: Mutex::new(Inner::default()),
            retired: Mutex::default(),
        });
        let manifest = {
            let mut inner = lock(&client.inner);
            inner.started = Some(Instant::now());
            client.spawn(&mut inner)?
        };
        Ok((client, manifest))
    }

    /// Names the plugin in what its worker says.
    pub fn named(&self, name: &str) {
        *lock(&self.name) = name.to_owned();
    }

    /// Sends a call to the running worker (starting one if needed) and returns what to
    /// wait on.
    fn send(
        &self,
        inner: &mut Inner,
        op: Op,
        fault: usize,
        text: &str,
        callers: Option<Instant>,
    ) -> Result<Sent, PluginError> {
        // A worker with a call past its deadline takes no new call: that caller has given
        // up, and the worker is stopped at the call's own deadline unless it answers. It is
        // kept while it may still answer. (One that died is not retired, it is dead.)
        let retiring = inner
            .running
            .as_ref()
            .is_some_and(|r| r.alive.load(Ordering::SeqCst) && r.overdue(Instant::now()));
        {
            let mut retired = lock(&self.retired);
            if retiring {
                retired.extend(inner.running.take());
            }
            retired.retain(Running::owes_answers);
        }
        let dead = inner
            .running
            .as_ref()
            .is_none_or(|r| !r.alive.load(Ordering::SeqCst));
        if dead && retiring {
            // Retired, not dead: no crash to count, no wait; one that served long ends a
            // crash loop as a long life does.
            let now = Instant::now();
            if inner.started.is_none_or(|t| now - t >= QUICK_DEATH) {
                inner.quick_deaths = 0;
            }
            inner.started = Some(now);
            self.spawn(inner).map_err(failed)?;
        } else if dead {
            inner.running = None;
            // A plugin that crashes at every call gets a few fresh workers at once, then
            // one after a doubling wait (up to 30 s): not a hundred in a second.
            let now = Instant::now();
            let quick = inner.started.is_some_and(|t| now - t < QUICK_DEATH);
            let deaths = if quick { inner.quick_deaths + 1 } else { 0 };
            if deaths > FREE_RESTARTS {
                let wait = RESTART_BACKOFF.base(deaths - FREE_RESTARTS);
                let next = inner.started.map_or(now, |t| t + wait);
                if now < next {
                    return Err(failed(format!(
                        "its worker died {deaths} times in a row, each within {} of its start; the next fresh one starts in {} at the earliest",
                        humantime::format_duration(QUICK_DEATH),
                        humantime::format_duration(Duration::from_millis((next - now).as_millis() as u64 + 1))
                    )));
                }
            }
            inner.quick_deaths = deaths;
            inner.started = Some(now);
            self.spawn(inner).map_err(failed)?;
        }
        let Some(running) = inner.running.as_mut() else {
            return Err(failed("its worker is not running"));
        };
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut line = serde_json::to_string(&Call {
            id,
            op,
            fault,
            text: text.to_owned(),
        })
        .map_err(|e| failed(e.to_string()))?;
        line.push('\n');
        let (answer, rx) = mpsc::channel();
        let (due, stop_at) = deadlines(Instant::now(), self.supervision.timeout, callers);
        lock(&running.pending).insert(id, Waiting { answer, due });
        if let Err(e) = running.stdin.write_all(line.as_bytes()) {
            lock(&running.pending).remove(&id);
            running.alive.store(false, Ordering::SeqCst);
            return Err(failed(format!(
                "cannot reach its worker ({e}); the next call starts a fresh one"
            )));
        }
        Ok(Sent {
            answer: rx,
            generation: running.generation,
            stop_at,
        })
    }

    /// Waits for the answer to a call, at most [`deadline::GRACE`] past its own deadline;
    /// then its worker is stopped. A retired worker that owes no answer any more is let go.
    fn wait(&self, sent: Sent) -> Result<String, PluginError> {
        let left = sent.stop_at.saturating_duration_since(Instant::now());
        let answered = sent.answer.recv_timeout(left);
        if !matches!(answered, Err(mpsc::RecvTimeoutError::Timeout)) {
            lock(&self.retired).retain(Running::owes_answers);
        }
        match answered {
            Ok(reply) => reply.answer(),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(failed("its worker ended without answering"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.stop(sent.generation);
                // An answer the worker wrote before it was killed still counts: its
                // replies are read to their end before the calls left are failed.
                if let Ok(reply) = sent.answer.recv_timeout(LAST_REPLIES) {
                    if reply.ok.is_some() {
                        return reply.answer();
                    }
                }
                Err(failed(format!(
                    "no answer within {}: its worker was stopped (the next call starts a fresh one)",
                    humantime::format_duration(self.supervision.timeout)
                )))
            }
        }
    }

    /// A call within a held lock (building faults).
    fn send_and_wait(
        &self,
        inner: &mut Inner,
        op: Op,
        fault: usize,
        text: &str,
    ) -> Result<String, PluginError> {
        let sent = self.send(inner, op, fault, text, None)?;
        match sent.answer.recv_timeout(self.supervision.timeout) {
            Ok(reply) => reply.answer(),
            Err(_) => {
                if let Some(running) = inner.running.take() {
                    if running.generation == sent.generation {
                        kill(&running.pidfd);
                    }
                }
                Err(failed(format!(
                    "no answer within {}: its worker was stopped",
                    humantime::format_duration(self.supervision.timeout)
                )))
            }
        }
    }

    /// Stops the worker of start `generation`, if it still runs (in service or retired),
    /// and says so.
    fn stop(&self, generation: u64) {
        let take_retired = || {
            let mut retired = lock(&self.retired);
            let at = retired.iter().position(|r| r.generation == generation);
            at.map(|at| retired.swap_remove(at))
        };
        // A retired worker first, without waiting for a fresh one's start; then under
        // `inner`, where a worker is either in service or already retired.
        let stopped = take_retired().or_else(|| {
            let mut inner = lock(&self.inner);
            if inner
                .running
                .as_ref()
                .is_some_and(|r| r.generation == generation)
            {
                inner.running.take()
            } else {
                take_retired()
            }
        });
        if let Some(running) = stopped {
            kill(&running.pidfd);
            (self.supervision.stderr_lines)(format!(
                "plugin {}: a call had no answer within {}: its worker was stopped, with every call in flight on it",
                lock(&self.name),
                humantime::format_duration(self.supervision.timeout)
            ));
        }
    }

    /// Builds a fault from its configuration; its number for later calls.
    pub fn new_fault(&self, config: &str) -> Result<usize, PluginError> {
        let mut inner = lock(&self.inner);
        let text = self.send_and_wait(&mut inner, Op::NewFault, 0, config)?;
        let number: usize = text
            .parse()
            .map_err(|_| failed(format!("its worker answered `{text}` for a fault number")))?;
        if number != inner.configs.len() {
            return Err(failed("its worker numbered a fault out of order"));
        }
        inner.configs.push(config.to_owned());
        Ok(number)
    }

    /// Injects fault `fault` with `request` (the ABI's JSON text).
    pub fn inject(&self, fault: usize, request: &str) -> Result<String, PluginError> {
        let sent = self.send(
            &mut lock(&self.inner),
            Op::Inject,
            fault,
            request,
            deadline::callers_due(),
        )?;
        self.wait(sent)
    }

    /// Reverts fault `fault` with its revert `state` (JSON text).
    pub fn revert(&self, fault: usize, state: &str) -> Result<String, PluginError> {
        let sent = self.send(&mut lock(&self.inner), Op::Revert, fault, state, None)?;
        self.wait(sent)
    }
}

/// Sends SIGKILL to exactly the worker the pidfd names.
fn kill(pidfd: &OwnedFd) {
    let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
}

/// How a worker ended, in words: `was killed by SIGSEGV`, `exited with status 3`.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                4 => "SIGILL".to_owned(),
                6 => "SIGABRT".to_owned(),
                7 => "SIGBUS".to_owned(),
                8 => "SIGFPE".to_owned(),
                9 => "SIGKILL".to_owned(),
                11 => "SIGSEGV".to_owned(),
                15 => "SIGTERM".to_owned(),
                other => format!("signal {other}"),
            };
            format!("was killed by {name}")
        }
        (None, None) => "ended".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_replies_are_one_line_of_json_each() {
        let call = Call {
            id: 7,
            op: Op::Inject,
            fault: 2,
            text: "{\"seed\":1}\n".into(),
        };
        let line = serde_json::to_string(&call).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(
            line,
            r#"{"id":7,"op":"Inject","fault":2,"text":"{\"seed\":1}\n"}"#
        );
        let reply: Reply = serde_json::from_str(r#"{"id":7,"ok":"{}"}"#).unwrap();
        assert_eq!(reply.answer().unwrap(), "{}");
        let reply: Reply = serde_json::from_str(
            r#"{"id":7,"err":"{\"kind\":\"no-target\",\"message\":\"none\"}"}"#,
        )
        .unwrap();
        assert_eq!(
            reply.answer().unwrap_err(),
            PluginError::new(ErrorKind::NoTarget, "none")
        );
        assert_eq!(
            Reply {
                id: 1,
                ok: None,
                err: None
            }
            .answer()
            .unwrap_err()
            .message,
            "its worker answered nothing"
        );
    }

    #[test]
    fn a_worker_s_end_is_said_in_words() {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(
            describe(std::process::ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
        assert_eq!(
            describe(std::process::ExitStatus::from_raw(11)),
            "was killed by SIGSEGV"
        );
    }
}
