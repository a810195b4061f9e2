//! The fleet's admissions, readable afterwards (`history --fleet`): each admission also
//! writes `<prefix>/admissions/<ms>-<node>-<slot>` (who got which fault when) in its own
//! transaction, tied to a lease of the node's that ends [`keep`] or a little more
//! after: etcd forgets an admission when its clock says so, never a node's (a node
//! whose clock ran days ahead once swept the others' away). A node uses one such lease
//! for [`fresh`] and then asks for the next, ahead of need: a few dozen live leases a
//! node, and no round trip more while the fleet is busy.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    config::FleetConfig,
    gateway::{prefix_end, Gateway, Kv, Op},
};

/// The least time an admission is kept, even with a shorter fleet budget or none.
pub const KEEP_AT_LEAST: Duration = Duration::from_secs(24 * 3600);

/// One admission as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admitted {
    /// When (the admitting node's clock, RFC 3339 to the millisecond).
    pub at: String,
    pub node: String,
    pub fault: String,
    pub slot: u32,
    /// The fencing token (the revision it was admitted at); from etcd, not stored.
    #[serde(default)]
    pub revision: i64,
}

/// How long admissions are kept: the fleet budget's period, the gap, or a day, whichever
/// is the longest.
pub fn keep(config: &FleetConfig) -> Duration {
    let per = config.budget.map_or(Duration::ZERO, |(_, per)| per);
    per.max(config.min_gap.unwrap_or_default())
        .max(KEEP_AT_LEAST)
}

/// How long a node ties new admissions to one lease: a 24th of [`keep`] (an hour for a
/// day), so each is kept for [`keep`] at least, and a 24th longer at most.
pub fn fresh(config: &FleetConfig) -> Duration {
    keep(config) / 24
}

/// Where they are kept: `<prefix>/admissions/`.
fn dir(config: &FleetConfig) -> String {
    format!("{}/admissions/", config.prefix)
}

/// The operation that keeps an admission of `fault` by `node` in `slot` at `now` (ms
/// since the epoch, the node's clock: what is shown) under `lease` (see [`fresh`]). The
/// key sorts by time (16 digits).
pub(super) fn op(
    config: &FleetConfig,
    node: &str,
    fault: &str,
    (slot, now): (u32, i64),
    lease: i64,
) -> Op {
    let at = chrono::DateTime::from_timestamp_millis(now)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let admitted = Admitted {
        at,
        node: node.to_owned(),
        fault: fault.to_owned(),
        slot,
        revision: 0,
    };
    Op::Put(
        format!("{}{now:016}-{node}-{slot}", dir(config)),
        serde_json::to_vec(&admitted).unwrap_or_default(),
        lease,
    )
}

/// Every key under the prefix but the admissions, which are history, as many as the
/// period holds: `admissions/` sorts first among the keys, so the range starts past it.
pub(super) async fn state(
    gateway: &Gateway,
    config: &FleetConfig,
) -> Result<(Vec<Kv>, i64), String> {
    let (from, to) = state_range(config);
    gateway.range(&from, &to).await
}

/// The range [`state`] reads: from past the admissions to the end of the prefix.
pub(super) fn state_range(config: &FleetConfig) -> (Vec<u8>, Vec<u8>) {
    (
        format!("{}/admissions0", config.prefix).into_bytes(),
        prefix_end(&format!("{}/", config.prefix)),
    )
}

/// How many admissions one read asks for: a long history comes in several answers,
/// none of them huge.
const PAGE: usize = 500;

/// The page size: [`PAGE`], or `NIGHTMARE_MONKEY_FLEET_PAGE` when set to a number (a
/// knob for the tests only, which page over a few keys; not documented for users).
fn page() -> usize {
    std::env::var("NIGHTMARE_MONKEY_FLEET_PAGE")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(PAGE)
}

/// Every key under `prefix`, a page at a time, all at the revision of the first page
/// (one consistent picture however long it takes): each page goes on from just past
/// the last key of the one before.
async fn read_paged(gateway: &Gateway, prefix: &str, limit: usize) -> Result<Vec<Kv>, String> {
    let end = prefix_end(prefix);
    let mut from = prefix.as_bytes().to_vec();
    let mut at = 0;
    let mut all = Vec::new();
    loop {
        let (kvs, revision, more) = gateway.range_page((&from, &end), limit, at).await?;
        if at == 0 {
            at = revision;
        }
        let Some(last) = kvs.last() else {
            return Ok(all);
        };
        from = [last.key.as_bytes(), &[0]].concat();
        all.extend(kvs);
        if !more {
            return Ok(all);
        }
    }
}

/// The admissions kept, oldest first.
pub(super) async fn read(gateway: &Gateway, config: &FleetConfig) -> Result<Vec<Admitted>, String> {
    let kvs = read_paged(gateway, &dir(config), page()).await?;
    let mut all: Vec<Admitted> = kvs
        .iter()
        .filter_map(|kv| {
            let admitted: Admitted = serde_json::from_slice(&kv.value).ok()?;
            Some(Admitted {
                revision: kv.create_revision,
                ..admitted
            })
        })
        .collect();
    all.sort_by_key(|a| a.revision);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admission_is_kept_under_a_key_sorted_by_time_and_tied_to_a_lease() {
        let mut config = FleetConfig {
            endpoints: vec![],
            prefix: "/nm".into(),
            credentials: None,
            tls: None,
            max_concurrent: 1,
            budget: Some((3, Duration::from_secs(7 * 24 * 3600))),
            min_gap: None,
            lease_ttl: Duration::from_secs(10),
        };
        assert_eq!(keep(&config), Duration::from_secs(7 * 24 * 3600));
        assert_eq!(fresh(&config), Duration::from_secs(7 * 3600));
        let now = 1_000_000_000_000 * 2;
        let Op::Put(key, value, 77) = op(&config, "web-1", "pause", (0, now), 77) else {
            panic!("a put under lease 77")
        };
        assert_eq!(key, "/nm/admissions/0002000000000000-web-1-0");
        let value: Admitted = serde_json::from_slice(&value).unwrap();
        assert_eq!(value.at, "2033-05-18T03:33:20.000Z");
        // The longest of the budget's period, the gap and a day.
        config.budget = Some((3, Duration::from_secs(60)));
        assert_eq!(keep(&config), KEEP_AT_LEAST);
        config.min_gap = Some(Duration::from_secs(2 * 24 * 3600));
        assert_eq!(keep(&config), Duration::from_secs(2 * 24 * 3600));
        assert_eq!(fresh(&config), Duration::from_secs(2 * 3600));
    }
}
