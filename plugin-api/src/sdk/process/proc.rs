//! The few things a pick reads of a process, each in as few system calls as the kernel
//! allows: open, one read into a stack buffer, close. A general /proc library opens the
//! process directory first and asks the file's size before reading (eight calls for one
//! `stat`); a pick that considers one process in a hundred thousand requests a second
//! feels that. Measured with `bench/run` (BENCHMARKS.md).

use std::{
    cell::RefCell,
    collections::HashMap,
    fs::File,
    io::{self, Read, Write as _},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

/// What a pick needs of `/proc/<pid>/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The PID.
    pub pid: u32,
    /// The short name (at most 15 bytes, chosen by the process).
    pub comm: String,
    /// The state letter: `R`, `S`, `D`, `T`, `Z` ...
    pub state: char,
    /// The parent's PID (0 for PID 1 and for a parent outside our PID namespace).
    pub ppid: i32,
    /// The kernel's `PF_*` flags.
    pub flags: u64,
    /// When the process started, in clock ticks after boot: with the PID, its identity.
    pub starttime: u64,
}

/// How much of a /proc file is read into the thread's page: every `stat` (at most about
/// 1,100 bytes), the `status` lines up to `Uid:`, and most command lines.
const PAGE: usize = 4096;

thread_local! {
    /// The page a pick reads /proc files into: zeroed once per thread, not at every
    /// read (three reads a pick, and zeroing their stack buffers was 5% of a dry-run
    /// fault's instructions).
    static SCRATCH: RefCell<Box<[u8; PAGE]>> = RefCell::new(Box::new([0; PAGE]));
}

/// Runs `read` with the thread's page (or a fresh one, if a read is already using it).
fn with_page<T>(read: impl FnOnce(&mut [u8; PAGE]) -> T) -> T {
    SCRATCH.with(|page| match page.try_borrow_mut() {
        Ok(mut page) => read(&mut page),
        Err(_) => read(&mut [0; PAGE]),
    })
}

/// `/proc/<pid>/<file>`, written into `buf` (no allocation: a pick opens three).
fn proc_path<'a>(buf: &'a mut [u8; 48], pid: u32, file: &str) -> &'a Path {
    let mut cursor = io::Cursor::new(&mut buf[..]);
    // 48 bytes hold "/proc/", any u32 and the longest name asked for.
    let _ = write!(cursor, "/proc/{pid}/{file}");
    let len = cursor.position() as usize;
    Path::new(std::str::from_utf8(&buf[..len]).unwrap_or("/proc/0/stat"))
}

/// Reads a whole small /proc file into `buf`, returning the length. A read shorter than
/// the room left is the end: /proc generates these files in one go.
fn read_small(path: &Path, buf: &mut [u8]) -> io::Result<usize> {
    let mut file = File::open(path)?;
    let mut len = 0;
    loop {
        let n = file.read(&mut buf[len..])?;
        len += n;
        if n == 0 || len == buf.len() || n < buf.len() - (len - n) {
            return Ok(len);
        }
    }
}

/// Parses the text of `/proc/<pid>/stat`. The name sits between the first `(` and the
/// last `)`, since it may itself hold parentheses and spaces.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let pid = std::str::from_utf8(&text[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = String::from_utf8_lossy(text.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    // Fields 3 (state) onwards; field n of proc(5) is rest[n - 3].
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let flags = fields.nth(4)?.parse().ok()?; // field 9
    let starttime = fields.nth(12)?.parse().ok()?; // field 22
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
        flags,
        starttime,
    })
}

/// Whether a /proc read failed because the process is not there: ENOENT when its
/// directory is gone, ESRCH when it was reaped after its file was opened. Any other
/// error (EMFILE, ENOMEM, EACCES) says nothing of the process, which may well be alive.
pub(crate) fn no_such_process(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(nix::libc::ENOENT | nix::libc::ESRCH))
}

/// A failed /proc read as the caller wants it: `Ok(None)` when the process is gone
/// ([`no_such_process`]), the error otherwise.
fn gone_or<T>(e: io::Error) -> io::Result<Option<T>> {
    if no_such_process(&e) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// `/proc/<pid>/stat`, or `None` when the process is gone or unreadable. Where "gone"
/// decides something (a revert that would otherwise be dropped), use [`try_stat`]:
/// too many open files is not a process gone.
pub fn stat(pid: u32) -> Option<Stat> {
    try_stat(pid).ok().flatten()
}

/// `/proc/<pid>/stat`: `Ok(None)` only when there is no such process (ENOENT, ESRCH);
/// any other failure to read it (EMFILE, ENOMEM) is an error, as is a file that does not
/// parse.
pub fn try_stat(pid: u32) -> io::Result<Option<Stat>> {
    // The longest line proc(5) allows is about 1,100 bytes (52 numbers and the name).
    let mut path = [0; 48];
    let path = proc_path(&mut path, pid, "stat");
    with_page(|buf| {
        let len = match read_small(path, buf) {
            Ok(len) => len,
            Err(e) => return gone_or(e),
        };
        parse_stat(&buf[..len]).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "it does not read as proc(5) describes it",
            )
        })
    })
}

/// How much of a command line is read: enough for any filter and the journal, bounded
/// whatever a process puts in its arguments (up to `ARG_MAX`, 2 MB and more).
pub const MAX_CMDLINE: usize = 16 * 1024;

/// The command line, arguments joined by spaces (empty for kernel threads and zombies),
/// its first [`MAX_CMDLINE`] bytes; empty too when it cannot be read (see
/// [`try_cmdline`]).
pub fn cmdline(pid: u32) -> String {
    try_cmdline(pid).ok().flatten().unwrap_or_default()
}

/// [`cmdline`], telling apart a process gone (`Ok(None)`) from a command line that could
/// not be read (an error: EMFILE, say). A filter must not take an unread command line for
/// an empty one: `exclude_cmdlines` would then let through what it excludes.
pub(crate) fn try_cmdline(pid: u32) -> io::Result<Option<String>> {
    let mut path = [0; 48];
    let mut file = match File::open(proc_path(&mut path, pid, "cmdline")) {
        Ok(file) => file,
        Err(e) => return gone_or(e),
    };
    // Most command lines fit a page: read into the thread's own, and only a longer one
    // goes to the heap (a page on the heap, asked for at every pick, made `malloc` tidy
    // up its free lists every time).
    match with_page(|page| read_cmdline(&mut file, page)) {
        Ok(line) => Ok(Some(line)),
        Err(e) => gone_or(e),
    }
}

/// The rest of [`try_cmdline`]: `file` read into `page`, and on to the heap past it.
fn read_cmdline(file: &mut File, page: &mut [u8; PAGE]) -> io::Result<String> {
    let mut len = 0;
    while len < page.len() {
        match file.read(&mut page[len..])? {
            0 => return Ok(args(&page[..len])),
            // The kernel fills a read as far as the arguments go (pidfds, which we need,
            // came after it learned to): a short one is the end.
            n if n < page.len() - len => return Ok(args(&page[..len + n])),
            n => len += n,
        }
    }
    // Longer than a page: read on, up to the bound.
    let mut buf = page.to_vec();
    loop {
        if len == buf.len() {
            if len >= MAX_CMDLINE {
                break;
            }
            buf.resize((buf.len() * 2).min(MAX_CMDLINE), 0);
        }
        match file.read(&mut buf[len..])? {
            0 => break,
            n => len += n,
        }
    }
    Ok(args(&buf[..len]))
}

/// The arguments of a `cmdline` file's bytes, joined by spaces.
fn args(bytes: &[u8]) -> String {
    let args = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    String::from_utf8_lossy(args).replace('\0', " ")
}

/// The real UID: asked of a pidfd where the kernel answers that (Linux 6.13 and later),
/// else read from the `Uid:` line of `/proc/<pid>/status`. Both say it as seen from our
/// user namespace; the pidfd's answer costs half as much (no 1.4 KB of text made and
/// searched: 3.1 us against 6.5 us here, `status` being the dearest file a pick reads).
pub fn real_uid(pid: u32) -> Option<u32> {
    try_real_uid(pid).ok().flatten()
}

/// [`real_uid`], telling apart a process gone (`Ok(None)`) from a UID that could not be
/// read (an error).
pub(crate) fn try_real_uid(pid: u32) -> io::Result<Option<u32>> {
    static NO_PIDFD_INFO: AtomicBool = AtomicBool::new(false);
    real_uid_with(&NO_PIDFD_INFO, pid).0
}

/// Where a real UID was read.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    Pidfd,
    Status,
}

/// [`real_uid`], with `no_pidfd_info` set once the kernel is found without
/// `PIDFD_GET_INFO`; and where the answer came from.
fn real_uid_with(no_pidfd_info: &AtomicBool, pid: u32) -> (io::Result<Option<u32>>, Source) {
    if !no_pidfd_info.load(Ordering::Relaxed) {
        match pidfd_real_uid(pid) {
            PidfdUid::Uid(uid) => return (Ok(Some(uid)), Source::Pidfd),
            PidfdUid::Gone => return (Ok(None), Source::Pidfd),
            PidfdUid::Unsupported => no_pidfd_info.store(true, Ordering::Relaxed),
            PidfdUid::Failed => {}
        }
    }
    (status_real_uid(pid), Source::Status)
}

/// What a pidfd said of a process's real UID.
#[derive(Debug, PartialEq, Eq)]
enum PidfdUid {
    Uid(u32),
    /// No such process (any more).
    Gone,
    /// The kernel has no `PIDFD_GET_INFO` (before 6.13): never asked again.
    Unsupported,
    /// No pidfd (out of descriptors, say): `status` is read this time.
    Failed,
}

/// The real UID of `pid` through `PIDFD_GET_INFO`.
fn pidfd_real_uid(pid: u32) -> PidfdUid {
    let Some(raw) = rustix::process::Pid::from_raw(pid as i32) else {
        return PidfdUid::Gone;
    };
    match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => uid_of_pidfd(&fd),
        Err(rustix::io::Errno::SRCH) => PidfdUid::Gone,
        // No pidfds, or a seccomp filter that refuses them: `status` from now on.
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM | rustix::io::Errno::ACCESS) => {
            PidfdUid::Unsupported
        }
        Err(_) => PidfdUid::Failed,
    }
}

/// The real UID of the process `fd` is a pidfd of.
fn uid_of_pidfd(fd: &std::os::fd::OwnedFd) -> PidfdUid {
    use nix::libc;
    use std::os::fd::AsRawFd as _;
    // SAFETY: `pidfd_info` is plain integers, for which all zeroes is a valid value.
    #[allow(unsafe_code)]
    let mut info: libc::pidfd_info = unsafe { std::mem::zeroed() };
    info.mask = u64::from(libc::PIDFD_INFO_CREDS);
    // SAFETY: PIDFD_GET_INFO reads and writes exactly one `pidfd_info` (its size is in
    // the request number), which `info` is, borrowed for the call only; `fd` is open.
    #[allow(unsafe_code)]
    let done = unsafe { libc::ioctl(fd.as_raw_fd(), libc::PIDFD_GET_INFO, &mut info) };
    if done == 0 {
        return if says_creds(info.mask) {
            PidfdUid::Uid(info.ruid)
        } else {
            PidfdUid::Failed
        };
    }
    after_ioctl_error(io::Error::last_os_error().raw_os_error())
}

/// Whether a `pidfd_info`'s answered `mask` holds its credentials.
fn says_creds(mask: u64) -> bool {
    mask & u64::from(nix::libc::PIDFD_INFO_CREDS) != 0
}

/// What `PIDFD_GET_INFO` failing with `errno` means.
fn after_ioctl_error(errno: Option<i32>) -> PidfdUid {
    use nix::libc;
    match errno {
        // The process ended (and was reaped) since its pidfd was opened.
        Some(libc::ESRCH) => PidfdUid::Gone,
        // An ioctl the pidfd does not know (ENOTTY), a request it cannot read, or a
        // seccomp filter that refuses it.
        Some(libc::ENOTTY | libc::EINVAL | libc::EOPNOTSUPP | libc::EPERM | libc::EACCES) => {
            PidfdUid::Unsupported
        }
        _ => PidfdUid::Failed,
    }
}

/// The real UID from the `Uid:` line of `/proc/<pid>/status`; `Ok(None)` when the
/// process is gone.
fn status_real_uid(pid: u32) -> io::Result<Option<u32>> {
    let mut path = [0; 48];
    let path = proc_path(&mut path, pid, "status");
    with_page(|buf| {
        let len = match read_small(path, buf) {
            Ok(len) => len,
            Err(e) => return gone_or(e),
        };
        uid_of_status(&buf[..len]).map(Some).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "it has no readable Uid: line")
        })
    })
}

/// The real UID in the bytes of a `status` file. Read as bytes, not text: its `Name:`
/// line is the process's own (any bytes, a multi-byte character cut at 15), and a name
/// that is not UTF-8 must not cost the process its user.
fn uid_of_status(status: &[u8]) -> Option<u32> {
    let line = status
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"Uid:"))?;
    let first = line
        .split(|b| b.is_ascii_whitespace())
        .find(|w| !w.is_empty())?;
    std::str::from_utf8(first).ok()?.parse().ok()
}

/// How long a user name is trusted: renames are rare, and a name that is a minute old
/// in a report is harmless.
const USER_NAME_TTL: Duration = Duration::from_secs(60);

/// The user name of `uid` (its number when it has none). Cached: a lookup goes through
/// NSS (nsswitch.conf, /etc/passwd, perhaps nscd or LDAP) and costs more than the pick.
pub fn user_name(uid: u32) -> String {
    static CACHE: OnceLock<Mutex<HashMap<u32, (String, Instant)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let now = Instant::now();
    if let Some((name, at)) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&uid) {
        if now.duration_since(*at) < USER_NAME_TTL {
            return name.clone();
        }
    }
    let name = match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    };
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(uid, (name.clone(), now));
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uid_is_read_whatever_bytes_the_name_holds() {
        let status = b"Name:\t\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\n\xffx\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1001\t1002\t1002\t1002\nGid:\t0\t0\t0\t0\n";
        assert_eq!(uid_of_status(status), Some(1001));
        assert_eq!(uid_of_status(b"Name:\tx\nUid:\tnope\n"), None);
        assert_eq!(uid_of_status(b"Name:\tx\n"), None);
    }

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let line = b"4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 95 0 0 0 1 2 0 0 20 0 1 0 123456 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let stat = parse_stat(line).unwrap();
        assert_eq!(
            stat,
            Stat {
                pid: 4242,
                comm: "my (odd) name".into(),
                state: 'S',
                ppid: 17,
                flags: 4194560,
                starttime: 123456,
            }
        );
        assert_eq!(parse_stat(b"12 (cut short) S 1 2"), None);
        assert_eq!(parse_stat(b""), None);
    }

    /// A child of this test whose command line is `sh -c "read line" x ARG` (it ends when
    /// its stdin closes).
    fn child_with_argument(arg: &str) -> std::process::Child {
        let child = std::process::Command::new("sh")
            .args(["-c", "read line", "x", arg])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Exec'd once its command line names its argument (until then it is ours).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cmdline(child.id()).ends_with(&arg[arg.len().saturating_sub(8)..]) {
            assert!(Instant::now() < deadline, "sh never started");
            std::thread::yield_now();
        }
        child
    }

    #[test]
    fn command_lines_longer_than_a_page_are_read_up_to_the_bound() {
        for (len, expected) in [(100, 100), (4096, 4096), (10_000, 10_000), (40_000, 0)] {
            let arg = "a".repeat(len);
            let mut child = child_with_argument(&arg);
            let line = cmdline(child.id());
            let head = "sh -c read line x ";
            if expected == 0 {
                assert_eq!(line.len(), MAX_CMDLINE, "cut at the bound");
                assert!(line.starts_with(head));
            } else {
                assert_eq!(line, format!("{head}{arg}"));
            }
            drop(child.stdin.take());
            child.wait().unwrap();
        }
    }

    /// Whether this kernel answers `PIDFD_GET_INFO` (6.13 and later).
    fn kernel_has_pidfd_info() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut numbers = release
            .split(['.', '-'])
            .map(|n| n.parse::<u32>().unwrap_or(0));
        let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        version >= (6, 13)
    }

    #[test]
    fn the_pidfd_and_status_agree_on_the_real_uid_and_on_a_process_gone() {
        let mut child = child_with_argument("x");
        let pid = child.id();
        let from_status = status_real_uid(pid).unwrap();
        assert_eq!(from_status, Some(nix::unistd::getuid().as_raw()));
        match pidfd_real_uid(pid) {
            PidfdUid::Uid(uid) => assert_eq!(Some(uid), from_status),
            other => assert!(
                !kernel_has_pidfd_info(),
                "this kernel has PIDFD_GET_INFO, yet the pidfd said {other:?}"
            ),
        }
        assert_eq!(real_uid(pid), from_status);
        drop(child.stdin.take());
        child.wait().unwrap();
        // Reaped: no process, whichever way it is asked.
        if kernel_has_pidfd_info() {
            assert_eq!(pidfd_real_uid(pid), PidfdUid::Gone);
        }
        assert_eq!(status_real_uid(pid).unwrap(), None);
        assert_eq!(try_real_uid(pid).unwrap(), None);
        assert_eq!(real_uid(pid), None);
    }

    #[test]
    fn the_pidfd_is_asked_until_the_kernel_is_found_without_it() {
        let me = std::process::id();
        let uid = Some(nix::unistd::getuid().as_raw());
        let no_pidfd_info = AtomicBool::new(false);
        let (asked, source) = real_uid_with(&no_pidfd_info, me);
        if kernel_has_pidfd_info() {
            assert_eq!((asked.unwrap(), source), (uid, Source::Pidfd));
            assert!(!no_pidfd_info.load(Ordering::Relaxed));
        }
        // Once found without it, `status` answers, and the pidfd is not asked.
        no_pidfd_info.store(true, Ordering::Relaxed);
        let (asked, source) = real_uid_with(&no_pidfd_info, me);
        assert_eq!((asked.unwrap(), source), (uid, Source::Status));
    }

    #[test]
    fn what_the_pidfd_answers_is_read_right() {
        use nix::libc;
        assert!(says_creds(u64::from(libc::PIDFD_INFO_CREDS)));
        assert!(says_creds(u64::from(
            libc::PIDFD_INFO_CREDS | libc::PIDFD_INFO_PID
        )));
        assert!(!says_creds(u64::from(libc::PIDFD_INFO_PID)));
        assert!(!says_creds(0));
        assert_eq!(after_ioctl_error(Some(libc::ESRCH)), PidfdUid::Gone);
        for errno in [
            libc::ENOTTY,
            libc::EINVAL,
            libc::EOPNOTSUPP,
            libc::EPERM,
            libc::EACCES,
        ] {
            assert_eq!(
                after_ioctl_error(Some(errno)),
                PidfdUid::Unsupported,
                "{errno}"
            );
        }
        assert_eq!(after_ioctl_error(Some(libc::EBADF)), PidfdUid::Failed);
        assert_eq!(after_ioctl_error(None), PidfdUid::Failed);
    }

    #[test]
    fn a_pidfd_of_a_process_reaped_since_says_it_is_gone() {
        if !kernel_has_pidfd_info() {
            return;
        }
        let mut child = child_with_argument("y");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
        assert!(matches!(uid_of_pidfd(&fd), PidfdUid::Uid(_)));
        drop(child.stdin.take());
        child.wait().unwrap();
        assert_eq!(uid_of_pidfd(&fd), PidfdUid::Gone);
    }

    #[test]
    fn this_process_reads_as_itself() {
        let me = std::process::id();
        let mine = stat(me).unwrap();
        assert_eq!(mine.pid, me);
        assert_eq!(mine.ppid as u32, std::os::unix::process::parent_id());
        assert!(matches!(mine.state, 'R' | 'S'));
        let line = cmdline(me);
        let exe = std::env::args().next().unwrap();
        assert!(line.starts_with(&exe), "{line}");
        assert_eq!(real_uid(me), Some(nix::unistd::getuid().as_raw()));
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(0), "root"); // and again, from the cache
        assert_eq!(stat(u32::MAX), None);
    }
}
