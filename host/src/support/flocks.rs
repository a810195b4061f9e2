//! Who holds a file's `flock`, read from `/proc/locks`: to name what a wait waits for.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// The PIDs `/proc/locks` names as holding a `flock` on the file at `path` (a process
/// waiting for one is left out); empty when either cannot be read.
pub fn holders(path: &Path) -> Vec<u32> {
    let (Ok(file), Ok(locks)) = (
        std::fs::metadata(path),
        std::fs::read_to_string("/proc/locks"),
    ) else {
        return Vec::new();
    };
    let dev = file.dev();
    parse(
        &locks,
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
        file.ino(),
    )
}

/// The holders of a `flock` on inode `ino` of device `major:minor` in `locks` (the text
/// of `/proc/locks`: `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`, a waiter's
/// line with `->` after the number). A PID of 0 (outside this PID namespace) is left out.
fn parse(locks: &str, major: u32, minor: u32, ino: u64) -> Vec<u32> {
    let file = format!("{major:02x}:{minor:02x}:{ino}");
    locks
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            if fields.next()? != "FLOCK" {
                return None;
            }
            let pid = fields.nth(2)?.parse().ok().filter(|&pid| pid != 0)?;
            (fields.next()? == file).then_some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_of_the_one_file_not_its_waiters_nor_other_locks() {
        let locks = "\
1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF
1: -> FLOCK  ADVISORY  WRITE 99 fd:01:5678 0 EOF
2: POSIX  ADVISORY  WRITE 77 fd:01:5678 0 EOF
3: FLOCK  ADVISORY  READ 55 fd:01:56789 0 EOF
4: FLOCK  ADVISORY  READ 66 fd:02:5678 0 EOF
5: FLOCK  ADVISORY  READ 0 fd:01:5678 0 EOF
6: FLOCK  ADVISORY  READ 4321 fd:01:5678 0 EOF
7: FLOCK
";
        assert_eq!(parse(locks, 0xfd, 1, 5678), [1234, 4321]);
        assert_eq!(parse(locks, 0xfd, 1, 1), Vec::<u32>::new());
    }

    #[test]
    fn a_file_this_process_locks_names_this_process() {
        let dir = std::env::temp_dir().join(format!("nm-flocks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("locked");
        let file = std::fs::File::create(&path).unwrap();
        assert_eq!(holders(&path), Vec::<u32>::new());
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap();
        assert_eq!(holders(&path), [std::process::id()]);
        drop(file);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
