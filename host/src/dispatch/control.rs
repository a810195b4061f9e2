//! The operator's controls through the one door: the kill switch, a halt, an
//! acknowledgement, a revert now, and shutting down.

use super::*;
use crate::domain::drill::{AckError, Acknowledged, ResumedRecord};

impl Injector {
    /// The monkey pauses itself because `probe` failed for too long (`reason`): exactly
    /// as the kill switch does (every active fault reverted), saying why; journaled
    /// `halted`. `resume` is manual.
    pub async fn halt(&self, probe: String, reason: String) -> Switched {
        self.engine.set_halted(format!("{probe}: {reason}"));
        metrics::get().halted();
        let text = format!(
            "halt: {probe}: {reason}: paused, every active fault reverted; POST /api/resume to resume"
        );
        let record = Record::Halted(HaltedRecord {
            at: Utc::now(),
            probe,
            reason,
        });
        self.notifiers.tell_event(
            "halt",
            &text,
            serde_json::to_value(&record).unwrap_or_default(),
        );
        self.note(record).await;
        self.revert_all("halt", SWITCH_WAIT).await;
        Switched {
            paused: self.engine.paused().map(|p| p.to_string()),
            reverting: self.engine.reverting(),
        }
    }

    /// Marks a fault noticed by `by` (the one `id` names, else the latest unnoticed real
    /// fault of the last day), on a thread of its own (it reads the journal), and logs
    /// it there, so a caller that stops waiting loses neither. `None`: the thread could
    /// not be started.
    pub async fn acknowledge(
        &self,
        by: String,
        id: Option<String>,
        started: Option<DateTime<Utc>>,
    ) -> Option<Result<Acknowledged, AckError>> {
        let engine = self.engine.clone();
        on_own_thread("ack", move || {
            let done = engine.acknowledge(&by, id.as_deref(), started, Utc::now());
            if let Ok(ack) = &done {
                crate::output::metrics::get().detected(ack.ttd_ms);
                log::line(format!(
                    "Detected: {} ({}) {} by {} after {}",
                    ack.id,
                    ack.fault,
                    ack.target,
                    ack.by,
                    crate::domain::drill::human_ms(ack.ttd_ms)
                ));
            }
            done
        })
        .await
    }

    /// Turns the kill switch on or off (off: unless the pause file holds it on, which
    /// leaves it as it was). On: every request is refused from this instant,
    /// and every active fault is reverted, each on a thread of its own; the answer comes
    /// after [`SWITCH_WAIT`] at most, naming the reverts still under way. A resume that
    /// ends a halt is journaled `resumed`: until then, a start after a crash starts
    /// halted.
    pub async fn switch(&self, on: bool) -> Switched {
        let halted = self.engine.halted();
        // A resume the pause file refuses changes nothing: the switch stays as it was.
        if on || !self.engine.pause_file_holds() {
            self.engine.set_paused(on);
        }
        if let Some(halt) = halted.filter(|_| self.engine.halted().is_none()) {
            let at = Utc::now();
            self.note(Record::Resumed(ResumedRecord { at, halt })).await;
        }
        if on {
            self.revert_all("pause", SWITCH_WAIT).await;
        }
        let paused = self.engine.paused().map(|p| p.to_string());
        events::publish("switch", serde_json::json!({ "paused": paused }));
        Switched {
            paused,
            reverting: self.engine.reverting(),
        }
    }

    /// Reverts the active fault `id` at once ("revert now"), on a thread of its own,
    /// waiting at most [`SWITCH_WAIT`] for its plugin: which fault it was and whether
    /// its revert is still under way. `Ok(None)`: no such fault is active; `Err`: no
    /// thread could be started for it (nothing was taken: try again).
    pub async fn revert(&self, id: String) -> Result<Option<(String, bool)>, ()> {
        let engine = self.engine.clone();
        on_own_thread("revert", move || engine.revert_now(&id, SWITCH_WAIT))
            .await
            .ok_or(())
    }

    /// Whether fault `id`'s revert is under way (its plugin has not answered, or it is
    /// being tried again).
    pub fn is_reverting(&self, id: &str) -> bool {
        self.engine.reverting().iter().any(|r| r.id == id)
    }

    /// Reverts every active fault, each on a thread of its own, waiting at most `wait`,
    /// without blocking the runtime (in line only if no thread can be started at all).
    async fn revert_all(&self, reason: &'static str, wait: Duration) {
        let engine = self.engine.clone();
        if on_own_thread(reason, move || engine.revert_all(reason, wait))
            .await
            .is_none()
        {
            self.engine.revert_all(reason, Duration::ZERO);
        }
    }

    /// Shuts down: refuses every request from now on, reverts every active fault, each
    /// on a thread of its own, and waits for them at most `wait`, as for the notifiers'
    /// last words (a notification cut off says so). Returns what was abandoned:
    /// injections whose plugin never answered (id, fault), and reverts still under way
    /// (these and any the kill switch started). Either may have left something in
    /// effect.
    pub async fn close(&self, wait: Duration) -> (Vec<(String, String)>, Vec<Unfinished>) {
        self.engine.close();
        let reverts = async {
            let started = tokio::time::Instant::now();
            self.revert_all("shutdown", wait).await;
            // Reverts started before (due, pause, retrying) get the rest of the wait too.
            let engine = self.engine.clone();
            let left = wait.saturating_sub(started.elapsed());
            on_own_thread("shutdown", move || engine.settle(left))
                .await
                .unwrap_or_else(|| self.engine.reverting())
        };
        let (mut unfinished, ()) = tokio::join!(reverts, self.notifiers.settle(wait));
        unfinished.extend(self.engine.active());
        (self.engine.in_flight(), unfinished)
    }
}
