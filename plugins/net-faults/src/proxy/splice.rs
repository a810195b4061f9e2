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
    loop {
        let reading = !eof && held < room && !proxy.toxic_on.load(Ordering::Acquire);
        let mut moved = false;
        if reading {
            let got = from.try_io(Interest::READABLE, || {
                splice(from.as_fd(), None, &pipe.write, None, room - held, flags)
                    .map_err(io::Error::from)
            });
            match got {
                Ok(0) => (eof, moved) = (true, true),
                Ok(n) => {
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                    (held, moved) = (held + n, true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
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
