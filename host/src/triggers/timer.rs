//! The timer trigger: wait, fire, log, as the original did; the schedule and the window
//! come from the config, the draws from the `trigger/timer` stream.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::watch;

use crate::{
    config::TIMER_DESC,
    daemon,
    engine::{Ask, Engine, InjectError},
    log,
    schedule::Timer,
};

/// Fires `fault` on the timer's schedule until told to stop.
pub async fn run(
    engine: Arc<Engine>,
    mut timer: Timer,
    fault: String,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let now = Utc::now();
        let Some(fire) = timer.next(now) else {
            log::line("The schedule never fires again: the timer stops.");
            return;
        };
        let wait = (fire.at - now).to_std().unwrap_or_default();
        log::line(format!("Next: {} seconds after", wait.as_secs()));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let ask = Ask {
            fault: fault.clone(),
            desc: TIMER_DESC.to_owned(),
            trigger: "timer",
            requested_by: None,
        };
        match daemon::inject(engine.clone(), ask).await {
            Err(InjectError::Sleeping { .. }) => {
                log::line("Nightmare Monkey is sleeping with good dream.")
            }
            Err(e @ (InjectError::Paused(_) | InjectError::OverBudget { .. })) => {
                log::line(format!("{e}: the timer skips this one"))
            }
            _ => {}
        }
    }
}
