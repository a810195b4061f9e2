//! The timer trigger: wait, fire, log, as the original did; the schedule and the window
//! come from the config, the draws from the `trigger/timer` stream.

use chrono::Utc;
use serde::Deserialize;
use tokio::sync::watch;

use crate::{
    dispatch::Injector,
    domain::{
        injection::{Ask, InjectError},
        schedule::Timer,
    },
    output::log,
};

/// The timer's description, the original's.
pub const TIMER_DESC: &str = "by monkey";

/// The built-in fault the timer and `/api/kill` fire by default: the one a config that
/// names no fault has.
pub const DEFAULT_FAULT: &str = "process-kill";

/// The timer as written (`timer: (enabled: true, fault: "process-kill")`); its
/// schedule is `schedule:`, beside it. Without `fault`, the config picks one (see
/// `config::timer_fault`).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename = "timer")]
pub struct RawTimer {
    /// Whether the timer fires at all.
    pub enabled: bool,
    /// The fault it fires (and `/api/kill` too), if named.
    pub fault: Option<String>,
}

impl Default for RawTimer {
    fn default() -> Self {
        Self {
            enabled: true,
            fault: None,
        }
    }
}

/// Fires `fault` on the timer's schedule until told to stop.
pub async fn run(
    injector: Injector,
    mut timer: Timer,
    fault: String,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // Told to stop before it first ran (a stop during the start): it says nothing.
        if *stop.borrow() {
            injector.set_next(None);
            return;
        }
        let now = Utc::now();
        let Some(fire) = timer.next(now) else {
            injector.set_next(None);
            log::line("The schedule never fires again: the timer stops.");
            return;
        };
        let wait = (fire.at - now).to_std().unwrap_or_default();
        injector.set_next(Some((fire.at, fault.clone(), fire.in_window)));
        // The original's line, byte for byte, then the same as a clock time.
        log::line(format!("Next: {} seconds after", wait.as_secs()));
        // Outside the window the timer wakes and sleeps on: no fault then.
        log::line(if fire.in_window {
            format!("Next fault: {fault} at {}", injector.clock(fire.at))
        } else {
            format!(
                "Next fault: none at {}: outside the window, the timer wakes, sleeps on and draws again",
                injector.clock(fire.at)
            )
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => {
                injector.set_next(None);
                return;
            }
        }
        let ask = Ask {
            fault: fault.clone(),
            desc: TIMER_DESC.to_owned(),
            trigger: "timer",
            requested_by: None,
        };
        match injector.inject(ask).await {
            Err(InjectError::Sleeping { .. }) => {
                log::line("Nightmare Monkey is sleeping with good dream.")
            }
            Err(e) if e.is_refusal() => log::line(format!("{e}: the timer skips this one")),
            // A failure is logged once, by the injector.
            _ => {}
        }
    }
}
