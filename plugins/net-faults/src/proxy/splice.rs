//! The copy without a toxic: `splice(2)` from one socket into a pipe and from the pipe
//! into the other, so the bytes never come up to this process (a read and a write
//! would copy each of them twice more). Measured on loopback (`bench/run --proxy`, two
//! shared cores): the copy through user space reached 44% of a direct connection's
//! throughput; splicing one chunk in, then all of it out, 45-66% (alternating runs);
//! both ends kept busy at once (below), 50-92%, within the same noise. The proxy's own
//! CPU is not the limit (about 0.3 s a GiB): on two cores its thread competes with the
//! client's and the server's, which a direct copy does not have.
//!
//! Tried and left (5 rounds each, taking turns, the share of direct per run): a 1 MiB
//! pipe 58-94% against 57-84% as is (within the noise); 4 MiB `SO_SNDBUF`/`SO_RCVBUF`
//! 43-65% (worse: a fixed buffer turns the kernel's autotuning off); Nagle left on
//! 49-69%; `SPLICE_F_MORE` while the stream goes on holds back the last bytes of a
//! request that nothing follows (the one-byte echo of the bench hung), so never.
//!
//! Tried again for the 80% target (2026-12-07, one build with the variants behind an
//! environment variable, not kept; `nm-bench --proxy` runs taking turns, each run's
//! medians of 5 rounds; other builds on the two cores, load 1.3-3). As is: 56% of
//! direct (the median of 106 runs), CPU a GiB client / sink / proxy 0.099 / 0.199 /
//! 0.123 s against direct's client / sink 0.091 / 0.131, a ceiling of 67%. Each
//! variant against the run as is beside it (the median difference in points of the
//! share, the runs it won, the sink's and the proxy's CPU a GiB):
//! - the pipe filled before it is emptied (splice in until the socket has nothing
//!   more or the pipe is full, then out): +0.2, 18 of 36, -0.005 / -0.005 s; filled
//!   to 64 KiB: -0.2, 10 of 20; 1 MiB, with a 1 MiB pipe: +0.3, 4 of 8;
//! - the pipe emptied until the socket takes no more before the next splice in:
//!   +1.4, 45 of 78, -0.001 / -0.004 s (+4.1 in the first 47, +0.3 in the next 30);
//! - `yield_now` every 32 moves instead of `consume_budget` after each: +0.9, 25 of
//!   48; both of these: +0.9, 6 of 12;
//! - up to 8 or 64 yields before waiting for readiness (a spin): -2.4 and -1.0;
//! - `TCP_WINDOW_CLAMP` 256 KiB, 1 MiB, 4 MiB on both of the proxy's sockets (less
//!   in flight): +2.2, -1.8, -1.2, the CPU unchanged;
//! - the copy through user space: -5.1, 0 of 8; the sink's CPU falls to direct's
//!   (-0.070 s) and the proxy's doubles (+0.111 s).
//!
//! None beyond the noise, so none kept. Where the time goes: the proxy's thread is 96%
//! in the kernel (this loop's own code about 3%), so how it takes turns cannot move
//! its cost much. The sink does not get more, smaller deliveries: it reads about 250
//! KiB a call direct and proxied alike (2,080-2,110 reads per 512 MiB,
//! `perf record -e syscalls:sys_exit_recvfrom`); its extra CPU is the copy itself
//! (`_copy_to_iter`, 1.7 times the samples for the same bytes), gone when the proxy
//! copies through user space. Spliced, the sink receives the client's own pages,
//! which a splice into a socket attaches 4 KiB at a time (`skb_splice_from_iter`)
//! where the kernel's send copies into 32 KiB pieces: the likely cause, and no
//! splice flag changes it. Under other builds (`perf sched`), the proxy's thread
//! hardly sleeps (43 switches in a 2 GiB copy) but waits 0.4 ms on average for a
//! core: what separates the measured share from the ceiling is three threads
//! competing for two busy cores, not hand-overs.

use std::{
    io,
    os::fd::{AsFd, OwnedFd},
    sync::atomic::{AtomicU64, Ordering},
};

use rustix::pipe::{
    fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags,
};
use tokio::{io::Interest, net::TcpStream};

use super::Proxy;

/// How big the pipe is made where allowed: the most one splice moves, and the most a
/// direction holds while its receiver is slower than its sender. 1 MiB (the default
/// most for a user) measured no faster on loopback, and would let a proxy's 1024
/// connections hold 2 GiB.
const PIPE: usize = 256 * 1024;

/// A pipe to splice through.
pub(super) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Its size in bytes.
    size: usize,
}

impl Pipe {
    /// A non-blocking pipe; `None` where none can be had (out of descriptors): then the
    /// copy goes through user space.
    pub fn new() -> Option<Self> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).ok()?;
        // Where it cannot be made bigger (a user over its pipe quota), as it is.
        let size = fcntl_setpipe_size(&write, PIPE)
            .or_else(|_| fcntl_getpipe_size(&write))
            .unwrap_or(4096);
        Some(Self { read, write, size })
    }
}

/// How a stretch of splicing ended.
pub(super) enum Clean {
    /// The reading side ended its stream.
    Eof,
    /// A toxic came on: the bytes from here on go through the toxics (nothing is left
    /// in the pipe).
    ToxicOn,
}

/// Splices from `from` to `to` until the end of the stream or a toxic, counting into
/// `counter`.
///
/// Both ends are kept busy: the pipe is filled while the socket has bytes and the pipe
/// room, and emptied while the other socket takes them, each without waiting for the
/// other; the task waits only when neither can move (readiness is tokio's, so a socket
/// known ready costs no `epoll_wait`). A toxic stops the reading at once (looked at
/// before each splice in: bytes that arrive once it is on meet it); what is in the pipe
/// then was read before it came on and goes out first.
pub(super) async fn copy(
    proxy: &Proxy,
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    counter: &AtomicU64,
) -> io::Result<Clean> {
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    let room = pipe.size;
    // Bytes in the pipe, and whether the reading side ended its stream.
    let (mut held, mut eof) = (0usize, false);
    // Whether the socket may hold bytes tokio no longer says it is ready with: a splice
    // in that found no room is told apart from one that found no bytes only once the
    // pipe is empty (see below).
    let mut unsure = false;
    loop {
        let reading = !eof && held < room && !proxy.toxic_on.load(Ordering::Acquire);
        let mut moved = false;
        if reading {
            let splice_in = || {
                splice(from.as_fd(), None, &pipe.write, None, room - held, flags)
                    .map_err(io::Error::from)
            };
            // Unsure with the pipe empty: the socket itself says whether it has bytes.
            let got = if unsure && held == 0 {
                splice_in()
            } else {
                from.try_io(Interest::READABLE, splice_in)
            };
            match got {
                Ok(0) => (eof, moved) = (true, true),
                Ok(n) => {
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                    (held, moved) = (held + n, true);
                }
                // A pipe counts its slots, one a piece whatever its size: small pieces
                // fill it with fewer bytes than `room`, and a full pipe answers like an
                // empty socket, on which tokio forgets the socket's readiness. Left at
                // that, the bytes still in the socket would wait for the next to
                // arrive, maybe never (a client waiting for an answer to them). Not
                // covered: a toxic coming on at that moment (its copy reads through
                // tokio's readiness, so those bytes wait for the next ones).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => unsure = held > 0,
                Err(e) => return Err(e),
            }
        }
        if held > 0 {
            let sent = to.try_io(Interest::WRITABLE, || {
                splice(&pipe.read, None, to.as_fd(), None, held, flags).map_err(io::Error::from)
            });
            match sent {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => (held, moved) = (held - n, true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if held == 0 {
            if eof {
                return Ok(Clean::Eof);
            }
            if proxy.toxic_on.load(Ordering::Acquire) {
                return Ok(Clean::ToxicOn);
            }
        }
        if moved {
            // Not a wait: the other connections get their turn now and then.
            tokio::task::consume_budget().await;
            continue;
        }
        let reading = !eof && held < room && !proxy.toxic_on.load(Ordering::Acquire);
        tokio::select! {
            ready = from.readable(), if reading => ready?,
            ready = to.writable(), if held > 0 => ready?,
            // A toxic came on since the pipe was found empty: said above, next turn.
            else => {}
        }
    }
}
