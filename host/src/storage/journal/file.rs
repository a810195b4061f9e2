//! The journal's file: kept open between records but checked against its path before
//! each (so it can be rotated, removed or replaced while the daemon runs), appended to
//! under a lock, fsynced for what announces a real fault, refused when it is no regular
//! file or its disk is full.

use super::*;

/// Refuses a journal path that exists but is no regular file, before anything opens
/// it: a directory cannot be appended to, and opening a FIFO blocks until a writer
/// comes (the daemon would hang, silently, before its first log line). Refuses too a
/// path on `/proc` or `/sys`. A path that does not exist yet is fine: the journal is
/// created there. What reads the journal (recovery) checks this much; what appends to
/// it checks [`check_appendable`].
pub(crate) fn check_path(path: &Path) -> io::Result<()> {
    if let Some(name) = kernel_fs(path) {
        return Err(io::Error::other(format!(
            "it is on {name}, a view of the kernel, not a place for files"
        )));
    }
    match fs::metadata(path) {
        Ok(meta) => regular(&meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// [`check_path`], and a file that holds something else refused (`journal:
/// "/etc/passwd"` would be appended to as root): before anything appends to it.
/// Recovery reads such a file all the same (a damaged head must not hide what a crash
/// left in effect); the start is refused after it.
pub(crate) fn check_appendable(path: &Path) -> io::Result<()> {
    check_path(path)?;
    match fs::metadata(path) {
        Ok(_) => holds_records(path),
        Err(_) => Ok(()),
    }
}

/// `/proc` or `/sys` if `path`, or the nearest directory above it that exists (where
/// it would be created), is on one.
fn kernel_fs(path: &Path) -> Option<&'static str> {
    const SYSFS: rustix::fs::FsWord = 0x6265_6572;
    let on = |p: &Path| rustix::fs::statfs(p).ok().map(|s| s.f_type);
    let kind = path.ancestors().find_map(on)?;
    match kind {
        rustix::fs::PROC_SUPER_MAGIC => Some("/proc"),
        SYSFS => Some("/sys"),
        _ => None,
    }
}

/// Refuses a file whose first byte no journal begins with: a record's `{`, or the
/// newline or zeros a crash can leave. Empty, or unreadable to this user, it passes
/// (the open says what it says).
fn holds_records(path: &Path) -> io::Result<()> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut first = [0u8; 1];
    let read = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .and_then(|mut file| file.read(&mut first));
    match read {
        Ok(1) if !matches!(first[0], b'{' | b'\n' | 0) => Err(io::Error::other(
            "it holds something else (its first byte begins no record): the daemon appends only to a journal of its own; name a new file",
        )),
        _ => Ok(()),
    }
}

/// Whether what `meta` describes is a regular file; if not, an error saying what it is.
fn regular(meta: &fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a device"
    };
    Err(io::Error::other(format!(
        "it is {kind}, not a regular file"
    )))
}

/// The journal file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    /// One writer at a time, so lines never interleave; it holds the file the last
    /// record went to, if any, reused while the path still names it.
    writing: Mutex<Option<Held>>,
    grown: Mutex<Growth>,
    grew: std::sync::Condvar,
}

/// The journal file as the last append left it.
#[derive(Debug)]
struct Held {
    file: fs::File,
    /// Which file it is (device, inode), to see the path renamed or replaced.
    id: (u64, u64),
    /// Its length after our last append: a record of ours ends there with a newline,
    /// so the next one need not look for a torn line unless the file grew since.
    end: u64,
}

/// The most of its line buffer a thread keeps between appends: a record is some hundred
/// bytes, one with a network fault's rules a few KiB.
const KEPT_LINE_BUFFER: usize = 16 * 1024;

thread_local! {
    /// The buffer a thread writes records into: kept, so an append allocates nothing
    /// (a line of 1 KiB or more asked of `malloc` at every fault made it tidy up its
    /// free lists every time).
    static LINE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `write` with the thread's line buffer, empty (or a fresh one, if a write is
/// already using it); a buffer grown past [`KEPT_LINE_BUFFER`] is not kept.
fn with_line_buffer<T>(write: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    LINE_BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut line) => {
            line.clear();
            let written = write(&mut line);
            if line.capacity() > KEPT_LINE_BUFFER {
                *line = Vec::new();
            }
            written
        }
        Err(_) => write(&mut Vec::with_capacity(1024)),
    })
}

/// The bytes appended since the checkpoint writer last looked, and how many it waits
/// for: an append wakes it only when they are there, not at every record.
#[derive(Debug)]
struct Growth {
    bytes: u64,
    wanted: u64,
}

impl Growth {
    const NOBODY_WAITS: u64 = u64::MAX;
}

/// The least free space on the journal's file system for a start: a few faults'
/// records (a real fault's are about 1.5 KB).
const MIN_FREE: u64 = 8 * 1024;

/// Refuses a journal directory whose file system has less than a few faults' records
/// free (one that does not exist yet, or cannot be asked, passes: the open says).
pub(crate) fn check_free(dir: &Path) -> io::Result<()> {
    let free = rustix::fs::statvfs(dir).map(|s| s.f_bavail.saturating_mul(s.f_frsize));
    match free {
        Ok(free) if free < MIN_FREE => Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "no space left on its file system ({free} bytes free; a fault's records need some KiB)"
            ),
        )),
        _ => Ok(()),
    }
}

impl Journal {
    /// Opens the journal at `path`, creating its directory; a torn last line (a crash in
    /// the middle of a write) is closed with a newline so the next record starts clean.
    pub fn open(path: &Path) -> io::Result<Journal> {
        Journal::open_saying(path, || {})
    }

    /// [`Journal::open`], calling `waiting` first if another process holds the journal's
    /// lock (a backup, a writer mid-append): the open waits until it lets go.
    pub fn open_saying(path: &Path, waiting: impl FnOnce()) -> io::Result<Journal> {
        check_appendable(path)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        crate::support::state::create_private_dir(dir)?;
        // Opening for appends writes nothing: a full disk shows only at the first fault,
        // when every fault is refused. It is said now instead.
        check_free(dir)?;
        // An append takes the lock for a moment: only a lock still held a tenth of a
        // second later is one to wait for and say.
        if locked_elsewhere(path) && {
            std::thread::sleep(std::time::Duration::from_millis(100));
            locked_elsewhere(path)
        } {
            waiting();
        }
        let mut file = Locked::open(path)?.0.file;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                file.sync_data()?;
            }
        }
        Ok(Journal {
            path: path.to_owned(),
            writing: Mutex::new(None),
            grown: Mutex::new(Growth {
                bytes: 0,
                wanted: Growth::NOBODY_WAITS,
            }),
            grew: std::sync::Condvar::new(),
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record; `durable` waits until it is on disk. A record always starts
    /// a line of its own: an append that fails (a full disk, an I/O error) is cut back
    /// off the file, and a torn line found at the end is closed first.
    pub(crate) fn append(&self, record: &Record, durable: bool) -> io::Result<()> {
        with_line_buffer(|line| {
            serde_json::to_writer(&mut *line, record).map_err(io::Error::other)?;
            line.push(b'\n');
            self.write_line(line, durable)
        })
    }

    /// Appends `line` (a record and its newline) as [`Journal::append`] says.
    fn write_line(&self, line: &mut Vec<u8>, durable: bool) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let mut writing = lock(&self.writing);
        let held = match writing.take() {
            Some(held) => locked_again(&self.path, held)?,
            None => Locked::open(&self.path)?,
        };
        let (file, len) = (&held.0.file, held.1);
        if len > 0 && len != held.0.end {
            let mut last = [0u8; 1];
            file.read_exact_at(&mut last, len - 1)?;
            if last[0] != b'\n' {
                line.insert(0, b'\n');
            }
        }
        let written =
            (&*file)
                .write_all(line)
                .and_then(|()| if durable { file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // What part of it was written goes, so no later record is glued to it; but
            // only if nobody else (a `kill` beside the daemon that does not lock)
            // appended meanwhile: then the torn line stays, and the next append closes it.
            let now = file.metadata().map(|m| m.len()).unwrap_or(0);
            if now <= len + line.len() as u64 {
                let _ = file.set_len(len);
            }
            return Err(e);
        }
        *writing = held.unlock().map(|mut held| {
            held.end = len + line.len() as u64;
            held
        });
        drop(writing);
        let mut grown = lock(&self.grown);
        grown.bytes += line.len() as u64;
        if grown.bytes >= grown.wanted {
            self.grew.notify_all();
        }
        Ok(())
    }

    /// Renames the journal to an archive beside it (named by the instant) and starts a
    /// new one, with every writer locked out: this process's appends, and (by `flock`)
    /// other processes'. `settle` runs first, while the old file is whole and still the
    /// journal (the checkpoint reads it to its end). Returns the archive.
    pub(crate) fn rotate(&self, settle: impl FnOnce() -> io::Result<()>) -> io::Result<PathBuf> {
        let mut writing = lock(&self.writing);
        // The file held is the archive after this: the next append opens the new one.
        writing.take();
        let old = Locked::open(&self.path)?;
        settle()?;
        let archive = crate::storage::archive::archive_path(&self.path, Utc::now());
        if fs::symlink_metadata(&archive).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", archive.display()),
            ));
        }
        fs::rename(&self.path, &archive)?;
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)?
            .sync_all()?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
        drop(old);
        Ok(archive)
    }

    /// Runs `f` while no record is being appended (by this process): what it reads of
    /// the file is whole, and stays (an append that fails is cut back before `f` runs).
    pub(crate) fn quiet<T>(&self, f: impl FnOnce() -> T) -> T {
        let _one_at_a_time = lock(&self.writing);
        f()
    }

    /// Whether a thread waits in [`Journal::wait_grown`].
    #[cfg(test)]
    pub(crate) fn someone_waits(&self) -> bool {
        lock(&self.grown).wanted != Growth::NOBODY_WAITS
    }

    /// Blocks until at least `bytes` were appended since the last call returned (no
    /// polling: the appends wake it).
    pub(crate) fn wait_grown(&self, bytes: u64) {
        let mut grown = lock(&self.grown);
        grown.wanted = bytes;
        let mut grown = self
            .grew
            .wait_while(grown, |g| g.bytes < bytes)
            .unwrap_or_else(|p| p.into_inner());
        grown.bytes = 0;
        grown.wanted = Growth::NOBODY_WAITS;
    }
}

/// The journal file with its lock (`flock`, exclusive), the one every writer takes,
/// and its length once locked; given up by `unlock` (the file stays open) or when the
/// file is dropped and closed.
struct Locked(Held, u64);

impl Locked {
    /// Opens the journal at `path` for appending and takes its lock. A journal rotated
    /// while the lock was awaited is the archive now: the path is opened again.
    fn open(path: &Path) -> io::Result<Locked> {
        use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
        loop {
            // Whatever the path has become meanwhile (a FIFO, a symlink to /dev/null),
            // the open never blocks and only a regular file is written: records written
            // into nothing would be records lost.
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                // It names host processes and their command lines: this user's alone.
                .mode(0o600)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(path)?;
            let held = file.metadata()?;
            regular(&held)?;
            let held = Held {
                file,
                id: (held.dev(), held.ino()),
                end: u64::MAX,
            };
            if let Some(locked) = Locked::lock(path, held)? {
                return Ok(locked);
            }
        }
    }

    /// Takes the lock of `held` and checks that `path` still names it afterwards: `None`
    /// if the path was renamed, removed or replaced meanwhile. What the path's metadata
    /// says then is the locked file's: its length is read there, not asked again.
    fn lock(path: &Path, held: Held) -> io::Result<Option<Locked>> {
        use std::os::unix::fs::MetadataExt as _;
        rustix::fs::flock(&held.file, rustix::fs::FlockOperation::LockExclusive)?;
        match fs::metadata(path) {
            Ok(now) if (now.dev(), now.ino()) == held.id => Ok(Some(Locked(held, now.len()))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The file, its lock given up; `None` (the file closed, which gives the lock up
    /// too) if the kernel refused to unlock it.
    fn unlock(self) -> Option<Held> {
        rustix::fs::flock(&self.0.file, rustix::fs::FlockOperation::Unlock).ok()?;
        Some(self.0)
    }
}

/// Whether the journal at `path` is locked now by another open file: an open is about
/// to wait for it. `false` for one that does not exist yet or cannot be opened.
fn locked_elsewhere(path: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt as _;
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
    else {
        return false;
    };
    // Taken, it is given up as the file closes.
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        == Err(rustix::io::Errno::WOULDBLOCK)
}

/// The file the last append used, locked again if the path still names it, else the
/// file the path names now.
fn locked_again(path: &Path, held: Held) -> io::Result<Locked> {
    match Locked::lock(path, held)? {
        Some(locked) => Ok(locked),
        None => Locked::open(path),
    }
}

#[cfg(test)]
mod path_tests {
    use super::*;

    /// A path under `/proc` or `/sys` is refused however deep the part that does not
    /// exist yet: what it would be created in is looked for up the path.
    #[test]
    fn a_path_on_proc_or_sys_is_refused_however_deep() {
        for path in [
            "/proc/j.jsonl",
            "/proc/none/j.jsonl",
            "/sys/none/deeper/j.jsonl",
        ] {
            let error = check_path(Path::new(path)).unwrap_err().to_string();
            assert!(error.contains("a view of the kernel"), "{path}: {error}");
        }
        assert!(check_path(Path::new("/tmp/nm-none/deeper/j.jsonl")).is_ok());
        assert!(check_path(Path::new("relative/j.jsonl")).is_ok());
    }
}
