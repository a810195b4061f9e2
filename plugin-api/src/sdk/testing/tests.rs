use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex,
};

use super::*;
use crate::sdk::FaultPlugin;

/// What the faults below change; one test at a time touches it.
static LEVEL: AtomicU64 = AtomicU64::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

/// How a fault misbehaves, chosen by its config.
#[derive(serde::Deserialize, Default, Clone, Copy, PartialEq)]
enum Flaw {
    #[default]
    None,
    ChangesOnDryRun,
    RevertForgets,
    RevertNeedsMemory,
    PanicsOnBadState,
    TwoLineErrors,
    /// Revert state without `revert_after_ms`.
    Undated,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    flaw: Flaw,
    #[serde(default)]
    by: Option<u64>,
}

struct Raise {
    flaw: Flaw,
    by: u64,
    /// What this instance raised, for the flaw that reverts from memory only.
    raised: Mutex<Option<u64>>,
}

/// A fault that takes no configuration at all.
struct Bare;

// What `export_plugin!` does; one crate exports one plugin, and this one exports none.
impl Exported for Bare {}
impl Exported for Raise {}

impl FaultPlugin for Bare {
    const NAME: &'static str = "bare";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "takes no configuration";
    type Config = ();
    fn new(_: ()) -> Result<Self, PluginError> {
        Ok(Bare)
    }
    fn inject(&self, _: &Request) -> Result<Outcome, PluginError> {
        Ok(Outcome {
            result: results::DRY_RUN.into(),
            ..Outcome::default()
        })
    }
    fn revert(&self, _: &serde_json::Value) -> Result<Outcome, PluginError> {
        Ok(Outcome::default())
    }
}

#[test]
fn a_fault_without_configuration_passes_the_misspelt_field_check() {
    Harness::of::<Bare>()
        .contract("")
        .check_config_errors(&[])
        .unwrap();
}

impl FaultPlugin for Raise {
    const NAME: &'static str = "raise";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "raises a level";
    type Config = Config;
    fn new(config: Config) -> Result<Self, PluginError> {
        let by = config.by.unwrap_or(1);
        if by == 0 {
            let message = if config.flaw == Flaw::TwoLineErrors {
                "bad\nby: zero"
            } else {
                "by: expected at least 1"
            };
            return Err(PluginError::new(ErrorKind::Config, message));
        }
        Ok(Raise {
            flaw: config.flaw,
            by,
            raised: Mutex::new(None),
        })
    }
    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        if request.dry_run {
            if self.flaw == Flaw::ChangesOnDryRun {
                LEVEL.fetch_add(1, Ordering::SeqCst);
            }
            return Ok(Outcome {
                result: results::DRY_RUN.into(),
                ..Outcome::default()
            });
        }
        let before = LEVEL.fetch_add(self.by, Ordering::SeqCst);
        *self.raised.lock().unwrap() = Some(before);
        Ok(Outcome {
            result: results::INJECTED.into(),
            revert: Some(serde_json::json!({ "level": before })),
            revert_after_ms: (self.flaw != Flaw::Undated).then_some(60_000),
            ..Outcome::default()
        })
    }
    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        let level = match self.flaw {
            Flaw::RevertNeedsMemory => *self.raised.lock().unwrap(),
            Flaw::PanicsOnBadState => Some(state["level"].as_u64().expect("a level")),
            _ => state["level"].as_u64(),
        };
        match (self.flaw, level) {
            (Flaw::RevertForgets, _) | (_, None) => {}
            (_, Some(level)) => LEVEL.store(level, Ordering::SeqCst),
        }
        Ok(Outcome {
            result: results::REVERTED.into(),
            ..Outcome::default()
        })
    }
}

fn check(flaw: &str) -> Result<(), Violation> {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    LEVEL.store(0, Ordering::SeqCst);
    Harness::of::<Raise>()
        .contract(&format!("(flaw: {flaw})"))
        .watch(|| LEVEL.load(Ordering::SeqCst))
        .settle(Duration::from_millis(20))
        .check_all()
}

#[test]
fn a_sound_fault_keeps_every_contract() {
    check("None").unwrap();
}

/// The harness catches each flaw, in one line saying which contract broke.
#[test]
fn each_broken_contract_is_caught_and_named() {
    assert_eq!(
        check("ChangesOnDryRun").unwrap_err().0,
        "a dry run changed what the fault watches: Some(0) became Some(1)"
    );
    assert_eq!(check("RevertForgets").unwrap_err().0, "inject then revert (from a fresh instance) did not restore what the fault watches: Some(0) became Some(1)");
    assert_eq!(check("RevertNeedsMemory").unwrap_err().0, "inject then revert (from a fresh instance) did not restore what the fault watches: Some(0) became Some(1)");
    let panicked = check("PanicsOnBadState").unwrap_err().0;
    assert_eq!(
        panicked,
        "revert of the state `null` panicked: the plugin panicked: a level"
    );
}

/// The host refuses revert state without a time as a plugin contract error: so does
/// the harness, and it undoes what the injection changed on the way out.
#[test]
fn revert_state_without_a_time_is_a_contract_error() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    LEVEL.store(0, Ordering::SeqCst);
    let broken = Harness::of::<Raise>()
        .contract("(flaw: Undated)")
        .watch(|| LEVEL.load(Ordering::SeqCst))
        .settle(Duration::from_millis(20))
        .check_all()
        .unwrap_err();
    assert_eq!(
        broken.0,
        "inject reported `injected` with revert state but no revert_after_ms: a plugin contract error (the host reverts such a fault at once and fails the injection); set revert_after_ms with the state"
    );
    assert_eq!(LEVEL.load(Ordering::SeqCst), 0);
}

/// Named as the daemon would refuse to load it.
struct Shouting;

impl FaultPlugin for Shouting {
    const NAME: &'static str = "Lock_Config";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "an invalid name";
    type Config = ();
    fn new(_: ()) -> Result<Self, PluginError> {
        Ok(Shouting)
    }
    fn inject(&self, _: &Request) -> Result<Outcome, PluginError> {
        Ok(Outcome::default())
    }
}

impl Exported for Shouting {}

#[test]
#[should_panic(
    expected = "the plugin's name `Lock_Config` is not a valid fault name (expected lower-case letters, digits and dashes): the daemon refuses to load it"
)]
fn a_plugin_with_an_invalid_name_does_not_load() {
    let _ = Harness::of::<Shouting>();
}

#[test]
fn config_errors_must_be_one_line_of_kind_config_naming_the_field() {
    let harness = Harness::of::<Raise>();
    harness.config_error("(flaw: None, by: 0)", "by").unwrap();
    // An absent `config:` reads as `()`: the required field is named.
    harness.config_error("", "flaw").unwrap();
    assert_eq!(
        harness.config_error("(flaw: TwoLineErrors, by: 0)", "by").unwrap_err().0,
        "config `(flaw: TwoLineErrors, by: 0)` gave Config error `bad\nby: zero`: expected one line"
    );
    assert!(harness
        .config_error("(flaw: None, by: 0)", "b")
        .unwrap_err()
        .0
        .ends_with("expected it to name the field `b`"));
    assert!(harness
        .config_error("(flaw: None)", "by")
        .unwrap_err()
        .0
        .contains("was accepted"));
}

#[test]
fn revert_needs_something_to_watch() {
    let harness = Harness::of::<Raise>();
    assert_eq!(
        harness
            .contract("(flaw: None)")
            .check_revert()
            .unwrap_err()
            .0,
        "check_revert needs to know what the fault changes: give it with .watch(..)"
    );
}
