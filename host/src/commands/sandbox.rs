//! `nightmare-monkey sandbox [flags] -- COMMAND`: a practice ground. The command runs in a
//! fresh PID namespace (made with `unshare`, which works as root and unprivileged), the
//! monkey runs there as its PID 1 with `--execute`, and it can only see, and so only hit,
//! the processes the command starts. Faults that act outside the PID namespace (files, CPU)
//! are refused. The sandbox ends, reverting what is in effect, when the command exits.
//!
//! Practice is kept apart from real drills: the sandbox keeps its journal and pause file
//! in a state directory of its own (`<state dir>/sandbox`), so its real faults never
//! count in a daemon's budget or report. A separate directory rather than marked records:
//! nothing that reads a journal (the budget, `report`, `history`, recovery) has to know
//! about practice, and one that forgot could not mix it in.

use std::{ffi::OsString, os::unix::ffi::OsStrExt as _, path::PathBuf, process::Command};

use anyhow::{anyhow, bail, Context as _};

use crate::{
    cli::SandboxArgs,
    config,
    output::log,
    runtime::daemon,
    support::{lock::lock, state, UsageError},
};

/// The built-in faults that can only touch processes, and so only the sandbox's.
const PROCESS_FAULTS: &[&str] = &["process-kill", "process-pause"];

/// Where a sandbox keeps its state unless `--state-dir` says: beside the daemon's, never
/// in it. Decided outside the namespace, as the user who runs it (inside, every user is
/// root, whose default is not this user's).
fn default_state_dir() -> PathBuf {
    state::default_dir().join("sandbox")
}

/// `sandbox`: re-runs this command line as `__sandbox-init` inside a new PID namespace
/// (through `unshare`, which ignores SIGTERM and SIGINT while it waits), and stays to
/// pass the command's status on. Killed at its own PID, it hands the stop to the monkey,
/// PID 1 inside, which shuts down as it would on the host, reverting what is in effect;
/// the command ends with the namespace. SIGTERM and SIGINT are handed on as they are
/// (Ctrl-C reaches the monkey from the terminal too: the same stop); SIGHUP, SIGQUIT,
/// SIGUSR1 and SIGUSR2, which would end a plain command, stop it as SIGTERM does (a
/// SIGHUP handed on would ask the monkey to restart, which the sandbox cannot). Killed
/// by a signal it cannot catch (SIGKILL), it takes `unshare` with it, and so the
/// namespace: nothing it started outlives it to go on injecting.
pub fn enter(args: &SandboxArgs) -> anyhow::Result<()> {
    let mut argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(at) = argv.iter().position(|a| a == "sandbox") else {
        bail!("cannot find the sandbox subcommand in the command line");
    };
    argv[at] = OsString::from("__sandbox-init");
    if let Some(dir) = &args.daemon.state_dir {
        apart_from_daemons(dir)?;
    }
    if args.daemon.state_dir.is_none() {
        let dir = std::path::absolute(default_state_dir())
            .context("cannot find the sandbox's state directory")?;
        argv.splice(at + 1..at + 1, [OsString::from("--state-dir"), dir.into()]);
    }
    let judged = judged_plugins(args);
    let me = std::env::current_exe().context("cannot find this program's own path")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the sandbox's runtime")?;
    let status = runtime.block_on(async {
        let mut stops = forward_stops()?;
        // Blocked since this process began (`main`): one that came meanwhile reaches the
        // handlers now, and is handed on as any other.
        crate::runtime::stop::unblock_for_handlers();
        let mut command = Command::new("unshare");
        command
            .args([
                "--user",
                "--map-root-user",
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
            ])
            .arg(&me)
            .args(argv)
            .env(JUDGED_PLUGINS, judged);
        let mut child = ends_with_this_process(&mut command).spawn().map_err(|e| {
            anyhow!("cannot run unshare (from util-linux) to make the sandbox: {e}")
        })?;
        let unshare = child.id();
        let mut wait = tokio::task::spawn_blocking(move || child.wait());
        // A stop not yet sure to be taken: sent again until it is.
        let mut pending = None;
        loop {
            tokio::select! {
                status = &mut wait => {
                    return status
                        .context("cannot wait for the sandbox")?
                        .context("cannot wait for the sandbox");
                }
                Some(signal) = stops.recv() => pending = Some(signal),
                () = tokio::time::sleep(RESEND), if pending.is_some() => {}
            }
            if let Some(signal) = pending {
                if hand_on(unshare, signal, &me) {
                    pending = None;
                }
            }
        }
    })?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => std::process::exit(code),
        None => bail!("the sandbox was killed by a signal"),
    }
}

/// The signals that stop the sandbox, each with the one the monkey is sent for it.
const STOPS: [(i32, rustix::process::Signal); 6] = [
    (nix::libc::SIGTERM, rustix::process::Signal::TERM),
    (nix::libc::SIGINT, rustix::process::Signal::INT),
    (nix::libc::SIGHUP, rustix::process::Signal::TERM),
    (nix::libc::SIGQUIT, rustix::process::Signal::TERM),
    (nix::libc::SIGUSR1, rustix::process::Signal::TERM),
    (nix::libc::SIGUSR2, rustix::process::Signal::TERM),
];

/// Handles the [`STOPS`] (in the current runtime): each one received comes out of the
/// channel as the signal to send the monkey.
fn forward_stops() -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<rustix::process::Signal>>
{
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for (number, forward) in STOPS {
        let mut received = signal(SignalKind::from_raw(number))
            .with_context(|| format!("cannot handle signal {number}"))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while received.recv().await.is_some() {
                if tx.send(forward).is_err() {
                    break;
                }
            }
        });
    }
    Ok(rx)
}

/// Has `command`'s child (`unshare`) killed when this process ends, however it ends: a
/// SIGKILL leaves no handler to stop the monkey, which would go on injecting faults in
/// a namespace nobody waits for. `unshare --kill-child` passes it on (its own child, the
/// monkey, is killed with it, and the namespace with its PID 1).
fn ends_with_this_process(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    let parent = rustix::process::getpid();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls may be made: `prctl` and `getppid`, system calls both; it
    // allocates and locks nothing (the error is made from a number).
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // This process ended before the prctl: the child has been reparented
            // already, and no death signal will ever come.
            if rustix::process::getppid() != Some(parent) {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        })
    }
}

/// Refuses a `--state-dir` that is a daemon's (this user's default one, or root's): its
/// journal would mix practice into real drills.
fn apart_from_daemons(dir: &std::path::Path) -> anyhow::Result<()> {
    let same = |a: &std::path::Path, b: &std::path::Path| resolved(a) == resolved(b);
    let daemons = [
        state::default_dir(),
        PathBuf::from("/var/lib/nightmare-monkey"),
    ];
    if let Some(daemon) = daemons.iter().find(|d| same(dir, d)) {
        return Err(UsageError(anyhow!(
            "sandbox: --state-dir {}: that is a daemon's state directory ({}); practice keeps apart from real drills: give another, or leave it out for {}",
            dir.display(),
            daemon.display(),
            default_state_dir().display()
        ))
        .into());
    }
    Ok(())
}

/// `path` as the kernel finds it once the state directory is created: its longest part
/// that exists resolved (symbolic links, and `..` through them), the rest with its `..`
/// applied as written (it holds no link, not existing yet). `daemon/new/..` is `daemon`.
fn resolved(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let Ok(absolute) = std::path::absolute(path) else {
        return path.to_owned();
    };
    let parts: Vec<Component> = absolute.components().collect();
    for exists in (1..=parts.len()).rev() {
        let Ok(mut real) = std::fs::canonicalize(parts[..exists].iter().collect::<PathBuf>())
        else {
            continue;
        };
        for part in &parts[exists..] {
            match part {
                Component::ParentDir => {
                    real.pop();
                }
                Component::Normal(name) => real.push(name),
                _ => {}
            }
        }
        return real;
    }
    absolute
}

/// Where `sandbox` tells its init which plugin files passed the trust checks outside.
const JUDGED_PLUGINS: &str = "NIGHTMARE_MONKEY_JUDGED_PLUGINS";

/// The plugin files (and directories) the sandbox's configuration loads that pass the
/// trust checks here, as the user who runs it, one path a line: inside the namespace
/// root's files show as owned by nobody and every check would fail. A configuration
/// that does not load is left to the init to refuse.
fn judged_plugins(args: &SandboxArgs) -> OsString {
    let Ok(config) = config::load(&args.daemon) else {
        return OsString::new();
    };
    let judged = crate::plugin::judged_here(
        &config
            .plugin_files
            .iter()
            .map(|(p, _)| p.clone())
            .collect::<Vec<_>>(),
        &config.plugin_dirs,
    );
    let mut lines = OsString::new();
    // A path with a newline in it cannot be said this way: it is judged again inside.
    for path in judged
        .iter()
        .filter(|p| !p.as_os_str().as_bytes().contains(&b'\n'))
    {
        lines.push(path);
        lines.push("\n");
    }
    lines
}

/// How soon a stop the monkey could not take yet is sent again.
const RESEND: std::time::Duration = std::time::Duration::from_millis(10);

/// Sends `signal` to the sandbox's PID 1; whether it is sure to be taken. Until the
/// monkey (the program at `me`) runs there with the stop signals blocked, which it does
/// from its first instant on (`runtime::stop`), a signal is lost: before `unshare` has
/// forked there is no PID 1, and a PID 1 drops a signal it neither catches nor blocks
/// (`unshare`'s child before its exec, the monkey before its first instruction).
/// Blocked, it stays pending until the monkey reads it.
fn hand_on(unshare: u32, signal: rustix::process::Signal, me: &std::path::Path) -> bool {
    let Some(init) = namespace_init(unshare) else {
        return false;
    };
    // Looked at before the signal is sent: blocked then, it is blocked when it comes.
    let ready = blocks(init, signal, me);
    rustix::process::kill_process(init, signal).is_ok() && ready
}

/// Whether `pid` runs the program at `me` with `signal` blocked (read from /proc; what
/// cannot be read is taken for no).
fn blocks(
    pid: rustix::process::Pid,
    signal: rustix::process::Signal,
    me: &std::path::Path,
) -> bool {
    let pid = pid.as_raw_nonzero();
    if std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .as_deref()
        != Some(me)
    {
        return false;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal.as_raw() - 1)) != 0)
}

/// The PID of the child `unshare` (PID `unshare`) forked into the new namespace: the
/// monkey, its PID 1.
fn namespace_init(unshare: u32) -> Option<rustix::process::Pid> {
    let children =
        std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).ok()?;
    let pid = children.split_whitespace().next()?.parse::<i32>().ok()?;
    rustix::process::Pid::from_raw(pid)
}

/// `__sandbox-init`: PID 1 of the sandbox. Starts the command, reaps every orphan (the job
/// of a PID 1), runs the monkey until the command exits, and exits with its status.
pub fn init(args: SandboxArgs) -> anyhow::Result<()> {
    crate::output::log::init(args.daemon.log_format.unwrap_or_default());
    if std::process::id() != 1 {
        return Err(UsageError(anyhow!(
            "__sandbox-init runs only as PID 1 of a new PID namespace: use `nightmare-monkey sandbox`"
        ))
        .into());
    }
    // Before the command and the reaper start: every thread must leave the stop
    // signals to the monkey's descriptor (`runtime::stop`).
    crate::runtime::stop::install()?;
    // What was judged outside, as the user who runs the sandbox.
    if let Some(judged) = std::env::var_os(JUDGED_PLUGINS) {
        crate::plugin::checked_outside(
            judged
                .as_bytes()
                .split(|b| *b == b'\n')
                .filter(|p| !p.is_empty())
                .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p))),
        );
    }
    let mut daemon_args = args.daemon;
    daemon_args.execute = true;
    // The sandbox shares the host's network: never take a port someone else uses. An
    // address without a port takes a free one too (not the daemon's 8080).
    if daemon_args.port.is_none() {
        let ip = match daemon_args.listen.as_deref() {
            None => Some(std::net::Ipv4Addr::LOCALHOST.into()),
            Some(text) => crate::triggers::http::bare_ip(text),
        };
        if let Some(ip) = ip {
            daemon_args.listen = Some(std::net::SocketAddr::new(ip, 0).to_string());
        }
    }
    let state_dir = daemon_args
        .state_dir
        .clone()
        .unwrap_or_else(default_state_dir);
    daemon_args.state_dir = Some(state_dir.clone());
    let mut config = config::load(&daemon_args).map_err(|e| UsageError(e.into()))?;
    // A config copied from a real daemon names its journal and pause file: practice
    // keeps to its own.
    config.journal = state_dir.join("journal.jsonl");
    config.pause_file = state_dir.join("paused");
    process_faults_only(&config, &args.process_plugins)?;
    // A poller's own state file and the notifiers are a real daemon's too: its pollers
    // keep their count here, and practice tells no one.
    for poller in &mut config.pollers {
        let name = poller.state_file.file_name().map(PathBuf::from);
        poller.state_file = state_dir.join(name.unwrap_or_else(|| "poller.json".into()));
    }
    if !config.notifiers.is_empty() {
        log::line(format!(
            "Sandbox: the {} configured notifier{} stay{} quiet: practice tells no one",
            config.notifiers.len(),
            if config.notifiers.len() == 1 { "" } else { "s" },
            if config.notifiers.len() == 1 { "s" } else { "" }
        ));
        config.notifiers.clear();
    }
    // Nor does it join the fleet: its faults would take the fleet's slots, budget and
    // history, and its leaving would drop a member named as the host is.
    if config.fleet.take().is_some() {
        log::line("Sandbox: the config's fleet is left out: practice takes none of its slots");
    }
    // Nor listens for the config's proxies: the sandbox shares the host's network, where
    // they would take a real port (or fail on one a daemon holds) and forward to the real
    // upstream; and the net-proxy fault, their one use, is refused there.
    if !config.proxies.is_empty() {
        log::line(format!(
            "Sandbox: the config's proxies are left out ({}): practice listens on none of the host's ports",
            config
                .proxies
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        config.proxies.clear();
    }
    // The API's port is tried before the command starts: one that is taken stops the
    // monkey's start, and the command would have run for nothing. (Let go at once: the
    // monkey binds it again in a moment.)
    if let Some(http) = config.http.as_ref().filter(|h| h.listen.port() != 0) {
        if let Err(e) = std::net::TcpListener::bind(http.listen) {
            return Err(UsageError(anyhow!(
                "sandbox: cannot listen on {} for the API: {e}: give another address with --listen or --port, or leave them out for a free port",
                http.listen
            ))
            .into());
        }
    }
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| UsageError(anyhow!("give the command to run after --")))?;
    // The monkey blocks the stop signals; the command must not inherit that.
    let child = crate::support::child::stop_signals_unblocked(&mut Command::new(program))
        .args(rest)
        .env_remove(JUDGED_PLUGINS)
        .spawn()
        .map_err(|e| UsageError(anyhow!("cannot start {}: {e}", program.to_string_lossy())))?;
    let command_pid = child.id();
    // The reaper owns every wait from here on, the command's included.
    std::mem::forget(child);
    log::line(format!(
        "Sandbox: {} runs as PID {command_pid}; the monkey executes faults on it and on what it starts, nothing else",
        program.to_string_lossy()
    ));
    log::line(format!(
        "Sandbox: its journal is apart from any daemon's (report --journal {})",
        config.journal.display()
    ));
    let (ended, on_end) = tokio::sync::oneshot::channel();
    let status = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = status.clone();
    std::thread::Builder::new()
        .name("reaper".to_owned())
        .spawn(move || {
            let mut ended = Some(ended);
            loop {
                match rustix::process::waitpid(None, rustix::process::WaitOptions::empty()) {
                    Ok(Some((pid, exit))) if pid.as_raw_nonzero().get() as u32 == command_pid => {
                        let code = exit
                            .exit_status()
                            .or_else(|| exit.terminating_signal().map(|s| 128 + s))
                            .unwrap_or(1);
                        *lock(&seen) = Some(code);
                        if let Some(ended) = ended.take() {
                            let _ = ended.send(());
                        }
                    }
                    Ok(_) => {}
                    // No children left at all: nothing more will ever need reaping.
                    Err(_) => break,
                }
            }
        })
        .context("cannot start the reaper")?;
    // The command's status comes first, even if the monkey stopped with something
    // abandoned (that error, named in the log, is the exit status only if the command
    // itself succeeded).
    let monkey = daemon::run_config(config, Some(on_end));
    let Some(code) = *lock(&status) else {
        // Stopped by a signal (the sandbox's own PID killed, Ctrl-C), or the monkey
        // could not start: the command ends with the namespace, as this process, its
        // PID 1, exits.
        if monkey.is_err() && crate::runtime::stop::requested().is_none() {
            log::line(
                "Sandbox: the monkey could not run (the error follows); the command ends with the sandbox",
            );
        } else {
            log::line("Sandbox: stopped before the command exited; it ends with the sandbox");
        }
        return monkey;
    };
    log::line(format!("Sandbox: the command exited with status {code}"));
    if code != 0 {
        if let Err(e) = &monkey {
            log::line(format!("error: {e:#}"));
        }
        // The queued lines, this one included, would be lost with the process.
        log::flush(std::time::Duration::from_secs(1));
        std::process::exit(code);
    }
    monkey
}

/// Refuses a fault that may act outside the PID namespace: a built-in other than the
/// process faults, or a plugin file's that `--process-plugin` does not vouch for (the
/// sandbox cannot tell what a file does; it confines what a fault can see of processes,
/// not the files or the network it may touch).
fn process_faults_only(config: &config::Config, vouched: &[String]) -> anyhow::Result<()> {
    let builtins: Vec<String> = crate::plugin::builtins()
        .into_iter()
        .map(|p| p.manifest.name)
        .collect();
    if let Some(name) = vouched
        .iter()
        .find(|n| builtins.contains(n) && !PROCESS_FAULTS.contains(&n.as_str()))
    {
        return Err(UsageError(anyhow!(
            "sandbox: --process-plugin {name}: {name} is a built-in that acts outside the PID namespace; only process faults ({}) and plugin files run in the sandbox",
            PROCESS_FAULTS.join(", ")
        ))
        .into());
    }
    if let Some(name) = vouched
        .iter()
        .find(|n| !builtins.contains(n) && !config.faults.iter().any(|f| &f.plugin == *n))
    {
        let used: Vec<&str> = config.faults.iter().map(|f| f.plugin.as_str()).collect();
        return Err(UsageError(anyhow!(
            "sandbox: --process-plugin {name}: no configured fault uses a plugin of that name (the faults use: {})",
            used.join(", ")
        ))
        .into());
    }
    for f in &config.faults {
        let plugin = f.plugin.as_str();
        if PROCESS_FAULTS.contains(&plugin) || vouched.iter().any(|v| v == plugin) {
            continue;
        }
        let why = if builtins.iter().any(|b| b == plugin) {
            format!(
                "acts outside the PID namespace; only process faults ({}) run in the sandbox",
                PROCESS_FAULTS.join(", ")
            )
        } else {
            format!("comes from a plugin file, which the sandbox runs only if it acts on processes alone: say so with --process-plugin {plugin}")
        };
        return Err(UsageError(anyhow!(
            "sandbox: fault `{}` (plugin {plugin}) {why}",
            f.name
        ))
        .into());
    }
    Ok(())
}
