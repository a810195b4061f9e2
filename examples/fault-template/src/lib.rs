//! A reversible nightmare-monkey fault: it takes the permissions off a file (a config, a
//! socket, a key) for a while, then gives them back. Whatever reads the file starts
//! failing with "permission denied": the incident to train on.
//!
//! Start a fault of your own from here. What the daemon expects of it is in PLUGINS.md;
//! the harness tests at the end check those contracts (dry run, revert, config errors,
//! panics) through the ABI, as the daemon calls it.
//!
//! Configuration (RON, inline in the daemon's config):
//!
//! ```ron
//! (
//!     path: "/etc/myapp/config.toml", // required: the file to lock up
//!     mode: "000",                    // its mode while the fault lasts (octal)
//!     duration: "5m",                 // how long (at most 1h)
//! )
//! ```
#![deny(unsafe_code)] // not forbid: export_plugin! exports an unmangled symbol

use std::{
    fs::File,
    os::unix::{
        fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
        io::AsRawFd as _,
    },
    path::{Path, PathBuf},
    time::Duration,
};

use nightmare_monkey_plugin_api::{
    export_plugin,
    sdk::{self, results, ErrorKind, FaultPlugin, Outcome, PluginError, Request},
};
use serde::{Deserialize, Serialize};

/// The fault's configuration, as written in RON. `path` has no default: a fault
/// configured without it is refused, naming it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file to take the permissions off.
    pub path: PathBuf,
    /// Its mode while the fault lasts, in octal (default `000`).
    #[serde(default)]
    pub mode: Option<String>,
    /// How long (default 5 minutes, at most 1 hour).
    #[serde(default)]
    pub duration: Option<sdk::DurationText>,
}

/// The file at `path`, held by an `O_PATH` descriptor: what is read of it (`fstat`)
/// and what is done to it (a chmod through `/proc/self/fd`) are that one inode, whatever
/// is renamed over the path in between. (Checking a path, then changing the path, could
/// change a file swapped in meanwhile.)
fn hold(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
}

/// Sets the mode of the very file `file` holds.
fn chmod(file: &File, mode: u32) -> std::io::Result<()> {
    std::fs::set_permissions(
        format!("/proc/self/fd/{}", file.as_raw_fd()),
        std::fs::Permissions::from_mode(mode),
    )
}

/// The permission bits and the setuid, setgid and sticky bits: all a mode restores.
const MODE_BITS: u32 = 0o7777;

/// What revert needs: which file exactly (device and inode: a file replaced meanwhile is
/// another file) and both modes.
#[derive(Debug, Serialize, Deserialize)]
struct Changed {
    path: PathBuf,
    dev: u64,
    ino: u64,
    before: u32,
    during: u32,
}

/// The fault.
#[derive(Debug)]
pub struct Lockout {
    path: PathBuf,
    mode: u32,
    duration: Duration,
}

fn config_error(message: String) -> PluginError {
    PluginError::new(ErrorKind::Config, message)
}

fn failed(what: String) -> impl FnOnce(std::io::Error) -> PluginError {
    move |e| PluginError::new(ErrorKind::Failed, format!("{what}: {e}"))
}

impl FaultPlugin for Lockout {
    // The package's name is the fault's: rename the package and the fault follows.
    const NAME: &'static str = env!("CARGO_PKG_NAME");
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "takes the permissions off a file for a while";
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        if !config.path.is_absolute() {
            return Err(config_error(format!(
                "path `{}`: expected an absolute path",
                config.path.display()
            )));
        }
        let mode = match config.mode.as_deref() {
            None => 0,
            Some(text) => u32::from_str_radix(text, 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| {
                    config_error(format!(
                        "mode `{text}`: expected octal 000 to 777, e.g. 000 or 200"
                    ))
                })?,
        };
        let duration = sdk::duration(
            "duration",
            config.duration.as_deref(),
            Duration::from_secs(300),
            Duration::from_secs(3600),
        )?;
        Ok(Self {
            path: config.path,
            mode,
            duration,
        })
    }

    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        let shown = self.path.display();
        let file = hold(&self.path).map_err(|e| {
            PluginError::new(ErrorKind::NoTarget, format!("cannot use {shown}: {e}"))
        })?;
        let meta = file
            .metadata()
            .map_err(failed(format!("cannot read {shown}")))?;
        let before = meta.mode() & MODE_BITS;
        let mut outcome = Outcome {
            action: "Lockout".to_owned(),
            details: serde_json::json!({ "before": format!("{before:03o}") }),
            ..Outcome::default()
        };
        let change = format!("{shown} from {before:03o} to {:03o}", self.mode);
        if request.dry_run {
            // A dry run changes nothing: it says what would have been done.
            outcome.result = results::DRY_RUN.to_owned();
            outcome.summary = format!("would change {change} for {}s", self.duration.as_secs());
            return Ok(outcome);
        }
        chmod(&file, self.mode).map_err(failed(format!("cannot change {shown}")))?;
        outcome.result = results::INJECTED.to_owned();
        outcome.summary = format!("changed {change} for {}s", self.duration.as_secs());
        outcome.revert = Some(serde_json::json!(Changed {
            path: self.path.clone(),
            dev: meta.dev(),
            ino: meta.ino(),
            before,
            during: self.mode,
        }));
        outcome.revert_after_ms = Some(self.duration.as_millis() as u64);
        Ok(outcome)
    }

    /// Gives the mode back, only to the very file changed, and only if its mode is still
    /// the one set: a file replaced or chmod-ed since is someone else's now. Idempotent.
    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        let changed: Changed = sdk::read_state(state)?;
        let shown = changed.path.display();
        let held = hold(&changed.path).and_then(|f| Ok((f.metadata()?, f)));
        let (result, summary) = match held {
            Ok((m, file))
                if (m.dev(), m.ino()) == (changed.dev, changed.ino)
                    && m.mode() & MODE_BITS == changed.during =>
            {
                chmod(&file, changed.before).map_err(failed(format!("cannot restore {shown}")))?;
                (
                    results::REVERTED,
                    format!("gave {shown} its mode {:03o} back", changed.before),
                )
            }
            Ok(_) => (
                results::VANISHED,
                format!("{shown} was replaced or changed since: left as it is"),
            ),
            Err(_) => (
                results::VANISHED,
                format!("{shown} is gone: nothing to restore"),
            ),
        };
        Ok(Outcome {
            action: "Unlock".to_owned(),
            result: result.to_owned(),
            summary,
            ..Outcome::default()
        })
    }
}

export_plugin!(Lockout);

#[cfg(test)]
mod tests {
    use nightmare_monkey_plugin_api::sdk::testing::Harness;

    use super::*;

    /// A file of this test's own, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
            std::fs::write(&path, "key = 1\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            Scratch(path)
        }

        fn mode(&self) -> Option<u32> {
            std::fs::metadata(&self.0).ok().map(|m| m.mode() & 0o7777)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// The contracts, through the ABI as the daemon calls the fault: a dry run changes
    /// nothing; inject changes the mode; revert, from a fresh instance (as after a
    /// restart of the daemon) and again, gives it back; no revert state makes it panic.
    #[test]
    fn keeps_the_contracts() {
        let file = Scratch::new("fault-template-contracts");
        Harness::of::<Lockout>()
            .contract(&format!(
                "(path: {:?}, mode: \"000\", duration: \"1m\")",
                file.0
            ))
            .watch(|| file.mode())
            .check_all()
            .unwrap();
    }

    /// The setuid, setgid and sticky bits come back with the rest: a file locked and
    /// unlocked is the file it was, not one with its special bits lost.
    #[test]
    fn revert_gives_back_the_special_bits_too() {
        for mode in [0o4755, 0o1777, 0o2750] {
            let file = Scratch::new(&format!("fault-template-special-{mode:o}"));
            std::fs::set_permissions(&file.0, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(file.mode(), Some(mode), "set up");
            Harness::of::<Lockout>()
                .contract(&format!("(path: {:?}, mode: \"000\")", file.0))
                .watch(|| file.mode())
                .check_revert()
                .unwrap();
            assert_eq!(file.mode(), Some(mode));
        }
    }

    /// Every configuration error is one line naming the field.
    #[test]
    fn config_errors_name_the_field() {
        let harness = Harness::of::<Lockout>();
        harness.config_error("", "path").unwrap();
        harness
            .config_error("(path: \"relative/file\")", "path")
            .unwrap();
        harness
            .config_error("(path: \"/x\", mode: \"999\")", "mode")
            .unwrap();
        harness
            .config_error("(path: \"/x\", duration: \"2h\")", "duration")
            .unwrap();
    }

    /// A file that was chmod-ed by someone else since is left as it is.
    #[test]
    fn revert_leaves_a_file_changed_since_alone() {
        let file = Scratch::new("fault-template-changed");
        let harness = Harness::of::<Lockout>();
        let fault = harness.fault(&format!("(path: {:?})", file.0)).unwrap();
        let outcome = fault.inject_as_host(&Request::default()).unwrap();
        std::fs::set_permissions(&file.0, std::fs::Permissions::from_mode(0o600)).unwrap();
        let reverted = fault.revert(&outcome.revert.unwrap()).unwrap();
        assert_eq!(reverted.result, results::VANISHED);
        assert_eq!(file.mode(), Some(0o600));
    }
}
