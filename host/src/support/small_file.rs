//! Reading a file a person points the daemon at (its config, a token, a password, a
//! webhook's URL): a regular file of bounded size, or a clear refusal. A FIFO would
//! hang the read (the start, or SIGHUP's check, forever and without a word), and
//! `/dev/zero` would be read until memory ran out.

use std::{
    io::{self, Read as _},
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::Path,
};

/// The largest configuration file read.
pub const MAX_CONFIG: u64 = 1024 * 1024;
/// The largest file a secret (a token, a password, a URL) is read from.
pub const MAX_SECRET: u64 = 64 * 1024;

/// The text of the regular file at `path`, at most `max` bytes; anything else is an
/// error that says what the path is, or how long the file is.
pub fn read_text(path: &Path, max: u64) -> io::Result<String> {
    // Not blocking on the open: a FIFO with no writer would hold it.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    let not_a_file = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file"),
        )
    };
    if kind.is_dir() {
        return Err(not_a_file("a directory"));
    }
    if kind.is_fifo() {
        return Err(not_a_file("a FIFO"));
    }
    if kind.is_char_device() || kind.is_block_device() {
        return Err(not_a_file("a device"));
    }
    if !kind.is_file() {
        return Err(not_a_file("a socket"));
    }
    let too_long = |len: u64| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is {len} bytes long, more than the {max} read"),
        )
    };
    if meta.len() > max {
        return Err(too_long(meta.len()));
    }
    let mut text = String::new();
    // It may have grown since: never more than `max` and a byte.
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(too_long(text.len() as u64));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_of_bounded_size_is_read() {
        let dir = std::env::temp_dir().join(format!("nm-small-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "secret\n").unwrap();
        assert_eq!(read_text(&file, 7).unwrap(), "secret\n");
        let long = read_text(&file, 6).unwrap_err();
        assert_eq!(long.to_string(), "it is 7 bytes long, more than the 6 read");
        let fifo = dir.join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        assert_eq!(
            read_text(&fifo, 7).unwrap_err().to_string(),
            "it is a FIFO, not a regular file"
        );
        assert_eq!(
            read_text(Path::new("/dev/zero"), 7)
                .unwrap_err()
                .to_string(),
            "it is a device, not a regular file"
        );
        assert_eq!(
            read_text(&dir, 7).unwrap_err().to_string(),
            "it is a directory, not a regular file"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
