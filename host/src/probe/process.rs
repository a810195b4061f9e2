//! The `Process` probe: at least `min` processes whose short name (`/proc/PID/comm`)
//! matches, in the daemon's PID namespace. Read on a thread of its own: `/proc` is a
//! file system, and the runtime never waits on one.

use std::time::Duration;

use super::Pattern;

/// The longest a listing of `/proc` may take before the probe fails.
pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

/// `Process(name, min)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub(super) name: Pattern,
    pub(super) min: u32,
}

impl Process {
    pub(super) async fn check(&self) -> Result<String, String> {
        let name = self.name.clone();
        let count = crate::support::thread::on_own_thread("probe-process", move || {
            count(&name.0, std::path::Path::new("/proc"))
        })
        .await
        .ok_or("cannot list /proc (no thread for it)")??;
        let what = format!(
            "{count} {} named /{}/",
            if count == 1 { "process" } else { "processes" },
            self.name.0.as_str()
        );
        if count >= self.min as usize {
            Ok(what)
        } else {
            Err(format!("{what}, expected at least {}", self.min))
        }
    }
}

/// How many processes under `proc` have a short name `name` matches. A process gone
/// between the listing and the read is not counted.
fn count(name: &regex::Regex, proc: &std::path::Path) -> Result<usize, String> {
    let entries =
        std::fs::read_dir(proc).map_err(|e| format!("cannot list {}: {e}", proc.display()))?;
    Ok(entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter(|e| alive(&e.path()))
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .filter(|comm| name.is_match(comm.trim_end_matches('\n')))
        .count())
}

/// Whether the process at `dir` runs: a zombie (`Z`) or a dead one (`X`) is a process
/// that died and was not reaped yet, no recovery. A `stat` that cannot be read (fixtures,
/// a process gone meanwhile) is judged by its `comm` alone.
fn alive(dir: &std::path::Path) -> bool {
    let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
        return true;
    };
    // The state follows the name's closing parenthesis (a name may hold one itself).
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_ascii_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_are_counted_by_their_short_name() {
        let dir = std::env::temp_dir().join(format!("nm-probe-proc-{}", std::process::id()));
        for (pid, comm) in [
            ("1", "init"),
            ("20", "sleep"),
            ("31", "sleep"),
            ("self", "sleep"),
        ] {
            std::fs::create_dir_all(dir.join(pid)).unwrap();
            std::fs::write(dir.join(pid).join("comm"), format!("{comm}\n")).unwrap();
        }
        // A zombie is a worker that died, not one that runs.
        std::fs::create_dir_all(dir.join("40")).unwrap();
        std::fs::write(dir.join("40").join("comm"), "sleep\n").unwrap();
        std::fs::write(dir.join("40").join("stat"), "40 (sle) ep) Z 1 40 40 0").unwrap();
        std::fs::write(dir.join("20").join("stat"), "20 (sleep) S 1 20 20 0").unwrap();
        let sleep = regex::Regex::new("^sleep$").unwrap();
        assert_eq!(count(&sleep, &dir), Ok(2), "self is no PID, 40 a zombie");
        assert_eq!(count(&regex::Regex::new("^in").unwrap(), &dir), Ok(1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn this_test_process_is_found_and_a_missing_one_is_not() {
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        let probe = Process {
            name: Pattern(regex::Regex::new(&format!("^{}$", regex::escape(me.trim()))).unwrap()),
            min: 1,
        };
        assert!(probe.check().await.is_ok());
        let none = Process {
            name: Pattern(regex::Regex::new("^no-such-process-name$").unwrap()),
            min: 1,
        };
        assert_eq!(
            none.check().await,
            Err("0 processes named /^no-such-process-name$/, expected at least 1".into())
        );
    }
}
