//! Choosing a victim cheaply and reproducibly: list `/proc` once, put the PIDs in
//! canonical (ascending) order, then visit them in a seeded random order and stop at the
//! first one that passes, so only the processes actually considered are ever read.

use std::{
    fs, io,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::sdk::Rng;

/// The PIDs listed in `proc_root`, ascending. Sorting makes the choice independent of
/// the order the kernel happens to list them in.
pub fn list_pids(proc_root: &Path) -> io::Result<Vec<u32>> {
    let mut pids: Vec<u32> = fs::read_dir(proc_root)?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// How long one listing of `/proc` serves: picks that come faster than this (an API
/// burst) share it. Listing is the one cost of a pick that grows with the number of
/// processes, so a burst costs one listing, not one per request. A process that ended
/// since is skipped when it is read; one started since waits for the next listing.
pub const LISTING_TTL: Duration = Duration::from_millis(100);

/// How old a listing may be and still serve while a fresh one is made on a thread of its
/// own (`Listing::pids`). Older than this (a pick after a quiet second, as every
/// scheduled fault is), the pick lists `/proc` itself.
pub const LISTING_KEPT: Duration = Duration::from_secs(1);

/// The last listing of a `/proc`, reused for [`LISTING_TTL`].
#[derive(Debug, Default)]
pub struct Listing {
    last: Arc<Mutex<Last>>,
}

#[derive(Debug, Default)]
struct Last {
    /// When the last listing began, and what it holds.
    listed: Option<(Instant, Arc<[u32]>)>,
    /// Whether a thread of its own is listing anew right now (one at a time).
    listing: bool,
    /// How many such threads were started (tests only).
    #[cfg(test)]
    started: usize,
}

fn lock(last: &Mutex<Last>) -> std::sync::MutexGuard<'_, Last> {
    last.lock().unwrap_or_else(|p| p.into_inner())
}

impl Listing {
    /// The PIDs in `proc_root`, ascending, and whether the listing is older than
    /// [`LISTING_TTL`]. Shared, not copied: a pick reads it without changing it.
    ///
    /// A listing younger than [`LISTING_TTL`] serves as it is. One older, up to
    /// [`LISTING_KEPT`], serves too while a thread of its own lists anew, so that no pick
    /// in a burst waits for a listing (4 ms among 5,000 processes): only one such thread
    /// at a time. Older than that, or with none at all, the pick lists `/proc` itself. A
    /// pick that finds no process in an old listing asks [`Listing::anew`] before it
    /// says so.
    pub fn pids(&self, proc_root: &Path) -> io::Result<(Arc<[u32]>, bool)> {
        {
            let mut last = lock(&self.last);
            if let Some((at, pids)) = &last.listed {
                let age = at.elapsed();
                if age < LISTING_TTL {
                    return Ok((Arc::clone(pids), false));
                }
                if last.listing && age < LISTING_KEPT {
                    return Ok((Arc::clone(pids), true));
                }
                if age < LISTING_KEPT {
                    let pids = Arc::clone(pids);
                    last.listing = true;
                    #[cfg(test)]
                    {
                        last.started += 1;
                    }
                    let (shared, root) = (Arc::clone(&self.last), proc_root.to_owned());
                    let spawned = std::thread::Builder::new()
                        .name("nm-listing".to_owned())
                        .spawn(move || {
                            let began = Instant::now();
                            let listed = list_pids(&root);
                            let mut last = lock(&shared);
                            last.listing = false;
                            let _ = keep(&mut last, began, listed);
                        });
                    if spawned.is_ok() {
                        return Ok((pids, true));
                    }
                    last.listing = false;
                }
            }
        }
        Ok((self.anew(proc_root)?, false))
    }

    /// Makes the last listing older by `by`, as if time had passed (tests only).
    #[cfg(test)]
    pub(crate) fn age(&self, by: Duration) {
        if let Some((at, _)) = &mut lock(&self.last).listed {
            *at -= by;
        }
    }

    /// The PIDs in `proc_root`, ascending, listed now (and kept for the next picks).
    pub fn anew(&self, proc_root: &Path) -> io::Result<Arc<[u32]>> {
        let began = Instant::now();
        let listed = list_pids(proc_root);
        keep(&mut lock(&self.last), began, listed)
    }
}

/// A listing that began at `began`, as shared; kept for the next picks unless one that
/// began later is kept already (two listings can end in either order). A listing that
/// failed leaves the last one.
fn keep(last: &mut Last, began: Instant, listed: io::Result<Vec<u32>>) -> io::Result<Arc<[u32]>> {
    let pids: Arc<[u32]> = listed?.into();
    if last.listed.as_ref().is_none_or(|(kept, _)| *kept <= began) {
        last.listed = Some((began, Arc::clone(&pids)));
    }
    Ok(pids)
}

/// The visits after which [`choose`] copies the PIDs to go on swapping in place: its
/// notes of moved PIDs are searched one by one, cheap for the few visits nearly every
/// pick makes.
const NOTED_VISITS: usize = 32;

/// Visits `pids` in a random order drawn from `rng` (a lazy Fisher-Yates shuffle, one draw
/// per visit) and returns the first value `accept` gives, with how many PIDs it looked at.
///
/// Every acceptable PID is equally likely to be returned, and the same `pids`, seed and
/// `accept` return the same one. `pids` itself is left as it is: a swap is noted, not
/// made, for the first [`NOTED_VISITS`] visits (a pick that finds its victim soon, as
/// nearly all do, copies nothing), then the PIDs are copied once and swapped in place.
pub fn choose<T>(
    pids: &[u32],
    rng: &mut Rng,
    mut accept: impl FnMut(u32) -> Option<T>,
) -> (Option<T>, usize) {
    let n = pids.len();
    // (position, the PID a swap put there); the latest note of a position holds.
    let mut moved: Vec<(usize, u32)> = Vec::new();
    let mut copied: Option<Vec<u32>> = None;
    for i in 0..n {
        let j = i + rng.below((n - i) as u64) as usize;
        let visit = match &mut copied {
            Some(all) => {
                all.swap(i, j);
                all[i]
            }
            None => {
                let at = |k: usize| {
                    moved
                        .iter()
                        .rev()
                        .find(|(p, _)| *p == k)
                        .map_or(pids[k], |(_, pid)| *pid)
                };
                // Position i is never read again: only j's new PID is noted.
                let (here, there) = (at(i), at(j));
                moved.push((j, here));
                if moved.len() >= NOTED_VISITS {
                    let mut all = pids.to_vec();
                    for (p, pid) in &moved {
                        all[*p] = *pid;
                    }
                    copied = Some(all);
                }
                there
            }
        };
        if let Some(found) = accept(visit) {
            return (Some(found), i + 1);
        }
    }
    (None, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest, Strategy};

    /// The shuffle swapping in place, as `choose` was first written: what it must
    /// still pick, visit for visit.
    fn in_place<T>(
        pids: &mut [u32],
        rng: &mut Rng,
        mut accept: impl FnMut(u32) -> Option<T>,
    ) -> (Option<T>, usize) {
        let n = pids.len();
        for i in 0..n {
            let j = i + rng.below((n - i) as u64) as usize;
            pids.swap(i, j);
            if let Some(found) = accept(pids[i]) {
                return (Some(found), i + 1);
            }
        }
        (None, n)
    }

    proptest! {
        #[test]
        fn picks_only_acceptable_pids_and_replays(
            pids in proptest::collection::btree_set(1u32..100_000, 0..300)
                .prop_map(|s| s.into_iter().collect::<Vec<_>>()),
            seed: u64,
            modulus in 1u32..7,
        ) {
            let ok = |pid: u32| (pid % modulus == 0).then_some(pid);
            let (first, looked) = choose(&pids, &mut Rng::from_seed(seed), ok);
            let (second, _) = choose(&pids, &mut Rng::from_seed(seed), ok);
            prop_assert_eq!(first, second);
            // The very PID, after as many visits, as swapping in place picks.
            prop_assert_eq!(
                (first, looked),
                in_place(&mut pids.clone(), &mut Rng::from_seed(seed), ok)
            );
            prop_assert!(looked <= pids.len());
            match first {
                Some(pid) => prop_assert_eq!(pid % modulus, 0),
                None => prop_assert!(pids.iter().all(|p| p % modulus != 0)),
            }
        }
    }

    /// A pick that looks far (past the noted visits, into the copy) still visits the
    /// PIDs in the order swapping in place does.
    #[test]
    fn a_long_search_visits_as_swapping_in_place_does() {
        let pids: Vec<u32> = (1..=1000).collect();
        for seed in 0..200 {
            let mut seen = Vec::new();
            let mut seen_in_place = Vec::new();
            let rare = |seen: &mut Vec<u32>, pid: u32| {
                seen.push(pid);
                (pid == 777).then_some(pid)
            };
            let ours = choose(&pids, &mut Rng::from_seed(seed), |p| rare(&mut seen, p));
            let theirs = in_place(&mut pids.clone(), &mut Rng::from_seed(seed), |p| {
                rare(&mut seen_in_place, p)
            });
            assert_eq!(ours, theirs, "seed {seed}");
            assert_eq!(seen, seen_in_place, "seed {seed}");
        }
    }

    #[test]
    fn every_acceptable_pid_is_about_equally_likely() {
        let base: Vec<u32> = (1..=50).collect();
        let mut counts = [0u32; 51];
        for seed in 0..20_000 {
            let (pid, _) = choose(&base, &mut Rng::from_seed(seed), |p| {
                (p % 5 == 0).then_some(p)
            });
            counts[pid.unwrap() as usize] += 1;
        }
        // 10 acceptable PIDs, 2,000 expected each; 4 standard deviations is about 170.
        for pid in (5..=50).step_by(5) {
            assert!(
                (1830..=2170).contains(&counts[pid]),
                "{pid}: {}",
                counts[pid]
            );
        }
    }

    #[test]
    fn listing_is_sorted_and_numeric_only() {
        let dir = std::env::temp_dir().join(format!("nm-list-{}", std::process::id()));
        for name in ["300", "20", "self", "1", "sys"] {
            fs::create_dir_all(dir.join(name)).unwrap();
        }
        assert_eq!(list_pids(&dir).unwrap(), vec![1, 20, 300]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_listing_is_reused_only_while_fresh() {
        let dir = std::env::temp_dir().join(format!("nm-listing-{}", std::process::id()));
        fs::create_dir_all(dir.join("7")).unwrap();
        let listing = Listing::default();
        assert_eq!(*listing.pids(&dir).unwrap().0, [7]);
        fs::create_dir_all(dir.join("8")).unwrap();
        // Within the TTL the first listing serves (unless this thread was descheduled
        // for the whole TTL, in which case the new one is right too).
        let (again, old) = listing.pids(&dir).unwrap();
        assert!(*again == [7] || *again == [7, 8], "{again:?}");
        assert!(!old);
        // Once it is stale, the stale one serves while a thread lists anew.
        let aged = |age| Some((Instant::now() - age, Arc::from([7])));
        lock(&listing.last).listed = aged(LISTING_TTL);
        assert_eq!(listing.pids(&dir).unwrap(), (Arc::from([7]), true));
        assert_eq!(lock(&listing.last).started, 1);
        let until = Instant::now() + Duration::from_secs(60);
        while lock(&listing.last).listing || *listing.pids(&dir).unwrap().0 != [7, 8] {
            assert!(Instant::now() < until, "never listed anew");
            std::thread::yield_now();
        }
        // While a thread lists anew, the stale listing still serves, and no other starts.
        *lock(&listing.last) = Last {
            listed: aged(LISTING_TTL),
            listing: true,
            ..Last::default()
        };
        assert_eq!(listing.pids(&dir).unwrap(), (Arc::from([7]), true));
        assert!(lock(&listing.last).listing);
        assert_eq!(lock(&listing.last).started, 0);
        // Asked to, it lists anew at once.
        assert_eq!(*listing.anew(&dir).unwrap(), [7, 8]);
        assert_eq!(listing.pids(&dir).unwrap(), (Arc::from([7, 8]), false));
        // Older than LISTING_KEPT, or none at all: this thread lists, whatever another does.
        *lock(&listing.last) = Last {
            listed: aged(LISTING_KEPT),
            listing: true,
            ..Last::default()
        };
        assert_eq!(listing.pids(&dir).unwrap(), (Arc::from([7, 8]), false));
        *lock(&listing.last) = Last {
            listed: None,
            listing: true,
            ..Last::default()
        };
        assert_eq!(listing.pids(&dir).unwrap(), (Arc::from([7, 8]), false));
        // A listing that began before the one kept is not kept over it, and the flag
        // of the thread listing on its own is not cleared by another pick's listing.
        let newer = Instant::now();
        *lock(&listing.last) = Last {
            listed: Some((newer, Arc::from([9]))),
            listing: true,
            ..Last::default()
        };
        let earlier = newer - Duration::from_millis(1);
        assert_eq!(
            *keep(&mut lock(&listing.last), earlier, Ok(vec![7])).unwrap(),
            [7]
        );
        assert_eq!(*lock(&listing.last).listed.as_ref().unwrap().1, [9]);
        assert_eq!(*listing.anew(&dir).unwrap(), [7, 8]);
        assert_eq!(*lock(&listing.last).listed.as_ref().unwrap().1, [7, 8]);
        assert!(lock(&listing.last).listing);
        lock(&listing.last).listing = false;
        // A listing that failed keeps the last one and lets the next pick list again.
        fs::remove_dir_all(&dir).unwrap();
        lock(&listing.last).listed = aged(LISTING_KEPT);
        assert!(listing.pids(&dir).is_err());
        assert_eq!(*lock(&listing.last).listed.as_ref().unwrap().1, [7]);
        assert!(!lock(&listing.last).listing);
    }
}
