//! `net-delay`: latency with tc's netem queueing discipline, where the kernel has it.
//!
//! A kernel without `sch_netem` (many cloud and container kernels) cannot delay packets
//! at all; the fault then refuses, once and clearly, when the configuration is checked
//! (`check-config`, a start) and again at injection, naming the missing module and what
//! to do instead. Whether netem exists is found by trying it where it harms nothing: a
//! netem qdisc on the loopback of a network namespace made for the test and gone with
//! it (`unshare --net tc qdisc add dev lo root netem`).

use std::{process::Command, sync::OnceLock};

use nightmare_monkey_plugin_api::sdk::{
    self, ErrorKind, FaultPlugin, Outcome, PluginError, Request,
};
use serde::Deserialize;

/// `net-delay`'s configuration, as written in RON.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DelayConfig {
    /// The delay added to each packet sent (`"100ms"`).
    pub delay: Option<sdk::DurationText>,
    /// Up to this much more or less, at random (`"10ms"`).
    pub jitter: Option<sdk::DurationText>,
    /// How much each packet's jitter follows the one before, in percent.
    pub correlation: Option<f64>,
    /// The interface whose outgoing packets are delayed.
    pub interface: Option<String>,
    /// How long the fault lasts (at most 1h).
    pub duration: Option<sdk::DurationText>,
}

/// Why netem cannot be used here, if it cannot (probed once per process).
pub fn netem_missing() -> Option<&'static str> {
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    MISSING.get_or_init(probe).as_deref()
}

fn probe() -> Option<String> {
    let mut command = Command::new("unshare");
    if !is_root() {
        command.args(["--user", "--map-root-user"]);
    }
    let tried = command
        .args([
            "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ])
        .output();
    match tried {
        Ok(out) if out.status.success() => None,
        Ok(out) => {
            let said = String::from_utf8_lossy(&out.stderr);
            let said = said.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if said.contains("qdisc kind is unknown") {
                Some(format!("`tc qdisc add ... netem` says: {}", said.trim()))
            } else {
                // The probe itself could not run (no user namespaces, no tc): the
                // module's files say what they can.
                files_say()
            }
        }
        Err(_) => files_say(),
    }
}

/// Whether this process runs as root (in its user namespace): `/proc/self/status`'s
/// effective UID, without a dependency for one number.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// netem's presence as the kernel's files tell it: loaded or built in
/// (`/sys/module/sch_netem`), or a module on disk to load.
fn files_say() -> Option<String> {
    if std::path::Path::new("/sys/module/sch_netem").exists() {
        return None;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let dir = format!("/lib/modules/{}/kernel/net/sched", release.trim());
    let on_disk = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("sch_netem.ko"));
    (!on_disk).then(|| format!("neither /sys/module/sch_netem nor {dir}/sch_netem.ko exists"))
}

/// The one refusal, for a kernel without netem.
fn refusal(why: &str) -> PluginError {
    PluginError::new(
        ErrorKind::Config,
        format!(
            "net-delay needs the kernel's netem queueing discipline (module sch_netem), which this kernel lacks ({why}): load it (`modprobe sch_netem`; some distributions ship it in linux-modules-extra) or add latency without the kernel through a fault proxy (planned: the net-proxy fault)"
        ),
    )
}

/// The `net-delay` fault.
#[derive(Debug)]
pub struct NetDelay;

impl FaultPlugin for NetDelay {
    const NAME: &'static str = "net-delay";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "delays outgoing packets with tc netem (refused, saying why, on a kernel without sch_netem)";
    type Config = DelayConfig;

    fn new(_config: DelayConfig) -> Result<Self, PluginError> {
        if let Some(why) = netem_missing() {
            return Err(refusal(why));
        }
        Err(PluginError::new(
            ErrorKind::Config,
            "net-delay is not built yet for kernels with netem either: this release only refuses it on kernels without; add latency through a fault proxy (planned: the net-proxy fault)",
        ))
    }

    fn inject(&self, _request: &Request) -> Result<Outcome, PluginError> {
        Err(refusal(netem_missing().unwrap_or("netem not usable")))
    }
}
