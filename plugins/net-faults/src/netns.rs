//! Where a network fault strikes: the daemon's own network namespace, or with `scope`
//! the network namespace of one process (a container, a service), so that its traffic
//! is hit and the host's is not.
//!
//! The namespace is named by a process and pinned by its inode (`/proc/PID/ns/net`),
//! both journaled with the prepared fault: a revert enters that very namespace, through
//! the process or any other still in it, and never another one that reused the PID.
//! The netlink socket to nf_tables (and `tc`, a child process) is opened there from a
//! thread of its own that entered it (`setns`): a socket belongs to the namespace of
//! the thread that opened it, a child process starts in its parent thread's, and the
//! daemon's other threads never leave theirs.

use std::{
    fs::File,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use nightmare_monkey_plugin_api::sdk::{process::Scope, ErrorKind, PluginError};
use serde::{Deserialize, Serialize};

/// A network namespace, as a process in it and its inode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// A process in it.
    pub pid: u32,
    /// The namespace's inode (`stat -L /proc/PID/ns/net`).
    pub inode: u64,
}

/// The process whose namespace `scope` names: the PID of `Tree` and `Namespace`, the
/// first process of a cgroup (every process of one container shares its namespace).
fn anchor(scope: &Scope) -> Result<u32, PluginError> {
    match scope {
        Scope::Tree(pid) | Scope::Namespace(pid) => Ok(*pid),
        Scope::Cgroup(path) => {
            let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
            let mut todo = vec![dir.clone()];
            while let Some(dir) = todo.pop() {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                if let Some(pid) = procs.lines().find_map(|l| l.trim().parse().ok()) {
                    return Ok(pid);
                }
                let mut below: Vec<_> = std::fs::read_dir(&dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect();
                below.sort();
                todo.extend(below.into_iter().rev());
            }
            Err(PluginError::new(
                ErrorKind::NoTarget,
                format!(
                    "scope: no process in cgroup {} to take the network namespace of",
                    dir.display()
                ),
            ))
        }
    }
}

fn link(pid: u32) -> String {
    format!("/proc/{pid}/ns/net")
}

/// The namespace `scope` names, now.
pub fn resolve(scope: &Scope) -> Result<Target, PluginError> {
    let pid = anchor(scope)?;
    let meta = std::fs::metadata(link(pid)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            return PluginError::new(
                ErrorKind::Denied,
                format!("scope: cannot read the network namespace of PID {pid}: {e} (another user's /proc/PID/ns/net needs CAP_SYS_PTRACE)"),
            );
        }
        PluginError::new(
            ErrorKind::NoTarget,
            format!("scope: cannot read the network namespace of PID {pid}: {e}"),
        )
    })?;
    Ok(Target {
        pid,
        inode: meta.ino(),
    })
}

/// Opens `target`'s namespace through its process, or, if that one has left it, through
/// anything else that holds it: any process or thread in it, a name `ip netns` gave it,
/// a bind mount of it elsewhere (Docker's `/run/docker/netns/...`, podman's), or a
/// descriptor a process keeps open on it. `None` once nothing of these holds it (then
/// it is gone, and its rules with it).
pub fn open(target: &Target) -> Option<File> {
    let same = |path: &Path| {
        let file = File::open(path).ok()?;
        (file.metadata().ok()?.ino() == target.inode).then_some(file)
    };
    if let Some(file) = same(Path::new(&link(target.pid))) {
        return Some(file);
    }
    let entries = |dir: &Path| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
    };
    let numbered = |path: &PathBuf| {
        path.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
    };
    let processes: Vec<PathBuf> = entries(Path::new("/proc")).filter(numbered).collect();
    let held = processes.iter().map(|p| p.join("ns/net"));
    let threads = processes
        .iter()
        .flat_map(|p| entries(&p.join("task")))
        .map(|t| t.join("ns/net"));
    let named = entries(Path::new("/run/netns"));
    let mounted = nsfs_mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
    let link_text = format!("net:[{}]", target.inode);
    let open_fds = processes
        .iter()
        .flat_map(|p| entries(&p.join("fd")))
        .filter(|fd| std::fs::read_link(fd).is_ok_and(|to| to.as_os_str() == link_text.as_str()));
    held.chain(threads)
        .chain(named)
        .chain(mounted)
        .chain(open_fds)
        .find_map(|path| same(&path))
}

/// The mount points of namespace files (`nsfs`) in `mountinfo`: where a namespace is
/// bound to a path (`ip netns`, a container engine's own directory).
fn nsfs_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (fields, rest) = line.split_once(" - ")?;
            (rest.split_whitespace().next()? == "nsfs").then_some(())?;
            let point = fields.split_whitespace().nth(4)?;
            Some(PathBuf::from(unescape_mount(point)))
        })
        .collect()
}

/// A mount point as mountinfo writes it: space, tab, newline and backslash as `\NNN`.
fn unescape_mount(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The namespace a prepared fault is applied in: `None` for the daemon's own; an error
/// (nothing applied) if `target`'s namespace is gone.
pub fn open_to_apply(target: Option<&Target>) -> Result<Option<File>, PluginError> {
    let Some(target) = target else {
        return Ok(None);
    };
    open(target).map(Some).ok_or_else(|| {
        PluginError::new(
            ErrorKind::NoTarget,
            format!(
                "the network namespace of PID {} is gone: nothing applied",
                target.pid
            ),
        )
    })
}

/// Runs `work` in the network namespace `namespace` (here, for `None`).
pub fn within<R: Send>(
    namespace: Option<&File>,
    work: impl FnOnce() -> Result<R, PluginError> + Send,
) -> Result<R, PluginError> {
    let Some(namespace) = namespace else {
        return work();
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(namespace),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| {
                    PluginError::new(
                        ErrorKind::Denied,
                        format!("cannot enter the network namespace: {e} (it needs CAP_SYS_ADMIN)"),
                    )
                })?;
                work()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(PluginError::new(
                    ErrorKind::Failed,
                    "the thread in the network namespace panicked",
                ))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In the test's user namespace, PID 1 (of the machine or the container) is a
    /// process of another user namespace: reading its namespace takes CAP_SYS_PTRACE
    /// there, which this test does not have, whoever runs it.
    #[test]
    fn a_namespace_the_daemon_may_not_read_is_refused_naming_cap_sys_ptrace() {
        if !crate::testns::inside(
            "netns::tests::a_namespace_the_daemon_may_not_read_is_refused_naming_cap_sys_ptrace",
        ) {
            return;
        }
        let e = resolve(&Scope::Namespace(1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Denied, "{}", e.message);
        assert!(
            e.message
                .starts_with("scope: cannot read the network namespace of PID 1: "),
            "{}",
            e.message
        );
        assert!(
            e.message
                .ends_with("(another user's /proc/PID/ns/net needs CAP_SYS_PTRACE)"),
            "{}",
            e.message
        );
    }

    /// A namespace bound to a path is found wherever it is mounted, escapes and all;
    /// other mounts are not taken for one.
    #[test]
    fn namespace_files_are_found_where_they_are_mounted() {
        let mountinfo = "\
29 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
519 30 0:4 net:[4026532565] /run/netns/blue rw,nosuid shared:261 - nsfs nsfs rw
520 30 0:4 net:[4026532566] /run/docker/netns/a\\040b rw shared:262 - nsfs nsfs rw
521 30 0:4 / /mnt/nsfs-looking rw - tmpfs nsfs rw
";
        assert_eq!(
            nsfs_mounts(mountinfo),
            [
                PathBuf::from("/run/netns/blue"),
                PathBuf::from("/run/docker/netns/a b")
            ]
        );
        assert_eq!(unescape_mount("a\\011b\\134c\\9"), "a\tb\\c\\9");
    }
}
