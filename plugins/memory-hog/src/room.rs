//! How much memory a hold may take now: the host's `MemAvailable` or the room the daemon's
//! memory cgroups leave it, whichever is smaller, less what the holds being taken at this
//! moment will still use.
//!
//! The last part is what lets injections run at once (the daemon runs up to four): a hold
//! shows in `MemAvailable` only as its pages are touched, so two holds that measured
//! before either touched a page each took the whole room above the floor. A hold is
//! measured, sized and reserved under one lock, and its reservation ends once all its
//! pages are touched, when the measure itself shows it.

use std::sync::Mutex;

use nightmare_monkey_plugin_api::sdk::{ErrorKind, PluginError};

use crate::cgroup;

/// `MemAvailable` in the text of /proc/meminfo, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// What this process may still take without the kernel having to reclaim by killing:
/// `MemAvailable`, or its memory cgroups' room when smaller.
pub(crate) fn available() -> Result<u64, PluginError> {
    let failed = |what: String| PluginError::new(ErrorKind::Failed, what);
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| failed(format!("cannot read /proc/meminfo: {e}")))?;
    let host = mem_available(&meminfo)
        .ok_or_else(|| failed("cannot read MemAvailable from /proc/meminfo".to_owned()))?;
    let cgroup = cgroup::room().map_err(|e| {
        failed(format!(
            "cannot read this process's memory cgroup limits: {e}"
        ))
    })?;
    Ok(cgroup.map_or(host, |room| room.min(host)))
}

/// The bytes of the holds being taken: reserved when measured, until their pages show.
#[derive(Debug, Default)]
pub(crate) struct Reservations(Mutex<u64>);

/// A reservation, ended when dropped.
#[derive(Debug)]
pub(crate) struct Reserved<'r> {
    of: &'r Reservations,
    bytes: u64,
}

impl Reservations {
    /// Measures what is available with `measure`, less what the holds being taken will
    /// still use, lets `size` choose how much of that to take, and reserves it; all under
    /// one lock, so that no two holds count the same room. Returns the reservation and
    /// what was left to choose from.
    pub(crate) fn reserve(
        &self,
        measure: impl FnOnce() -> Result<u64, PluginError>,
        size: impl FnOnce(u64) -> Result<u64, PluginError>,
    ) -> Result<(Reserved<'_>, u64), PluginError> {
        let mut taking = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let left = measure()?.saturating_sub(*taking);
        let bytes = size(left)?;
        *taking = taking.saturating_add(bytes);
        Ok((Reserved { of: self, bytes }, left))
    }
}

impl Reserved<'_> {
    /// How many bytes it reserves.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        let mut taking = self.of.0.lock().unwrap_or_else(|p| p.into_inner());
        *taking = taking.saturating_sub(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn mem_available_is_read_in_bytes() {
        let meminfo =
            "MemTotal:       24683564 kB\nMemFree:  638976 kB\nMemAvailable:   22446080 kB\n";
        assert_eq!(mem_available(meminfo), Some(22446080 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    /// Three holds measured while none has touched a page (the measure stays at 96 MiB):
    /// the first reserves the room, the others find what it left; once it ends, the room
    /// is free to count again.
    #[test]
    fn holds_being_taken_count_against_the_room() {
        let reservations = Reservations::default();
        let measure = || Ok(96 * MIB);
        let all = |left: u64| Ok(left);
        let (first, left) = reservations.reserve(measure, all).unwrap();
        assert_eq!((first.bytes, left), (96 * MIB, 96 * MIB));
        let (second, left) = reservations
            .reserve(measure, |l| Ok(l.min(8 * MIB)))
            .unwrap();
        assert_eq!((second.bytes, left), (0, 0));
        drop(first);
        let none = reservations.reserve(measure, |_| {
            Err(PluginError::new(ErrorKind::NoTarget, "nothing"))
        });
        assert_eq!(none.unwrap_err().kind, ErrorKind::NoTarget);
        let (third, left) = reservations.reserve(measure, all).unwrap();
        assert_eq!((third.bytes, left), (96 * MIB, 96 * MIB));
        drop((second, third));
        assert_eq!(*reservations.0.lock().unwrap(), 0);
    }
}
