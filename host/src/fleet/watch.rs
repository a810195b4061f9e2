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

use super::{gateway::CALL_TIMEOUT, shared::Shared};
use crate::support::lock::lock;

/// How often the watch is checked against a read of its keys.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Watches the keys of `range` from revision `from` (the switch follows), until the
/// stream ends, fails, or is found silent while the keys changed.
pub(super) async fn follow(
    shared: &Shared,
    range: (&[u8], &[u8]),
    from: i64,
) -> Result<(), String> {
    let heard = AtomicU64::new(0);
    tokio::select! {
        watched = shared.gateway.watch(range, from, &heard, |deleted, kv| shared.see(deleted, kv)) => watched,
        why = silent(shared, range, &heard) => Err(why),
    }
}

/// Returns once the watch missed a change for a whole look (see the module).
async fn silent(shared: &Shared, range: (&[u8], &[u8]), heard: &AtomicU64) -> String {
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
            shared.gateway.changes_after(range.0, range.1, newest),
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
