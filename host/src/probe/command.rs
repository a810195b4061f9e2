//! The `Command` probe: an argv (no shell) that must exit 0 within its timeout. It runs
//! in a process group of its own, which is killed whole at the timeout, so a script's
//! children do not outlive it.

use std::{process::Stdio, time::Duration};

/// `Command(argv, timeout)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub(super) argv: Vec<String>,
    pub(super) timeout: Duration,
}

impl Command {
    pub(super) async fn check(&self) -> Result<String, String> {
        let (program, args) = self.argv.split_first().ok_or("an empty argv")?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok("exited 0".to_owned()),
            Ok(Ok(status)) => Err(match status.code() {
                Some(code) => format!("exited {code}"),
                None => format!("ended by a signal ({status})"),
            }),
            Ok(Err(e)) => Err(format!("cannot wait for {program}: {e}")),
            Err(_) => {
                // Its group is its own (process_group(0)): its PID names it exactly.
                if let Some(pid) = child
                    .id()
                    .and_then(|id| rustix::process::Pid::from_raw(id as i32))
                {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.wait().await;
                Err(format!(
                    "no exit within {}: killed",
                    humantime::format_duration(self.timeout)
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(argv: &[&str], timeout_ms: u64) -> Command {
        Command {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[tokio::test]
    async fn a_command_passes_on_exit_0_fails_otherwise_and_is_killed_at_its_timeout() {
        assert_eq!(
            command(&["true"], 5000).check().await,
            Ok("exited 0".into())
        );
        assert_eq!(
            command(&["false"], 5000).check().await,
            Err("exited 1".into())
        );
        // No shell: the argv is the program and its arguments, as written.
        assert_eq!(
            command(&["sh", "-c", "exit 3"], 5000).check().await,
            Err("exited 3".into())
        );
        let started = std::time::Instant::now();
        assert_eq!(
            command(&["sleep", "30"], 200).check().await,
            Err("no exit within 200ms: killed".into())
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let missing = command(&["/nonexistent/probe"], 5000)
            .check()
            .await
            .unwrap_err();
        assert!(
            missing.starts_with("cannot run /nonexistent/probe: "),
            "{missing}"
        );
    }
}
