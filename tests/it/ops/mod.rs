//! Where operators look: Prometheus metrics, JSON logs, the log level, and a command line
//! that explains itself (help with examples, completions, the man page, the version).

mod capabilities;
mod cli;
mod fleet;
mod logs;
mod metrics;
mod notifier_hostile;
mod notifiers;
mod systemd;

use crate::util::Daemon;

/// Writes `config` to `dir/c.ron` and starts the daemon on it, the API on loopback.
pub(crate) fn daemon_with(dir: &std::path::Path, config: impl AsRef<str>) -> (Daemon, u16) {
    let file = dir.join("c.ron");
    std::fs::write(&file, config.as_ref()).unwrap();
    let mut d = Daemon::start(&[
        "--listen",
        "127.0.0.1:0",
        "--config",
        file.to_str().unwrap(),
    ]);
    let port = d.port();
    (d, port)
}

/// The samples of a text exposition: `name{labels}` -> value.
pub(crate) fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("a sample line");
            (key.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

pub(crate) fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}
