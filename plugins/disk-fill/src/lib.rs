//! `disk-fill`: fills the filesystem under a directory up to a target percentage for a
//! while, then frees it again: the "no space left on device" incident. It never leaves less
//! free space than a floor (fills applied at once measure the disk in turn, under one
//! lock, each after the last has taken its space), and its file is removed when the fault
//! is reverted (when due, on shutdown, on pause, or on the next start after a crash).
//!
//! ```ron
//! faults: {
//!     "disk": (plugin: "disk-fill", config: (
//!         path: "/var/lib/myapp",   // required: a directory on the filesystem to fill
//!         target_percent: 95,       // fill until this much is used (1 to 99)
//!         floor_mib: 256,           // never leave less than this free
//!         duration: "5m",           // at most 1h
//!     )),
//! },
//! ```
//!
//! The space is reserved with `fallocate` (no data is written, so it is instant), falling
//! back to writing zeros on filesystems without it.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use nightmare_monkey_plugin_api::{
    export_plugin,
    sdk::{self, results, ErrorKind, FaultPlugin, Outcome, PluginError, Request, Rng},
};
use serde::{Deserialize, Serialize};

const MIB: u64 = 1 << 20;
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// The fault's configuration, as written in RON.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// A directory on the filesystem to fill (required).
    pub path: Option<PathBuf>,
    /// Fill until this percentage of the filesystem is used (default 95).
    pub target_percent: Option<u64>,
    /// Never leave less than this many MiB free (default 256).
    pub floor_mib: Option<u64>,
    /// How long the space stays taken (default 5m, at most 1h).
    pub duration: Option<sdk::DurationText>,
}

/// What the revert needs: the file, and which file exactly (device and inode). Prepared
/// (before the file exists) it names the file and its size only: a file of that name is
/// then this fault's (the name is drawn from 64 random bits and created exclusively).
#[derive(Debug, Serialize, Deserialize)]
struct Filled {
    file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dev: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ino: Option<u64>,
    /// Prepared: the most bytes to take (`apply` takes less if the disk has less room
    /// by then). States journaled by older versions also carry a `percent`, ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
}

/// The `disk-fill` fault.
#[derive(Debug)]
pub struct DiskFill {
    dir: PathBuf,
    target_percent: u64,
    floor: u64,
    duration: Duration,
}

fn config_error(message: String) -> PluginError {
    PluginError::new(ErrorKind::Config, message)
}

/// The filesystem's size and the space an unprivileged writer may still use.
fn space(dir: &Path) -> Result<(u64, u64), PluginError> {
    let vfs = rustix::fs::statvfs(dir).map_err(|e| {
        PluginError::new(
            ErrorKind::Failed,
            format!("cannot read the filesystem of {}: {e}", dir.display()),
        )
    })?;
    Ok((vfs.f_blocks * vfs.f_frsize, vfs.f_bavail * vfs.f_frsize))
}

/// Held while a fill measures the disk and takes its space (see `apply`).
static APPLYING: Mutex<()> = Mutex::new(());

/// The filesystem as measured, and what this fault may take of it.
struct Room<'a> {
    fault: &'a DiskFill,
    total: u64,
    available: u64,
}

impl Room<'_> {
    fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }

    /// What the fault takes: up to its target, leaving the floor free, in whole MiB.
    fn size(&self) -> u64 {
        let wanted = self.total / 100 * self.fault.target_percent;
        wanted
            .saturating_sub(self.used())
            .min(self.available.saturating_sub(self.fault.floor))
            / MIB
            * MIB
    }

    /// The use before and after taking `size` bytes, in percent.
    fn percent(&self, size: u64) -> (u64, u64) {
        (
            percent(self.used(), self.total),
            percent(self.used() + size, self.total),
        )
    }
}

impl DiskFill {
    /// The filesystem now; an error of kind `NoTarget` when there is nothing to take.
    fn room(&self) -> Result<Room<'_>, PluginError> {
        let (total, available) = space(&self.dir)?;
        let room = Room {
            fault: self,
            total,
            available,
        };
        if room.size() == 0 {
            return Err(PluginError::new(
                ErrorKind::NoTarget,
                format!(
                    "{} is {}% used with {} MiB free: nothing to fill below the target of {}% and the floor of {} MiB",
                    self.dir.display(),
                    room.percent(0).0,
                    available / MIB,
                    self.target_percent,
                    self.floor / MIB
                ),
            ));
        }
        Ok(room)
    }
}

fn percent(used: u64, total: u64) -> u64 {
    if total == 0 {
        100
    } else {
        (used * 100).div_ceil(total)
    }
}

/// Whether `file` has the name of a fill file (`.nightmare-monkey-fill-` and 16 hex digits).
fn is_fill_file(file: &Path) -> bool {
    file.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(".nightmare-monkey-fill-"))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl FaultPlugin for DiskFill {
    const NAME: &'static str = "disk-fill";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "fills a filesystem up to a target for a while, never below a floor of free space";
    const PREPARES: bool = true;
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        let dir = config.path.ok_or_else(|| {
            config_error("path is required: a directory on the filesystem to fill".to_owned())
        })?;
        if !dir.is_dir() {
            return Err(config_error(format!(
                "path {} is not a directory",
                dir.display()
            )));
        }
        let target_percent = config.target_percent.unwrap_or(95);
        if !(1..=99).contains(&target_percent) {
            return Err(config_error(format!(
                "target_percent {target_percent}: expected 1 to 99"
            )));
        }
        let duration = sdk::duration(
            "duration",
            config.duration.as_deref(),
            Duration::from_secs(300),
            MAX_DURATION,
        )?;
        Ok(Self {
            dir,
            target_percent,
            floor: config.floor_mib.unwrap_or(256).saturating_mul(MIB),
            duration,
        })
    }

    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        let prepared = self.prepare(request)?;
        if request.dry_run {
            let mut outcome = prepared;
            outcome.result = results::DRY_RUN.to_owned();
            outcome.summary = outcome.summary.replacen("will take", "would take", 1);
            outcome.revert = None;
            outcome.revert_after_ms = None;
            return Ok(outcome);
        }
        match &prepared.revert {
            Some(state) => self.apply(request, state),
            None => Ok(prepared),
        }
    }

    /// Measures what to take and draws the file's name; creates nothing.
    fn prepare(&self, request: &Request) -> Result<Outcome, PluginError> {
        let room = self.room()?;
        let size = room.size();
        let file = self.dir.join(format!(
            ".nightmare-monkey-fill-{:016x}",
            Rng::from_seed(request.seed).next_u64()
        ));
        let (before, after) = room.percent(size);
        Ok(Outcome {
            action: "Fill".to_owned(),
            result: "prepared".to_owned(),
            details: serde_json::json!({ "bytes": size, "before_percent": before, "after_percent": after }),
            summary: format!(
                "will take {} MiB with {}: {before}% to {after}% used",
                size / MIB,
                file.display()
            ),
            revert: Some(serde_json::json!(Filled {
                file,
                dev: None,
                ino: None,
                size: Some(size),
            })),
            revert_after_ms: Some(self.duration.as_millis() as u64),
            ..Outcome::default()
        })
    }

    /// Creates the prepared file (exclusively: an existing file is never taken over) and
    /// reserves its space.
    fn apply(
        &self,
        _request: &Request,
        prepared: &serde_json::Value,
    ) -> Result<Outcome, PluginError> {
        let filled: Filled = sdk::read_state(prepared)?;
        let prepared_size = filled
            .size
            .ok_or_else(|| PluginError::new(ErrorKind::Failed, "the prepared state has no size"))?;
        let file = filled.file;
        let shown = file.display();
        // Fills applied at once (the daemon runs several injections at a time, and each
        // fault is its own instance) each measured the disk before any had taken its
        // space, and together went past the floor. So the disk is measured again here,
        // and measured, created and reserved under one lock: the next fill measures
        // what this one took. A reservation made in `prepare` would outlive a prepared
        // fault that is never applied.
        let _applying = APPLYING.lock().unwrap_or_else(PoisonError::into_inner);
        let room = self.room()?;
        let size = prepared_size.min(room.size());
        let (before, after) = room.percent(size);
        let created = OpenOptions::new().write(true).create_new(true).open(&file);
        let handle = match created {
            Ok(handle) => handle,
            // Another fault's file (the same seed drawn the same name): left alone, and
            // said as a refusal, so that nothing reverts this fault's prepared state (it
            // names that very file).
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(PluginError::new(
                    ErrorKind::NoTarget,
                    format!(
                        "cannot fill {shown}: it exists already (another fault's): nothing taken"
                    ),
                ));
            }
            Err(e) => {
                return Err(PluginError::new(
                    ErrorKind::Failed,
                    format!("cannot fill {shown}: {e}"),
                ));
            }
        };
        let meta = handle.metadata().map_err(|e| {
            PluginError::new(ErrorKind::Failed, format!("cannot stat {shown}: {e}"))
        })?;
        let ours = Filled {
            file: file.clone(),
            dev: Some(meta.dev()),
            ino: Some(meta.ino()),
            size: None,
        };
        if let Err(e) = reserve(&handle, size) {
            // Only this very file, as a revert would. Should that fail, the host
            // reverts the prepared state (a failure is not a refusal).
            let _ = remove::remove(&ours);
            return Err(PluginError::new(
                ErrorKind::Failed,
                format!("cannot fill {shown}: {e}"),
            ));
        }
        Ok(Outcome {
            action: "Fill".to_owned(),
            result: results::INJECTED.to_owned(),
            details: serde_json::json!({ "bytes": size, "before_percent": before, "after_percent": after }),
            summary: format!(
                "took {} MiB with {shown} for {}: {before}% to {after}% used",
                size / MIB,
                humantime::format_duration(self.duration)
            ),
            revert: Some(serde_json::json!(ours)),
            revert_after_ms: Some(self.duration.as_millis() as u64),
            ..Outcome::default()
        })
    }

    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        let filled: Filled = sdk::read_state(state)?;
        let shown = filled.file.display();
        let removed = remove::remove(&filled)?;
        let (result, summary) = if removed {
            (results::REVERTED, format!("removed {shown}"))
        } else {
            (
                results::VANISHED,
                format!("{shown} is gone (or is another file now): nothing to remove"),
            )
        };
        Ok(Outcome {
            action: "Free".to_owned(),
            result: result.to_owned(),
            summary,
            ..Outcome::default()
        })
    }
}

/// Takes `size` bytes for `file`: `fallocate`, else zeros written out.
fn reserve(file: &File, size: u64) -> std::io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => return file.sync_all(),
        Err(rustix::io::Errno::OPNOTSUPP) => {}
        Err(e) => return Err(e.into()),
    }
    let chunk = vec![0u8; MIB as usize];
    let mut writer = file;
    for _ in 0..size / MIB {
        writer.write_all(&chunk)?;
    }
    file.sync_all()
}

export_plugin!(DiskFill);

mod remove;
#[cfg(test)]
mod tests;
