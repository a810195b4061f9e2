//! Which daemon owns what a journal holds in effect. Each daemon holds a lock on a
//! file beside its journal (`JOURNAL.owner`, an exclusive `flock`) for as long as it
//! runs; the kernel lets it go when the daemon ends, however it ends. A daemon that
//! finds it held shares the journal (appends are locked one by one) but leaves what is
//! in effect to the one that holds it: reverting another live daemon's faults at its
//! start would end them long before they are due, and that daemon would still list
//! them as active.

use std::{
    fs::{File, OpenOptions},
    io::{Read as _, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

/// What [`take`] found.
#[derive(Debug)]
pub enum Owner {
    /// This daemon owns the journal's faults for as long as this is held.
    Sole(#[allow(dead_code)] File),
    /// Another process holds the lock: the PID it wrote, if it could be read.
    Other { lock: PathBuf, pid: Option<u32> },
    /// The lock file cannot be made (a read-only directory, say): no daemon can own it
    /// either, and the start goes on as it always did.
    Unguarded,
}

/// The lock file beside `journal`.
pub fn lock_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".owner");
    PathBuf::from(name)
}

/// Takes the lock beside `journal` without waiting for it, and writes this process's
/// PID into it. What is held is opened for reading only: a file open for writing would
/// keep the file system from being remounted read-only under the daemon.
pub fn take(journal: &Path) -> Owner {
    let lock = lock_path(journal);
    // Never through a symlink, never blocking on a FIFO: only a regular file is locked.
    let flags = (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32;
    // Made if missing; on a read-only file system, the one there is locked all the same.
    let _ = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(flags)
        .open(&lock);
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(&lock)
    else {
        return Owner::Unguarded;
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Owner::Unguarded;
    }
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            // Best effort: the PID only names the owner to the one that finds it held.
            let _ = OpenOptions::new()
                .write(true)
                .truncate(true)
                .custom_flags(flags)
                .open(&lock)
                .and_then(|mut pid| writeln!(pid, "{}", std::process::id()));
            Owner::Sole(file)
        }
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut text = String::new();
            let mut file = file;
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            Owner::Other { lock, pid }
        }
        Err(_) => Owner::Unguarded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_owns_the_next_finds_its_pid_and_the_lock_ends_with_its_holder() {
        let dir = std::env::temp_dir().join(format!("nm-owner-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let journal = dir.join("journal.jsonl");
        let first = take(&journal);
        let Owner::Sole(held) = &first else {
            panic!("{first:?}")
        };
        // Held for reading only: the file system can still be remounted read-only.
        let mode = rustix::fs::fcntl_getfl(held).unwrap() & rustix::fs::OFlags::ACCMODE;
        assert_eq!(mode, rustix::fs::OFlags::RDONLY);
        // Another open file description: as another process would find it.
        match take(&journal) {
            Owner::Other { lock, pid } => {
                assert_eq!(lock, dir.join("journal.jsonl.owner"));
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        assert!(matches!(take(&journal), Owner::Sole(_)));
        // A symlink is never followed: nobody owns through it.
        let elsewhere = dir.join("elsewhere");
        std::fs::write(&elsewhere, "kept").unwrap();
        let linked = dir.join("linked.jsonl");
        std::os::unix::fs::symlink(&elsewhere, lock_path(&linked)).unwrap();
        assert!(matches!(take(&linked), Owner::Unguarded));
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "kept");
        // No directory to make it in: nobody can own it.
        assert!(matches!(
            take(&dir.join("missing/journal.jsonl")),
            Owner::Unguarded
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
