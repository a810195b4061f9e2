//! Removing a fill file in a revert: looked at and removed through one descriptor of its
//! directory, so that the file whose identity was checked is in the directory cleaned.
//!
//! By path, each call resolved the path again: with the directory moved and another put
//! in its place between the look and the remove, the look saw the fill file and the
//! remove took whatever had the same name in the other directory. What is left: Linux
//! removes by name, not by descriptor, so someone who may write to the fill file's own
//! directory can still put another file under its name between `fstatat` and `unlinkat`.

use std::{io, os::fd::OwnedFd, path::Path};

use nightmare_monkey_plugin_api::sdk::{ErrorKind, PluginError};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::{is_fill_file, Filled};

/// Removes the file `filled` names if it is still this fault's (its device and inode
/// when known, else a regular file of a fill file's name); whether it was there to
/// remove. Only the system saying so (no such file or directory) means it is gone: a
/// file that cannot be looked at (its directory unsearchable, too many open files) may
/// still fill the disk, and saying it is gone would close the fault for good.
pub(crate) fn remove(filled: &Filled) -> Result<bool, PluginError> {
    remove_checked(filled, || {})
}

/// [`remove`], calling `after_look` once the file is found to be this fault's, before it
/// is removed (for the tests, to change the directory meanwhile).
pub(crate) fn remove_checked(
    filled: &Filled,
    after_look: impl FnOnce(),
) -> Result<bool, PluginError> {
    let shown = filled.file.display();
    let (Some(parent), Some(name)) = (filled.file.parent(), filled.file.file_name()) else {
        return Err(PluginError::new(
            ErrorKind::Failed,
            format!("the revert state names no file in a directory: {shown}"),
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    // O_PATH: the directory needs no read permission to be held, only to be searched.
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let dir: OwnedFd = match gone_or(rustix::fs::open(parent, flags, Mode::empty())) {
        Ok(Some(dir)) => dir,
        Ok(None) => return Ok(false),
        Err(e) => {
            return Err(fs_error(
                format!("cannot open {}: {e}", parent.display()),
                &e,
            ))
        }
    };
    let stat = match gone_or(rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)) {
        Ok(Some(stat)) => stat,
        Ok(None) => return Ok(false),
        Err(e) => return Err(fs_error(format!("cannot look at {shown}: {e}"), &e)),
    };
    let same = match filled.dev.zip(filled.ino) {
        Some((dev, ino)) => stat.st_dev == dev && stat.st_ino == ino,
        None => {
            FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
                && is_fill_file(&filled.file)
        }
    };
    if !same {
        return Ok(false);
    }
    after_look();
    match gone_or(rustix::fs::unlinkat(&dir, name, AtFlags::empty())) {
        Ok(removed) => Ok(removed.is_some()),
        Err(e) => Err(fs_error(format!("cannot remove {shown}: {e}"), &e)),
    }
}

/// `None` when there is no such file or directory; any other failure as an I/O error.
fn gone_or<T>(result: rustix::io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An error of the filesystem's, with `message`: of kind `Denied` when the system
/// refused (to be mended before it passes), else `Failed` (it may pass if tried again
/// soon). Either way the host tries a revert again.
pub(crate) fn fs_error(message: String, e: &io::Error) -> PluginError {
    let kind = if e.kind() == io::ErrorKind::PermissionDenied {
        ErrorKind::Denied
    } else {
        ErrorKind::Failed
    };
    PluginError::new(kind, message)
}
