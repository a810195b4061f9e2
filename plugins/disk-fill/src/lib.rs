//! `disk-fill`: fills the filesystem under a directory up to a target percentage for a
//! while, then frees it again: the "no space left on device" incident. It never leaves less
//! free space than a floor, and its file is removed when the fault is reverted (when due,
//! on shutdown, on pause, or on the next start after a crash).
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
    io::Write as _,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
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
    pub duration: Option<String>,
}

/// What the revert needs: the file, and which file exactly (device and inode).
#[derive(Debug, Serialize, Deserialize)]
struct Filled {
    file: PathBuf,
    dev: u64,
    ino: u64,
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

fn percent(used: u64, total: u64) -> u64 {
    if total == 0 {
        100
    } else {
        (used * 100).div_ceil(total)
    }
}

impl FaultPlugin for DiskFill {
    const NAME: &'static str = "disk-fill";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "fills a filesystem up to a target for a while, never below a floor of free space";
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
        let (total, available) = space(&self.dir)?;
        let used = total.saturating_sub(available);
        let wanted = total / 100 * self.target_percent;
        let size = wanted
            .saturating_sub(used)
            .min(available.saturating_sub(self.floor))
            / MIB
            * MIB;
        let before = percent(used, total);
        if size == 0 {
            return Err(PluginError::new(
                ErrorKind::NoTarget,
                format!(
                    "{} is {before}% used with {} MiB free: nothing to fill below the target of {}% and the floor of {} MiB",
                    self.dir.display(),
                    available / MIB,
                    self.target_percent,
                    self.floor / MIB
                ),
            ));
        }
        let file = self.dir.join(format!(
            ".nightmare-monkey-fill-{:016x}",
            Rng::from_seed(request.seed).next_u64()
        ));
        let after = percent(used + size, total);
        let mut outcome = Outcome {
            action: "Fill".to_owned(),
            details: serde_json::json!({ "bytes": size, "before_percent": before, "after_percent": after }),
            ..Outcome::default()
        };
        let shown = file.display();
        if request.dry_run {
            outcome.result = results::DRY_RUN.to_owned();
            outcome.summary = format!(
                "would take {} MiB with {shown}: {before}% to {after}% used",
                size / MIB
            );
            return Ok(outcome);
        }
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
            .and_then(|f| reserve(&f, size).map(|()| f));
        let handle = match created {
            Ok(handle) => handle,
            Err(e) => {
                let _ = std::fs::remove_file(&file);
                return Err(PluginError::new(
                    ErrorKind::Failed,
                    format!("cannot fill {shown}: {e}"),
                ));
            }
        };
        let meta = handle.metadata().map_err(|e| {
            PluginError::new(ErrorKind::Failed, format!("cannot stat {shown}: {e}"))
        })?;
        outcome.result = results::INJECTED.to_owned();
        outcome.summary = format!(
            "took {} MiB with {shown} for {}: {before}% to {after}% used",
            size / MIB,
            humantime::format_duration(self.duration)
        );
        outcome.revert = Some(serde_json::json!(Filled {
            file: file.clone(),
            dev: meta.dev(),
            ino: meta.ino()
        }));
        outcome.revert_after_ms = Some(self.duration.as_millis() as u64);
        Ok(outcome)
    }

    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        let filled: Filled = serde_json::from_value(state.clone()).map_err(|e| {
            PluginError::new(ErrorKind::Failed, format!("unreadable revert state: {e}"))
        })?;
        let shown = filled.file.display();
        let same = std::fs::symlink_metadata(&filled.file)
            .is_ok_and(|m| m.dev() == filled.dev && m.ino() == filled.ino);
        let (result, summary) = if same {
            std::fs::remove_file(&filled.file).map_err(|e| {
                PluginError::new(ErrorKind::Failed, format!("cannot remove {shown}: {e}"))
            })?;
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
