//! The copy without a toxic: `splice(2)` from one socket into a pipe and from the pipe
//! into the other, so the bytes never come up to this process (a read and a write
//! would copy each of them twice more). Measured on loopback (`bench/run`): the copy
//! through user space reached 44% of a direct connection's throughput.

use std::{
    io,
    os::fd::{AsFd, OwnedFd},
    sync::atomic::{AtomicU64, Ordering},
};

use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};
use tokio::{io::Interest, net::TcpStream};

use super::Proxy;

/// How much one splice moves at most (the pipe is made this big where allowed).
const PIPE: usize = 256 * 1024;

/// A pipe to splice through.
pub(super) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    /// A non-blocking pipe; `None` where none can be had (out of descriptors): then the
    /// copy goes through user space.
    pub fn new() -> Option<Self> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).ok()?;
        let _ = fcntl_setpipe_size(&write, PIPE);
        Some(Self { read, write })
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
pub(super) async fn copy(
    proxy: &Proxy,
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    counter: &AtomicU64,
) -> io::Result<Clean> {
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    loop {
        from.readable().await?;
        // Looked at after the wait: bytes that arrive once a toxic is on meet it.
        if proxy.toxic_on.load(Ordering::Acquire) {
            return Ok(Clean::ToxicOn);
        }
        // The pipe is empty here, so a would-block is the socket's.
        let moved = from.try_io(Interest::READABLE, || {
            splice(from.as_fd(), None, &pipe.write, None, PIPE, flags).map_err(io::Error::from)
        });
        let mut left = match moved {
            Ok(0) => return Ok(Clean::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        counter.fetch_add(left as u64, Ordering::Relaxed);
        while left > 0 {
            to.writable().await?;
            let sent = to.try_io(Interest::WRITABLE, || {
                splice(&pipe.read, None, to.as_fd(), None, left, flags).map_err(io::Error::from)
            });
            match sent {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}
