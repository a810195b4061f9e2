//! The daemon's process itself, set up as it starts: its allocator's arenas, its name
//! after a restart, its limit of open files, and the orphans it adopts.

use crate::{output::log, support::orphans};

/// Makes the daemon the subreaper of what its workers and probe commands start, so that
/// what escaped them can be ended (`support::orphans`): at each end of one of them, and
/// at every SIGCHLD by a task of the runtime (`housekeeping`).
pub(super) fn adopt_orphans() {
    if let Err(e) = orphans::adopt() {
        log::line(format!(
            "warning: cannot adopt orphans ({e}): a process a plugin or a probe starts with setsid() or setpgid() may outlive it"
        ));
    }
}

/// Two `malloc` arenas for the whole daemon, not glibc's eight a core. glibc gives each
/// thread that allocates an arena of its own (up to eight a core) and keeps what is
/// freed in it: the API's blocking threads, the log writer and the checkpoint each held
/// some hundred KiB after a burst, though they allocate little and seldom at once. One
/// arena (what this was until 2026-12-06) made every thread wait for every other's
/// `malloc`: under `wrk -c4` a fifth of the daemon's context switches were waits for
/// that lock, the API's own thread among them. Two: 3 to 4 `futex` calls a dry-run
/// fault instead of 6 to 7, ~15% more faults a second, some 200 KiB more resident
/// after the load (ARCHITECTURE.md, what a dry-run fault costs). Set by glibc's own
/// `MALLOC_ARENA_MAX` when the environment gives it.
pub(super) fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        #[allow(unsafe_code)]
        // SAFETY: mallopt sets a tunable of glibc's allocator, under the allocator's own
        // lock; it takes no pointer and changes no memory the program holds.
        unsafe {
            nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
        }
    }
}

/// After a restart through `/proc/self/exe` the kernel names the process `exe`: it takes
/// back the name of the file it was started as (what `ps`, `top` and `pgrep` show).
pub(super) fn keep_name() {
    let named_exe = std::fs::read_to_string("/proc/self/comm").is_ok_and(|c| c.trim_end() == "exe");
    if !named_exe {
        return;
    }
    let name = std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "nightmare-monkey".to_owned());
    // The kernel keeps 15 bytes of it.
    let short: String = name.chars().take(15).collect();
    if let Ok(name) = std::ffi::CString::new(short) {
        let _ = rustix::thread::set_name(&name);
    }
}

/// Raises the soft limit of open descriptors to the hard one. The usual soft limit,
/// 1,024, is what a few hundred clients and the reverts of active faults (a pidfd each)
/// can exhaust; the hard limit is what the administrator allowed (`LimitNOFILE=`).
pub(super) fn raise_open_files() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            log::line(format!(
                "warning: cannot raise the limit of open files from {:?} to {:?}: {e}",
                limit.current, limit.maximum
            ));
        }
    }
}
