//! The watch of the fleet's keys, and how one that went silent is found out. A stream
//! can stay open and bring nothing: its member cut off from the leader (etcd cancels it
//! only when asked to require a leader, and only once it notices), or packets dropped
//! on the way after it connected. etcd's progress notifications come only every 10 min
//! by default (`--experimental-watch-progress-notify-interval`), too seldom to tell.
//! So every [`CHECK_EVERY`] etcd is asked how many keys there are and how many were
//! written after the last revision the watch told of (one transaction whose answer is
//! two numbers a range, however large the fleet), and the answer compared with what the
//! watch told (see [`Silence`]): a stream that brought no message at all over
//! [`QUIET_LOOKS`] whole looks while etcd held changes it had not told, at each look,
//! is dead; the caller reads the keys again and watches anew, from the next endpoint.
//! A change is thus seen within about 3 looks (3 s) even then, plus the time a look
//! takes when the endpoint it tries first no longer answers (1 s each).
//!
//! A stream that lags is told from a silent one by what it brings: one whose messages
//! keep coming, however late, is never restarted. But a stream that starts to lag by L
//! brings nothing for L while the changes wait, as a dead one would; a lag under
//! [`QUIET_LOOKS`] looks (a member's pause: a garbage collection, a slow fsync) is
//! waited out, a longer one is taken for silence: by then the switch's second is long
//! broken, and a fresh read, from the next endpoint, is the cure.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use super::{
    config::FleetConfig,
    gateway::{Range, CALL_TIMEOUT},
    shared::Shared,
};
use crate::support::lock::lock;

/// How often the watch is checked against a read of its keys.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The keys the watch follows: those an admission decides on before it asks, and the
/// switch. `budget/`, `gap` and `limits/` (one range, up to `members/`), `roster` and
/// `switch`; not the slots, which an admission's transaction finds free for itself
/// (see `admission`), nor what each node says of itself (`members/`): both change with
/// every fault, and each change would be sent to every node of the fleet.
pub(super) fn ranges(config: &FleetConfig) -> Vec<Range> {
    let key = |name: &str| format!("{}/{name}", config.prefix).into_bytes();
    let one = |name: &str| {
        let key = key(name);
        let mut end = key.clone();
        end.push(0);
        (key, end)
    };
    vec![
        (key("budget/"), key("members/")),
        one("roster"),
        one("switch"),
    ]
}

/// Whether `key` is among the keys of `ranges`.
pub(super) fn within(ranges: &[Range], key: &str) -> bool {
    let key = key.as_bytes();
    ranges
        .iter()
        .any(|(from, to)| key >= from.as_slice() && key < to.as_slice())
}

/// Watches the keys of `ranges` from revision `from` (the switch follows), until the
/// stream ends, fails, or is found silent while the keys changed.
pub(super) async fn follow(shared: &Shared, ranges: &[Range], from: i64) -> Result<(), String> {
    let heard = AtomicU64::new(0);
    tokio::select! {
        watched = shared.gateway.watch(ranges, from, &heard, |deleted, kv| shared.see(deleted, kv)) => watched,
        why = silent(shared, ranges, &heard) => Err(why),
    }
}

/// Returns once the watch is found silent (see the module).
async fn silent(shared: &Shared, ranges: &[Range], heard: &AtomicU64) -> String {
    let mut silence = Silence::default();
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let before = heard.load(Ordering::Relaxed);
        let told: Option<(u64, i64)> = lock(&shared.seen).as_ref().map(|seen| {
            let newest = seen.values().map(|kv| kv.mod_revision).max().unwrap_or(0);
            (seen.len() as u64, newest)
        });
        let Some((count, newest)) = told else {
            continue;
        };
        let read = tokio::time::timeout(
            CALL_TIMEOUT * 2,
            shared.gateway.changes_after(ranges, newest),
        )
        .await;
        let Ok(Ok(now)) = read else {
            // Nothing to compare with: no judgement.
            continue;
        };
        if silence.look(before, now != (count, 0)) {
            return format!(
                "the watch brought nothing for {} while the fleet's keys changed",
                humantime::format_duration(CHECK_EVERY * QUIET_LOOKS)
            );
        }
    }
}

/// How many whole looks a stream may bring nothing while changes wait before it is
/// taken for dead.
pub const QUIET_LOOKS: u32 = 2;

/// The looks at a watch so far: since the first of the looks in a row that found it
/// behind and nothing heard since, the messages heard then and the looks after it.
#[derive(Debug, Default)]
struct Silence {
    since: Option<(u64, u32)>,
}

impl Silence {
    /// One look: the messages the stream had brought when it began (`heard`), and
    /// whether etcd held changes the watch had not told (`behind`). Whether the stream
    /// is silent: it brought nothing over [`QUIET_LOOKS`] looks, behind at each.
    fn look(&mut self, heard: u64, behind: bool) -> bool {
        match &mut self.since {
            _ if !behind => self.since = None,
            Some((then, looks)) if *then == heard => {
                *looks += 1;
                return *looks >= QUIET_LOOKS;
            }
            // Behind, but it brought something since: lagging, not silent.
            _ => self.since = Some((heard, 0)),
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Looks every `every` (s, from `phase`) at a stream that told each change of a
    /// change every 0.2 s (from 0) `lag` s late, up to `until`: the time it was found
    /// silent, if it was.
    fn judged(lag: f64, every: f64, phase: f64, until: f64) -> Option<f64> {
        let mut silence = Silence::default();
        let mut at = phase;
        while at < until {
            // The changes made by `at`, and those the stream brought by then.
            let made = (at / 0.2).floor() as u64 + 1;
            let heard = if at >= lag {
                ((at - lag) / 0.2).floor() as u64 + 1
            } else {
                0
            };
            if silence.look(heard, heard < made) {
                return Some(at);
            }
            at += every;
        }
        None
    }

    #[test]
    fn a_stream_that_lags_less_than_the_quiet_looks_is_never_taken_for_silent() {
        // Looks 1 s apart or a little more (a look's read takes time), at every phase.
        for lag in [0.0, 0.5, 1.0, 1.3, 1.5, 1.9] {
            for every in [1.0, 1.05, 1.2] {
                for tenth in 0..10 {
                    let phase = f64::from(tenth) / 10.0 + 0.01;
                    assert_eq!(
                        judged(lag, every, phase, 30.0),
                        None,
                        "lag {lag} s, looks every {every} s from {phase} s"
                    );
                }
            }
        }
    }

    #[test]
    fn a_stream_that_brings_nothing_is_silent_at_the_third_look_behind() {
        let mut silence = Silence::default();
        assert!(!silence.look(5, false));
        assert!(!silence.look(5, true));
        assert!(!silence.look(5, true));
        assert!(silence.look(5, true));
        // A message between two looks starts the count again; a look not behind ends it.
        let mut silence = Silence::default();
        assert!(!silence.look(5, true));
        assert!(!silence.look(5, true));
        assert!(!silence.look(6, true));
        assert!(!silence.look(6, true));
        assert!(!silence.look(6, false));
        assert!(!silence.look(6, true));
        assert!(!silence.look(6, true));
        assert!(silence.look(6, true));
        // And a stream that never starts to bring the changes is found within 3 looks.
        assert_eq!(judged(1000.0, 1.0, 0.5, 30.0), Some(2.5));
    }

    #[test]
    fn the_watch_follows_what_an_admission_decides_on_but_the_slots_and_the_members() {
        let config = FleetConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            prefix: "/nm/f".to_owned(),
            credentials: None,
            tls: None,
            max_concurrent: 1,
            budget: None,
            min_gap: None,
            lease_ttl: Duration::from_secs(10),
        };
        let ranges = ranges(&config);
        for followed in [
            "/nm/f/switch",
            "/nm/f/roster",
            "/nm/f/gap",
            "/nm/f/budget/0",
            "/nm/f/budget/17",
            "/nm/f/limits/web-1",
        ] {
            assert!(within(&ranges, followed), "{followed}");
        }
        for not in [
            "/nm/f/slots/0",
            "/nm/f/members/web-1",
            "/nm/f/admissions/0001764979200000-web-1-0",
            "/nm/f/switch2",
            "/nm/f/rosterx",
            "/nm/fx/switch",
            "/nm/f",
        ] {
            assert!(!within(&ranges, not), "{not}");
        }
    }
}
