//! Rotation and retention of the journal. When the journal passes `rotate_at`, the daemon
//! renames it to an archive beside it (`journal.jsonl-20261126T170100.123Z`, the instant
//! of the rotation: every record in it is older) and starts a fresh file; archives older
//! than `keep`, or beyond `max_size` in all (the oldest first), are removed.
//!
//! Nothing is lost to a rotation: it happens with the journal locked against every
//! writer (the daemon's appends and a `kill` beside it take the same `flock`, and an
//! append that finds the file renamed under it reopens the path), after the checkpoint
//! has read the old file to its end; an archive keeps its inode, so a checkpoint taken
//! before a rotation finds the rest of its file under the archive's name. What reads the
//! past (the budget, `history`, `GET /api/history`) reads the journal and then its
//! archives, newest first, only as far back as it looks.

use std::{
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::support::located::{at_most, DurationText, Source};

/// How the journal is rotated and how long archives are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Rotate the journal once it is this big (bytes).
    pub rotate_at: u64,
    /// Remove archives rotated longer ago than this.
    pub keep: Duration,
    /// Remove the oldest archives while all of them together are bigger than this.
    pub max_size: u64,
}

const MIB: u64 = 1 << 20;

impl Default for Retention {
    /// A year and more of a busy drill rate: about 1.5 KB a fault, so 1 GiB holds some
    /// 700,000 faults, 1,900 a day for 400 days.
    fn default() -> Self {
        Self {
            rotate_at: 64 * MIB,
            keep: Duration::from_secs(400 * 24 * 3600),
            max_size: 1024 * MIB,
        }
    }
}

/// One archive of a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Archive {
    /// Where it is.
    pub path: PathBuf,
    /// When it was rotated (every record in it is older).
    pub at: DateTime<Utc>,
    /// Its size in bytes.
    pub len: u64,
    /// Its device and inode (what it was while it was the journal).
    pub dev: u64,
    pub ino: u64,
}

/// The retention as written (`journal_retention: (rotate_at: "64MiB", keep: "400d",
/// max_size: "1GiB")`), every field optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename = "journal_retention")]
pub struct RawRetention {
    rotate_at: Option<String>,
    keep: Option<DurationText>,
    max_size: Option<String>,
}

/// The smallest and largest size the journal may be rotated at.
const ROTATE_BOUNDS: (u64, u64) = (64 << 10, 4 << 30);
/// The longest `keep`: ten years.
const MAX_KEEP: Duration = Duration::from_secs(3650 * 24 * 3600);

impl RawRetention {
    /// Validates it; each error names the field and what was expected.
    pub fn validate(&self, src: &Source<'_>, errors: &mut Vec<String>) -> Retention {
        let default = Retention::default();
        let at = |key: &str| src.at(&["journal_retention", key]);
        let size = |key: &str, text: &Option<String>, errors: &mut Vec<String>| {
            let text = text.as_deref()?;
            let size = parse_size(text);
            if size.is_none() {
                errors.push(format!(
                    "{}: invalid {key} `{text}`: expected a size like 64MiB, 512KiB or 1GiB",
                    at(key)
                ));
            }
            size
        };
        let rotate_at = size("rotate_at", &self.rotate_at, errors).unwrap_or(default.rotate_at);
        if !(ROTATE_BOUNDS.0..=ROTATE_BOUNDS.1).contains(&rotate_at) {
            errors.push(format!(
                "{}: rotate_at `{}` is out of bounds: expected 64KiB to 4GiB",
                at("rotate_at"),
                self.rotate_at.as_deref().unwrap_or_default()
            ));
        }
        let keep = match &self.keep {
            None => default.keep,
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) if d >= Duration::from_secs(24 * 3600) => {
                    at_most(d, text, &at("keep"), "keep", MAX_KEEP, errors).unwrap_or(default.keep)
                }
                _ => {
                    errors.push(format!(
                        "{}: invalid keep `{text}`: expected a duration of a day or more, like 400d or 90days",
                        at("keep")
                    ));
                    default.keep
                }
            },
        };
        let max_size =
            size("max_size", &self.max_size, errors).unwrap_or(default.max_size.max(rotate_at));
        if max_size < rotate_at {
            errors.push(format!(
                "{}: max_size `{}` is smaller than rotate_at: the archives must hold one journal at least",
                at("max_size"),
                self.max_size.as_deref().unwrap_or_default()
            ));
        }
        Retention {
            rotate_at,
            keep,
            max_size,
        }
    }
}

const STAMP: &str = "%Y%m%dT%H%M%S%.3fZ";

/// The archive name of `journal` rotated at `at`: `<name>-<stamp>` beside it.
pub(crate) fn archive_path(journal: &Path, at: DateTime<Utc>) -> PathBuf {
    let mut name = journal.file_name().unwrap_or_default().to_owned();
    name.push(format!("-{}", at.format(STAMP)));
    journal.with_file_name(name)
}

/// The archives of `journal`, oldest first. None if its directory does not exist.
pub(crate) fn archives(journal: &Path) -> io::Result<Vec<Archive>> {
    let Some(name) = journal.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let dir = match journal.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let prefix = format!("{name}-");
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(stamp) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Ok(at) = NaiveDateTime::parse_from_str(stamp, STAMP) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        found.push(Archive {
            path: entry.path(),
            at: at.and_utc(),
            len: meta.len(),
            dev: meta.dev(),
            ino: meta.ino(),
        });
    }
    found.sort_by_key(|a| a.at);
    Ok(found)
}

/// An archive `retention` no longer keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Removed {
    /// Where it was.
    pub path: PathBuf,
    /// Whether it held records of the last day, which a restart counts against the
    /// budget: only `max_size` removes one of those.
    pub recent: bool,
}

/// The archives `retention` no longer keeps at `now`: rotated longer ago than `keep`,
/// and the oldest of the rest while all together are bigger than `max_size`. The newest
/// archive always stays: a rotation never loses what it just archived (`max_size` is
/// at least `rotate_at`, so it fits).
pub(crate) fn expired(
    archives: &[Archive],
    retention: &Retention,
    now: DateTime<Utc>,
) -> Vec<Removed> {
    let keep = chrono::TimeDelta::from_std(retention.keep).unwrap_or(chrono::TimeDelta::MAX);
    let oldest_kept = now.checked_sub_signed(keep);
    let day_ago = now - chrono::TimeDelta::days(1);
    let mut total: u64 = 0;
    let mut gone = Vec::new();
    // From the newest back: what fits is kept.
    for (i, archive) in archives.iter().rev().enumerate() {
        total = total.saturating_add(archive.len);
        if i == 0 {
            continue;
        }
        let too_old = oldest_kept.is_some_and(|t| archive.at < t);
        if too_old || total > retention.max_size {
            gone.push(Removed {
                path: archive.path.clone(),
                // Rotated within the last day: it may hold records of the last day.
                recent: archive.at >= day_ago,
            });
        }
    }
    gone.reverse();
    gone
}

/// Removes the archives of `journal` that `retention` no longer keeps; returns them.
pub(crate) fn prune(journal: &Path, retention: &Retention) -> io::Result<Vec<Removed>> {
    let gone = expired(&archives(journal)?, retention, Utc::now());
    for removed in &gone {
        match std::fs::remove_file(&removed.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(gone)
}

/// The files that hold a journal's records, newest first: the journal itself, then its
/// archives.
pub(crate) fn newest_first(journal: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = vec![journal.to_owned()];
    files.extend(archives(journal)?.into_iter().rev().map(|a| a.path));
    Ok(files)
}

/// Parses a size: a number of bytes, or one with a binary unit (`64MiB`, `512 KiB`,
/// `1GiB`).
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn archives_are_named_by_their_rotation_and_found_back_oldest_first() {
        let dir = std::env::temp_dir().join(format!("nm-archive-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let journal = dir.join("journal.jsonl");
        let later = archive_path(&journal, at("2026-11-26T17:01:00.123Z"));
        let earlier = archive_path(&journal, at("2026-01-02T03:04:05Z"));
        assert_eq!(
            later.file_name().unwrap(),
            "journal.jsonl-20261126T170100.123Z"
        );
        std::fs::write(&later, "bb").unwrap();
        std::fs::write(&earlier, "a").unwrap();
        // Neither of these is an archive.
        std::fs::write(dir.join("journal.jsonl-notes"), "").unwrap();
        std::fs::write(dir.join("journal.jsonl.checkpoint"), "").unwrap();
        std::fs::create_dir(archive_path(&journal, at("2026-06-01T00:00:00Z"))).unwrap();
        let found = archives(&journal).unwrap();
        let names: Vec<(&Path, DateTime<Utc>, u64)> = found
            .iter()
            .map(|a| (a.path.as_path(), a.at, a.len))
            .collect();
        assert_eq!(
            names,
            [
                (earlier.as_path(), at("2026-01-02T03:04:05Z"), 1),
                (later.as_path(), at("2026-11-26T17:01:00.123Z"), 2)
            ]
        );
        assert_eq!(
            newest_first(&journal).unwrap(),
            [journal.clone(), later, earlier]
        );
        assert!(archives(&dir.join("none/journal.jsonl"))
            .unwrap()
            .is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn archive(day: u32, len: u64) -> Archive {
        Archive {
            path: PathBuf::from(format!("a{day}")),
            at: at(&format!("2026-01-{day:02}T00:00:00Z")),
            len,
            dev: 0,
            ino: 0,
        }
    }

    #[test]
    fn retention_drops_the_too_old_and_the_oldest_beyond_the_size() {
        let all = [
            archive(1, 10),
            archive(2, 10),
            archive(3, 10),
            archive(4, 10),
        ];
        let now = at("2026-01-05T00:00:00Z");
        let days = |n: u64| Duration::from_secs(n * 24 * 3600);
        let keep = |keep, max_size| Retention {
            rotate_at: 1,
            keep,
            max_size,
        };
        let names = |v: Vec<Removed>| -> Vec<String> {
            v.into_iter()
                .map(|r| r.path.display().to_string())
                .collect()
        };
        assert!(expired(&all, &keep(days(10), 40), now).is_empty());
        // Rotated exactly `keep` ago is kept; a second longer is not.
        assert_eq!(names(expired(&all, &keep(days(3), 40), now)), ["a1"]);
        assert_eq!(names(expired(&all, &keep(days(10), 39), now)), ["a1"]);
        assert_eq!(names(expired(&all, &keep(days(10), 20), now)), ["a1", "a2"]);
        assert_eq!(
            names(expired(&all, &keep(days(1), 100), now)),
            ["a1", "a2", "a3"]
        );
        assert!(expired(&all, &keep(Duration::MAX, u64::MAX), now).is_empty());
        // Whatever the size, the newest archive stays (a rotation never loses what it
        // just archived).
        assert!(expired(&[archive(1, 100)], &keep(days(10), 10), now).is_empty());
    }

    /// `max_size` bounds archives of the last day too (they used to stay whatever the
    /// size: 1.87 MB against 128 KiB); those it removes are marked as recent.
    #[test]
    fn max_size_is_a_bound_even_for_the_last_day() {
        let now = at("2026-01-05T00:00:00Z");
        let recent = |hours: i64, len| Archive {
            path: PathBuf::from(format!("h{hours}")),
            at: now - chrono::TimeDelta::hours(hours),
            ..archive(1, len)
        };
        let bound = Retention {
            rotate_at: 100,
            keep: Duration::from_secs(10 * 24 * 3600),
            max_size: 250,
        };
        let all = [
            recent(30, 100),
            recent(20, 100),
            recent(10, 100),
            recent(5, 100),
            recent(1, 100),
        ];
        let gone = expired(&all, &bound, now);
        assert_eq!(
            gone,
            [
                Removed {
                    path: "h30".into(),
                    recent: false
                },
                Removed {
                    path: "h20".into(),
                    recent: true
                },
                Removed {
                    path: "h10".into(),
                    recent: true
                },
            ]
        );
        let kept: u64 = all
            .iter()
            .filter(|a| !gone.iter().any(|g| g.path == a.path))
            .map(|a| a.len)
            .sum();
        assert!(kept <= bound.max_size, "{kept}");
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("2TiB"), Some(2 << 40));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("7B"), Some(7));
        for bad in ["", "MiB", "64MB", "1.5GiB", "-1", "99999999999TiB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
