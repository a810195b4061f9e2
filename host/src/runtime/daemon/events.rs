//! What ends the daemon's wait: SIGTERM or SIGINT, the sandbox's command exiting, a
//! SIGHUP whose configuration checks out, or plugin files that loaded with errors.

use std::sync::{Arc, RwLock};

use super::{
    restart::{check_again, Running},
    Ending,
};
use crate::{
    cli::DaemonArgs,
    config::ConfigErrors,
    engine::Engine,
    output::log,
    runtime::{setup, stop},
    triggers::http::PluginList,
};

/// Where the plugin files still loading at the start say how it went.
pub(super) type Told = tokio::sync::oneshot::Receiver<Result<setup::Loaded, ConfigErrors>>;

/// Why the wait ended.
pub(super) struct End {
    /// What ended it, as the log line "Nightmare Monkey goes to bed (SIGTERM)." names it.
    pub signal: &'static str,
    /// Stop or restart.
    pub ending: Ending,
    /// The configuration's errors, when plugin files that loaded late brought some.
    pub refused: Option<ConfigErrors>,
}

/// What a signal asks for.
enum Event {
    /// Stop, for this reason.
    Stop(&'static str),
    /// SIGHUP: check the configuration again.
    Hangup,
    /// Every plugin file still loading at the start has answered: what they brought, or
    /// the errors of the configuration (`None`: the thread loading them ended without
    /// a word).
    Loaded(Option<Result<setup::Loaded, ConfigErrors>>),
}

/// Waits for the end: a stop signal (one that came before the runtime was there
/// included), the sandbox's command exiting (`ended`), a SIGHUP whose configuration
/// checks out (a stop that came during the check wins), or the plugin files still
/// loading (`loaded`) leaving the configuration with errors. When they load well, their
/// plugins join the list `/api/plugins` shows.
pub(super) async fn wait_for_end(
    signals: &mut stop::Waiter,
    mut ended: Option<tokio::sync::oneshot::Receiver<()>>,
    mut loaded: Option<Told>,
    plugins: &Arc<RwLock<PluginList>>,
    args: Option<&DaemonArgs>,
    engine: &Engine,
    running: &Running,
) -> End {
    let stop = |signal| End {
        signal,
        ending: Ending::Stop,
        refused: None,
    };
    loop {
        // A signal that came before the runtime was there (the start) is answered first.
        let ended = async {
            match ended.as_mut() {
                Some(ended) => {
                    let _ = ended.await;
                }
                None => std::future::pending().await,
            }
        };
        let all_loaded = async {
            match loaded.as_mut() {
                Some(told) => told.await.ok(),
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            biased;
            event = signals.next() => Event::from(event),
            () = ended => Event::Stop("the sandbox's command exited"),
            done = all_loaded => Event::Loaded(done),
        };
        match event {
            Event::Stop(why) => return stop(why),
            Event::Loaded(done) => {
                loaded = None;
                let refused = match done {
                    Some(Ok(done)) => {
                        take_in(&done, plugins);
                        continue;
                    }
                    Some(Err(errors)) => errors,
                    None => ConfigErrors(vec![
                        "loading the plugin files ended without a word".to_owned()
                    ]),
                };
                return End {
                    signal: "the plugin files left the configuration with errors",
                    ending: Ending::Stop,
                    refused: Some(refused),
                };
            }
            Event::Hangup => {
                // A stop that comes while the file is checked (plugin files may take a
                // plugin timeout to load) wins at once: the check is left to its thread.
                let check = check_again(
                    args,
                    Running {
                        busy: engine.active().len()
                            + engine.reverting().len()
                            + engine.in_flight().len(),
                        ..running.clone()
                    },
                );
                tokio::pin!(check);
                let checked = loop {
                    tokio::select! {
                        checked = &mut check => break checked,
                        event = signals.next() => {
                            if let stop::Event::Stop(why) = event {
                                log::line(format!("{why} during the SIGHUP check: stopping instead"));
                                return stop(why);
                            }
                            // Another SIGHUP: this check answers for it too.
                        }
                    }
                };
                if checked && stop::requested().is_none() {
                    return End {
                        signal: "SIGHUP: restarting with the new configuration",
                        ending: Ending::Restart {
                            paused: engine.switched_off(),
                            halted: engine.halted(),
                        },
                        refused: None,
                    };
                }
            }
        }
    }
}

/// Says what the plugin files that loaded late brought, and lists their plugins.
fn take_in(done: &setup::Loaded, plugins: &RwLock<PluginList>) {
    for warning in &done.warnings {
        crate::output::metrics::get().plugin_load_failed();
        log::line(format!("warning: {warning}"));
    }
    for warning in &done.untrusted {
        log::line(format!("warning: {warning}"));
    }
    let mut list = plugins.write().unwrap_or_else(|p| p.into_inner());
    list.loaded.extend(done.plugins.values().map(|p| p.info()));
    list.loaded.sort_by(|a, b| a.name.cmp(&b.name));
    list.loading.clear();
    log::line(format!(
        "Plugin files loaded: {}",
        if done.plugins.is_empty() {
            "none of them brought a plugin".to_owned()
        } else {
            done.plugins.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    ));
}

impl From<stop::Event> for Event {
    fn from(event: stop::Event) -> Self {
        match event {
            stop::Event::Stop(why) => Event::Stop(why),
            stop::Event::Hangup => Event::Hangup,
        }
    }
}
