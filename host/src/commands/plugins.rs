//! `nightmare-monkey plugins check|list`.

use std::path::PathBuf;

use crate::{
    cli::PluginsCommand,
    engine::PLUGIN_TIMEOUT,
    plugin::{self, Plugin, Trust},
    runtime::setup,
    support::{orphans, UsageError},
};

/// Runs `plugins ...`. What a plugin file's worker leaves behind while loading never
/// outlives the command ([`orphans::ending_what_escapes`]).
pub fn run(cmd: PluginsCommand) -> anyhow::Result<()> {
    orphans::ending_what_escapes(|| plugins(cmd))
}

fn plugins(cmd: PluginsCommand) -> anyhow::Result<()> {
    match cmd {
        PluginsCommand::Check {
            file,
            allow_untrusted_plugins,
        } => {
            let p = Plugin::load(
                &file,
                Trust::allowing_untrusted(allow_untrusted_plugins),
                setup::supervision(PLUGIN_TIMEOUT),
            )
            .map_err(UsageError)?;
            if let Some(warning) = &p.untrusted {
                eprintln!("warning: {warning}");
            }
            if let Some(warning) = taken_by_builtin(&p.manifest.name) {
                eprintln!("warning: {warning}");
            }
            let m = &p.manifest;
            println!(
                "{} {} (plugin-api {}) from {}: {}",
                m.name, m.version, m.api_version, p.source, m.description
            );
            Ok(())
        }
        PluginsCommand::List {
            dirs,
            allow_untrusted_plugins,
        } => {
            let dirs = if dirs.is_empty() {
                plugin::DEFAULT_DIRS.iter().map(PathBuf::from).collect()
            } else {
                dirs
            };
            list(&dirs, Trust::allowing_untrusted(allow_untrusted_plugins))
        }
    }
}

/// What the daemon would make of a plugin file named like a built-in fault: the
/// built-in keeps the name, so the file is of no use under it.
fn taken_by_builtin(name: &str) -> Option<String> {
    plugin::builtins()
        .iter()
        .any(|b| b.manifest.name == name)
        .then(|| {
            format!(
                "the name `{name}` is taken by a built-in fault: the daemon ignores this file in a plugin directory and refuses to start with it in `plugins: [...]`; give the plugin another NAME"
            )
        })
}

fn list(dirs: &[PathBuf], trust: Trust) -> anyhow::Result<()> {
    let mut rows: Vec<[String; 4]> = Vec::new();
    let builtins: Vec<String> = plugin::builtins()
        .iter()
        .map(|p| p.manifest.name.clone())
        .collect();
    // Files of one name found in the directories: the daemon loads none of them.
    let mut files: Vec<(String, String)> = Vec::new();
    let mut add = |p: &Plugin, rows: &mut Vec<[String; 4]>, from_dir: bool| {
        let m = &p.manifest;
        let source = p.source.to_string();
        if from_dir {
            files.push((m.name.clone(), source.clone()));
        }
        rows.push([
            m.name.clone(),
            m.version.clone(),
            m.api_version.clone(),
            source,
        ]);
    };
    for p in plugin::builtins() {
        add(&p, &mut rows, false);
    }
    for dir in dirs {
        if let Some(missing) = plugin::missing_dir(dir) {
            return Err(UsageError(anyhow::anyhow!(missing)).into());
        }
        for file in plugin::discover(dir, trust).map_err(UsageError)? {
            match Plugin::load(&file, trust, setup::supervision(PLUGIN_TIMEOUT)) {
                Ok(p) => {
                    if let Some(warning) = &p.untrusted {
                        eprintln!("warning: {warning}");
                    }
                    add(&p, &mut rows, true)
                }
                Err(e) => rows.push(["-".into(), "-".into(), "-".into(), format!("{e:#}")]),
            }
        }
    }
    // As the daemon decides: a built-in's name wins; two files of one name are both
    // set aside.
    for row in rows.iter_mut().filter(|r| r[0] != "-") {
        let [name, .., source] = row;
        let others: Vec<&str> = files
            .iter()
            .filter(|(n, s)| n == name && s != source)
            .map(|(_, s)| s.as_str())
            .collect();
        if builtins.contains(name) && !source.starts_with("built-in") {
            source.push_str(" (ignored: the name is taken by built-in)");
        } else if !builtins.contains(name) && !others.is_empty() {
            source.push_str(&format!(
                " (set aside: {} is named `{name}` too; neither loads: remove one)",
                others.join(", ")
            ));
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
