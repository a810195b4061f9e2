//! The plugin author's SDK: typed requests and outcomes, the [`FaultPlugin`] trait, the
//! seeded [`Rng`] and the [`export_plugin!`](crate::export_plugin) macro that turns a
//! `FaultPlugin` into the frozen ABI of [`crate::abi`], catching every panic on the way.
//!
//! The serde types here are the text that crosses the boundary. They grow by adding
//! fields with defaults, never by removing or renaming one, so an old plugin reads a new
//! host's request and a new host reads an old plugin's outcome.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

pub mod child;
mod export;
pub mod process;
mod rng;
pub mod testing;

#[doc(hidden)]
pub use export::__lib_header;
pub use export::root_module;
pub use rng::Rng;

/// The version of this interface crate, which a plugin's manifest reports.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The fault's name, as configs and the API refer to it (`process-kill`).
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// One line on what the fault does.
    #[serde(default)]
    pub description: String,
    /// The version of `nightmare-monkey-plugin-api` the plugin was built against.
    #[serde(default)]
    pub api_version: String,
    /// Whether the fault injects in two phases (see [`Phase`]): it names its target in a
    /// `prepare` call that changes nothing, the host journals that target, and an `apply`
    /// call acts on exactly it. Plugins built against 1.0.0 say nothing here and are
    /// injected in one phase.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prepares: bool,
}

/// Which part of an injection the host asks for.
///
/// A reversible fault that changes the host (a stopped process, a file) must be undone
/// even if the daemon is killed the moment after. In one phase there is a window: the
/// fault is in effect before its outcome, which carries the revert state, is on disk. A
/// fault that announces [`Manifest::prepares`] closes it: the host asks it to
/// [`Phase::Prepare`] (choose the target, change nothing, return the revert state that
/// would undo it), journals that state durably, and only then asks it to
/// [`Phase::Apply`] it, with the state in [`Request::prepared`]. A crash at any moment
/// after that leaves the journal with what undoes the fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Choose and act in one call (dry runs, and plugins that do not prepare).
    #[default]
    Whole,
    /// Choose the target and return its revert state; change nothing.
    Prepare,
    /// Act on the target named by [`Request::prepared`].
    Apply,
}

/// One injection as the host asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Request {
    /// The seed for this injection; the same seed with the same host state must make
    /// the same choices (see [`Rng`]).
    pub seed: u64,
    /// When true nothing on the host may change: report what would have been done.
    pub dry_run: bool,
    /// Why the fault happens (`by monkey`, `request from hubot`).
    pub desc: String,
    /// Processes to leave alone: those under a reversible fault still in effect (a process
    /// stopped by `process-pause` is not killed meanwhile). Process faults must skip them.
    pub avoid: Vec<u32>,
    /// Which part of the injection this is (only for plugins that announce
    /// [`Manifest::prepares`]; always [`Phase::Whole`] in a dry run).
    #[serde(skip_serializing_if = "is_whole")]
    pub phase: Phase,
    /// For [`Phase::Apply`]: the revert state the `prepare` call returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepared: Option<serde_json::Value>,
}

fn is_whole(phase: &Phase) -> bool {
    *phase == Phase::Whole
}

impl Default for Request {
    /// A dry run: a request that lost its `dry_run` field must never turn into a real one.
    fn default() -> Self {
        Self {
            seed: 0,
            dry_run: true,
            desc: String::new(),
            avoid: Vec::new(),
            phase: Phase::Whole,
            prepared: None,
        }
    }
}

/// Well-known values of [`Outcome::result`]. Plugins may report others.
pub mod results {
    /// Dry run: nothing was done, the outcome says what would have been.
    pub const DRY_RUN: &str = "dry-run";
    /// The target process was signalled and has exited.
    pub const KILLED: &str = "killed";
    /// The target process was signalled and was still alive after the grace period.
    pub const SURVIVED: &str = "survived";
    /// The chosen process was gone (or replaced) before it could be signalled.
    pub const VANISHED: &str = "vanished";
    /// The target process was stopped (SIGSTOP) until the fault is reverted.
    pub const PAUSED: &str = "paused";
    /// A non-process fault was injected.
    pub const INJECTED: &str = "injected";
    /// A reversible fault was undone.
    pub const REVERTED: &str = "reverted";
}

/// The process a fault acted on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessInfo {
    /// The kernel's short name (`comm`, at most 15 bytes).
    pub name: String,
    /// Process ID.
    pub pid: u32,
    /// Parent process ID.
    pub ppid: u32,
    /// The command line, arguments joined by spaces (empty for processes without one).
    pub cmdline: String,
    /// The real user's name, or the numeric UID when it has no name.
    pub user: String,
    /// The real user ID.
    pub uid: u32,
    /// Start time in clock ticks after boot, which tells a process from a later one
    /// that reused its PID.
    pub start_time: u64,
}

/// What one injection did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Outcome {
    /// The verb of the log line: `Kill` gives `Kill: sshd(PID:1 PPID:0) - by monkey`.
    pub action: String,
    /// One word for what happened; see [`results`].
    pub result: String,
    /// The process acted on, for process faults.
    pub process: Option<ProcessInfo>,
    /// The signal sent (or that would have been sent), by name (`SIGKILL`).
    pub signal: Option<String>,
    /// One line for humans on what happened.
    pub summary: String,
    /// Anything else the plugin wants journaled (free-form JSON).
    pub details: serde_json::Value,
    /// For reversible faults: what [`FaultPlugin::revert`] needs to undo this one.
    pub revert: Option<serde_json::Value>,
    /// For reversible faults: when the host should revert it, in milliseconds after the
    /// injection. The host journals the fault as active until then, and reverts it on
    /// shutdown, on pause and after a crash as well.
    pub revert_after_ms: Option<u64>,
}

impl Default for Outcome {
    fn default() -> Self {
        Self {
            action: String::new(),
            result: String::new(),
            process: None,
            signal: None,
            summary: String::new(),
            details: serde_json::Value::Null,
            revert: None,
            revert_after_ms: None,
        }
    }
}

/// Why a plugin call failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The fault's configuration is invalid.
    Config,
    /// Nothing eligible to inject the fault into.
    NoTarget,
    /// The fault cannot be reverted.
    NotReversible,
    /// The operating system refused (for example EPERM).
    Denied,
    /// The plugin panicked; the SDK caught it.
    Panic,
    /// Any other failure.
    Failed,
    /// A kind this version of the SDK does not know.
    #[serde(other)]
    Other,
}

/// The error every plugin call returns, as JSON text across the boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct PluginError {
    /// The class of failure, for the host to react to.
    pub kind: ErrorKind,
    /// One sentence for the user: what went wrong and, where known, what to do.
    pub message: String,
}

impl PluginError {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The JSON text that crosses the boundary.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.message.clone())
    }

    /// Reads an error that crossed the boundary; text that is not an error object is
    /// kept whole as the message of a [`ErrorKind::Failed`] error.
    pub fn from_json(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_else(|_| Self::new(ErrorKind::Failed, text))
    }
}

/// A fault, as a plugin author writes it. [`export_plugin!`](crate::export_plugin) turns
/// it into the ABI.
pub trait FaultPlugin: Sized + Send + Sync + 'static {
    /// The fault's name as configs and the API refer to it: lower-case letters, digits
    /// and dashes ([`is_valid_name`]).
    const NAME: &'static str;
    /// The plugin's version, usually `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;
    /// One line on what the fault does.
    const DESCRIPTION: &'static str;

    /// The fault's configuration, read from RON text by [`parse_config`]. Use
    /// `#[serde(default)]` so that every field is optional and
    /// `#[serde(deny_unknown_fields)]` so typos are errors; a field without a default is
    /// required, and a fault configured without `config:` is then refused naming it.
    type Config: DeserializeOwned;

    /// Builds the fault; reject an invalid configuration here with [`ErrorKind::Config`].
    fn new(config: Self::Config) -> Result<Self, PluginError>;

    /// Injects the fault once. Must change nothing when `request.dry_run` is set, and
    /// must make its random choices from `Rng::from_seed(request.seed)` only.
    fn inject(&self, request: &Request) -> Result<Outcome, PluginError>;

    /// Whether the fault injects in two phases: it implements [`FaultPlugin::prepare`] and
    /// [`FaultPlugin::apply`] (announced in the manifest as [`Manifest::prepares`]). A
    /// reversible fault that changes the host should: then no crash of the daemon, at any
    /// moment, leaves it in effect with nothing in the journal to undo it.
    const PREPARES: bool = false;

    /// Two-phase faults: chooses the target exactly as [`FaultPlugin::inject`] would with
    /// this request (the same seed makes the same choice) and changes nothing. The
    /// outcome's `revert` is the state that undoes the fault once applied (it must also be
    /// safe to revert if the fault was never applied), and `process`/`summary` describe
    /// the target. An outcome without `revert` state is final: nothing is applied (the
    /// target was gone, say).
    fn prepare(&self, request: &Request) -> Result<Outcome, PluginError> {
        let _ = request;
        Err(PluginError::new(
            ErrorKind::Failed,
            format!("the {} fault does not inject in two phases", Self::NAME),
        ))
    }

    /// Two-phase faults: applies the fault to the target `prepared` names (the revert
    /// state [`FaultPlugin::prepare`] returned), and reports as [`FaultPlugin::inject`]
    /// does.
    fn apply(
        &self,
        request: &Request,
        prepared: &serde_json::Value,
    ) -> Result<Outcome, PluginError> {
        let _ = (request, prepared);
        Err(PluginError::new(
            ErrorKind::Failed,
            format!("the {} fault does not inject in two phases", Self::NAME),
        ))
    }

    /// Undoes an injection, given the `revert` state of its outcome.
    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        let _ = state;
        Err(PluginError::new(
            ErrorKind::NotReversible,
            format!("the {} fault cannot be reverted", Self::NAME),
        ))
    }
}

/// Whether `name` may name a fault: lower-case ASCII letters, digits and dashes, at least
/// one. The host refuses to load a plugin whose [`FaultPlugin::NAME`] is anything else,
/// [`export_plugin!`](crate::export_plugin) refuses to compile one, and the
/// [`testing`] harness refuses to load one.
///
/// ```
/// use nightmare_monkey_plugin_api::sdk::is_valid_name;
/// assert!(is_valid_name("lock-config2"));
/// assert!(!is_valid_name("Lock_Config") && !is_valid_name(""));
/// ```
pub const fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !matches!(bytes[i], b'a'..=b'z' | b'0'..=b'9' | b'-') {
            return false;
        }
        i += 1;
    }
    !bytes.is_empty()
}

/// A plugin that [`export_plugin!`](crate::export_plugin) exported: the macro implements
/// it, and [`testing::Harness::of`] asks for it, so a plugin whose crate forgot the macro
/// (its `.so` would export nothing the daemon can load) fails to compile its tests, saying
/// so. Never implement it by hand.
#[diagnostic::on_unimplemented(
    message = "the plugin `{Self}` is not exported: its crate lacks `export_plugin!({Self})`",
    label = "not exported",
    note = "without `nightmare_monkey_plugin_api::export_plugin!({Self});` in the plugin's crate its .so exports nothing, and the daemon refuses to load it"
)]
pub trait Exported: FaultPlugin {}

/// Reads a revert (or prepared) state back into the type the plugin wrote it from; an
/// error says the state is unreadable.
pub fn read_state<T: DeserializeOwned>(state: &serde_json::Value) -> Result<T, PluginError> {
    T::deserialize(state)
        .map_err(|e| PluginError::new(ErrorKind::Failed, format!("unreadable revert state: {e}")))
}

/// Reads a fault's RON configuration. Empty text (a fault configured without `config:`)
/// reads exactly as `()` does: a `Config` with `#[serde(default)]` gets its defaults, and
/// one with a required field reports that field missing, rather than a `Default` value
/// slipping through that the author never meant to accept. `Option` fields take plain
/// values (`signal: "TERM"`, not `signal: Some("TERM")`). Errors are one line that names
/// the field.
pub fn parse_config<C: DeserializeOwned>(text: &str) -> Result<C, PluginError> {
    let absent = text.trim().is_empty();
    let text = if absent { "()" } else { text };
    ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .from_str(text)
        .map_err(|e: ron::error::SpannedError| {
            let message = match (&e.code, absent) {
                // Positions would point into the `()` made up here, not at the user's text.
                (ron::Error::MissingStructField { field, .. }, true) => {
                    format!("no configuration given, but the field `{field}` is required")
                }
                (code, true) => format!("no configuration given: {code}"),
                (_, false) => format!("{e}"),
            };
            PluginError::new(ErrorKind::Config, message.replace('\n', " "))
        })
}

/// A duration as a configuration writes it, every duration setting alike, the daemon's
/// and the faults': a number of seconds (`90`, or `"90"`) or a duration (`"90s"`, `"5m"`,
/// `"1h30m"`). Kept as text (`90` becomes `90s`), for the setting's own check to read
/// and quote: give a config field this type and read it with [`duration`]
/// (`config.duration.as_deref()`).
///
/// ```
/// # use nightmare_monkey_plugin_api::sdk::{self, DurationText};
/// #[derive(serde::Deserialize)]
/// struct Config { duration: Option<DurationText> }
/// let a: Config = sdk::parse_config("(duration: 90)").unwrap();
/// let b: Config = sdk::parse_config(r#"(duration: "1h30m")"#).unwrap();
/// assert_eq!(a.duration.as_deref(), Some("90s"));
/// assert_eq!(b.duration.as_deref(), Some("1h30m"));
/// let d = sdk::duration("duration", a.duration.as_deref(), std::time::Duration::from_secs(30), std::time::Duration::from_secs(3600));
/// assert_eq!(d.unwrap(), std::time::Duration::from_secs(90));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationText(pub String);

impl std::ops::Deref for DurationText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DurationText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for DurationText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DurationText;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("seconds (90) or a duration like \"90s\", \"5m\" or \"1h30m\"")
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<DurationText, E> {
                Ok(DurationText(format!("{n}s")))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<DurationText, E> {
                u64::try_from(n)
                    .map(|n| DurationText(format!("{n}s")))
                    .map_err(|_| E::custom(format!("a duration cannot be negative ({n})")))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<DurationText, E> {
                // "90" is seconds too, as 90 is.
                if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                    return Ok(DurationText(format!("{text}s")));
                }
                Ok(DurationText(text.to_owned()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A fault's duration setting: `text` (`30s`, `5m`, `500ms`, `1h 30m`), or `default` when
/// it is not given; more than zero and at most `max`. The error names `field` and the
/// accepted range.
pub fn duration(
    field: &str,
    text: Option<&str>,
    default: std::time::Duration,
    max: std::time::Duration,
) -> Result<std::time::Duration, PluginError> {
    let Some(text) = text else {
        return Ok(default);
    };
    humantime::parse_duration(text)
        .ok()
        .filter(|d| !d.is_zero() && *d <= max)
        .ok_or_else(|| {
            PluginError::new(
                ErrorKind::Config,
                format!(
                    "{field}: invalid duration `{text}`: expected more than 0 and at most {}, e.g. 30s, 5m or 500ms",
                    humantime::format_duration(max)
                ),
            )
        })
}

/// Stop flags of faults that run inside the daemon's process (threads burning CPU, memory
/// held), by the token their revert state carries (`{"token": N}`): [`StopFlags::start`]
/// when injecting, [`StopFlags::stop`] when reverting. After a restart the flags are gone
/// with the threads they stopped, and `stop` says so.
#[derive(Debug, Default)]
pub struct StopFlags(
    std::sync::Mutex<std::collections::HashMap<u64, std::sync::Arc<std::sync::atomic::AtomicBool>>>,
);

impl StopFlags {
    /// Registers a fault under `token`; its threads watch the returned flag.
    pub fn start(&self, token: u64) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token, flag.clone());
        flag
    }

    /// Raises the flag of `token` and forgets it; `false` if there was none (already
    /// stopped, or started by a process that has ended).
    pub fn stop(&self, token: u64) -> bool {
        let flag = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token);
        flag.map(|f| f.store(true, std::sync::atomic::Ordering::Relaxed))
            .is_some()
    }

    /// The revert state for `token`.
    pub fn state(token: u64) -> serde_json::Value {
        serde_json::json!({ "token": token })
    }

    /// The token of a revert state made by [`StopFlags::state`].
    pub fn token(state: &serde_json::Value) -> Result<u64, PluginError> {
        state["token"]
            .as_u64()
            .ok_or_else(|| PluginError::new(ErrorKind::Failed, "unreadable revert state: no token"))
    }
}

/// Exports a [`FaultPlugin`] as a nightmare-monkey plugin.
///
/// It defines `pub fn plugin_module() -> PluginRef` (for hosts that link the crate
/// statically) and a library header under the symbol
/// `nightmare_monkey_plugin_v1__<crate name>`, which the host finds when it loads the
/// crate's `.so`. The symbol is unique per crate, so several plugin crates can be linked
/// into one binary (abi_stable's own `#[export_root_module]` uses one fixed symbol, and
/// two plugins linked together then fail with a duplicate symbol).
///
/// The crate must allow `unsafe_code` at the macro (use `#![deny(unsafe_code)]`, not
/// `forbid`): exporting an unmangled symbol is an unsafe attribute.
///
/// It refuses to compile under `panic = "abort"` (every panic it catches would abort the
/// daemon instead), and for a [`FaultPlugin::NAME`] that is not a valid fault name (see
/// [`is_valid_name`]). It implements
/// [`Exported`] for the plugin, which the test harness asks for.
///
/// ```compile_fail,E0080
/// use nightmare_monkey_plugin_api::sdk::{FaultPlugin, Outcome, PluginError, Request};
///
/// struct Shouting;
///
/// impl FaultPlugin for Shouting {
///     const NAME: &'static str = "Lock_Config"; // the daemon would refuse to load it
///     const VERSION: &'static str = "0.1.0";
///     const DESCRIPTION: &'static str = "an invalid name";
///     type Config = ();
///     fn new(_: ()) -> Result<Self, PluginError> { Ok(Shouting) }
///     fn inject(&self, _: &Request) -> Result<Outcome, PluginError> { Ok(Outcome::default()) }
/// }
///
/// nightmare_monkey_plugin_api::export_plugin!(Shouting);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        // Evaluated in the plugin's crate, with its profile: under `panic = "abort"` no
        // panic can be caught, and the first one would take the whole daemon down.
        #[cfg(panic = "abort")]
        ::core::compile_error!(
            "nightmare-monkey plugins must be built with panic = \"unwind\": under panic = \"abort\" a panic in the plugin cannot be caught and kills the daemon; remove `panic = \"abort\"` from the [profile.*] sections of Cargo.toml"
        );

        /// The plugin's root module, for hosts that link this crate statically.
        pub fn plugin_module() -> $crate::abi::PluginRef {
            $crate::sdk::root_module::<$plugin>()
        }

        impl $crate::sdk::Exported for $plugin {}

        // The daemon refuses any other name when it loads the plugin: refused here first.
        const _: () = ::core::assert!(
            $crate::sdk::is_valid_name(<$plugin as $crate::sdk::FaultPlugin>::NAME),
            "the plugin's NAME is not a valid fault name: expected lower-case letters, digits and dashes (the daemon refuses to load any other)"
        );

        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(export_name = concat!("nightmare_monkey_plugin_v1__", env!("CARGO_CRATE_NAME")))]
        pub static __NIGHTMARE_MONKEY_PLUGIN_HEADER: $crate::abi_stable::library::LibHeader =
            $crate::sdk::__lib_header::<$plugin>();
    };
}

/// The prefix of the symbol under which every plugin exports its header.
pub const SYMBOL_PREFIX: &str = "nightmare_monkey_plugin_v1__";

#[cfg(test)]
mod tests;
