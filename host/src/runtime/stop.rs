//! SIGTERM, SIGINT and SIGHUP, from the first instant of a start to the exec of a SIGHUP
//! restart, and never lost.
//!
//! They are blocked in the daemon's first thread before any other exists, so that every
//! thread (each inherits its creator's mask) leaves them pending, and they are read from
//! a `signalfd`: by the async runtime as they come, and by [`requested`] wherever the
//! start or a restart looks. A handler would run in whichever thread the kernel picked,
//! and one that ran in another thread in the instant before a restart's exec was lost
//! with the old image (the daemon then ran on after a SIGTERM). Blocked, a stop that
//! comes after the restart's last look stays pending through the exec (the mask and
//! the pending signals survive it), and the new image stops before it starts.
//!
//! Until the runtime exists a stop is acted on as soon as the start can: after recovery
//! (nothing is left half-reverted), and before a SIGHUP restart (a stop wins over a
//! restart under way); during the start's halt check at once ([`Waiter::next_stop`]);
//! a SIGHUP once the daemon runs.

use std::{
    os::fd::{AsFd as _, OwnedFd},
    sync::{
        atomic::{AtomicBool, AtomicI32, Ordering},
        Mutex, OnceLock,
    },
};

use anyhow::Context as _;
use nix::sys::{
    signal::{SigSet, SigmaskHow, Signal},
    signalfd::{SfdFlags, SignalFd},
};

/// What was received: the stop signal (its number; 0 for none) and whether a SIGHUP
/// came that nobody has acted on yet.
struct Received {
    /// Where the signals are read; the lock makes a read and its record one step, so
    /// that whoever finds the descriptor empty finds what another reader took recorded.
    fd: Mutex<SignalFd>,
    stop: AtomicI32,
    hangup: AtomicBool,
    /// Told by every read that took a signal: one taken by another thread (the
    /// plugin-load, a recovery's, SIGHUP's check) between the kernel's wakeup and the
    /// runtime's look leaves the descriptor empty, and readiness alone would never
    /// wake the [`Waiter`].
    taken: tokio::sync::Notify,
}

static RECEIVED: OnceLock<Received> = OnceLock::new();

/// Holds SIGTERM, SIGINT and SIGHUP back at once, as the process begins, before the
/// command line is read (a daemon started a moment ago must not take the kernel's
/// default, its end, for a SIGHUP its supervisor sent as it started); returns the mask
/// as it was, for a command that does not read them to put back ([`unblock_at_birth`]).
pub fn block_at_birth() -> Option<SigSet> {
    let mut before = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stops()), Some(&mut before))
        .ok()
        .map(|()| before)
}

/// Puts back the mask [`block_at_birth`] found, for a command that leaves the stop
/// signals to the kernel (they end it): one that came meanwhile is delivered now.
pub fn unblock_at_birth(before: Option<SigSet>) {
    if let Some(before) = before {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
    }
}

/// Lets SIGTERM, SIGINT and SIGHUP in again, in this thread, once it has handlers of
/// its own for them (the sandbox's, which hand them to the monkey): one that came since
/// [`block_at_birth`] is delivered to them now.
pub fn unblock_for_handlers() {
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&stops()), None);
}

/// Holds SIGTERM, SIGINT and SIGHUP back from now on and opens the descriptor they are
/// read from; the first call does it, later ones do nothing. Call it before this
/// process starts any thread: a thread started earlier keeps them unblocked, and one
/// delivered to it would take the kernel's default (the end of the daemon).
pub fn install() -> anyhow::Result<()> {
    if RECEIVED.get().is_some() {
        return Ok(());
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stops()), None)
        .context("cannot block SIGTERM, SIGINT and SIGHUP")?;
    let fd = SignalFd::with_flags(&stops(), SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("cannot open a signalfd for SIGTERM, SIGINT and SIGHUP")?;
    let _ = RECEIVED.set(Received {
        fd: Mutex::new(fd),
        stop: AtomicI32::new(0),
        hangup: AtomicBool::new(false),
        taken: tokio::sync::Notify::new(),
    });
    Ok(())
}

/// SIGTERM, SIGINT and SIGHUP.
fn stops() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Takes every signal pending on the descriptor into `received`, and tells the
/// [`Waiter`] if there was one.
fn drain(received: &Received) {
    let fd = crate::support::lock::lock(&received.fd);
    let mut took = false;
    while let Ok(Some(info)) = fd.read_signal() {
        let signal = i32::try_from(info.ssi_signo).unwrap_or(0);
        note(received, signal);
        took = true;
    }
    if took {
        // A permit if the waiter is not waiting yet: its next wait ends at once.
        received.taken.notify_one();
    }
}

/// Records one signal: a stop by its number (the last one names it), a SIGHUP as a flag.
fn note(received: &Received, signal: i32) {
    if signal == nix::libc::SIGHUP {
        received.hangup.store(true, Ordering::SeqCst);
    } else if name(signal).is_some() {
        received.stop.store(signal, Ordering::SeqCst);
    }
}

/// Whether a SIGHUP came since the last call (or since [`install`]); it is forgotten.
pub fn take_hangup() -> bool {
    RECEIVED.get().is_some_and(|r| {
        drain(r);
        r.hangup.swap(false, Ordering::SeqCst)
    })
}

/// The stop signal received since [`install`], by name.
pub fn requested() -> Option<&'static str> {
    let received = RECEIVED.get()?;
    drain(received);
    name(received.stop.load(Ordering::SeqCst))
}

/// What the runtime waits for.
pub enum Event {
    /// SIGTERM or SIGINT, by name.
    Stop(&'static str),
    /// SIGHUP.
    Hangup,
}

/// Waits (in the async runtime) for the next stop or SIGHUP; one that came before the
/// call is answered at once, a stop before a SIGHUP.
pub struct Waiter {
    /// A duplicate of the descriptor, the runtime's own: readiness is all it reads from
    /// it (a signalfd answers with the pending signals, whichever copy is read).
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
}

impl Waiter {
    /// Registers the descriptor with the current runtime; [`install`] comes first.
    pub fn new() -> anyhow::Result<Waiter> {
        let received = RECEIVED
            .get()
            .context("the stop signals are not blocked yet (stop::install)")?;
        let own = crate::support::lock::lock(&received.fd)
            .as_fd()
            .try_clone_to_owned()
            .context("cannot wait for SIGTERM, SIGINT and SIGHUP")?;
        #[allow(unsafe_code)]
        // SAFETY: the `AsyncFd` owns `own`, which stays open and is the same descriptor
        // until the `AsyncFd` is dropped (tokio's condition for registering it).
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(own, tokio::io::Interest::READABLE)
        }
        .map_err(std::io::Error::from)
        .context("cannot wait for SIGTERM, SIGINT and SIGHUP")?;
        Ok(Waiter { fd })
    }

    /// The next stop or SIGHUP.
    pub async fn next(&mut self) -> Event {
        self.until(|| match requested() {
            Some(signal) => Some(Event::Stop(signal)),
            None => take_hangup().then_some(Event::Hangup),
        })
        .await
    }

    /// The next stop, by name; a SIGHUP meanwhile stays noted for [`Waiter::next`] (the
    /// start's own waits, before the daemon runs, answer stops only).
    pub async fn next_stop(&mut self) -> &'static str {
        self.until(requested).await
    }

    /// Waits until `look` finds what it looks for, looking again at each signal read.
    async fn until<T>(&mut self, mut look: impl FnMut() -> Option<T>) -> T {
        let Some(received) = RECEIVED.get() else {
            return std::future::pending().await;
        };
        loop {
            if let Some(found) = look() {
                return found;
            }
            tokio::select! {
                ready = self.fd.readable() => match ready {
                    // Cleared before the next read: a signal that comes after it is a
                    // new readiness, one read before it is recorded by then.
                    Ok(mut ready) => ready.clear_ready(),
                    // The reactor is gone (the runtime shuts down): only another
                    // reader's word can come.
                    Err(_) => received.taken.notified().await,
                },
                // Another thread read it first: the descriptor may never look ready.
                () = received.taken.notified() => {}
            }
        }
    }
}

fn name(signal: i32) -> Option<&'static str> {
    match signal {
        nix::libc::SIGTERM => Some("SIGTERM"),
        nix::libc::SIGINT => Some("SIGINT"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_named() {
        assert_eq!(name(nix::libc::SIGTERM), Some("SIGTERM"));
        assert_eq!(name(nix::libc::SIGINT), Some("SIGINT"));
        assert_eq!(name(nix::libc::SIGHUP), None);
        assert_eq!(name(0), None);
        assert_eq!(name(-1), None);
    }

    #[test]
    fn a_stop_is_named_by_its_last_signal_and_a_hangup_is_a_flag() {
        let received = Received {
            fd: Mutex::new(SignalFd::with_flags(&SigSet::empty(), SfdFlags::SFD_NONBLOCK).unwrap()),
            stop: AtomicI32::new(0),
            hangup: AtomicBool::new(false),
            taken: tokio::sync::Notify::new(),
        };
        note(&received, nix::libc::SIGHUP);
        assert!(received.hangup.load(Ordering::SeqCst));
        assert_eq!(received.stop.load(Ordering::SeqCst), 0);
        note(&received, nix::libc::SIGINT);
        note(&received, nix::libc::SIGTERM);
        assert_eq!(received.stop.load(Ordering::SeqCst), nix::libc::SIGTERM);
        note(&received, nix::libc::SIGUSR1);
        assert_eq!(received.stop.load(Ordering::SeqCst), nix::libc::SIGTERM);
    }

    /// Through the real descriptor, in one test (the flags are the process's, and a stop
    /// stays once seen): signals raised at this thread alone, where they are blocked, so
    /// that nothing else of the test process can take them.
    ///
    /// First, a signal that another reader takes from the descriptor (the plugin-load
    /// thread, a recovery's or SIGHUP check's thread, all of which look with
    /// [`requested`]) between the kernel's wakeup and the runtime's look leaves it empty
    /// by then: epoll reports nothing, and the waiter must still answer. Then what came
    /// before a wait and what comes during one, each answered once, a stop first.
    #[test]
    fn the_waiter_answers_what_another_reader_took_what_came_before_and_after() {
        use nix::sys::signal::raise;
        install().unwrap();
        install().unwrap(); // the second call does nothing
                            // Blocked here whatever thread installed first (the mask is this thread's).
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stops()), None).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // What should come fails the test if it does not, rather than hanging it.
            let within = std::time::Duration::from_secs(30);
            let mut waiter = Waiter::new().unwrap();
            let waiting = tokio::spawn(async move {
                let event = waiter.next().await;
                (waiter, event)
            });
            // The waiter looks, finds nothing, and waits for the descriptor.
            tokio::task::yield_now().await;
            // The signal comes, and another reader takes it before the runtime looks.
            raise(Signal::SIGHUP).unwrap();
            assert_eq!(requested(), None);
            let answered = tokio::time::timeout(within, waiting).await;
            let Ok(Ok((mut waiter, Event::Hangup))) = answered else {
                panic!("the waiter missed a SIGHUP another reader took");
            };

            let next = async |waiter: &mut Waiter| {
                tokio::time::timeout(within, waiter.next())
                    .await
                    .expect("the waiter answers")
            };
            raise(Signal::SIGHUP).unwrap();
            assert!(matches!(next(&mut waiter).await, Event::Hangup));
            // Nothing more came: the waiter waits, until a signal arrives meanwhile.
            let waited = tokio::time::timeout(std::time::Duration::from_millis(50), waiter.next());
            assert!(waited.await.is_err());
            let later = tokio::spawn(async { raise(Signal::SIGTERM).unwrap() });
            assert!(matches!(next(&mut waiter).await, Event::Stop("SIGTERM")));
            later.await.unwrap();
            // A stop stays: it wins over a SIGHUP that came after it, which is noted.
            raise(Signal::SIGHUP).unwrap();
            assert!(matches!(next(&mut waiter).await, Event::Stop("SIGTERM")));
        });
        assert_eq!(requested(), Some("SIGTERM"));
        assert!(take_hangup());
        assert!(!take_hangup());
    }
}
