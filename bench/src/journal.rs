//! What history costs: the daemon started on a journal of many faults (a busy year, or
//! a load test's minutes), next to one started on an empty journal; and `/healthz`
//! while `GET /api/history` runs. The journal is generated here, in the journal's own
//! format, spread over the last 300 days.

use std::{
    fs,
    io::{BufWriter, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use crate::{daemon::Daemon, measure::Summary};

/// What was measured.
#[derive(Debug, Clone)]
pub struct HistoryCost {
    /// Faults journaled.
    pub faults: usize,
    /// Its size, bytes.
    pub bytes: u64,
    /// Start to listening with an empty journal, ms.
    pub start_empty: Summary,
    /// The first start on the big journal (no checkpoint yet: it reads it all once).
    pub start_first: Duration,
    /// Later starts on it, ms.
    pub start_big: Summary,
    /// RSS once listening, KiB: empty journal, big journal.
    pub rss: (u64, u64),
    /// `/healthz` latencies while `GET /api/history` (default page) runs, ms: p50, max.
    pub healthz: (f64, f64),
    /// The default page's own time, ms.
    pub page: Summary,
    /// The daemon's largest RSS while serving history, KiB.
    pub rss_history: u64,
    /// `history --since 30d` run beside it (output thrown away): how long it took, and
    /// its peak RSS in KiB.
    pub cli: (Duration, u64),
}

/// Writes a journal of `faults` dry-run faults (an intent and an outcome each).
fn generate(path: &Path, faults: usize) -> anyhow::Result<u64> {
    let mut out = BufWriter::new(fs::File::create(path)?);
    let now = chrono::Utc::now();
    let span = chrono::TimeDelta::days(300);
    for i in 0..faults {
        let at = now - span + span * i as i32 / faults.max(1) as i32;
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let id = format!("1795700000000-{i}");
        writeln!(
            out,
            r#"{{"type":"intent","id":"{id}","at":"{at}","fault":"process-kill","plugin":"process-kill","trigger":"http","requested_by":"127.0.0.1:40000","desc":"load test","dry_run":true,"master_seed":7,"stream":"fault/process-kill","stream_position":{i},"seed":{seed}}}"#,
            seed = 1_000_000_007u64.wrapping_mul(i as u64 + 1)
        )?;
        writeln!(
            out,
            r#"{{"type":"outcome","id":"{id}","at":"{at}","elapsed_ms":1,"result":"dry-run","action":"Kill","process":{{"name":"sleep","pid":{pid},"ppid":1,"cmdline":"sleep 600","user":"root","uid":0,"start_time":64996}},"signal":"SIGKILL","summary":"would send SIGKILL to sleep(PID:{pid})"}}"#,
            pid = 1000 + i % 30000
        )?;
    }
    out.flush()?;
    Ok(fs::metadata(path)?.len())
}

/// One GET, its status and time.
fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let status = String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, started.elapsed()))
}

/// Measures it with `faults` faults in the journal.
pub fn measure(
    binary: &Path,
    scratch: &Path,
    faults: usize,
    runs: usize,
) -> anyhow::Result<HistoryCost> {
    let empty_dir = scratch.join("history-empty");
    let mut empty_starts = Vec::new();
    let mut rss_empty = 0;
    for _ in 0..runs {
        let _ = fs::remove_dir_all(&empty_dir);
        let daemon = Daemon::start(binary, &empty_dir, false)?;
        empty_starts.push(daemon.startup);
        rss_empty = daemon.usage()?.rss_kib;
    }
    let big_dir = scratch.join("history-big");
    let _ = fs::remove_dir_all(&big_dir);
    fs::create_dir_all(&big_dir)?;
    eprint!("  generating a journal of {faults} faults... ");
    let bytes = generate(&big_dir.join("journal.jsonl"), faults)?;
    eprintln!("{} MB", bytes / 1_000_000);
    let first = Daemon::start(binary, &big_dir, false)?;
    let start_first = first.startup;
    drop(first);
    let mut big_starts = Vec::new();
    for _ in 0..runs.saturating_sub(1) {
        big_starts.push(Daemon::start(binary, &big_dir, false)?.startup);
    }
    let daemon = Daemon::start(binary, &big_dir, false)?;
    big_starts.push(daemon.startup);
    let rss_big = daemon.usage()?.rss_kib;
    // /healthz, over and over, while the history is asked for again and again, and
    // the command line lists the last 30 days beside.
    let addr = daemon.addr;
    let cli = {
        let binary = binary.to_owned();
        let journal = big_dir.join("journal.jsonl");
        thread::spawn(move || cli_history(&binary, &journal))
    };
    let asking = thread::spawn(move || {
        let mut pages = Vec::new();
        for _ in 0..20 {
            match get(addr, "/api/history") {
                Ok((200, took)) => pages.push(took),
                Ok((status, _)) => {
                    return Err(anyhow::anyhow!("GET /api/history answered {status}"))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(pages)
    });
    let mut health = Vec::new();
    let mut rss_history = rss_big;
    while !asking.is_finished() {
        let (status, took) = get(addr, "/healthz")?;
        anyhow::ensure!(status == 200, "/healthz answered {status}");
        health.push(took.as_secs_f64() * 1e3);
        rss_history = rss_history.max(daemon.usage()?.rss_kib);
    }
    let pages = asking
        .join()
        .map_err(|_| anyhow::anyhow!("the history thread panicked"))??;
    // The rest of the command line's run, /healthz still asked meanwhile.
    while !cli.is_finished() {
        let (status, took) = get(addr, "/healthz")?;
        anyhow::ensure!(status == 200, "/healthz answered {status}");
        health.push(took.as_secs_f64() * 1e3);
    }
    let cli = cli
        .join()
        .map_err(|_| anyhow::anyhow!("the history command's thread panicked"))??;
    drop(daemon);
    fs::remove_dir_all(&big_dir)?;
    let _ = fs::remove_dir_all(&empty_dir);
    health.sort_by(f64::total_cmp);
    Ok(HistoryCost {
        faults,
        bytes,
        start_empty: Summary::of_ms(empty_starts),
        start_first,
        start_big: Summary::of_ms(big_starts),
        rss: (rss_empty, rss_big),
        healthz: (
            crate::measure::quantile(&health, 0.5),
            health.last().copied().unwrap_or(0.0),
        ),
        page: Summary::of_ms(pages),
        rss_history,
        cli,
    })
}

/// Runs `history --journal JOURNAL --since 30d` with its output thrown away: how long it
/// took and its peak RSS (KiB, from `wait4`).
fn cli_history(binary: &Path, journal: &Path) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let child = std::process::Command::new(binary)
        .arg("history")
        .arg("--journal")
        .arg(journal)
        .args(["--since", "30d"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    #[allow(unsafe_code)]
    // SAFETY: `wait4` on our own child, with pointers to locals that outlive the call.
    let (waited, usage) = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        let waited = libc::wait4(pid, &mut status, 0, &mut usage);
        (waited, usage)
    };
    anyhow::ensure!(
        waited == pid,
        "cannot wait for history: {}",
        std::io::Error::last_os_error()
    );
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "history exited with status {status}"
    );
    Ok((started.elapsed(), usage.ru_maxrss as u64))
}
