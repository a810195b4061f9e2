//! The host's view of plugins: built-in or loaded from a file, each described by its
//! manifest, and the faults built from them. Everything crossing the ABI is encoded and
//! decoded here, so the rest of the host works with the SDK's typed values.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use abi_stable::std_types::{RResult, RStr, RString};
use anyhow::{anyhow, bail, Context as _};
use nightmare_monkey_plugin_api::{
    abi::{FaultBox, PluginRef},
    sdk::{is_valid_name, ErrorKind, Manifest, Outcome, PluginError, Request},
};

use crate::{domain::injection::Fault, support::text::clip_cmdline};

#[allow(unsafe_code)]
mod loader;
mod trust;

/// The largest plugin file read, in bytes (a debug build of one is some 40 MB): a
/// device or a runaway file is refused, not read until memory runs out.
const MAX_IMAGE: u64 = 1 << 30;
pub(crate) mod worker;

pub use trust::Trust;

/// The plugin files a configuration loads, and the directories searched, that pass the
/// trust checks here: for `sandbox` to judge them before its user namespace, where they
/// would all fail (see [`trust::checked_outside`]). As given (absolute) and as resolved.
pub(crate) fn judged_here(files: &[PathBuf], dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut judged = Vec::new();
    let file = |path: &Path, judged: &mut Vec<PathBuf>| {
        if let (Ok(resolved), Ok(absolute)) = (trust::check(path), std::path::absolute(path)) {
            judged.push(absolute);
            judged.push(resolved);
        }
    };
    for path in files {
        file(path, &mut judged);
    }
    for dir in dirs {
        if trust::check_plugin_dir(dir).is_err() {
            continue;
        }
        judged.extend(std::path::absolute(dir).ok());
        for path in discover(dir, Trust::Checked).unwrap_or_default() {
            file(&path, &mut judged);
        }
    }
    judged
}

/// Takes `paths` as judged by [`judged_here`] before the sandbox's namespace.
pub(crate) fn checked_outside(paths: impl IntoIterator<Item = PathBuf>) {
    trust::checked_outside(paths);
}
pub(crate) use worker::live_workers;
pub use worker::{StderrLines, Supervision};

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Linked into this binary.
    Builtin,
    /// Loaded from a shared library.
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builtin => f.write_str("built-in"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What a plugin is, for `/api/plugins` and `plugins list`.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct PluginInfo {
    /// The plugin's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The interface version it was built against.
    pub api_version: String,
    /// What it does.
    pub description: String,
    /// `built-in` or the file it came from.
    pub source: String,
}

/// A plugin ready to build faults (a clone shares its module: the same worker).
#[derive(Clone)]
pub struct Plugin {
    /// What the plugin says about itself.
    pub manifest: Manifest,
    /// Where it came from.
    pub source: Source,
    /// Why the file failed the trust checks, when it was loaded anyway
    /// (`--allow-untrusted-plugins`): for the caller to say loudly.
    pub untrusted: Option<String>,
    module: Module,
}

/// A plugin file that passed every check that runs none of its code
/// ([`Plugin::prepare`]); [`Prepared::start`] loads it into its worker, which may take
/// up to the plugin timeout (a constructor may hang).
pub struct Prepared {
    path: PathBuf,
    image: Vec<u8>,
    untrusted: Option<String>,
}

impl Prepared {
    /// Starts the file's worker and asks it what the plugin is.
    pub fn start(self, supervision: Supervision) -> anyhow::Result<Plugin> {
        let shown = self.path.display();
        let (client, manifest) =
            worker::Client::start(&self.path, self.image, supervision).map_err(|e| anyhow!(e))?;
        let mut plugin = Plugin::described(
            &manifest,
            Module::Worker(client.clone()),
            Source::File(self.path.clone()),
        )
        .map_err(|e| anyhow!("cannot load plugin {shown}: {e:#}"))?;
        client.named(&plugin.manifest.name);
        plugin.untrusted = self.untrusted;
        Ok(plugin)
    }
}

/// Where a plugin's code runs.
#[derive(Clone)]
enum Module {
    /// In this process: the built-ins, and the plugin file a worker serves.
    Linked(PluginRef),
    /// In a worker process of its own: every plugin file, for the daemon and commands.
    Worker(Arc<worker::Client>),
}

/// Where plugins are looked for when neither the config nor `--plugin-dir` says.
pub(crate) const DEFAULT_DIRS: &[&str] = &[
    "/usr/local/lib/nightmare-monkey/plugins",
    "/usr/lib/nightmare-monkey/plugins",
];

/// Why a plugin directory that someone named (the config's `plugin_dirs`,
/// `--plugin-dir`) finds nothing: it does not exist, most likely a slip in its name. The
/// default directories are not said to be missing: most hosts have none of them.
pub(crate) fn missing_dir(dir: &Path) -> Option<String> {
    if DEFAULT_DIRS.iter().any(|d| Path::new(d) == dir) {
        return None;
    }
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(format!("plugin directory {} does not exist", dir.display()))
        }
        _ => None,
    }
}

/// The plugin files of a directory, by the naming convention: every `*.so` in it, in name
/// order (so loading order, and which of two duplicates is named first, is stable). A
/// directory that does not exist has none.
pub(crate) fn discover(dir: &Path, trust: Trust) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => bail!("cannot read plugin directory {}: {e}", dir.display()),
    };
    // A directory anyone may add files to is not searched (unless told to trust anyone:
    // then each file it holds is judged, and warned about, on its own).
    if let (Err(why), Trust::Checked) = (trust::check_plugin_dir(dir), trust) {
        bail!("{why}; it is not searched (--allow-untrusted-plugins searches it anyway)");
    }
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "so") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Why a plugin file is missing, as far as can be told: cargo writes `lib<crate>.so` only
/// for a crate whose `[lib]` says `crate-type = ["cdylib"]`, and without it a build
/// "succeeds" leaving an `.rlib` beside where the `.so` would be.
fn missing(path: &Path) -> String {
    let rlib = path.with_extension("rlib");
    let hint = "check that its Cargo.toml has `crate-type = [\"cdylib\"]` under [lib] and that the build finished";
    if path.extension().is_some_and(|x| x == "so") && rlib.exists() {
        format!(
            "no such file, but {} is there: the crate was built as a Rust library only; {hint}",
            rlib.display()
        )
    } else if path.extension().is_some_and(|x| x == "so") {
        format!("no such file: {hint}")
    } else {
        "no such file".to_owned()
    }
}

/// The plugins linked into this binary.
pub fn builtins() -> Vec<Plugin> {
    [
        ("process-kill", process_kill::plugin_module()),
        ("process-pause", process_pause::plugin_module()),
        ("disk-fill", disk_fill::plugin_module()),
        ("cpu-hog", cpu_hog::plugin_module()),
        ("memory-hog", memory_hog::plugin_module()),
    ]
    .into_iter()
    .chain(net_faults::plugin_modules())
    .map(|(name, module)| {
        Plugin::new(module, Source::Builtin)
            .unwrap_or_else(|e| panic!("built-in plugin {name} is broken: {e:#}"))
    })
    .collect()
}

impl Plugin {
    fn new(module: PluginRef, source: Source) -> anyhow::Result<Self> {
        let text = match (module.manifest())() {
            RResult::ROk(text) => text,
            RResult::RErr(e) => bail!("its manifest failed: {}", PluginError::from_json(&e)),
        };
        Self::described(&text, Module::Linked(module), source)
    }

    /// A plugin from its manifest's text, checked.
    fn described(text: &str, module: Module, source: Source) -> anyhow::Result<Self> {
        let manifest: Manifest =
            serde_json::from_str(text).context("its manifest is not valid JSON")?;
        if !is_valid_name(&manifest.name) {
            bail!(
                "its name `{}` is not a valid fault name (expected lower-case letters, digits and dashes)",
                manifest.name
            );
        }
        Ok(Self {
            manifest,
            source,
            untrusted: None,
            module,
        })
    }

    /// Loads the plugin in `path` into a worker process of its own (see `worker`), each
    /// call with `supervision`'s deadline; the error is one sentence naming the file.
    /// Unless `trust` says otherwise, a file that fails the trust checks (see `trust`) is
    /// refused before any process maps a byte of it; its bytes, read once here, are what
    /// every worker for it runs.
    pub fn load(path: &Path, trust: Trust, supervision: Supervision) -> anyhow::Result<Self> {
        Self::prepare(path, trust)?.start(supervision)
    }

    /// The part of [`Plugin::load`] that runs no code of the file: it exists, passes the
    /// trust checks (as `trust` asks) and is a loadable image. Quick, whatever the file
    /// does once loaded.
    pub fn prepare(path: &Path, trust: Trust) -> anyhow::Result<Prepared> {
        let shown = path.display();
        let (file, untrusted) = Self::judge(path, trust)?;
        let image = Self::read_image(&file, untrusted.is_none())
            .map_err(|e| anyhow!("cannot load plugin {shown}: cannot read it: {e}"))?;
        // Junk is refused here already, without starting a worker for it.
        loader::check(&image).map_err(|e| anyhow!("cannot load plugin {shown}: {e}"))?;
        Ok(Prepared {
            path: path.to_owned(),
            image,
            untrusted,
        })
    }

    /// Whether `path` may be loaded: the file it resolves to, and the warning to give
    /// when it failed the trust checks but `trust` loads it anyway.
    fn judge(path: &Path, trust: Trust) -> anyhow::Result<(PathBuf, Option<String>)> {
        let shown = path.display();
        if !path.exists() {
            bail!("cannot load plugin {shown}: {}", missing(path));
        }
        // Whatever the trust: a FIFO would block the read for good, a device never end it.
        if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            bail!("cannot load plugin {shown}: it is not a regular file");
        }
        match trust::check(path) {
            Ok(resolved) => Ok((resolved, None)),
            Err(why) if trust == Trust::Anyone => Ok((path.to_owned(), Some(format!(
                "plugin {shown} is not trusted ({why}); loaded anyway, as --allow-untrusted-plugins asks"
            )))),
            Err(why) => bail!(
                "cannot load plugin {shown}: not trusted: {why} (--allow-untrusted-plugins loads it anyway)"
            ),
        }
    }

    /// The bytes of `file`, read through one descriptor; with `checked`, the file as
    /// opened is judged again by that descriptor, so a file swapped after the check is
    /// caught.
    fn read_image(file: &Path, checked: bool) -> std::io::Result<Vec<u8>> {
        use std::io::Read as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        // Opened without waiting (a FIFO swapped in after the check), read only if it
        // is a regular file of a plugin's size, and never past that size.
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(file)?;
        let meta = opened.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::other("it is not a regular file"));
        }
        if checked {
            trust::check_file(file, &meta).map_err(std::io::Error::other)?;
        }
        if meta.len() > MAX_IMAGE {
            return Err(std::io::Error::other(format!(
                "it is {} bytes; a plugin file is at most {MAX_IMAGE}",
                meta.len()
            )));
        }
        let mut image = Vec::with_capacity(meta.len() as usize);
        opened.take(MAX_IMAGE + 1).read_to_end(&mut image)?;
        if image.len() as u64 > MAX_IMAGE {
            return Err(std::io::Error::other(format!(
                "it grew past {MAX_IMAGE} bytes while read; a plugin file is at most that"
            )));
        }
        Ok(image)
    }

    /// Loads a plugin from its file's bytes into this very process: what a worker does.
    /// `shown` names the file it came from.
    pub(crate) fn from_image(image: &[u8], shown: &Path) -> anyhow::Result<Self> {
        let name = shown
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let module = loader::load(image, &name)
            .map_err(|e| anyhow!("cannot load plugin {}: {e}", shown.display()))?;
        Self::new(module, Source::File(shown.to_owned()))
            .map_err(|e| anyhow!("cannot load plugin {}: {e:#}", shown.display()))
    }

    /// What the plugin is, as the API lists it.
    pub(crate) fn info(&self) -> PluginInfo {
        PluginInfo {
            name: self.manifest.name.clone(),
            version: self.manifest.version.clone(),
            api_version: self.manifest.api_version.clone(),
            description: self.manifest.description.clone(),
            source: self.source.to_string(),
        }
    }

    /// Builds a fault from its RON configuration (empty for the defaults).
    pub fn new_fault(&self, config: &str) -> Result<PluginFault, PluginError> {
        match &self.module {
            Module::Linked(module) => match (module.new_fault())(RStr::from(config)) {
                RResult::ROk(fault) => Ok(PluginFault {
                    runs: Runs::Linked(fault),
                    prepares: self.manifest.prepares,
                }),
                RResult::RErr(e) => Err(PluginError::from_json(&e)),
            },
            Module::Worker(client) => client.new_fault(config).map(|number| PluginFault {
                runs: Runs::Worker {
                    client: client.clone(),
                    number,
                },
                prepares: self.manifest.prepares,
            }),
        }
    }
}

/// One configured fault, called through the ABI.
pub struct PluginFault {
    /// Where its calls go.
    runs: Runs,
    /// Whether its plugin injects in two phases (its manifest's `prepares`).
    prepares: bool,
}

/// Where a fault's calls go.
enum Runs {
    /// Through the ABI, in this process.
    Linked(FaultBox),
    /// To its plugin's worker, where it is fault number `number`.
    Worker {
        client: Arc<worker::Client>,
        number: usize,
    },
}

impl PluginFault {
    /// Injects with the request as the ABI's text; the outcome or the error as text.
    pub(crate) fn inject_text(&self, request: &str) -> Result<String, String> {
        match &self.runs {
            Runs::Linked(fault) => texts(fault.inject(RStr::from(request))),
            Runs::Worker { client, number } => {
                client.inject(*number, request).map_err(|e| e.to_json())
            }
        }
    }

    /// Reverts with the revert state as text; the outcome or the error as text.
    pub(crate) fn revert_text(&self, state: &str) -> Result<String, String> {
        match &self.runs {
            Runs::Linked(fault) => texts(fault.revert(RStr::from(state))),
            Runs::Worker { client, number } => {
                client.revert(*number, state).map_err(|e| e.to_json())
            }
        }
    }
}

impl Fault for PluginFault {
    fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
        let text = serde_json::to_string(request)
            .map_err(|e| PluginError::new(ErrorKind::Failed, e.to_string()))?;
        decode(self.inject_text(&text))
    }

    fn revert(&self, state: &serde_json::Value) -> Result<Outcome, PluginError> {
        decode(self.revert_text(&state.to_string()))
    }

    fn prepares(&self) -> bool {
        self.prepares
    }
}

/// The ABI's answer as plain texts.
fn texts(answer: RResult<RString, RString>) -> Result<String, String> {
    answer
        .into_result()
        .map(RString::into_string)
        .map_err(RString::into_string)
}

/// A plugin's answer: an outcome, or the error it sent.
/// A process's command line is cut here, once, to what the monkey keeps anywhere
/// (`support::text::CMDLINE_SHOWN`): the answer, the journal and the log carry the
/// same text, never a host process's 2 KB of arguments.
fn decode(answer: Result<String, String>) -> Result<Outcome, PluginError> {
    match answer {
        Ok(out) => {
            let mut outcome: Outcome = serde_json::from_str(&out).map_err(|e| {
                PluginError::new(
                    ErrorKind::Failed,
                    format!("the plugin answered an unreadable outcome: {e}"),
                )
            })?;
            if let Some(process) = &mut outcome.process {
                if let std::borrow::Cow::Owned(cut) = clip_cmdline(&process.cmdline) {
                    process.cmdline = cut;
                }
            }
            Ok(outcome)
        }
        Err(e) => Err(PluginError::from_json(&e)),
    }
}
