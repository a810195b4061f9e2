//! A harness for a fault's own tests: it drives the fault through the ABI exactly as the
//! host does (the library header `export_plugin!` exports, abi_stable's layout check, the
//! root module, JSON text both ways) and checks the contracts the host relies on:
//!
//! - a dry run changes nothing the fault can observe ([`Contract::check_dry_run`]; the
//!   test says what to watch with [`Contract::watch`]);
//! - `inject` then `revert` restores what it watches, `revert` is idempotent, and it works
//!   from a fresh instance, as after a restart of the daemon ([`Contract::check_revert`]);
//!   revert state comes with `revert_after_ms` (the host refuses it without, as a plugin
//!   contract error); for a two-phase fault, `prepare` changes nothing and its state
//!   reverts harmlessly;
//! - configuration errors are one line naming the field ([`Harness::config_error`],
//!   [`Contract::check_config_errors`]);
//! - no call panics, even on a revert state that is not the fault's
//!   ([`Contract::check_no_panics`]); a panic comes back as an error of kind
//!   [`ErrorKind::Panic`], never as an abort of the test;
//! - the plugin loads as the daemon would load it: exported with `export_plugin!` (a
//!   plugin without it does not compile its harness tests: [`Harness::of`] asks for
//!   [`Exported`]) and named validly ([`is_valid_name`]; [`Harness::of`] panics otherwise).
//!
//! ```
//! use nightmare_monkey_plugin_api::sdk::{
//!     results, testing::Harness, FaultPlugin, Outcome, PluginError, Request,
//! };
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! static LEVEL: AtomicU64 = AtomicU64::new(0);
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config { by: u64 }
//!
//! /// Raises a level, and lowers it again when reverted.
//! struct Raise(u64);
//!
//! impl FaultPlugin for Raise {
//!     const NAME: &'static str = "raise";
//!     const VERSION: &'static str = "0.1.0";
//!     const DESCRIPTION: &'static str = "raises a level for a while";
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self, PluginError> { Ok(Raise(config.by)) }
//!     fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
//!         let mut outcome = Outcome { action: "Raise".into(), ..Outcome::default() };
//!         if request.dry_run {
//!             outcome.result = results::DRY_RUN.into();
//!             return Ok(outcome);
//!         }
//!         let before = LEVEL.fetch_add(self.0, Ordering::SeqCst);
//!         outcome.result = results::INJECTED.into();
//!         outcome.revert = Some(serde_json::json!({ "level": before }));
//!         outcome.revert_after_ms = Some(60_000); // revert state always comes with a time
//!         Ok(outcome)
//!     }
//!     fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
//!         if let Some(level) = state["level"].as_u64() {
//!             LEVEL.store(level, Ordering::SeqCst);
//!         }
//!         Ok(Outcome { action: "Lower".into(), result: results::REVERTED.into(), ..Outcome::default() })
//!     }
//! }
//!
//! nightmare_monkey_plugin_api::export_plugin!(Raise);
//!
//! let harness = Harness::of::<Raise>();
//! harness
//!     .contract("(by: 3)")
//!     .watch(|| LEVEL.load(Ordering::SeqCst))
//!     .check_all()
//!     .unwrap();
//! // A config without `config:` is refused, naming the field.
//! harness.config_error("", "by").unwrap();
//! ```
//!
//! A plugin whose crate forgot `export_plugin!` does not get that far: its tests do not
//! compile ("the plugin `Forgot` is not exported: its crate lacks `export_plugin!(Forgot)`").
//!
//! ```compile_fail,E0277
//! use nightmare_monkey_plugin_api::sdk::{testing::Harness, FaultPlugin, Outcome, PluginError, Request};
//!
//! struct Forgot;
//!
//! impl FaultPlugin for Forgot {
//!     const NAME: &'static str = "forgot";
//!     const VERSION: &'static str = "0.1.0";
//!     const DESCRIPTION: &'static str = "exports nothing";
//!     type Config = ();
//!     fn new(_: ()) -> Result<Self, PluginError> { Ok(Forgot) }
//!     fn inject(&self, _: &Request) -> Result<Outcome, PluginError> { Ok(Outcome::default()) }
//! }
//!
//! let _ = Harness::of::<Forgot>();
//! ```

use std::{
    fmt,
    time::{Duration, Instant},
};

use abi_stable::std_types::{RResult, RStr, RString};
use serde::de::DeserializeOwned;

pub(crate) mod alone;
mod child;
mod threads;

pub use alone::alone;
pub use child::Child;
pub use threads::threads_named;

use crate::{
    abi::{FaultBox, PluginRef},
    sdk::{
        is_valid_name, results, ErrorKind, Exported, Manifest, Outcome, Phase, PluginError, Request,
    },
};

/// A broken contract: one line saying which and how.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

impl fmt::Debug for Violation {
    // `.unwrap()` in a test prints this: the sentence, not a struct.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn violation<T>(text: impl Into<String>) -> Result<T, Violation> {
    Err(Violation(text.into()))
}

/// A plugin, loaded as the host loads one.
pub struct Harness {
    module: PluginRef,
    manifest: Manifest,
}

impl Harness {
    /// The plugin `P`, through the library header `export_plugin!` exports for it and
    /// abi_stable's layout check, as the host loads its `.so`. `P` must be exported
    /// ([`Exported`]): a plugin whose crate lacks `export_plugin!` does not compile here.
    ///
    /// # Panics
    ///
    /// When the plugin cannot be loaded, its manifest is unreadable or its name is not a
    /// valid fault name (the daemon refuses such a plugin): the test cannot go on, and the
    /// message says why.
    pub fn of<P: Exported>() -> Harness {
        let header: &'static abi_stable::library::LibHeader =
            Box::leak(Box::new(crate::sdk::__lib_header::<P>()));
        let module = header
            .init_root_module::<PluginRef>()
            .unwrap_or_else(|e| panic!("the plugin {} does not load: {e}", P::NAME));
        Self::from_module(module)
    }

    /// A plugin from its root module (`plugin_module()`, which `export_plugin!` defines).
    ///
    /// # Panics
    ///
    /// When the manifest is unreadable or names the fault invalidly.
    pub fn from_module(module: PluginRef) -> Harness {
        let text = match (module.manifest())() {
            RResult::ROk(text) => text,
            RResult::RErr(e) => panic!("the manifest failed: {}", PluginError::from_json(&e)),
        };
        let manifest: Manifest = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the manifest is not a manifest: {e}: {text}"));
        if !is_valid_name(&manifest.name) {
            panic!(
                "the plugin's name `{}` is not a valid fault name (expected lower-case letters, digits and dashes): the daemon refuses to load it",
                manifest.name
            );
        }
        Harness { module, manifest }
    }

    /// What the plugin says about itself.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// A fault built from `config` (RON text, as in the daemon's config; empty for none).
    pub fn fault(&self, config: &str) -> Result<Instance, PluginError> {
        match (self.module.new_fault())(RStr::from(config)) {
            RResult::ROk(fault) => Ok(Instance {
                fault,
                prepares: self.manifest.prepares,
            }),
            RResult::RErr(e) => Err(PluginError::from_json(&e)),
        }
    }

    /// Checks that `config` is refused as a user should see it: an error of kind
    /// [`ErrorKind::Config`], one line, naming `field`. Returns the error.
    pub fn config_error(&self, config: &str, field: &str) -> Result<PluginError, Violation> {
        let e = match self.fault(config) {
            Ok(_) => {
                return violation(format!(
                    "config `{config}` was accepted; expected an error naming `{field}`"
                ))
            }
            Err(e) => e,
        };
        let shown = format!("config `{config}` gave {:?} error `{}`", e.kind, e.message);
        if e.kind != ErrorKind::Config {
            return violation(format!("{shown}: expected kind Config"));
        }
        if e.message.contains('\n') {
            return violation(format!("{shown}: expected one line"));
        }
        let names_it = e.message.match_indices(field).any(|(at, _)| {
            let word = |c: char| c.is_alphanumeric() || c == '_';
            let before = e.message[..at].chars().next_back();
            let after = e.message[at + field.len()..].chars().next();
            !before.is_some_and(word) && !after.is_some_and(word)
        });
        if !names_it {
            return violation(format!("{shown}: expected it to name the field `{field}`"));
        }
        Ok(e)
    }

    /// The contracts of the fault `config` builds; see [`Contract`].
    pub fn contract(&self, config: &str) -> Contract<'_, ()> {
        Contract {
            harness: self,
            config: config.to_owned(),
            request: Request {
                seed: 1,
                desc: "contract test".to_owned(),
                ..Request::default()
            },
            watch: None,
            settle: Duration::from_secs(2),
        }
    }
}

/// One fault built through the ABI; every call crosses as JSON text.
pub struct Instance {
    fault: FaultBox,
    prepares: bool,
}

impl Instance {
    /// Injects once; `request.phase` says which phase for a two-phase fault.
    pub fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        let text = serde_json::to_string(request)
            .map_err(|e| PluginError::new(ErrorKind::Failed, e.to_string()))?;
        decode(self.fault.inject(RStr::from(text.as_str())))
    }

    /// Injects for real as the host does: `prepare` then `apply` for a two-phase fault,
    /// one `inject` otherwise.
    pub fn inject_as_host(&self, request: &Request) -> Result<Outcome, PluginError> {
        let whole = Request {
            dry_run: false,
            phase: Phase::Whole,
            prepared: None,
            ..request.clone()
        };
        if !self.prepares {
            return self.inject(&whole);
        }
        let prepared = self.inject(&Request {
            phase: Phase::Prepare,
            ..whole.clone()
        })?;
        match prepared.revert {
            Some(state) => self.inject(&Request {
                phase: Phase::Apply,
                prepared: Some(state),
                ..whole
            }),
            None => Ok(prepared),
        }
    }

    /// Reverts, given the revert state an outcome carried.
    pub fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        self.revert_text(&state.to_string())
    }

    /// Reverts with the state as raw text (what the journal holds).
    pub fn revert_text(&self, state: &str) -> Result<Outcome, PluginError> {
        decode(self.fault.revert(RStr::from(state)))
    }

    /// Reads the outcome's details as `T`.
    pub fn details<T: DeserializeOwned>(outcome: &Outcome) -> Result<T, PluginError> {
        crate::sdk::read_state(&outcome.details)
    }
}

fn decode(answer: RResult<RString, RString>) -> Result<Outcome, PluginError> {
    match answer {
        RResult::ROk(text) => serde_json::from_str(&text).map_err(|e| {
            PluginError::new(
                ErrorKind::Failed,
                format!("unreadable outcome: {e}: {text}"),
            )
        }),
        RResult::RErr(e) => Err(PluginError::from_json(&e)),
    }
}

/// What the host could not survive from a call: a panic (caught, but a bug), or an
/// error where the contract wants an answer.
fn answered(what: &str, result: Result<Outcome, PluginError>) -> Result<Outcome, Violation> {
    match result {
        Ok(outcome) => Ok(outcome),
        Err(e) if e.kind == ErrorKind::Panic => {
            violation(format!("{what} panicked: {}", e.message))
        }
        Err(e) => violation(format!("{what} failed ({:?}): {}", e.kind, e.message)),
    }
}

/// The contracts of one configured fault. Say what the fault changes with
/// [`Contract::watch`]: a closure that looks at it (a directory's listing, a process's
/// state) and returns something comparable; the checks compare what it sees.
///
/// What a fault changes may take a moment to show (a signalled process changes state when
/// the kernel next runs it): after `inject` and after `revert` the checks look again until
/// what they expect is seen or [`Contract::settle`] has passed. What must *not* change is
/// looked at once, right away.
pub struct Contract<'h, S> {
    harness: &'h Harness,
    config: String,
    request: Request,
    watch: Option<Box<dyn Fn() -> S + 'h>>,
    settle: Duration,
}

impl<'h, S> Contract<'h, S> {
    /// Watch what `look` returns: what the fault changes when injected, and nothing
    /// else may change it while the checks run.
    pub fn watch<T: PartialEq + fmt::Debug>(self, look: impl Fn() -> T + 'h) -> Contract<'h, T> {
        Contract {
            harness: self.harness,
            config: self.config,
            request: self.request,
            watch: Some(Box::new(look)),
            settle: self.settle,
        }
    }

    /// How long a change may take to show after `inject` or `revert` (2 s by default).
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// The request the checks send (seed 1, `contract test`, nothing to avoid by default);
    /// `dry_run` and `phase` are set by each check.
    pub fn request(mut self, request: Request) -> Self {
        self.request = request;
        self
    }

    fn fault(&self) -> Result<Instance, Violation> {
        self.harness.fault(&self.config).or_else(|e| {
            violation(format!(
                "config `{}` was refused ({:?}): {}",
                self.config, e.kind, e.message
            ))
        })
    }

    /// Hostile revert states: the host never sends them, but a journal edited by hand or
    /// written by another version may. An error is fine; a panic is not.
    pub fn check_no_panics(&self) -> Result<(), Violation> {
        let fault = self.fault()?;
        for state in [
            "null",
            "0",
            "\"\"",
            "[]",
            "{}",
            "{\"unexpected\":true}",
            "not json",
        ] {
            if let Err(e) = fault.revert_text(state) {
                if e.kind == ErrorKind::Panic {
                    return violation(format!(
                        "revert of the state `{state}` panicked: {}",
                        e.message
                    ));
                }
            }
        }
        Ok(())
    }

    /// A misspelt field is refused in one line naming it (a fault that takes no
    /// configuration at all, `type Config = ()`, has no field to name: refusing it in
    /// one line of kind Config is what it can do).
    pub fn check_config_errors(&self, cases: &[(&str, &str)]) -> Result<(), Violation> {
        const MISSPELT: &str = "(no_such_field_at_all: 1)";
        if let Err(v) = self.harness.config_error(MISSPELT, "no_such_field_at_all") {
            let takes_no_config = self.harness.fault("()").is_ok()
                && self.harness.fault(MISSPELT).is_err_and(|e| {
                    e.kind == ErrorKind::Config
                        && !e.message.contains('\n')
                        && e.message.contains("unit")
                });
            if !takes_no_config {
                return Err(v);
            }
        }
        for (config, field) in cases {
            self.harness.config_error(config, field)?;
        }
        Ok(())
    }
}

impl<S: PartialEq + fmt::Debug> Contract<'_, S> {
    fn look(&self) -> Option<S> {
        self.watch.as_ref().map(|look| look())
    }

    /// Looks until `expected` holds of what is seen, or the settle time has passed; what
    /// was seen last.
    fn look_until(&self, expected: impl Fn(&Option<S>) -> bool) -> Option<S> {
        let deadline = Instant::now() + self.settle;
        loop {
            let now = self.look();
            if expected(&now) || Instant::now() >= deadline {
                return now;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn restored(&self, before: &Option<S>, what: &str) -> Result<(), Violation> {
        let now = self.look_until(|now| now == before);
        if &now != before {
            return violation(format!(
                "{what} did not restore what the fault watches: {before:?} became {now:?}"
            ));
        }
        Ok(())
    }

    fn unchanged(&self, before: &Option<S>, what: &str) -> Result<(), Violation> {
        let now = self.look();
        if &now != before {
            return violation(format!(
                "{what} changed what the fault watches: {before:?} became {now:?}"
            ));
        }
        Ok(())
    }

    /// A dry run changes nothing watched, says `dry-run` and carries no revert state; for
    /// a two-phase fault, `prepare` changes nothing either, and reverting what it
    /// prepared (the host does so when it died before `apply`) is harmless.
    pub fn check_dry_run(&self) -> Result<(), Violation> {
        let fault = self.fault()?;
        let before = self.look();
        let dry = Request {
            dry_run: true,
            phase: Phase::Whole,
            prepared: None,
            ..self.request.clone()
        };
        let outcome = answered("a dry run", fault.inject(&dry))?;
        self.unchanged(&before, "a dry run")?;
        if outcome.result != results::DRY_RUN {
            return violation(format!(
                "a dry run reported `{}`, expected `{}`",
                outcome.result,
                results::DRY_RUN
            ));
        }
        if outcome.revert.is_some() {
            return violation("a dry run returned revert state: the host would journal a fault that never happened");
        }
        if self.harness.manifest.prepares {
            let prepare = Request {
                dry_run: false,
                phase: Phase::Prepare,
                prepared: None,
                ..self.request.clone()
            };
            let prepared = answered("prepare", fault.inject(&prepare))?;
            self.unchanged(&before, "prepare")?;
            if let Some(state) = prepared.revert {
                answered(
                    "a revert of a prepared, never applied state",
                    fault.revert(&state),
                )?;
                self.unchanged(&before, "a revert of a prepared, never applied state")?;
            }
        }
        Ok(())
    }

    /// Injects for real (as the host does, in two phases if the fault prepares), checks
    /// that it changed what is watched, then reverts from a fresh instance (as after a
    /// restart of the daemon) and checks that all is as before; reverts again from that
    /// instance and from another fresh one, and checks that nothing changes (revert is
    /// idempotent). Revert state must come with `revert_after_ms`: without it the host
    /// refuses the outcome as a plugin contract error, and so does this check. Needs
    /// [`Contract::watch`].
    pub fn check_revert(&self) -> Result<(), Violation> {
        if self.watch.is_none() {
            return violation(
                "check_revert needs to know what the fault changes: give it with .watch(..)",
            );
        }
        let before = self.look();
        let state = {
            let injector = self.fault()?;
            let outcome = answered("inject", injector.inject_as_host(&self.request))?;
            let Some(state) = outcome.revert else {
                return violation(format!(
                    "inject reported `{}` and no revert state: the fault cannot be undone ({})",
                    outcome.result, outcome.summary
                ));
            };
            if outcome.revert_after_ms.is_none() {
                // Checked before anything else of the outcome: the host reverts such a
                // fault at once and fails the injection, so nothing later applies.
                let _ = injector.revert(&state);
                return violation(format!(
                    "inject reported `{}` with revert state but no revert_after_ms: a plugin contract error (the host reverts such a fault at once and fails the injection); set revert_after_ms with the state",
                    outcome.result
                ));
            }
            if self.look_until(|now| now != &before) == before {
                return violation(format!(
                    "inject (`{}`: {}) changed nothing the fault watches: watch what it changes",
                    outcome.result, outcome.summary
                ));
            }
            state
            // The injecting instance is dropped here: what it kept in memory is gone.
        };
        let fresh = self.fault()?;
        answered("revert from a fresh instance", fresh.revert(&state))?;
        self.restored(&before, "inject then revert (from a fresh instance)")?;
        answered("a second revert", fresh.revert(&state))?;
        self.unchanged(&before, "a second revert")?;
        answered(
            "a revert from another fresh instance",
            self.fault()?.revert(&state),
        )?;
        self.unchanged(&before, "a revert from another fresh instance")
    }

    /// Every check that applies: the dry run, no panics, a misspelt field refused, and
    /// (when something is watched) inject and revert for real.
    pub fn check_all(&self) -> Result<(), Violation> {
        self.check_dry_run()?;
        self.check_no_panics()?;
        self.check_config_errors(&[])?;
        if self.watch.is_some() {
            self.check_revert()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
