//! `nightmare-monkey plugins check|list`.

use std::path::{Path, PathBuf};

use crate::{
    cli::PluginsCommand,
    plugin::{self, Plugin},
    UsageError,
};

/// Where plugins are looked for when no `--plugin-dir` is given.
pub const DEFAULT_DIRS: &[&str] = &[
    "/usr/local/lib/nightmare-monkey/plugins",
    "/usr/lib/nightmare-monkey/plugins",
];

/// Runs `plugins ...`.
pub fn run(cmd: PluginsCommand) -> anyhow::Result<()> {
    match cmd {
        PluginsCommand::Check { file } => {
            let p = Plugin::load(&file).map_err(UsageError)?;
            let m = &p.manifest;
            println!(
                "{} {} (plugin-api {}) from {}: {}",
                m.name, m.version, m.api_version, p.source, m.description
            );
            Ok(())
        }
        PluginsCommand::List { dirs } => {
            let dirs = if dirs.is_empty() {
                DEFAULT_DIRS.iter().map(PathBuf::from).collect()
            } else {
                dirs
            };
            list(&dirs)
        }
    }
}

/// The `.so` files in a directory, sorted by name. A missing default directory is
/// simply empty.
fn plugin_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(UsageError(anyhow::anyhow!(
                "cannot read plugin directory {}: {e}",
                dir.display()
            ))
            .into())
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "so"))
        .collect();
    files.sort();
    Ok(files)
}

fn list(dirs: &[PathBuf]) -> anyhow::Result<()> {
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut add = |p: &Plugin, rows: &mut Vec<[String; 4]>| {
        let m = &p.manifest;
        let mut source = p.source.to_string();
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == m.name) {
            source.push_str(&format!(" (ignored: the name is taken by {first})"));
        } else {
            seen.push((m.name.clone(), p.source.to_string()));
        }
        rows.push([
            m.name.clone(),
            m.version.clone(),
            m.api_version.clone(),
            source,
        ]);
    };
    for p in plugin::builtins() {
        add(&p, &mut rows);
    }
    for dir in dirs {
        for file in plugin_files(dir)? {
            match Plugin::load(&file) {
                Ok(p) => add(&p, &mut rows),
                Err(e) => rows.push(["-".into(), "-".into(), "-".into(), format!("{e:#}")]),
            }
        }
    }
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([7])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    println!("{:w0$}  {:w1$}  {:w2$}  SOURCE", "NAME", "VERSION", "API");
    for [name, version, api, source] in &rows {
        println!("{name:w0$}  {version:w1$}  {api:w2$}  {source}");
    }
    Ok(())
}
