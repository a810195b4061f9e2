//! A one-shot fault through the door (`nightmare-monkey kill`): the command asks as every
//! trigger does (steady state, deadline, revert scheduled when due), prints the answer
//! itself, and stays until the fault's revert is over.

use std::future::Future;

use super::*;

impl Injector {
    /// The same door for a command that prints each fault's answer itself (`kill`): a
    /// fault's lines and a failure's line are not logged here (the command's answer says
    /// them); a revert's are, as always.
    pub fn answering_itself(mut self) -> Self {
        self.logs_faults = false;
        self
    }

    /// Whether fault `id` is in effect, its revert not begun.
    pub fn is_active(&self, id: &str) -> bool {
        self.engine.is_active(id)
    }

    /// Waits until fault `id`, due to be reverted at `due`, is reverted: when due, by the
    /// revert [`Injector::inject`] scheduled, or at once (journaled `interrupted`) when
    /// `interrupted` resolves first. A revert's plugin has the plugin timeout from when
    /// it starts; `Err(timeout)` if it has not answered by then (it goes on, abandoned).
    pub async fn until_reverted(
        &self,
        id: &str,
        due: DateTime<Utc>,
        interrupted: impl Future<Output = ()>,
    ) -> Result<(), Duration> {
        let timeout = self.engine.plugin_timeout();
        let wait = (due - Utc::now()).to_std().unwrap_or_default();
        let mut deadline = tokio::time::Instant::now() + wait + timeout;
        let mut interrupted = std::pin::pin!(interrupted);
        let mut asked = false;
        loop {
            // Listened for before looking, so that a revert ending meanwhile is heard.
            let ended = self.engine.revert_ended();
            let mut ended = std::pin::pin!(ended);
            ended.as_mut().enable();
            if !self.engine.is_active(id) && !self.is_reverting(id) {
                return Ok(());
            }
            tokio::select! {
                _ = &mut ended => {}
                _ = &mut interrupted, if !asked => {
                    asked = true;
                    if let Some(job) = self.engine.take(id, "interrupted") {
                        deadline = tokio::time::Instant::now() + timeout;
                        // Started on a thread of its own; its end is heard above.
                        run_all(vec![job], Duration::ZERO);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Err(timeout),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::injection::Ask,
        engine::{
            fake::{self, Behaviour, Fake},
            Guards,
        },
        support::lock::lock,
    };

    /// A one-shot injector over `fake` (real), plugin calls given `timeout`.
    fn door(fake: &Fake, timeout: Duration) -> Injector {
        let mut engine = Engine::new(1, true, Guards::default(), None).with_plugin_timeout(timeout);
        engine.add_fault("fake", "fake", fake.clone()).unwrap();
        Injector::new(Arc::new(engine), Notifiers::default()).answering_itself()
    }

    fn ask() -> Ask {
        Ask {
            fault: "fake".into(),
            desc: "once".into(),
            trigger: "cli",
            requested_by: None,
        }
    }

    #[tokio::test]
    async fn a_one_shot_fault_is_reverted_when_due_by_the_revert_the_door_scheduled() {
        let fake = Fake::new(Behaviour::Reversible { ms: 20 });
        let door = door(&fake, Duration::from_secs(10));
        let injection = door.inject(ask()).await.unwrap();
        let (id, due) = (injection.intent.id.clone(), injection.revert_due.unwrap());
        assert!(door.is_active(&id));
        let never = std::future::pending::<()>();
        assert_eq!(door.until_reverted(&id, due, never).await, Ok(()));
        assert!(!door.is_active(&id) && !door.is_reverting(&id));
        assert_eq!(*lock(&fake.reverts), [serde_json::json!({ "pid": 200 })]);
    }

    #[tokio::test]
    async fn an_interrupted_one_shot_fault_is_reverted_at_once() {
        let fake = Fake::new(Behaviour::Reversible { ms: 600_000 });
        let door = door(&fake, Duration::from_secs(10));
        let injection = door.inject(ask()).await.unwrap();
        let (id, due) = (injection.intent.id.clone(), injection.revert_due.unwrap());
        let started = std::time::Instant::now();
        assert_eq!(door.until_reverted(&id, due, async {}).await, Ok(()));
        assert!(started.elapsed() < Duration::from_secs(60));
        assert_eq!(lock(&fake.reverts).len(), 1);
    }

    #[tokio::test]
    async fn a_revert_that_never_answers_is_given_up_on_after_the_plugin_timeout() {
        let gate = fake::gate();
        let fake = Fake::new(Behaviour::Reversible { ms: 600_000 }).revert_held(&gate);
        let door = door(&fake, Duration::from_millis(50));
        let injection = door.inject(ask()).await.unwrap();
        let (id, due) = (injection.intent.id.clone(), injection.revert_due.unwrap());
        let answer = door.until_reverted(&id, due, async {}).await;
        assert_eq!(answer, Err(Duration::from_millis(50)));
        assert!(door.is_reverting(&id), "the revert goes on, abandoned");
        // Let the held revert go, so the runtime can shut down.
        fake::open(&gate);
    }

    #[tokio::test]
    async fn the_one_shot_door_asks_the_plugin_as_every_trigger_does() {
        let fake = Fake::new(Behaviour::Hit);
        let door = door(&fake, Duration::from_secs(10));
        door.switch(true).await;
        assert!(matches!(
            door.inject(ask()).await,
            Err(InjectError::Paused(_))
        ));
        assert!(fake.calls().is_empty(), "the kill switch holds for it too");
    }
}
