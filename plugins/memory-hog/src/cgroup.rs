//! The room the daemon's memory cgroups leave it: at each level of its cgroup path, from
//! its own cgroup up to the root of the hierarchy, the limit less what is charged there
//! now; the smallest of these. In a container the host's `MemAvailable` says nothing of
//! the container's limit, and a hold sized from it gets the daemon OOM-killed.
//!
//! Read from the cgroup v2 hierarchy (`memory.max`, and `memory.high` where lower: past
//! it the kernel throttles the cgroup hard, which is no better for the daemon) against
//! `memory.current`, and from a cgroup v1 `memory` hierarchy (`memory.limit_in_bytes`
//! against `memory.usage_in_bytes`). Both count the page cache as used, so the room is
//! on the small side, never the large one. Where the hierarchies are mounted comes from
//! `/proc/self/mountinfo`, and the path from `/proc/self/cgroup`, read relative to the
//! mount's root (a container sees its own cgroup as the root).

use std::{
    io,
    path::{Path, PathBuf},
};

/// Which cgroup hierarchy a mount is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// A v1 hierarchy with the `memory` controller.
    V1,
    /// The v2 (unified) hierarchy.
    V2,
}

impl Version {
    /// The files that hold the limits, and the one that holds the usage.
    fn files(self) -> (&'static [&'static str], &'static str) {
        match self {
            Version::V1 => (&["memory.limit_in_bytes"], "memory.usage_in_bytes"),
            Version::V2 => (&["memory.max", "memory.high"], "memory.current"),
        }
    }
}

/// A mounted cgroup hierarchy that can limit memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// The cgroup at the mount's root, as `/proc/self/cgroup` names cgroups.
    pub root: String,
    /// Where it is mounted.
    pub point: PathBuf,
    pub version: Version,
}

/// The cgroup mounts in the text of `/proc/self/mountinfo`: the v2 one, and v1 ones
/// with the `memory` controller.
pub(crate) fn mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let (root, point) = (*fields.get(3)?, *fields.get(4)?);
            let mut after = after.split(' ');
            let version = match (after.next()?, after.nth(1)) {
                ("cgroup2", _) => Version::V2,
                ("cgroup", Some(options)) if options.split(',').any(|o| o == "memory") => {
                    Version::V1
                }
                _ => return None,
            };
            Some(Mount {
                root: unescape(root),
                point: PathBuf::from(unescape(point)),
                version,
            })
        })
        .collect()
}

/// A mountinfo path with its octal escapes (`\040` for a space) undone.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of this process's cgroup in each memory hierarchy, from the text of
/// `/proc/self/cgroup` (`0::/path` for v2, `N:controllers:/path` for v1), with the mount
/// it is under.
pub(crate) fn own_cgroups<'m>(self_cgroup: &str, mounts: &'m [Mount]) -> Vec<(PathBuf, &'m Mount)> {
    let mut found = Vec::new();
    for line in self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let version = if controllers.is_empty() {
            Version::V2
        } else if controllers.split(',').any(|c| c == "memory") {
            Version::V1
        } else {
            continue;
        };
        for mount in mounts.iter().filter(|m| m.version == version) {
            // Our path as seen under this mount (its root may be our cgroup or above).
            let Some(below) = path.strip_prefix(mount.root.trim_end_matches('/')) else {
                continue;
            };
            if !(below.is_empty() || below.starts_with('/')) {
                continue;
            }
            found.push((mount.point.join(below.trim_start_matches('/')), mount));
        }
    }
    found
}

/// A number in a cgroup file; `None` for `max` (no limit).
fn number(text: &str) -> io::Result<Option<u64>> {
    let text = text.trim();
    if text == "max" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("`{text}` is not a number of bytes"),
        )
    })
}

/// The file `name` in `dir` as a number; `Ok(None)` when it says `max` or is not there
/// (the root cgroup has no limit files).
fn read_number(dir: &Path, name: &str) -> io::Result<Option<u64>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            number(&text).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

/// The smallest room (limit less usage) from `leaf` up to `mount`'s point; `None` when
/// no level has a limit.
pub(crate) fn room_from(leaf: &Path, mount: &Mount) -> io::Result<Option<u64>> {
    let (limits, usage) = mount.version.files();
    let mut room: Option<u64> = None;
    let mut dir = Some(leaf);
    while let Some(here) = dir {
        let mut limit: Option<u64> = None;
        for name in limits {
            if let Some(n) = read_number(here, name)? {
                limit = Some(limit.map_or(n, |l| l.min(n)));
            }
        }
        if let Some(limit) = limit {
            let used = read_number(here, usage)?.unwrap_or(0);
            let left = limit.saturating_sub(used);
            room = Some(room.map_or(left, |r| r.min(left)));
        }
        if here == mount.point {
            break;
        }
        dir = here.parent().filter(|p| p.starts_with(&mount.point));
    }
    Ok(room)
}

/// The room this process's memory cgroups leave it, in bytes; `None` when none limits it.
pub(crate) fn room() -> io::Result<Option<u64>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let self_cgroup = std::fs::read_to_string("/proc/self/cgroup")?;
    let mounts = mounts(&mountinfo);
    let mut room: Option<u64> = None;
    for (leaf, mount) in own_cgroups(&self_cgroup, &mounts) {
        if let Some(left) = room_from(&leaf, mount)? {
            room = Some(room.map_or(left, |r| r.min(left)));
        }
    }
    Ok(room)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hybrid host (v1 `memory`, v2 mounted beside it) and a container that sees its
    /// own cgroup as the root (`/kubepods/pod1/c1` mounted at /sys/fs/cgroup).
    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 40 0:40 /kubepods/pod1/c1 /my\\040cgroups rw - cgroup2 cgroup2 rw
";

    #[test]
    fn the_memory_hierarchies_are_found_in_mountinfo() {
        assert_eq!(
            mounts(MOUNTINFO),
            [
                Mount {
                    root: "/".into(),
                    point: "/sys/fs/cgroup/memory".into(),
                    version: Version::V1
                },
                Mount {
                    root: "/".into(),
                    point: "/sys/fs/cgroup/unified".into(),
                    version: Version::V2
                },
                Mount {
                    root: "/kubepods/pod1/c1".into(),
                    point: "/my cgroups".into(),
                    version: Version::V2
                },
            ]
        );
    }

    #[test]
    fn our_cgroup_is_found_under_each_mount_from_its_root() {
        let mounts = mounts(MOUNTINFO);
        let ours = own_cgroups(
            "9:name=systemd:/\n4:memory:/process_api/7d67\n3:cpu:/\n0::/kubepods/pod1/c1/sub\n",
            &mounts,
        );
        let dirs: Vec<_> = ours.iter().map(|(d, m)| (d.clone(), m.version)).collect();
        assert_eq!(
            dirs,
            [
                ("/sys/fs/cgroup/memory/process_api/7d67".into(), Version::V1),
                (
                    "/sys/fs/cgroup/unified/kubepods/pod1/c1/sub".into(),
                    Version::V2
                ),
                ("/my cgroups/sub".into(), Version::V2),
            ]
        );
        // A path beside the mount's root, not under it, is not ours there.
        assert_eq!(
            own_cgroups("0::/kubepods/pod1/c10\n", &mounts[2..]).len(),
            0
        );
    }

    /// A v2 tree in a directory of the test's: the smallest room along the path counts,
    /// `memory.high` where lower than `memory.max`, `max` and absent files limit nothing.
    #[test]
    fn the_room_is_the_smallest_along_the_path() {
        let top = std::env::temp_dir().join(format!("sdk-mh-cgroup-{}", std::process::id()));
        let leaf = top.join("pod/c1");
        std::fs::create_dir_all(&leaf).unwrap();
        let write =
            |dir: &Path, name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        let mount = Mount {
            root: "/".into(),
            point: top.clone(),
            version: Version::V2,
        };
        assert_eq!(
            room_from(&leaf, &mount).unwrap(),
            None,
            "no limit files at all"
        );
        write(&leaf, "memory.max", "max\n");
        write(&leaf, "memory.current", "1000\n");
        assert_eq!(room_from(&leaf, &mount).unwrap(), None, "max is no limit");
        write(&top.join("pod"), "memory.max", "67108864\n");
        write(&top.join("pod"), "memory.current", "60000000\n");
        assert_eq!(room_from(&leaf, &mount).unwrap(), Some(67108864 - 60000000));
        write(&leaf, "memory.high", "5000\n");
        assert_eq!(room_from(&leaf, &mount).unwrap(), Some(4000));
        write(&leaf, "memory.high", "lots\n");
        let e = room_from(&leaf, &mount).unwrap_err();
        assert!(
            e.to_string().contains("`lots` is not a number of bytes"),
            "{e}"
        );
        // Used past the limit (it happens for a moment): no room, not an overflow.
        write(&leaf, "memory.high", "500\n");
        assert_eq!(room_from(&leaf, &mount).unwrap(), Some(0));
        std::fs::remove_dir_all(&top).unwrap();
    }
}
