//! The watch of the fleet's keys, and how one that went silent is found out. A stream
//! can stay open and bring nothing: its member cut off from the leader (etcd cancels it
//! only when asked to require a leader, and only once it notices), or packets dropped
//! on the way after it connected. etcd's progress notifications come only every 10 min
//! by default (`--experimental-watch-progress-notify-interval`), too seldom to tell.
//! So every [`CHECK_EVERY`] etcd is asked how many keys there are and how many were
//! written after the last revision the watch told of (one transaction whose answer is
//! two numbers, however large the fleet), and the answer compared with what the watch
//! told: a difference
//! that stays over two looks while the stream brought no message at all means the
//! stream is dead; the caller reads the keys again and watches anew, from the next
//! endpoint. A change is thus seen within about 2 looks (2 s) even then, plus the time
//! a look takes when the endpoint it tries first no longer answers (1 s each).

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

/// Returns once the watch missed a change for a whole look (see the module).
async fn silent(shared: &Shared, ranges: &[Range], heard: &AtomicU64) -> String {
    // The messages heard before the first look that found a difference.
    let mut suspect: Option<u64> = None;
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
        if now == (count, 0) {
            suspect = None;
            continue;
        }
        match suspect {
            Some(count) if count == before => {
                return format!(
                    "the watch brought nothing for {} while the fleet's keys changed",
                    humantime::format_duration(CHECK_EVERY)
                )
            }
            _ => suspect = Some(before),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
