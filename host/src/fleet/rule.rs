//! The fleet's gap and budget on etcd's clock, never a node's: an admission creates
//! `<prefix>/gap` (while `min_gap` is set) and one of `<prefix>/budget/<n>` (`n` below the
//! budget's `max`), each only if it does not exist (its creation revision compared to
//! 0) and tied to a lease whose TTL covers that span. The key ends with its lease, when
//! etcd's clock says so: nodes whose clocks disagree keep the same gap and budget. As
//! with the slots, there are only `max` budget keys: two admissions that both saw the
//! last one free race for it, and one loses.
//!
//! etcd counts a lease's TTL in whole seconds from when it grants it. So a node keeps
//! one lease per span, granted ahead and used for a new key only within [`FRESH`] of
//! being asked for, with a TTL of the span plus [`FRESH`] and the transaction's longest
//! wait, rounded up to whole seconds: a key lives at least its span from the
//! admission's commit, and at most [`longest`] from it. A gap under a second is thus held
//! two seconds or so; no clock of a node is read.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{
    config::{FleetConfig, MIN_LEASE_TTL},
    gateway::{Compare, Kv, Op, CALL_TIMEOUT},
    shared::{Granted, Shared, Span},
    Refused,
};
use crate::support::lock::lock;

/// How long after it was asked for a lease is still used for a new key.
pub(super) const FRESH: Duration = Duration::from_millis(500);
/// How late after its lease's expiry etcd ends a key (its expiry loop's tick).
const EXPIRY_TICK: Duration = Duration::from_millis(500);

/// Why an admission's transaction is not sent.
pub(super) enum Declined {
    Refused(Refused),
    /// Refused by the gap or the budget until `lease` ends (at most `span` from now).
    Waits {
        why: String,
        lease: i64,
        span: Duration,
    },
    /// The fault fits, but these spans have no lease fresh enough for a new key.
    NeedLeases(Vec<Span>),
    /// The slots must be read first (see `admission::free_slot`).
    ReadSlots,
}

/// The spans whose leases an admission under `config` uses: the rule's it has, and
/// the admissions kept (always).
pub(super) fn spans(config: &FleetConfig) -> Vec<Span> {
    let mut spans = Vec::new();
    if config.min_gap.is_some() {
        spans.push(Span::Gap);
    }
    if config.budget.is_some() {
        spans.push(Span::Budget);
    }
    spans.push(Span::History);
    spans
}

/// How long after it was asked for a lease of `span` is still used for a new key:
/// [`FRESH`] for the rule's, a part of how long they are kept for the admissions'
/// (`history::fresh`).
pub(super) fn freshness(config: &FleetConfig, span: Span) -> Duration {
    match span {
        Span::Gap | Span::Budget => FRESH,
        Span::History => super::history::fresh(config),
    }
}

/// The gap's key and the budget's keys in `kvs`: (the gap, if it stands; the budget's,
/// oldest first, with their numbers). A budget key counts only as what an admission
/// takes: `budget/N` with N under the configured `max` (a stray key blocks nothing).
pub(super) fn found<'a>(
    config: &FleetConfig,
    kvs: &'a [Kv],
) -> (Option<&'a Kv>, Vec<(u32, &'a Kv)>) {
    let gap_key = format!("{}/gap", config.prefix);
    let budget_dir = format!("{}/budget/", config.prefix);
    let gap = kvs.iter().find(|kv| kv.key == gap_key);
    let max = config.budget.map_or(0, |(max, _)| max);
    let mut budget: Vec<(u32, &Kv)> = kvs
        .iter()
        .filter_map(|kv| {
            let text = kv.key.strip_prefix(&budget_dir)?;
            let n: u32 = text.parse().ok()?;
            // `N` as an admission writes it: no sign, no leading zero.
            (n < max && n.to_string() == text).then_some((n, kv))
        })
        .collect();
    budget.sort_by_key(|(_, kv)| kv.create_revision);
    (gap, budget)
}

/// What an admission adds to its transaction for the gap and the budget, decided on the
/// fleet's keys `kvs`: the gap's key and a free budget key, each created (only if it
/// does not exist) under a fresh lease of its span; or why the fault does not fit.
pub(super) fn claim(shared: &Shared, kvs: &[Kv]) -> Result<(Vec<Compare>, Vec<Op>), Declined> {
    let config = &shared.config;
    let (gap, budget) = found(config, kvs);
    if let (Some(min_gap), Some(gap)) = (config.min_gap, gap) {
        return Err(Declined::Waits {
            why: format!(
                "min gap: at least {} between the fleet's faults",
                humantime::format_duration(min_gap)
            ),
            lease: gap.lease,
            span: min_gap,
        });
    }
    let mut key = None;
    if let Some((max, per)) = config.budget {
        let dir = shared.key("budget/");
        let first = shared.spread(max);
        // One pass over what is taken, whatever the budget's size.
        let mut taken = vec![false; max as usize];
        for &(n, _) in &budget {
            taken[n as usize] = true;
        }
        key = (0..max)
            .map(|n| (first + n) % max)
            .find(|&n| !taken[n as usize])
            .map(|n| format!("{dir}{n}"));
        if key.is_none() {
            return Err(Declined::Waits {
                why: format!(
                    "fleet budget: {max} faults per {} used",
                    humantime::format_duration(per)
                ),
                lease: budget.first().map_or(0, |(_, kv)| kv.lease),
                span: per,
            });
        }
    }
    let leases = {
        let mut leases = lock(&shared.rule);
        (
            leases.fresh(Span::Gap, FRESH),
            leases.fresh(Span::Budget, FRESH),
        )
    };
    let mut stale = Vec::new();
    let (mut compare, mut ops) = (Vec::new(), Vec::new());
    let value = serde_json::to_vec(&shared.node).unwrap_or_default();
    let gap_key = config.min_gap.map(|_| shared.key("gap"));
    for (span, key, lease) in [
        (Span::Gap, gap_key, leases.0),
        (Span::Budget, key, leases.1),
    ] {
        let Some(key) = key else { continue };
        if lease == 0 {
            stale.push(span);
        }
        compare.push(Compare::Created(key.clone(), 0));
        ops.push(Op::Put(key, value.clone(), lease));
    }
    if !stale.is_empty() {
        return Err(Declined::NeedLeases(stale));
    }
    Ok((compare, ops))
}

/// The TTL a lease for a span of `span` is granted with: the span, plus how old the
/// lease may be when an admission decides ([`FRESH`]) and how long its transaction may
/// take, in whole seconds (at least etcd's shortest lease).
pub(super) fn ttl(span: Duration) -> Duration {
    let margin = span + FRESH + CALL_TIMEOUT;
    let whole = margin.as_secs() + u64::from(margin.subsec_nanos() > 0);
    Duration::from_secs(whole).max(MIN_LEASE_TTL)
}

/// The longest a span of `span` may be held after an admission's commit: a lease just
/// granted, and etcd's expiry tick.
pub fn longest(span: Duration) -> Duration {
    ttl(span) + EXPIRY_TICK
}

/// The length of `span` in this fleet, if it has it: what a key tied to its lease must
/// outlive. A lease of the admissions' is used for a new one for as long as it stays
/// fresh, so it lasts that much longer than they are kept.
fn length(shared: &Shared, span: Span) -> Option<Duration> {
    let config = &shared.config;
    match span {
        Span::Gap => config.min_gap,
        Span::Budget => config.budget.map(|(_, per)| per),
        Span::History => Some(super::history::keep(config) + super::history::fresh(config)),
    }
}

/// Grants a new lease for each span of `spans` whose lease has been half its freshness
/// or more (all at once).
pub(super) async fn grant(shared: &Shared, spans: &[Span]) -> Result<(), String> {
    let one = |span: Span| async move {
        let older = freshness(&shared.config, span) / 2;
        let due = spans.contains(&span)
            && lock(&shared.rule)
                .of(span)
                .is_none_or(|g| g.asked.elapsed() >= older);
        let Some(length) = length(shared, span).filter(|_| due) else {
            return Ok(());
        };
        let asked = Instant::now();
        let id = shared.gateway.grant(ttl(length)).await?;
        *lock(&shared.rule).of(span) = Some(Granted { id, asked });
        Ok::<(), String>(())
    };
    let (gap, budget, history) =
        tokio::join!(one(Span::Gap), one(Span::Budget), one(Span::History));
    gap.and(budget).and(history)
}

/// After an admission that used the leases of `spans`: a new one for each used past
/// half its freshness, so that the next admission finds one ready (in the background
/// of the admission's answer: no lease is granted while the fleet is idle).
pub(super) async fn refresh(shared: &Shared, spans: &[Span]) {
    if let Err(e) = grant(shared, spans).await {
        shared.log(format!("cannot grant the fleet's leases ahead ({e})"));
    }
}

/// A refusal by the gap or the budget: `why`, and when the next admission fits, from
/// the time left to `lease` as etcd counts it (at most `span` when etcd does not say).
pub(super) async fn waits(shared: &Shared, why: String, lease: i64, span: Duration) -> Refused {
    let wait = time_left(shared, lease).await.unwrap_or_else(|| ttl(span));
    Refused {
        why: format!(
            "{why}; the next fits in {} s",
            crate::domain::injection::ceil_secs(wait)
        ),
        retry_after: Some(wait),
        unreachable: false,
    }
}

/// The time lease `lease` has left, as etcd counts it (whole seconds).
pub(super) async fn time_left(shared: &Shared, lease: i64) -> Option<Duration> {
    time_left_at(&shared.gateway, lease).await
}

/// [`time_left`] through `gateway`.
pub(super) async fn time_left_at(
    gateway: &super::gateway::Gateway,
    lease: i64,
) -> Option<Duration> {
    let answer = gateway
        .call("/v3/lease/timetolive", json!({"ID": lease.to_string()}))
        .await
        .ok()?;
    let ttl = &answer["TTL"];
    let seconds = ttl
        .as_str()
        .and_then(|s| s.parse::<i64>().ok())
        .or_else(|| ttl.as_i64())?;
    Some(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(min_gap: Option<Duration>, budget: Option<(u32, Duration)>) -> FleetConfig {
        FleetConfig {
            endpoints: vec![],
            prefix: "/nm/f".into(),
            credentials: None,
            tls: None,
            max_concurrent: 1,
            budget,
            min_gap,
            lease_ttl: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_rule_has_the_spans_its_config_sets() {
        let (gap, budget) = (
            Some(Duration::from_secs(60)),
            Some((3, Duration::from_secs(3600))),
        );
        assert_eq!(spans(&config(None, None)), [Span::History]);
        assert_eq!(spans(&config(gap, None)), [Span::Gap, Span::History]);
        assert_eq!(spans(&config(None, budget)), [Span::Budget, Span::History]);
        assert_eq!(
            spans(&config(gap, budget)),
            [Span::Gap, Span::Budget, Span::History]
        );
    }

    #[test]
    fn the_gap_and_the_budget_keys_are_found_among_the_fleet_s_oldest_first() {
        let kv = |key: &str, create_revision| Kv {
            key: key.to_owned(),
            create_revision,
            ..Kv::default()
        };
        let kvs = [
            kv("/nm/f/budget/2", 9),
            kv("/nm/f/slots/0", 3),
            kv("/nm/f/gap", 7),
            kv("/nm/f/budget/0", 4),
            kv("/nm/other/gap", 1),
            kv("/nm/other/budget/1", 2),
            // What no admission of a budget of 3 takes: counted for nothing.
            kv("/nm/f/budget/3", 1),
            kv("/nm/f/budget/01", 1),
            kv("/nm/f/budget/+1", 1),
            kv("/nm/f/budget/x", 1),
        ];
        let cfg = config(None, Some((3, Duration::from_secs(60))));
        let (gap, budget) = found(&cfg, &kvs);
        assert_eq!(gap.map(|kv| kv.key.as_str()), Some("/nm/f/gap"));
        let keys: Vec<(u32, &str)> = budget.iter().map(|(n, kv)| (*n, kv.key.as_str())).collect();
        assert_eq!(keys, [(0, "/nm/f/budget/0"), (2, "/nm/f/budget/2")]);
        let (gap, budget) = found(&cfg, &kvs[..2]);
        assert_eq!((gap, budget.len()), (None, 1));
        // Without a budget, no key is one.
        assert!(found(&config(None, None), &kvs).1.is_empty());
    }

    /// A budget of the largest size, spent but for one key, is claimed at once: the
    /// keys taken are looked at once each, not once for every key tried.
    #[test]
    fn the_last_free_key_of_the_largest_budget_is_found_in_one_pass() {
        let max = super::super::config::MAX_BUDGET;
        let cfg = config(None, Some((max, Duration::from_secs(3600))));
        let shared = shared(cfg, "big-1");
        let free = (shared.spread(max) + max - 1) % max;
        let kvs: Vec<Kv> = (0..max)
            .filter(|&n| n != free)
            .map(|n| Kv {
                key: format!("/nm/f/budget/{n}"),
                create_revision: i64::from(n) + 1,
                ..Kv::default()
            })
            .collect();
        // Thirty claims: some tens of milliseconds in all, where a look at every taken
        // key for each key tried took most of a second each (a debug build): a margin of
        // a hundred either way.
        let started = std::time::Instant::now();
        for _ in 0..29 {
            granted(&shared, false, true);
            assert!(claim(&shared, &kvs).is_ok());
        }
        granted(&shared, false, true);
        let Ok((_, ops)) = claim(&shared, &kvs) else {
            panic!("the one free key is not found");
        };
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(
            ops.iter().any(
                |op| matches!(op, Op::Put(key, _, _) if *key == format!("/nm/f/budget/{free}"))
            ),
            "{ops:?}"
        );
        let spent: Vec<Kv> = kvs
            .into_iter()
            .chain([Kv {
                key: format!("/nm/f/budget/{free}"),
                ..Kv::default()
            }])
            .collect();
        assert!(matches!(
            claim(&shared, &spent),
            Err(Declined::Waits { .. })
        ));
    }

    /// What the fleet's thread shares, for node `node` (no coordinator is called).
    fn shared(config: FleetConfig, node: &str) -> Shared {
        Shared {
            gateway: super::super::gateway::Gateway::new(&config).expect("a gateway"),
            config,
            node: node.to_owned(),
            log: |_| {},
            lease: std::sync::Mutex::default(),
            state: tokio::sync::watch::channel(super::super::FleetState {
                cut_off: None,
                switch: None,
                lease: None,
            })
            .0,
            seen: std::sync::Mutex::new(None),
            tracked: std::sync::Mutex::default(),
            rule: std::sync::Mutex::default(),
            slots: std::sync::Mutex::default(),
            parked: tokio::sync::Notify::new(),
        }
    }

    /// Leases asked for just now: the gap's (if `gap`) 11, the budget's (if `budget`) 22.
    fn granted(shared: &Shared, gap: bool, budget: bool) {
        let mut leases = lock(&shared.rule);
        let asked = Instant::now();
        *leases.of(Span::Gap) = gap.then_some(Granted { id: 11, asked });
        *leases.of(Span::Budget) = budget.then_some(Granted { id: 22, asked });
    }

    fn kv(key: &str, create_revision: i64, lease: i64) -> Kv {
        Kv {
            key: key.to_owned(),
            create_revision,
            lease,
            ..Kv::default()
        }
    }

    /// The keys an admission would create, with their leases, in order; each created
    /// only if it does not exist.
    fn creates(claimed: Result<(Vec<Compare>, Vec<Op>), Declined>) -> Vec<(String, i64)> {
        let Ok((compare, ops)) = claimed else {
            panic!("declined")
        };
        let mut created = Vec::new();
        for (compare, op) in compare.iter().zip(&ops) {
            match (compare, op) {
                (Compare::Created(c, 0), Op::Put(key, value, lease)) if c == key => {
                    assert_eq!(value.as_slice(), b"\"node-a\"");
                    created.push((key.clone(), *lease));
                }
                other => panic!("not a create-if-absent: {other:?}"),
            }
        }
        assert_eq!(compare.len(), ops.len());
        created
    }

    #[test]
    fn a_fault_that_fits_creates_the_gap_and_a_free_budget_key_on_fresh_leases() {
        let gap = Some(Duration::from_secs(60));
        let budget = Some((3, Duration::from_secs(3600)));
        let node = shared(config(gap, budget), "node-a");
        granted(&node, true, true);
        // Nothing taken: the gap, and the budget key this node tries first.
        let first = node.spread(3);
        assert_eq!(
            creates(claim(&node, &[])),
            [
                ("/nm/f/gap".to_owned(), 11),
                (format!("/nm/f/budget/{first}"), 22)
            ]
        );
        // Two of three taken, other prefixes' keys aside: the third is the one.
        for free in 0..3 {
            let taken: Vec<Kv> = (0..3)
                .filter(|n| *n != free)
                .map(|n| kv(&format!("/nm/f/budget/{n}"), 5 + i64::from(n), 7))
                .chain([kv(&format!("/nm/other/budget/{free}"), 1, 1)])
                .collect();
            assert_eq!(
                creates(claim(&node, &taken)),
                [
                    ("/nm/f/gap".to_owned(), 11),
                    (format!("/nm/f/budget/{free}"), 22)
                ]
            );
        }
        // Only the spans the config has.
        let node = shared(config(None, budget), "node-a");
        granted(&node, false, true);
        assert_eq!(
            creates(claim(&node, &[])),
            [(format!("/nm/f/budget/{first}"), 22)]
        );
        let node = shared(config(gap, None), "node-a");
        granted(&node, true, false);
        assert_eq!(creates(claim(&node, &[])), [("/nm/f/gap".to_owned(), 11)]);
        let node = shared(config(None, None), "node-a");
        assert_eq!(creates(claim(&node, &[])), []);
    }

    #[test]
    fn the_gap_or_a_spent_budget_makes_a_fault_wait_for_the_key_s_lease() {
        let gap = Some(Duration::from_secs(60));
        let budget = Some((2, Duration::from_secs(3600)));
        let node = shared(config(gap, budget), "node-a");
        granted(&node, true, true);
        match claim(&node, &[kv("/nm/f/gap", 3, 41)]) {
            Err(Declined::Waits { why, lease, span }) => {
                assert_eq!(why, "min gap: at least 1m between the fleet's faults");
                assert_eq!((lease, span), (41, Duration::from_secs(60)));
            }
            _ => panic!("the gap stands"),
        }
        // Both budget keys taken: the oldest ends first.
        let spent = [kv("/nm/f/budget/1", 9, 52), kv("/nm/f/budget/0", 4, 51)];
        let node = shared(config(None, budget), "node-a");
        granted(&node, false, true);
        match claim(&node, &spent) {
            Err(Declined::Waits { why, lease, span }) => {
                assert_eq!(why, "fleet budget: 2 faults per 1h used");
                assert_eq!((lease, span), (51, Duration::from_secs(3600)));
            }
            _ => panic!("the budget is spent"),
        }
    }

    #[test]
    fn each_span_is_as_long_as_its_config_says() {
        let node = shared(
            config(
                Some(Duration::from_secs(60)),
                Some((3, Duration::from_secs(3600))),
            ),
            "node-a",
        );
        assert_eq!(length(&node, Span::Gap), Some(Duration::from_secs(60)));
        assert_eq!(length(&node, Span::Budget), Some(Duration::from_secs(3600)));
        let node = shared(config(None, None), "node-a");
        assert_eq!(length(&node, Span::Gap), None);
        assert_eq!(length(&node, Span::Budget), None);
        // The admissions are kept a day at least, under a lease used for an hour.
        let hour = Duration::from_secs(3600);
        assert_eq!(length(&node, Span::History), Some(25 * hour));
        assert_eq!(freshness(&node.config, Span::History), hour);
        assert_eq!(freshness(&node.config, Span::Gap), FRESH);
        assert_eq!(freshness(&node.config, Span::Budget), FRESH);
        let week = shared(config(None, Some((3, 168 * hour))), "node-a");
        assert_eq!(length(&week, Span::History), Some(175 * hour));
    }

    #[test]
    fn a_span_without_a_fresh_lease_asks_for_one_before_any_transaction() {
        let gap = Some(Duration::from_secs(60));
        let budget = Some((2, Duration::from_secs(3600)));
        let node = shared(config(gap, budget), "node-a");
        let need = |node: &Shared| match claim(node, &[]) {
            Err(Declined::NeedLeases(spans)) => spans,
            Ok(_) => vec![],
            Err(_) => panic!("declined otherwise"),
        };
        assert_eq!(need(&node), [Span::Gap, Span::Budget]);
        granted(&node, true, false);
        assert_eq!(need(&node), [Span::Budget]);
        granted(&node, false, true);
        assert_eq!(need(&node), [Span::Gap]);
        // Asked for longer ago than FRESH: as good as none.
        *lock(&node.rule).of(Span::Gap) = Some(Granted {
            id: 11,
            asked: Instant::now() - FRESH,
        });
        assert_eq!(need(&node), [Span::Gap]);
        granted(&node, true, true);
        assert_eq!(need(&node), []);
    }

    #[test]
    fn a_span_is_held_by_a_lease_of_whole_seconds_that_covers_it() {
        assert_eq!(ttl(Duration::from_millis(100)), Duration::from_secs(2));
        assert_eq!(ttl(Duration::from_secs(1)), Duration::from_secs(3));
        assert_eq!(ttl(Duration::from_secs(3600)), Duration::from_secs(3602));
        // A margin of whole seconds is not rounded up once more.
        assert_eq!(ttl(Duration::from_millis(1500)), Duration::from_secs(3));
        assert_eq!(
            longest(Duration::from_millis(1500)),
            Duration::from_millis(3500)
        );
        assert_eq!(
            longest(Duration::from_secs(60)),
            Duration::from_millis(62_500)
        );
        // Used within FRESH, answered within CALL_TIMEOUT: the span is still left.
        for ms in [1, 100, 999, 1000, 1500, 59_999, 3_600_000] {
            let span = Duration::from_millis(ms);
            assert!(ttl(span) - FRESH - CALL_TIMEOUT >= span, "{span:?}");
            assert!(
                longest(span) <= span + Duration::from_millis(3500),
                "{span:?}"
            );
        }
    }
}
