//! What a dry-run fault costs in instructions: the daemon run under callgrind (valgrind),
//! asked `POST /api/kill` one request after another over one connection, a few and then
//! many times; the difference over the difference in requests is the user-space
//! instructions of one request, start-up and shutdown cancelled out. Unlike a rate, it
//! does not move with what else the machine runs (two runs of one build agree within a
//! few percent where their rates differ by a third), so it tells a change in the code's
//! work from noise. It counts no kernel time and no waiting: the rates still say those.

use std::{
    ffi::OsString,
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::Path,
    time::Duration,
};

use anyhow::{bail, Context as _};

use crate::daemon::Daemon;

/// The requests of the short run and of the long one.
const RUNS: [u64; 2] = [100, 600];

/// Instructions a dry-run `POST /api/kill` costs `binary` in user space (all its threads),
/// or `None` when valgrind is not installed (Debian: valgrind).
pub fn per_fault(binary: &Path, dir: &Path) -> anyhow::Result<Option<f64>> {
    let Some(valgrind) = which("valgrind") else {
        return Ok(None);
    };
    let mut totals = [0u64; 2];
    for (total, requests) in totals.iter_mut().zip(RUNS) {
        let run = dir.join(format!("callgrind-{requests}"));
        fs::create_dir_all(&run)?;
        let out = run.join("callgrind.out");
        let wrapper: [OsString; 3] = [
            valgrind.clone().into(),
            "--tool=callgrind".into(),
            format!("--callgrind-out-file={}", out.display()).into(),
        ];
        let daemon = Daemon::start_wrapped(&wrapper, binary, &run)?;
        ask(&daemon, requests)?;
        // SIGTERM and a wait: callgrind writes its counts as the daemon exits.
        drop(daemon);
        *total = summary(&out)?;
    }
    let [short, long] = totals;
    Ok(Some(
        long.saturating_sub(short) as f64 / (RUNS[1] - RUNS[0]) as f64,
    ))
}

/// Asks `daemon` for `requests` dry-run faults, one after another on one connection.
fn ask(daemon: &Daemon, requests: u64) -> anyhow::Result<()> {
    let stream = TcpStream::connect(daemon.addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let body = br#"{"desc":"bench"}"#;
    let request = format!(
        "POST /api/kill HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        daemon.addr,
        body.len()
    );
    let mut line = String::new();
    for n in 0..requests {
        writer.write_all(request.as_bytes())?;
        writer.write_all(body)?;
        line.clear();
        reader.read_line(&mut line)?;
        if !line.starts_with("HTTP/1.1 200") {
            bail!(
                "request {n}: the daemon answered {:?}, not 200",
                line.trim_end()
            );
        }
        let mut length = 0;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().context("a bad Content-Length")?;
                }
            }
        }
        let mut answer = vec![0; length];
        reader.read_exact(&mut answer)?;
    }
    Ok(())
}

/// The total of a callgrind output file (its `summary:` or `totals:` line).
fn summary(out: &Path) -> anyhow::Result<u64> {
    let text =
        fs::read_to_string(out).with_context(|| format!("callgrind wrote no {}", out.display()))?;
    parse_summary(&text).with_context(|| format!("no summary in {}", out.display()))
}

fn parse_summary(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
}

/// `program` on the PATH.
fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_is_read() {
        let text = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 169115577\n\ntotals: 169115757\n";
        assert_eq!(parse_summary(text), Some(169_115_577));
        assert_eq!(parse_summary("events: Ir\ntotals: 12\n"), Some(12));
        assert_eq!(parse_summary("events: Ir\n"), None);
        assert_eq!(parse_summary("summary: many\n"), None);
    }
}
