//! A fault for tests: it records every call and does what it is told, so the engine
//! and the dispatch are tested without a plugin or a process in sight.

use std::sync::{Arc, Mutex};

use nightmare_monkey_plugin_api::sdk::{
    ErrorKind, Outcome, Phase, PluginError, ProcessInfo, Request,
};

use crate::{domain::injection::Fault, support::lock::lock};

/// What the fake does when injected.
#[derive(Clone)]
pub enum Behaviour {
    /// Hits PID 100 (`victim`), once and for good.
    Hit,
    /// Stops PID 200 until reverted (after `ms`).
    Reversible { ms: u64 },
    /// Stops PID 200 with revert state but no time to revert it (a contract error).
    Undated,
    /// Fails with this kind.
    Fail(ErrorKind),
    /// Blocks until the gate opens (a plugin that hangs), then fails.
    Block(Gate),
    /// Stops PID 300 until reverted (after `ms`), in two phases; the apply waits at
    /// `hold` first if given (the daemon can be caught between the phases), then
    /// answers `apply`'s error if given (after acting, for `Failed`).
    TwoPhase {
        ms: u64,
        hold: Option<Gate>,
        apply: Option<ErrorKind>,
    },
}

/// A gate a plugin call waits at until it opens (a plugin that hangs).
pub type Gate = Arc<(Mutex<bool>, std::sync::Condvar)>;

/// A closed gate.
pub fn gate() -> Gate {
    Arc::new((Mutex::new(false), std::sync::Condvar::new()))
}

/// Opens `gate`: every call waiting at it goes on.
pub fn open(gate: &Gate) {
    *lock(&gate.0) = true;
    gate.1.notify_all();
}

fn wait_at(gate: &Gate) {
    let (open, wake) = &**gate;
    let mut open = lock(open);
    while !*open {
        open = wake.wait(open).unwrap_or_else(|p| p.into_inner());
    }
}

/// A fault that records every call.
#[derive(Clone)]
pub struct Fake {
    behaviour: Behaviour,
    /// `inject` waits here first, if set.
    inject_gate: Option<Gate>,
    /// `revert` waits here first, if set.
    revert_gate: Option<Gate>,
    /// How many more reverts fail (as too many open files would) before one succeeds.
    revert_failures: Arc<std::sync::atomic::AtomicUsize>,
    /// The kind they fail with.
    revert_failure_kind: Arc<Mutex<ErrorKind>>,
    /// Every request, in order.
    pub calls: Arc<Mutex<Vec<Request>>>,
    /// Every revert state, in order.
    pub reverts: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Runs in the prepare phase (to break the journal between the phases).
    pub on_prepare: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Fake {
    /// A fake that behaves so.
    pub fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            inject_gate: None,
            revert_gate: None,
            revert_failures: Arc::default(),
            revert_failure_kind: Arc::new(Mutex::new(ErrorKind::Failed)),
            calls: Arc::default(),
            reverts: Arc::default(),
            on_prepare: None,
        }
    }

    /// The same fake, whose `inject` waits at `gate` before it behaves.
    pub fn held(mut self, gate: &Gate) -> Self {
        self.inject_gate = Some(gate.clone());
        self
    }

    /// The same fake, whose `revert` waits at `gate` before it reverts.
    pub fn revert_held(mut self, gate: &Gate) -> Self {
        self.revert_gate = Some(gate.clone());
        self
    }

    /// The same fake, whose next `n` reverts fail.
    pub fn revert_fails(self, n: usize) -> Self {
        self.revert_failures
            .store(n, std::sync::atomic::Ordering::SeqCst);
        self
    }

    /// How many reverts are still to fail.
    pub fn revert_failures_left(&self) -> usize {
        self.revert_failures
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Failing reverts fail with `kind` from now on.
    pub fn fail_reverts_with(&self, kind: ErrorKind) {
        *lock(&self.revert_failure_kind) = kind;
    }

    /// The requests so far.
    pub fn calls(&self) -> Vec<Request> {
        lock(&self.calls).clone()
    }
}

impl Fault for Fake {
    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        lock(&self.calls).push(request.clone());
        if let Some(gate) = &self.inject_gate {
            wait_at(gate);
        }
        let process = |pid| ProcessInfo {
            name: "victim".into(),
            pid,
            ppid: 1,
            ..ProcessInfo::default()
        };
        match &self.behaviour {
            Behaviour::Hit => Ok(Outcome {
                action: "Kill".into(),
                result: if request.dry_run { "dry-run" } else { "killed" }.into(),
                process: Some(process(100)),
                ..Outcome::default()
            }),
            Behaviour::Reversible { ms } => Ok(Outcome {
                action: "Pause".into(),
                result: "paused".into(),
                process: Some(process(200)),
                revert: Some(serde_json::json!({ "pid": 200 })),
                revert_after_ms: Some(*ms),
                ..Outcome::default()
            }),
            Behaviour::Undated => Ok(Outcome {
                action: "Pause".into(),
                result: "paused".into(),
                process: Some(process(200)),
                revert: Some(serde_json::json!({ "pid": 200 })),
                ..Outcome::default()
            }),
            Behaviour::Fail(kind) => Err(PluginError::new(kind.clone(), "the fake failed")),
            Behaviour::TwoPhase { ms, hold, apply } => {
                let state = serde_json::json!({ "pid": 300 });
                let outcome = |result: &str| Outcome {
                    action: "Pause".into(),
                    result: result.into(),
                    process: Some(process(300)),
                    revert: Some(state.clone()),
                    revert_after_ms: Some(*ms),
                    ..Outcome::default()
                };
                match request.phase {
                    Phase::Prepare => {
                        if let Some(hook) = &self.on_prepare {
                            hook();
                        }
                        Ok(outcome("prepared"))
                    }
                    Phase::Apply => {
                        assert_eq!(request.prepared.as_ref(), Some(&state));
                        if let Some(gate) = hold {
                            wait_at(gate);
                        }
                        match apply {
                            Some(kind) => Err(PluginError::new(kind.clone(), "the apply failed")),
                            None => Ok(outcome("paused")),
                        }
                    }
                    Phase::Whole => Ok(outcome(if request.dry_run { "dry-run" } else { "paused" })),
                }
            }
            Behaviour::Block(gate) => {
                wait_at(gate);
                Err(PluginError::new(ErrorKind::Failed, "released"))
            }
        }
    }

    fn prepares(&self) -> bool {
        matches!(self.behaviour, Behaviour::TwoPhase { .. })
    }

    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        if let Some(gate) = &self.revert_gate {
            wait_at(gate);
        }
        let failing = self.revert_failures.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
        if failing.is_ok() {
            return Err(PluginError::new(
                lock(&self.revert_failure_kind).clone(),
                "cannot open a pidfd: Too many open files",
            ));
        }
        lock(&self.reverts).push(state.clone());
        Ok(Outcome {
            result: "reverted".into(),
            summary: "let it go on".into(),
            ..Outcome::default()
        })
    }
}
