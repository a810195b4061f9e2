//! Recovery watching: after a fault, its recovery probes are polled until they pass
//! (the time to recover), also across a restart, and what they saw is journaled.

use super::*;

/// Where a recovery watch starts.
pub(super) enum Watched {
    /// A fault just injected: from its end (reversible: its revert, awaited).
    Injected {
        revert_due: Option<DateTime<Utc>>,
        done: DateTime<Utc>,
    },
    /// A fault of an earlier run: from this instant, past its deadline or not.
    Since { from: DateTime<Utc>, overdue: bool },
}

impl Injector {
    /// Polls `recovery`'s probes after `injection` (after its revert, for a reversible
    /// fault) until they all pass: `recovered` with the time to recover, or
    /// `not-recovered` at the deadline and then, if it comes within
    /// [`RECOVERY_LOOKS_AFTER`] deadlines, a late `recovered`.
    pub(super) fn watch_recovery(&self, injection: &Injection, recovery: Recovery) {
        self.watch(
            injection.intent.id.clone(),
            injection.intent.fault.clone(),
            Watched::Injected {
                revert_due: injection.revert_due,
                done: injection.done,
            },
            recovery,
        );
    }

    /// Takes up again, after a start (a SIGHUP restart, a crash), the recovery watches
    /// the last run left: every real fault of a configured recovery, in the journal, with
    /// no recovery record yet (or only `not-recovered`), still within
    /// [`RECOVERY_LOOKS_AFTER`] deadlines of it. A watch is not lost to a reload.
    pub fn resume_recoveries(&self) {
        let Some(longest) = self
            .probes
            .values()
            .filter_map(|p| p.recovery.as_ref())
            .map(|r| r.deadline * RECOVERY_LOOKS_AFTER)
            .max()
        else {
            return;
        };
        let Some(path) = self.journal_path() else {
            return;
        };
        let now = Utc::now();
        let since = now - chrono::TimeDelta::from_std(longest).unwrap_or_default();
        let Ok(page) = crate::storage::history::page(
            &path,
            crate::storage::history::Query {
                since: Some(since),
                limit: crate::storage::history::MAX_LIMIT,
                ..Default::default()
            },
        ) else {
            return;
        };
        for entry in page.entries {
            let Some(recovery) = self
                .probes
                .get(&entry.intent.fault)
                .and_then(|p| p.recovery.clone())
            else {
                continue;
            };
            if entry.recovered.is_some() || !crate::storage::report::was_real(&entry) {
                continue;
            }
            let Some(outcome) = &entry.outcome else {
                continue;
            };
            // From the revert for a reversible fault (the start's recovery reverted what
            // was still active), else from the injection.
            let from = match (&entry.reverted, outcome.revert_due) {
                (Some(r), _) => r.at,
                (None, Some(_)) => now,
                (None, None) => outcome.at,
            };
            log::line(format!(
                "recovery: {} ({}) watched again after the restart",
                entry.intent.fault, entry.intent.id
            ));
            self.watch(
                entry.intent.id.clone(),
                entry.intent.fault.clone(),
                Watched::Since {
                    from,
                    overdue: entry.not_recovered.is_some(),
                },
                recovery,
            );
        }
    }

    fn watch(&self, id: String, fault: String, watched: Watched, recovery: Recovery) {
        let door = self.clone();
        tokio::spawn(async move {
            let give_up = recovery.deadline * RECOVERY_LOOKS_AFTER;
            let (from, mut overdue) = match watched {
                Watched::Injected {
                    revert_due: Some(due),
                    ..
                } => match door.reverted(&id, due, give_up).await {
                    Some(at) => (at, false),
                    None => return,
                },
                Watched::Injected { done, .. } => (done, false),
                Watched::Since { from, overdue } => (from, overdue),
            };
            let deadline =
                from + chrono::TimeDelta::from_std(recovery.deadline).unwrap_or_default();
            let end = from + chrono::TimeDelta::from_std(give_up).unwrap_or_default();
            loop {
                let failed = first_failure(&recovery.probes).await;
                let now = Utc::now();
                let Some((probe, reason)) = failed else {
                    let ttr_ms = (now - from).num_milliseconds().max(0) as u64;
                    log::line(format!(
                        "recovery: {fault} ({id}) recovered in {ttr_ms} ms{}",
                        if overdue {
                            " (late: after its deadline)"
                        } else {
                            ""
                        }
                    ));
                    metrics::get().recovery(&fault, if overdue { "late" } else { "recovered" });
                    metrics::get().recovered(ttr_ms);
                    door.note(Record::Recovered(RecoveredRecord {
                        id,
                        at: now,
                        ttr_ms,
                        late: overdue,
                    }))
                    .await;
                    return;
                };
                if !overdue && now >= deadline {
                    overdue = true;
                    let reason = format!("{probe}: {reason}");
                    log::line(format!(
                        "recovery: {fault} ({id}) not recovered within {}: {reason}",
                        humantime::format_duration(recovery.deadline)
                    ));
                    metrics::get().recovery(&fault, "not-recovered");
                    let record = Record::NotRecovered(NotRecoveredRecord {
                        id: id.clone(),
                        at: now,
                        deadline_ms: recovery.deadline.as_millis() as u64,
                        reason: reason.clone(),
                    });
                    door.notifiers.tell_event(
                        &format!("not-recovered of {id}"),
                        &format!(
                            "{fault} ({id}) not recovered within {}: {reason}",
                            humantime::format_duration(recovery.deadline)
                        ),
                        serde_json::to_value(&record).unwrap_or_default(),
                    );
                    door.note(record).await;
                }
                if now >= end {
                    log::line(format!(
                        "recovery: {fault} ({id}) still not recovered after {}: no longer watched",
                        humantime::format_duration(give_up)
                    ));
                    return;
                }
                // Not past the deadline unsaid: the record comes at the deadline.
                let mut wait = recovery.every;
                if !overdue {
                    wait = wait.min((deadline - now).to_std().unwrap_or_default());
                }
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// Waits until the reversible fault `id`, due to be reverted at `due`, is reverted
    /// (neither active nor being reverted), at most `bound` past `due`; when. The engine
    /// says when a revert is done (a pause or a halt may revert it before `due`): the
    /// instant, the time to recover's start, is the one it was done at.
    async fn reverted(
        &self,
        id: &str,
        due: DateTime<Utc>,
        bound: Duration,
    ) -> Option<DateTime<Utc>> {
        let end = due + chrono::TimeDelta::from_std(bound).unwrap_or_default();
        loop {
            // Listening before looking: a revert done in between still wakes this.
            let ended = self.engine.revert_ended();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let reverting = self.engine.reverting().iter().any(|u| u.id == id);
            if !self.engine.is_active(id) && !reverting {
                return Some(Utc::now());
            }
            let left = (end - Utc::now()).to_std().ok().filter(|d| !d.is_zero())?;
            tokio::select! {
                () = &mut ended => {}
                () = tokio::time::sleep(left) => {}
            }
        }
    }

    /// Appends `record` to the journal off the runtime (a writer may hold its lock).
    pub(super) async fn note(&self, record: Record) {
        let engine = self.engine.clone();
        let _ = on_own_thread("journal", move || engine.note(&record)).await;
    }
}
