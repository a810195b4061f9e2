//! Starting a worker and watching it: its process (in a group of its own, given the
//! plugin's bytes), its end (learned from its pidfd), what it says on stderr, its
//! replies; and the throttle of a plugin in a crash loop.

use super::*;
use crate::support::orphans;

impl Client {
    /// Starts a worker and waits for its answer to loading, then builds every fault
    /// again on it; `Err` is one sentence, and leaves no worker running.
    pub(super) fn spawn(&self, inner: &mut Inner) -> Result<String, String> {
        use std::os::unix::process::CommandExt as _;
        let shown = self.path.display();
        // The daemon blocks the stop signals; the worker, and what its plugin starts,
        // must not inherit that.
        let mut command = Command::new(&self.supervision.program);
        stop_signals_unblocked(&mut command)
            .arg("__plugin-worker")
            .arg(&self.path)
            // A group of its own: whatever the plugin starts goes down with it.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG");
        // Known as the daemon's until the worker is reaped: what leaves the group is not.
        let (mut child, group) = orphans::start_group(|| command.spawn(), |c| Some(c.id()))
            .map_err(|e| format!("cannot load plugin {shown}: cannot start its worker: {e}"))?;
        let pid = rustix::process::Pid::from_child(&child);
        lock(&LIVE).insert(child.id());
        // Our own child, not yet reaped: the pidfd names exactly it, whatever happens to
        // its PID later.
        let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                let _ = child.kill();
                lock(&LIVE).remove(&child.id());
                let _ = child.wait();
                return Err(format!(
                    "cannot load plugin {shown}: cannot watch its worker: {e}"
                ));
            }
        };
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            lock(&LIVE).remove(&child.id());
            let _ = child.wait();
            return Err(format!(
                "cannot load plugin {shown}: its worker has no pipes"
            ));
        };
        inner.generation += 1;
        let pending: Pending = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let (loaded_tx, loaded) = mpsc::channel::<Reply>();
        lock(&pending).insert(
            0,
            Waiting {
                answer: loaded_tx,
                due: Instant::now() + self.supervision.timeout,
            },
        );
        // Disconnected once every reply the worker wrote has been read.
        let (reading, read) = mpsc::channel::<()>();
        let watched = match self.watch(child, group, &pidfd, &pending, &alive, read) {
            Ok(watched) => watched,
            // No worker runs unwatched: killed, and reaped as an orphan (its group is no
            // longer known as started).
            Err(e) => {
                lock(&LIVE).remove(&(pid.as_raw_nonzero().get() as u32));
                kill(&pidfd);
                orphans::reap(&pidfd, orphans::TO_THE_END);
                return Err(format!(
                    "cannot load plugin {shown}: cannot watch its worker: {e}"
                ));
            }
        };
        let relayed = self.relay(stderr);
        Self::read_replies(stdout, pending.clone(), pidfd.clone(), reading);
        let mut running = Running {
            stdin,
            pidfd,
            pending,
            alive,
            generation: inner.generation,
            watched,
            relayed,
        };
        // The image first: what it runs is what was checked, whatever the file is now.
        let sent = running
            .stdin
            .write_all(format!("{}\n", self.image.len()).as_bytes())
            .and_then(|()| running.stdin.write_all(&self.image));
        let manifest = match (sent, loaded.recv_timeout(self.supervision.timeout)) {
            // The worker's own sentence names the file already; how it died does not.
            (_, Ok(reply)) => reply.answer().map_err(|e| {
                if e.message.starts_with("its worker ") {
                    format!("cannot load plugin {shown}: {}", e.message)
                } else {
                    e.message
                }
            }),
            (Err(e), Err(_)) => Err(format!(
                "cannot load plugin {shown}: cannot hand it to its worker: {e}"
            )),
            (Ok(()), Err(_)) => Err(format!(
                "cannot load plugin {shown}: no answer from its worker within {}",
                humantime::format_duration(self.supervision.timeout)
            )),
        };
        let manifest = match manifest {
            Ok(manifest) => manifest,
            Err(e) => {
                kill(&running.pidfd);
                return Err(e);
            }
        };
        inner.running = Some(running);
        // A fresh worker after one died: every fault is built again, in order. One that
        // cannot be leaves no half-built worker in service.
        for config in inner.configs.clone() {
            if let Err(e) = self.send_and_wait(inner, Op::NewFault, 0, &config) {
                if let Some(running) = inner.running.take() {
                    kill(&running.pidfd);
                }
                return Err(format!(
                    "cannot build a fault again on its fresh worker: {e}"
                ));
            }
        }
        Ok(manifest)
    }

    /// Waits (on a thread) for the worker to end, by its pidfd, not its pipes (a child
    /// of the plugin may hold those): then kills what is left of its process group,
    /// reaps it, lets the replies it wrote be read (`read` is disconnected then, within
    /// [`LAST_REPLIES`]), ends what escaped it, and tells every call still waiting how it
    /// ended.
    /// What it returns is disconnected once the worker is reaped and every call told;
    /// `Err` if no thread can watch it.
    fn watch(
        &self,
        mut child: std::process::Child,
        group: Option<orphans::Group>,
        pidfd: &Arc<OwnedFd>,
        pending: &Pending,
        alive: &Arc<AtomicBool>,
        read: mpsc::Receiver<()>,
    ) -> std::io::Result<mpsc::Receiver<()>> {
        let (pidfd, pending, alive) = (pidfd.clone(), pending.clone(), alive.clone());
        let pid = rustix::process::Pid::from_child(&child);
        let (watching, watched) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("plugin-worker".to_owned())
            .spawn(move || {
                use rustix::process::{waitid, WaitId, WaitIdOptions};
                use std::os::fd::AsFd as _;
                // Until it has ended, not reaping it yet: its PID, and so its process
                // group's, cannot be reused while the group is killed.
                let _ = waitid(
                    WaitId::PidFd(pidfd.as_fd()),
                    WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                );
                alive.store(false, Ordering::SeqCst);
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                lock(&LIVE).remove(&child.id());
                let how = match child.wait() {
                    Ok(status) => describe(status),
                    Err(e) => format!("ended ({e})"),
                };
                // A reply written just before the end is an answer, not a failure.
                let _ = read.recv_timeout(LAST_REPLIES);
                for (id, waiting) in lock(&pending).drain() {
                    let why = if id == 0 {
                        format!("its worker {how} while loading it")
                    } else {
                        format!("its worker {how} (the next call starts a fresh one)")
                    };
                    let _ = waiting
                        .answer
                        .send(Reply::of(id, Err(failed(why).to_json())));
                }
                // Reaped: what is left of its group, what left it with setsid() or
                // setpgid(), and what those leave as they end, are orphans now. Nobody
                // waits for that: a process that cannot die at once must not hold a
                // client's end (the stderr pipe's end waits for what holds it).
                drop(group);
                drop(watching);
                orphans::sweep_to_the_end(orphans::TO_THE_END);
            });
        thread.map(|_| watched)
    }

    /// Passes on what the worker writes on stderr, a line at a time (each cut at
    /// [`MAX_SAID`]), a panic's report folded into one line. What it returns is
    /// disconnected once all of it has been passed on.
    fn relay(&self, stderr: std::process::ChildStderr) -> mpsc::Receiver<()> {
        let stderr_lines = self.supervision.stderr_lines.clone();
        let name = self.name.clone();
        let (relaying, relayed) = mpsc::channel::<()>();
        let _ = std::thread::Builder::new()
            .name("plugin-stderr".to_owned())
            .spawn(move || {
                let _relaying = relaying;
                let mut panics = PanicReports::default();
                let mut reader = BufReader::new(stderr);
                while let Some(line) = read_capped(&mut reader, MAX_SAID, true) {
                    let mut text = String::from_utf8_lossy(&line.bytes).into_owned();
                    if line.cut {
                        text.push_str(" [cut at 4 KiB]");
                    }
                    for said in panics.feed(&text) {
                        stderr_lines(format!(
                            "plugin {}: {}",
                            lock(&name),
                            escape_controls(&said)
                        ));
                    }
                    if line.cut {
                        // Said, cut; the rest of the line is read and dropped.
                        read_capped(&mut reader, 0, false);
                    }
                }
                for said in panics.end() {
                    stderr_lines(format!(
                        "plugin {}: {}",
                        lock(&name),
                        escape_controls(&said)
                    ));
                }
            });
        relayed
    }

    /// Hands each reply to the call waiting for it; a reply line past [`MAX_REPLY`]
    /// stops the worker.
    fn read_replies(
        stdout: std::process::ChildStdout,
        pending: Pending,
        pidfd: Arc<OwnedFd>,
        reading: mpsc::Sender<()>,
    ) {
        let _ = std::thread::Builder::new()
            .name("plugin-replies".to_owned())
            .spawn(move || {
                let _reading = reading;
                let mut reader = BufReader::new(stdout);
                while let Some(line) = read_capped(&mut reader, MAX_REPLY, true) {
                    if line.cut {
                        kill(&pidfd);
                        break;
                    }
                    let Ok(reply) = serde_json::from_slice::<Reply>(&line.bytes) else {
                        continue;
                    };
                    if let Some(waiting) = lock(&pending).remove(&reply.id) {
                        let _ = waiting.answer.send(reply);
                    }
                }
            });
    }
}
