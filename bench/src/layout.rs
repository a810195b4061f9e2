//! Whether a build's code is laid out as `host/startup-order.txt` asks. The kernel maps a
//! binary's code 64 KiB around each page a process touches, so the daemon's resident
//! memory depends on where the functions it runs sit: together (the ordering file, handed
//! to LLD by `host/build.rs`) or spread over 8 MB of code. The file names functions by
//! their mangled symbols, which change when a crate's dependencies do; a stale file costs
//! megabytes of RSS and says nothing (2026-12-06: 391 of 1,104 names left, idle RSS
//! 5.8 -> 7.9 MB). The bench says so beside the memory it measures.

use std::{collections::HashSet, fmt, path::Path, process::Command};

/// How much of the ordering file a binary holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// Names of the file that are functions of the binary.
    pub found: usize,
    /// Names in the file.
    pub listed: usize,
}

impl Coverage {
    /// Counts the names of `order` (one a line) among the `defined` symbols of a binary.
    pub fn of(order: &str, defined: &HashSet<&str>) -> Self {
        let names: Vec<&str> = order
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        Coverage {
            found: names.iter().filter(|n| defined.contains(*n)).count(),
            listed: names.len(),
        }
    }

    /// Whether names are gone: the code changed since the list was made, and what runs
    /// at start now is probably not all in it either (on 2026-12-06, 31 of 1,118 gone
    /// came with 0.8 MB more idle RSS).
    pub fn stale(&self) -> bool {
        self.found < self.listed
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} startup functions placed",
            self.found, self.listed
        )?;
        if self.stale() {
            let gone = self.listed - self.found;
            write!(f, " ({gone} gone: run bench/order-startup)")?;
        }
        Ok(())
    }
}

/// The coverage in `binary` of the `host/startup-order.txt` of the source tree it was
/// built from: the nearest directory above it holding `host/` (a checkout, its `target/`
/// inside) or `src/host/` (a `bench/run --compare` tree); `None` when no file or no `nm`
/// is found: the report then says nothing.
pub fn coverage(binary: &Path) -> Option<Coverage> {
    let order = binary.ancestors().skip(1).find_map(|dir| {
        ["host/startup-order.txt", "src/host/startup-order.txt"]
            .iter()
            .find_map(|file| std::fs::read_to_string(dir.join(file)).ok())
    })?;
    let out = Command::new("nm")
        .arg("--defined-only")
        .arg(binary)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let defined: HashSet<&str> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (_, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
            matches!(kind, "t" | "T" | "w" | "W").then_some(name)
        })
        .collect();
    Some(Coverage::of(&order, &defined))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_names_the_binary_defines_and_calls_a_file_stale_when_one_is_gone() {
        let defined: HashSet<&str> = ["a", "b", "c", "d"].into();
        let c = Coverage::of("a\nb\nc\n", &defined);
        assert_eq!(
            c,
            Coverage {
                found: 3,
                listed: 3
            }
        );
        assert!(!c.stale());
        assert_eq!(c.to_string(), "3 of 3 startup functions placed");
        let c = Coverage::of("a\nb\nx\ny\n\n", &defined);
        assert_eq!(
            c,
            Coverage {
                found: 2,
                listed: 4
            }
        );
        assert!(c.stale());
        assert_eq!(
            c.to_string(),
            "2 of 4 startup functions placed (2 gone: run bench/order-startup)"
        );
        assert!(
            !Coverage::of("", &defined).stale(),
            "no file, nothing to go stale"
        );
    }
}
