//! The faults in effect and their reverts: when due, now, at a pause, at shutdown; and
//! shutting down, which waits for the injections in flight and the reverts under way.

use super::*;

impl Engine {
    /// Resolves when a revert under way is next done (see [`Reverts::ended`]).
    pub(crate) fn revert_ended(&self) -> tokio::sync::futures::Notified<'_> {
        self.reverts.ended()
    }

    /// The monkey shuts down: every request is refused from now on, and an injection
    /// under way reverts what it leaves active as soon as its plugin answers.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.reverts.close();
    }

    /// The reverts whose plugin has not answered yet, as (id, fault): what may still be
    /// in effect though no longer listed as active.
    pub(crate) fn reverting(&self) -> Vec<Unfinished> {
        self.reverts.list()
    }

    /// Waits until no injection is in flight and no revert under way, at most `wait`;
    /// the reverts still under way. The injections first: one that ends while the monkey
    /// shuts down reverts what it left active at once, and that revert is waited for.
    pub(crate) fn settle(&self, wait: Duration) -> Vec<Unfinished> {
        let started = Instant::now();
        self.in_flight.settle(wait);
        self.reverts.settle(wait.saturating_sub(started.elapsed()))
    }

    /// The injections whose plugin has not answered yet, as (id, fault).
    pub(crate) fn in_flight(&self) -> Vec<(String, String)> {
        lock(&self.in_flight.all)
            .iter()
            .map(|(id, fault)| (id.clone(), fault.clone()))
            .collect()
    }

    /// Lists fault `id` (of `fault`, acting on `pid`), which a crashed run left active, as
    /// being reverted while its plugin's file still loads: in effect for `status` and the
    /// metrics, its process chosen by no other fault, named if the monkey shuts down
    /// before its revert is done.
    pub(crate) fn awaiting_plugin(&self, id: &str, fault: &str, pid: Option<u32>) {
        self.reverts.add(id, fault, pid);
        self.reverts.note(
            id,
            Some("which waits for its plugin file to load".to_owned()),
        );
    }

    /// Lists fault `id` (of `fault`, acting on `pid`), which a crashed run left active
    /// and no plugin here can revert, as in effect for as long as the daemon runs: in
    /// `status` and the metrics, saying `why`, its process chosen by no other fault, and
    /// named when the monkey shuts down (the journal keeps it for the next start).
    pub(crate) fn stranded(&self, id: &str, fault: &str, pid: Option<u32>, why: String) {
        self.reverts.add(id, fault, pid);
        self.reverts.note(id, Some(why));
        self.reverts.strand(id);
    }

    /// Whether each of `unfinished` is one [`Engine::stranded`] listed: nothing this run
    /// did, nothing it holds (a fleet's slot among them).
    pub(crate) fn only_stranded(&self, unfinished: &[Unfinished]) -> bool {
        self.reverts
            .all_stranded(unfinished.iter().map(|u| u.id.as_str()))
    }

    /// Waits shorter between the tries of a failed revert (tests).
    #[cfg(test)]
    pub(crate) fn with_revert_retry(mut self, retry: Backoff) -> Self {
        self.revert_retry = retry;
        self
    }

    /// The revert of the active fault `id`, taken off the active ones (once: `None` if
    /// it is not active any more).
    pub(crate) fn take(&self, id: &str, reason: &str) -> Option<RevertJob> {
        // Listed as reverting before it leaves the active ones: never in neither list.
        let mut all = lock(&self.active);
        let active = all.remove(id)?;
        self.reverts.set_active(all.len());
        let slot = self.faults.get(&active.fault)?;
        let job = self.revert_job(slot.fault.clone(), id, &active.fault, active.state, reason);
        Some(job.acting_on(active.pid))
    }

    /// Reverts the active fault `id` now (journaled with the reason `asked`), on a thread
    /// of its own, waiting at most `wait`: which fault it was, and whether its revert was still under way
    /// then. `None` if it is not active (never was, or already reverted or reverting).
    pub(crate) fn revert_now(&self, id: &str, wait: Duration) -> Option<(String, bool)> {
        let job = self.take(id, "asked")?;
        let fault = job.fault_name.clone();
        let under_way = !run_all(vec![job], wait).is_empty();
        Some((fault, under_way))
    }

    /// Whether fault `id` is active (in effect, its revert not begun).
    pub(crate) fn is_active(&self, id: &str) -> bool {
        lock(&self.active).contains_key(id)
    }

    /// The active faults, as (id, fault).
    pub(crate) fn active(&self) -> Vec<Unfinished> {
        lock(&self.active)
            .iter()
            .map(|(id, a)| Unfinished {
                id: id.clone(),
                fault: a.fault.clone(),
                why: None,
            })
            .collect()
    }

    /// Reverts the active fault `id` here and now (once: `None` if it is not active any
    /// more).
    #[cfg(test)]
    pub(crate) fn revert(
        &self,
        id: &str,
        reason: &str,
    ) -> Option<nightmare_monkey_plugin_api::sdk::Outcome> {
        self.take(id, reason).map(RevertJob::run)
    }

    /// The revert of fault `id` (of the configured fault `fault_name`) with `fault`,
    /// whose revert state is `state`: for active faults and for those a crash left
    /// behind.
    pub(crate) fn revert_job(
        &self,
        fault: Arc<dyn Fault>,
        id: &str,
        fault_name: &str,
        state: serde_json::Value,
        reason: &str,
    ) -> RevertJob {
        RevertJob {
            id: id.to_owned(),
            fault_name: fault_name.to_owned(),
            fault,
            state,
            reason: reason.to_owned(),
            journal: self.journal.clone(),
            reverts: self.reverts.clone(),
            retry: self.revert_retry,
            pid: None,
            may_wait: true,
            unlist: true,
        }
        .listed()
    }

    /// Reverts every active fault (on shutdown and on pause), each on a thread of its
    /// own, waiting at most `wait`; returns those whose plugin had not answered by then.
    pub(crate) fn revert_all(&self, reason: &str, wait: Duration) -> Vec<Unfinished> {
        // Counted before the list is read: an injection that lists its fault after this
        // sees the count moved, and reverts it itself.
        self.sweeps.fetch_add(1, Ordering::SeqCst);
        let ids: Vec<String> = lock(&self.active).keys().cloned().collect();
        let jobs = ids.iter().filter_map(|id| self.take(id, reason)).collect();
        run_all(jobs, wait)
    }

    /// Reverts every fault in effect admitted under a lease other than `lease` (see
    /// [`Engine::held_outside_lease`]), as [`Engine::revert_all`] does.
    pub(crate) fn revert_outside_lease(
        &self,
        lease: Option<&str>,
        reason: &str,
        wait: Duration,
    ) -> Vec<Unfinished> {
        // Counted before the list is read, as in `revert_all`.
        self.lease_sweeps.fetch_add(1, Ordering::SeqCst);
        let ids = self.held_outside_lease(lease);
        let jobs = ids.iter().filter_map(|id| self.take(id, reason)).collect();
        run_all(jobs, wait)
    }
}
