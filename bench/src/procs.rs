//! The processes a benchmark runs among: idle children forked by the harness (PID 1 of
//! its own PID namespace), named so that a name filter has something to reject.

use std::{ffi::CString, fs};

use anyhow::bail;

/// The short name most children get; [`RARE`] is the name of every tenth.
pub const COMMON: &str = "nm-idle-worker";
/// The name of one child in ten.
pub const RARE: &str = "nm-idle-batch";

/// The idle children started so far.
#[derive(Debug, Default)]
pub struct Crowd {
    pids: Vec<libc::pid_t>,
}

impl Crowd {
    /// Forks children until `/proc` lists `total` processes (this one included).
    pub fn grow_to(&mut self, total: usize) -> anyhow::Result<()> {
        let names = [CString::new(COMMON)?, CString::new(RARE)?];
        let mut listed = count_processes()?;
        while listed < total {
            let name = &names[usize::from(self.pids.len() % 10 == 9)];
            self.pids.push(fork_idle(name)?);
            listed += 1;
        }
        Ok(())
    }

    /// How many children there are.
    pub fn len(&self) -> usize {
        self.pids.len()
    }
}

/// Forks a child that names itself `name` and sleeps until it is killed.
#[allow(unsafe_code)]
fn fork_idle(name: &CString) -> anyhow::Result<libc::pid_t> {
    // SAFETY: the child only calls async-signal-safe functions (prctl, pause) and never
    // returns into Rust code, so forking from a process with threads is sound.
    match unsafe { libc::fork() } {
        -1 => bail!(
            "cannot start another idle process: {} (see ulimit -u and pids.max)",
            std::io::Error::last_os_error()
        ),
        0 => unsafe {
            libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
            loop {
                libc::pause();
            }
        },
        pid => Ok(pid),
    }
}

/// How many processes `/proc` lists now.
pub fn count_processes() -> anyhow::Result<usize> {
    Ok(fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .count())
}
