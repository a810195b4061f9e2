//! Journal store benchmark: append-only JSON Lines (open + flock + append + fdatasync per
//! record) versus SQLite (rusqlite bundled, WAL, synchronous=FULL, two commits per fault).
//!
//! Usage:
//!   sqlite-compare [all] [--n 250000] [--measure 2000] [--runs 2] [--at-end 500] [--dir DIR]
//!   sqlite-compare rss-sqlite DB INSTANT      (subprocess: open+query timings, then VmHWM)
//!   sqlite-compare rss-jsonl FILE             (subprocess: read last 64 KiB block, then VmHWM)
//!   sqlite-compare rss-baseline               (subprocess: nothing, then VmHWM)

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use rusqlite::{Connection, params};
use serde_json::json;

const INTENT_TARGET: usize = 450;
const OUTCOME_TARGET: usize = 500;
const RUN_START_MS: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const ACTIVE_AT_END: usize = 5; // the last few faults stay active (not reverted)
const REPS: usize = 20;
const BLOCK: u64 = 64 * 1024;

// ---------------------------------------------------------------- records

fn days_to_civil(z: i64) -> (i64, u32, u32) {
    // Howard Hinnant's civil_from_days.
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, mo, d) = days_to_civil((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

/// Instant of fault `i`: one every ~37 s.
fn at_ms(i: usize) -> u64 {
    RUN_START_MS + i as u64 * 37_013
}

struct Fault {
    id: String,
    at: String,
    fault: String,
    intent: String,
    outcome: String,
    revert_state: Option<String>,
}

fn pad_to(mut v: serde_json::Value, field: &str, target: usize) -> String {
    let base = serde_json::to_string(&v).unwrap();
    if base.len() < target {
        let cur = v[field].as_str().unwrap_or("").to_owned();
        let extra = target - base.len();
        let filler: String = "lorem ipsum dolor sit amet ".chars().cycle().take(extra).collect();
        v[field] = json!(format!("{cur}{filler}"));
    }
    serde_json::to_string(&v).unwrap()
}

const FAULTS: [&str; 6] = ["kill-worker", "pause-db", "net-delay", "disk-full", "cpu-hog", "stop-cache"];

fn make_fault(i: usize) -> Fault {
    let id = format!("{RUN_START_MS}-{i}");
    let at = rfc3339(at_ms(i));
    let done = rfc3339(at_ms(i) + 120);
    let fault = FAULTS[i % FAULTS.len()].to_owned();
    let reversible = i % 3 != 0;
    let intent = json!({
        "type": "intent", "id": id, "at": at, "fault": fault, "plugin": "process",
        "trigger": "timer", "requested_by": "127.0.0.1:40112 token=ops",
        "desc": "scheduled chaos: ", "dry_run": false, "master_seed": 0x5eed_1234_abcd_u64,
        "stream": format!("fault/{fault}"), "stream_position": i as u64,
        "seed": (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    });
    let intent = pad_to(intent, "desc", INTENT_TARGET);
    let revert_state = reversible.then(|| {
        serde_json::to_string(&json!({"pid": 10_000 + i % 50_000, "signal": "SIGCONT",
            "start_time": 123_456_789 + i as u64, "comm": "worker"}))
        .unwrap()
    });
    let mut outcome = json!({
        "type": "outcome", "id": id, "at": done, "elapsed_ms": 120,
        "result": if reversible { "paused" } else { "killed" },
        "action": if reversible { "paused" } else { "killed" },
        "process": {"pid": 10_000 + i % 50_000, "name": "worker", "cmdline": "/usr/bin/worker --serve", "start_time": 123_456_789 + i as u64},
        "signal": if reversible { "SIGSTOP" } else { "SIGKILL" },
        "summary": "acted on worker: ",
    });
    if let Some(rs) = &revert_state {
        outcome["revert"] = serde_json::from_str(rs).unwrap();
        outcome["revert_due"] = json!(rfc3339(at_ms(i) + 30_000));
    }
    let outcome = pad_to(outcome, "summary", OUTCOME_TARGET);
    Fault { id, at, fault, intent, outcome, revert_state }
}

// ---------------------------------------------------------------- JSONL

/// Mimics the daemon's `Journal::append`: open (read+append+create) per record, flock
/// exclusive, fstat + stat(path) (rotation check), read the last byte, write the line,
/// fdatasync when durable.
fn jsonl_append(path: &Path, line: &str, durable: bool) -> io::Result<()> {
    let file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
    file.lock()?;
    let held = file.metadata()?;
    let _now = fs::metadata(path)?;
    let len = held.len();
    let mut buf = Vec::with_capacity(line.len() + 2);
    if len > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, len - 1)?;
        if last[0] != b'\n' {
            buf.push(b'\n');
        }
    }
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    (&file).write_all(&buf)?;
    if durable {
        file.sync_data()?;
    }
    Ok(())
}

fn jsonl_fault(path: &Path, f: &Fault, durable: bool) -> io::Result<()> {
    jsonl_append(path, &f.intent, durable)?;
    jsonl_append(path, &f.outcome, durable)
}

// ---------------------------------------------------------------- SQLite

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS faults(
    id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    fault TEXT NOT NULL,
    intent JSON TEXT NOT NULL,
    outcome JSON TEXT,
    revert_state TEXT,
    reverted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS faults_at ON faults(at);
CREATE INDEX IF NOT EXISTS faults_active ON faults(at)
    WHERE revert_state IS NOT NULL AND reverted = 0;
";
const INSERT: &str = "INSERT INTO faults(id, at, fault, intent) VALUES (?1, ?2, ?3, ?4)";
const UPDATE: &str = "UPDATE faults SET outcome = ?2, revert_state = ?3, reverted = ?4 WHERE id = ?1";
const REVERT: &str = "UPDATE faults SET reverted = 1 WHERE id = ?1";
const ACTIVE: &str = "SELECT id, at, fault, outcome, revert_state FROM faults \
                      WHERE revert_state IS NOT NULL AND reverted = 0 ORDER BY at";
const LATEST: &str = "SELECT id, at, fault, intent, outcome, revert_state, reverted FROM faults \
                      WHERE at < ?1 ORDER BY at DESC LIMIT 100";

fn sqlite_open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    assert_eq!(mode, "wal");
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// One fault as the daemon would do it: INSERT intent (autocommit = its own
/// transaction, one WAL commit), then UPDATE outcome (second commit).
fn sqlite_fault(conn: &Connection, f: &Fault) -> rusqlite::Result<()> {
    conn.prepare_cached(INSERT)?.execute(params![f.id, f.at, f.fault, f.intent])?;
    conn.prepare_cached(UPDATE)?.execute(params![f.id, f.outcome, f.revert_state, 0])?;
    Ok(())
}

// ---------------------------------------------------------------- stats

struct Stats {
    median: f64,
    p99: f64,
    mean: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let n = v.len();
    let p99_idx = ((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1;
    Stats {
        median: if n % 2 == 1 { us(v[n / 2]) } else { (us(v[n / 2 - 1]) + us(v[n / 2])) / 2.0 },
        p99: us(v[p99_idx]),
        mean: v.iter().map(|d| us(*d)).sum::<f64>() / n as f64,
        min: us(v[0]),
        max: us(v[n - 1]),
        n,
    }
}

fn fmt_stats(s: &Stats) -> String {
    format!(
        "median {:>8.1}  p99 {:>8.1}  mean {:>8.1}  min {:>7.1}  max {:>8.1}  (n={})",
        s.median, s.p99, s.mean, s.min, s.max, s.n
    )
}

fn size(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn wal(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", p.display()))
}

fn remove_db(p: &Path) {
    for s in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{s}", p.display()));
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB ({b} B)", b as f64 / (1024.0 * 1024.0))
}

// ---------------------------------------------------------------- subprocess modes

fn vm_line(key: &str) -> String {
    let s = fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_owned())
        .unwrap_or_default()
}

fn report_mem() {
    println!("VmHWM={}", vm_line("VmHWM:"));
    println!("VmRSS={}", vm_line("VmRSS:"));
}

fn mean_us(v: &[Duration]) -> f64 {
    v.iter().map(|d| d.as_secs_f64() * 1e6).sum::<f64>() / v.len() as f64
}

fn minmax_us(v: &[Duration]) -> (f64, f64) {
    let us: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    (us.iter().cloned().fold(f64::MAX, f64::min), us.iter().cloned().fold(0.0, f64::max))
}

fn rss_sqlite(db: &Path, instant: &str) -> rusqlite::Result<()> {
    // Active faults: fresh connection each time; time = open + query (+ reading rows).
    let mut active_total = Vec::new();
    let mut active_rows = 0;
    for _ in 0..REPS {
        let t = Instant::now();
        let conn = Connection::open(db)?;
        let mut st = conn.prepare(ACTIVE)?;
        let rows: Vec<(String, String, String, Option<String>, Option<String>)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
            .collect::<Result<_, _>>()?;
        active_total.push(t.elapsed());
        active_rows = rows.len();
        drop(st);
        drop(conn);
    }
    // Latest 100 before an instant: fresh connection each time; time open and query apart.
    let mut latest_open = Vec::new();
    let mut latest_query = Vec::new();
    let mut latest_total = Vec::new();
    let mut latest_rows = 0;
    for _ in 0..REPS {
        let t0 = Instant::now();
        let conn = Connection::open(db)?;
        let t1 = Instant::now();
        let mut st = conn.prepare(LATEST)?;
        type Row = (String, String, String, String, Option<String>, Option<String>, i64);
        let rows: Vec<Row> = st
            .query_map([instant], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
            })?
            .collect::<Result<_, _>>()?;
        let t2 = Instant::now();
        latest_open.push(t1 - t0);
        latest_query.push(t2 - t1);
        latest_total.push(t2 - t0);
        latest_rows = rows.len();
        drop(st);
        drop(conn);
    }
    let (amin, amax) = minmax_us(&active_total);
    let (lmin, lmax) = minmax_us(&latest_query);
    println!("active_rows={active_rows}");
    println!("active_open_query_us_mean={:.1}", mean_us(&active_total));
    println!("active_open_query_us_min_max={amin:.1}/{amax:.1}");
    println!("latest_rows={latest_rows}");
    println!("latest_open_us_mean={:.1}", mean_us(&latest_open));
    println!("latest_query_us_mean={:.1}", mean_us(&latest_query));
    println!("latest_query_us_min_max={lmin:.1}/{lmax:.1}");
    println!("latest_open_query_us_mean={:.1}", mean_us(&latest_total));
    report_mem();
    Ok(())
}

fn rss_jsonl(path: &Path) -> io::Result<()> {
    let mut times = Vec::new();
    let mut parsed = 0;
    for _ in 0..REPS {
        let t = Instant::now();
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        let start = len.saturating_sub(BLOCK);
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity(BLOCK as usize);
        f.take(BLOCK).read_to_end(&mut buf)?;
        // Skip the (probably partial) first line; parse the whole lines after it.
        let body = if start > 0 {
            buf.iter().position(|&b| b == b'\n').map(|p| &buf[p + 1..]).unwrap_or(&[][..])
        } else {
            &buf[..]
        };
        let mut n = 0;
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let _v: serde_json::Value = serde_json::from_slice(line).map_err(io::Error::other)?;
            n += 1;
        }
        times.push(t.elapsed());
        parsed = n;
    }
    let (mn, mx) = minmax_us(&times);
    println!("tail_lines_parsed={parsed}");
    println!("tail_open_read_parse_us_mean={:.1}", mean_us(&times));
    println!("tail_open_read_parse_us_min_max={mn:.1}/{mx:.1}");
    report_mem();
    Ok(())
}

fn run_sub(args: &[&str]) -> Vec<(String, String)> {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe).args(args).output().expect("spawn");
    assert!(out.status.success(), "subprocess {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

fn get<'a>(kv: &'a [(String, String)], k: &str) -> &'a str {
    kv.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str()).unwrap_or("?")
}

// ---------------------------------------------------------------- main benchmark

struct Opts {
    n: usize,
    measure: usize,
    runs: usize,
    at_end: usize,
    dir: PathBuf,
}

fn measure_jsonl(path: &Path, faults: &[Fault]) -> io::Result<Stats> {
    let mut v = Vec::with_capacity(faults.len());
    for f in faults {
        let t = Instant::now();
        jsonl_fault(path, f, true)?;
        v.push(t.elapsed());
    }
    Ok(stats(v))
}

fn measure_sqlite(conn: &Connection, faults: &[Fault]) -> rusqlite::Result<Stats> {
    let mut v = Vec::with_capacity(faults.len());
    for f in faults {
        let t = Instant::now();
        sqlite_fault(conn, f)?;
        v.push(t.elapsed());
    }
    Ok(stats(v))
}

fn bench(o: &Opts) -> Result<(), Box<dyn std::error::Error>> {
    fs::create_dir_all(&o.dir)?;
    println!("# journal store benchmark");
    println!(
        "rusqlite {} / SQLite {}; N={} faults; measured durable faults={} x {} runs; dir={} (fs: see findmnt)",
        env!("RUSQLITE_VERSION"),
        rusqlite::version(),
        o.n,
        o.measure,
        o.runs,
        o.dir.display()
    );
    let sample = make_fault(1);
    println!(
        "record sizes: intent {} B, outcome {} B (reversible); revert_state {} B",
        sample.intent.len(),
        sample.outcome.len(),
        sample.revert_state.as_ref().map_or(0, |s| s.len())
    );

    let t = Instant::now();
    let faults: Vec<Fault> = (0..o.n + o.at_end).map(make_fault).collect();
    println!("generated {} records in {:.1}s", faults.len(), t.elapsed().as_secs_f64());
    let measured = &faults[..o.measure];

    let jpath = o.dir.join("journal.jsonl");
    let dbpath = o.dir.join("journal.db");

    // 1+2: durable per-fault writes on fresh stores, alternated, `runs` times. Run 1's
    // stores are kept and filled; later runs' are discarded.
    let mut jsonl_runs = Vec::new();
    let mut sqlite_runs = Vec::new();
    for run in 1..=o.runs {
        let jp = if run == 1 { jpath.clone() } else { o.dir.join(format!("scratch-{run}.jsonl")) };
        let dp = if run == 1 { dbpath.clone() } else { o.dir.join(format!("scratch-{run}.db")) };
        let _ = fs::remove_file(&jp);
        remove_db(&dp);

        let t = Instant::now();
        let js = measure_jsonl(&jp, measured)?;
        println!("run {run} JSONL  : {}  [{:.1}s]", fmt_stats(&js), t.elapsed().as_secs_f64());
        jsonl_runs.push(js);

        let t = Instant::now();
        let conn = sqlite_open_writer(&dp)?;
        let ss = measure_sqlite(&conn, measured)?;
        println!("run {run} SQLite : {}  [{:.1}s]", fmt_stats(&ss), t.elapsed().as_secs_f64());
        sqlite_runs.push(ss);
        drop(conn);
        if run != 1 {
            let _ = fs::remove_file(&jp);
            remove_db(&dp);
        }
    }

    // Fill JSONL to N (no fsync, same open/flock/append path).
    let t = Instant::now();
    for f in &faults[o.measure..o.n] {
        jsonl_fault(&jpath, f, false)?;
    }
    File::open(&jpath)?.sync_all()?;
    println!("JSONL fill to {} faults (no fsync): {:.1}s", o.n, t.elapsed().as_secs_f64());

    // Fill SQLite to N: same INSERT + UPDATE per fault, 5,000 faults per transaction.
    let t = Instant::now();
    let conn = sqlite_open_writer(&dbpath)?;
    // The measured faults have since been reverted (as a later revert would record).
    conn.execute("UPDATE faults SET reverted = 1 WHERE revert_state IS NOT NULL AND reverted = 0", [])?;
    // Each fault's life as in the daemon: INSERT intent, UPDATE outcome, then (for a
    // reversible fault, all but the last few) a later UPDATE marking it reverted.
    for chunk in faults[o.measure..o.n].chunks(5_000) {
        conn.execute_batch("BEGIN")?;
        for f in chunk {
            sqlite_fault(&conn, f)?;
        }
        for f in chunk {
            if f.revert_state.is_some() && f.at < rfc3339(at_ms(o.n - ACTIVE_AT_END)) {
                conn.prepare_cached(REVERT)?.execute([&f.id])?;
            }
        }
        conn.execute_batch("COMMIT")?;
    }
    println!("SQLite fill to {} faults (5k faults/txn): {:.1}s", o.n, t.elapsed().as_secs_f64());

    let jsize = size(&jpath);
    let db_before = size(&dbpath);
    let wal_before = size(&wal(&dbpath));
    let (page_size, page_count, freelist): (i64, i64, i64) = conn.query_row(
        "SELECT (SELECT page_size FROM pragma_page_size), (SELECT page_count FROM pragma_page_count), (SELECT freelist_count FROM pragma_freelist_count)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (_busy, _log, _ckpt): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let db_after = size(&dbpath);
    let wal_after = size(&wal(&dbpath));
    let compact = o.dir.join("compact.db");
    remove_db(&compact);
    let t = Instant::now();
    conn.execute("VACUUM INTO ?1", [compact.to_str().unwrap()])?;
    let compact_size = size(&compact);
    println!("VACUUM INTO copy: {} in {:.1}s", mib(compact_size), t.elapsed().as_secs_f64());
    remove_db(&compact);
    let reversible = faults[..o.n].iter().filter(|f| f.revert_state.is_some()).count();
    let rows: i64 = conn.query_row("SELECT count(*) FROM faults", [], |r| r.get(0))?;
    for (name, q) in [("active", ACTIVE), ("latest", LATEST)] {
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {q}"))?;
        let plan: Vec<String> = if name == "latest" {
            st.query_map(["x"], |r| r.get::<_, String>(3))?.collect::<Result<_, _>>()?
        } else {
            st.query_map([], |r| r.get::<_, String>(3))?.collect::<Result<_, _>>()?
        };
        println!("query plan {name}: {}", plan.join(" | "));
    }

    // Durable writes onto the full stores (extra, beyond the brief's first-2,000 figure).
    let tail = &faults[o.n..o.n + o.at_end];
    let (jend, send) = if o.at_end > 0 {
        let j = measure_jsonl(&jpath, tail)?;
        let s = measure_sqlite(&conn, tail)?;
        println!("at {} faults, JSONL : {}", o.n, fmt_stats(&j));
        println!("at {} faults, SQLite: {}", o.n, fmt_stats(&s));
        // Leave the stores at N faults again for the read tests.
        conn.execute("DELETE FROM faults WHERE at >= ?1", [rfc3339(at_ms(o.n))])?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        let f = OpenOptions::new().write(true).open(&jpath)?;
        f.set_len(jsize)?;
        f.sync_all()?;
        (Some(j), Some(s))
    } else {
        (None, None)
    };
    drop(conn);

    // 3: reads in subprocesses.
    let instant = rfc3339(at_ms(o.n / 2));
    let sq = run_sub(&["rss-sqlite", dbpath.to_str().unwrap(), &instant]);
    let jl = run_sub(&["rss-jsonl", jpath.to_str().unwrap()]);
    let base = run_sub(&["rss-baseline"]);

    println!();
    println!("| measure | JSONL | SQLite |");
    println!("|---|---|---|");
    for (i, (j, s)) in jsonl_runs.iter().zip(&sqlite_runs).enumerate() {
        println!(
            "| durable fault (2 writes + 2 syncs), first {} faults, run {}: median / p99 µs | {:.0} / {:.0} | {:.0} / {:.0} |",
            o.measure, i + 1, j.median, j.p99, s.median, s.p99
        );
        println!("| same run: mean / max µs | {:.0} / {:.0} | {:.0} / {:.0} |", j.mean, j.max, s.mean, s.max);
    }
    if let (Some(j), Some(s)) = (&jend, &send) {
        println!(
            "| durable fault appended at {} faults ({} faults): median / p99 µs | {:.0} / {:.0} | {:.0} / {:.0} |",
            o.n, o.at_end, j.median, j.p99, s.median, s.p99
        );
    }
    println!("| file size at {} faults | {} | db {} + WAL {} (after TRUNCATE checkpoint: db {} + WAL {}) |",
        o.n, mib(jsize), mib(db_before), mib(wal_before), mib(db_after), mib(wal_after));
    println!("| sqlite pages | | page_size {page_size}, page_count {page_count}, freelist {freelist}, rows {rows}; VACUUM INTO copy {} |", mib(compact_size));
    println!("| (JSONL holds intent+outcome lines only, no revert lines; {reversible} of the {} faults are reversible) | | |", o.n);
    println!(
        "| open + active-faults query ({} rows), mean of {REPS} fresh connections, µs | (checkpoint read not measured) | {} (min/max {}) |",
        get(&sq, "active_rows"), get(&sq, "active_open_query_us_mean"), get(&sq, "active_open_query_us_min_max")
    );
    println!(
        "| latest 100 before {instant}, mean of {REPS} fresh connections: query µs (open µs; open+query µs) | n/a | {} (min/max {}) ({}; {}) rows={} |",
        get(&sq, "latest_query_us_mean"), get(&sq, "latest_query_us_min_max"),
        get(&sq, "latest_open_us_mean"), get(&sq, "latest_open_query_us_mean"), get(&sq, "latest_rows")
    );
    println!(
        "| JSONL: open + read last 64 KiB + parse its {} whole lines, mean of {REPS}, µs | {} (min/max {}) | |",
        get(&jl, "tail_lines_parsed"), get(&jl, "tail_open_read_parse_us_mean"), get(&jl, "tail_open_read_parse_us_min_max")
    );
    println!(
        "| subprocess peak RSS (VmHWM) | {} | {} |",
        get(&jl, "VmHWM"), get(&sq, "VmHWM")
    );
    println!("| baseline subprocess (same binary, does nothing) VmHWM | {} | |", get(&base, "VmHWM"));
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("rss-sqlite") => rss_sqlite(Path::new(&args[1]), &args[2]).expect("rss-sqlite"),
        Some("rss-jsonl") => rss_jsonl(Path::new(&args[1])).expect("rss-jsonl"),
        Some("rss-baseline") => report_mem(),
        _ => {
            let mut o = Opts {
                n: 250_000,
                measure: 2_000,
                runs: 2,
                at_end: 500,
                dir: PathBuf::from("/tmp/sqlite-compare/data"),
            };
            let mut it = args.iter().skip_while(|a| *a == "all");
            while let Some(a) = it.next() {
                let mut val = || it.next().expect("missing value").clone();
                match a.as_str() {
                    "--n" => o.n = val().parse().unwrap(),
                    "--measure" => o.measure = val().parse().unwrap(),
                    "--runs" => o.runs = val().parse().unwrap(),
                    "--at-end" => o.at_end = val().parse().unwrap(),
                    "--dir" => o.dir = PathBuf::from(val()),
                    other => panic!("unknown argument {other}"),
                }
            }
            assert!(o.measure <= o.n && o.n > ACTIVE_AT_END);
            bench(&o).expect("bench");
        }
    }
}
