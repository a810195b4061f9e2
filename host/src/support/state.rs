//! Files the daemon keeps between runs: where they live, and how they are written so that
//! a crash leaves either the old content or the new, never a torn mix.

use std::{
    fs::{self, File},
    io::{self, Write as _},
    path::{Path, PathBuf},
};

/// The default state directory: `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else
/// `/var/lib/nightmare-monkey` for root, else `$XDG_STATE_HOME/nightmare-monkey` or
/// `~/.local/state/nightmare-monkey`.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY") {
        return PathBuf::from(dir);
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/nightmare-monkey");
    }
    match std::env::var_os("XDG_STATE_HOME") {
        Some(dir) => PathBuf::from(dir).join("nightmare-monkey"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
            .join(".local/state/nightmare-monkey"),
    }
}

/// Makes sure `dir` is a directory the daemon can write in: with `create`, creates it
/// (and its parents); without (`check-config`, which writes nothing), checks that it
/// could be: the nearest part of the path that exists must be a directory this process
/// may write to, on a file system mounted read-write. The errors are the system's, as
/// creating would report them.
pub fn prepare_dir(dir: &Path, create: bool) -> io::Result<()> {
    if create {
        return create_private_dir(dir);
    }
    let mut nearest = dir;
    let meta = loop {
        match fs::metadata(nearest) {
            Ok(meta) => break meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => match nearest.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => nearest = parent,
                _ => return Ok(()), // relative, up to the working directory
            },
            Err(e) => return Err(e),
        }
    };
    if !meta.is_dir() {
        return Err(io::Error::from_raw_os_error(
            rustix::io::Errno::NOTDIR.raw_os_error(),
        ));
    }
    // As the effective user, who would create it.
    rustix::fs::accessat(
        rustix::fs::CWD,
        nearest,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        rustix::fs::AtFlags::EACCESS,
    )
    .map_err(io::Error::from)
}

/// Creates `dir` and its missing parents for this user alone (0700): what the monkey
/// keeps names host processes and their command lines. One that exists is left as is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Replaces `path`'s content atomically and durably: a temporary file beside it, fsynced,
/// renamed over it, then the directory fsynced so the rename itself survives a crash.
pub fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        // For this user alone, as the journal (0600).
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?
        };
        file.write_all(content)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("nm-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.json");
        write_atomic(&file, b"one").unwrap();
        write_atomic(&file, b"two").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(dir).unwrap();
    }
}
