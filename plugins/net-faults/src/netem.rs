//! `net-delay`: latency with tc's netem queueing discipline, where the kernel has it:
//! a root qdisc of ours (handle `4e4d:`, as `net-bandwidth`'s) on one interface,
//! `netem delay D [JITTER [CORRELATION%]]`, removed at the revert while it is still
//! that netem. The prepared `tc` command is journaled before it runs.
//!
//! A kernel without `sch_netem` (many cloud and container kernels) cannot delay packets
//! at all; the fault then refuses, once and clearly, when the configuration is checked
//! (`check-config`, a start) and again at injection, naming the missing module and what
//! to do instead. Whether netem exists is found by trying it where it harms nothing: a
//! netem qdisc on the loopback of a network namespace made for the test and gone with
//! it (`unshare --net tc qdisc add dev lo root netem`).

use std::{path::Path, process::Command, sync::OnceLock, time::Duration};

use nightmare_monkey_plugin_api::sdk::{
    self, child::stop_signals_unblocked, process::Scope, ErrorKind, FaultPlugin, Outcome,
    PluginError, Request,
};
use serde::Deserialize;

use crate::{
    netns,
    qdisc::{is_interface, netem_refusal, remove_qdisc, Phases, HANDLE},
};

const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The longest delay: netem holds every packet meanwhile.
const MAX_DELAY: Duration = Duration::from_secs(60);

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
    /// How long the fault lasts (default 1m, at most 1h).
    pub duration: Option<sdk::DurationText>,
    /// The network namespace of a process instead of the daemon's (see `net-loss`).
    pub scope: Option<Scope>,
}

/// Why netem cannot be used here, if it cannot (probed once per process).
pub fn netem_missing() -> Option<&'static str> {
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    MISSING.get_or_init(probe).as_deref()
}

fn probe() -> Option<String> {
    let mut command = Command::new("unshare");
    stop_signals_unblocked(&mut command);
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
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    files_in(
        Path::new("/sys/module"),
        &Path::new("/lib/modules").join(release.trim()),
    )
}

/// [`files_say`] with the kernel's module directories at `sys_module` and `modules`.
/// Where the modules cannot be looked at (a container's image has none, systemd's
/// `ProtectKernelModules=` hides them), nothing is refused here: `tc` itself says at
/// injection whether the kernel has netem (and loads the module if it may).
fn files_in(sys_module: &Path, modules: &Path) -> Option<String> {
    if sys_module.join("sch_netem").exists() || std::fs::read_dir(modules).is_err() {
        return None;
    }
    let dir = modules.join("kernel/net/sched");
    let on_disk = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("sch_netem.ko"));
    (!on_disk).then(|| {
        format!(
            "neither {} nor {}/sch_netem.ko exists",
            sys_module.join("sch_netem").display(),
            dir.display()
        )
    })
}

fn config_error(message: String) -> PluginError {
    PluginError::new(ErrorKind::Config, message)
}

/// The `net-delay` fault.
#[derive(Debug)]
pub struct NetDelay {
    interface: String,
    delay: Duration,
    jitter: Option<Duration>,
    correlation: Option<f64>,
    duration: Duration,
    scope: Option<Scope>,
}

/// `100ms` as tc writes it: whole microseconds.
fn tc_time(d: Duration) -> String {
    if d.subsec_micros() % 1000 == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}us", d.as_micros())
    }
}

impl NetDelay {
    /// The configuration checked, whatever the kernel has (what `new` does past the
    /// netem probe).
    fn checked(config: DelayConfig) -> Result<Self, PluginError> {
        let interface = config.interface.ok_or_else(|| {
            config_error(
                "interface is required: the interface whose sending is delayed, e.g. \"eth0\""
                    .to_owned(),
            )
        })?;
        if !is_interface(&interface) {
            return Err(config_error(format!(
                "interface `{interface}`: expected an interface name (at most 15 letters, digits, - _ . @)"
            )));
        }
        let delay = config
            .delay
            .ok_or_else(|| config_error("delay is required: e.g. \"100ms\"".to_owned()))?;
        let delay = sdk::duration("delay", Some(&delay), Duration::ZERO, MAX_DELAY)?;
        let jitter = match config.jitter.as_deref() {
            None => None,
            Some(text) => Some(sdk::duration("jitter", Some(text), Duration::ZERO, delay)?),
        };
        if let Some(c) = config.correlation {
            if jitter.is_none() || !(0.0..=100.0).contains(&c) {
                return Err(config_error(format!(
                    "correlation {c}: expected a percentage from 0 to 100, with a jitter"
                )));
            }
        }
        let duration = sdk::duration(
            "duration",
            config.duration.as_deref(),
            Duration::from_secs(60),
            MAX_DURATION,
        )?;
        Ok(Self {
            interface,
            delay,
            jitter,
            correlation: config.correlation,
            duration,
            scope: config.scope,
        })
    }

    /// The `tc` arguments that add our netem qdisc.
    fn arguments(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "qdisc",
            "add",
            "dev",
            &self.interface,
            "root",
            "handle",
            HANDLE,
            "netem",
            "delay",
        ]
        .map(str::to_owned)
        .to_vec();
        args.push(tc_time(self.delay));
        if let Some(jitter) = self.jitter {
            args.push(tc_time(jitter));
            if let Some(c) = self.correlation {
                args.push(format!("{c}%"));
            }
        }
        args
    }

    /// Its phases, net-bandwidth's with netem's words.
    fn phases<'a>(
        &'a self,
        summary: &'a dyn Fn(&str, Option<&netns::Target>) -> String,
    ) -> Phases<'a> {
        Phases {
            fault: Self::NAME,
            action: "Delay",
            doing: ["will delay", "would delay", "delaying"],
            interface: &self.interface,
            kind: "netem".to_owned(),
            scope: self.scope.as_ref(),
            duration: self.duration,
            summary,
        }
    }

    fn summary(&self, doing: &str, netns: Option<&netns::Target>) -> String {
        let place = netns.map_or(String::new(), |t| {
            format!(" in the network namespace of PID {}", t.pid)
        });
        let jitter = self
            .jitter
            .map_or(String::new(), |j| format!(" ± {}", tc_time(j)));
        format!(
            "{doing} what {} sends by {}{jitter}{place} for {}",
            self.interface,
            tc_time(self.delay),
            humantime::format_duration(self.duration)
        )
    }
}

impl FaultPlugin for NetDelay {
    const NAME: &'static str = "net-delay";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "delays what an interface sends with tc netem (refused, saying why, on a kernel without sch_netem)";
    const PREPARES: bool = true;
    type Config = DelayConfig;

    fn new(config: DelayConfig) -> Result<Self, PluginError> {
        if let Some(why) = netem_missing() {
            return Err(netem_refusal(why));
        }
        Self::checked(config)
    }

    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        self.phases(&|doing, netns| self.summary(doing, netns))
            .inject(request, self.arguments())
    }

    /// Pins the namespace and writes the command; changes nothing.
    fn prepare(&self, _request: &Request) -> Result<Outcome, PluginError> {
        self.phases(&|doing, netns| self.summary(doing, netns))
            .prepare(self.arguments())
    }

    fn apply(
        &self,
        _request: &Request,
        prepared: &serde_json::Value,
    ) -> Result<Outcome, PluginError> {
        self.phases(&|doing, netns| self.summary(doing, netns))
            .apply(prepared)
    }

    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        remove_qdisc(&sdk::read_state(state)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(text: &str) -> Result<NetDelay, String> {
        sdk::parse_config::<DelayConfig>(text)
            .and_then(NetDelay::checked)
            .map_err(|e| e.message)
    }

    #[test]
    fn the_tc_command_line_is_built_from_the_checked_config() {
        let f = fault(r#"(interface: "eth0", delay: "100ms")"#).unwrap();
        assert_eq!(
            f.arguments().join(" "),
            "qdisc add dev eth0 root handle 4e4d: netem delay 100ms"
        );
        let f = fault(
            r#"(interface: "lo", delay: "100ms", jitter: "10ms", correlation: 25, duration: "2m")"#,
        )
        .unwrap();
        assert_eq!(
            f.arguments().join(" "),
            "qdisc add dev lo root handle 4e4d: netem delay 100ms 10ms 25%"
        );
        let f = fault(r#"(interface: "lo", delay: "1500us", jitter: "250us")"#).unwrap();
        assert_eq!(
            f.arguments().join(" "),
            "qdisc add dev lo root handle 4e4d: netem delay 1500us 250us"
        );
        let dry = fault(r#"(interface: "lo", delay: "100ms", jitter: "10ms", duration: "2m")"#)
            .unwrap()
            .inject(&Request::default())
            .unwrap();
        assert_eq!(
            dry.summary,
            "would delay what lo sends by 100ms ± 10ms for 2m with: tc qdisc add dev lo root handle 4e4d: netem delay 100ms 10ms"
        );
        assert!(dry.revert.is_none());
    }

    #[test]
    fn a_config_that_makes_no_sense_is_refused() {
        for (text, expected) in [
            (
                r#"(delay: "100ms")"#,
                "interface is required: the interface whose sending is delayed, e.g. \"eth0\"",
            ),
            (
                r#"(interface: "eth0")"#,
                "delay is required: e.g. \"100ms\"",
            ),
            (
                r#"(interface: "eth0", delay: "10ms", correlation: 25)"#,
                "correlation 25: expected a percentage from 0 to 100, with a jitter",
            ),
            (
                r#"(interface: "eth0", delay: "10ms", jitter: "5ms", correlation: 120)"#,
                "correlation 120: expected a percentage from 0 to 100, with a jitter",
            ),
        ] {
            assert_eq!(fault(text).unwrap_err(), expected, "{text}");
        }
        assert!(fault(r#"(interface: "eth0", delay: "10ms", jitter: "20ms")"#).is_err());
        assert!(fault(r#"(interface: "eth0", delay: "2m")"#).is_err());
    }

    #[test]
    fn the_modules_files_refuse_only_when_they_can_be_read_and_lack_netem() {
        let root = std::env::temp_dir().join(format!("nm-netem-files-{}", std::process::id()));
        let (sys, modules) = (root.join("sys"), root.join("modules"));
        let sched = modules.join("kernel/net/sched");
        std::fs::create_dir_all(&sys).unwrap();
        // No module directory to read (a container, ProtectKernelModules=): tc decides.
        assert_eq!(files_in(&sys, &modules), None);
        // A module directory without netem: refused, naming where it looked.
        std::fs::create_dir_all(&sched).unwrap();
        let why = files_in(&sys, &modules).expect("refused");
        assert!(why.contains("sch_netem.ko"), "{why}");
        // The module on disk, or loaded: not refused.
        std::fs::write(sched.join("sch_netem.ko.xz"), b"").unwrap();
        assert_eq!(files_in(&sys, &modules), None);
        std::fs::remove_file(sched.join("sch_netem.ko.xz")).unwrap();
        std::fs::create_dir_all(sys.join("sch_netem")).unwrap();
        assert_eq!(files_in(&sys, &modules), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
