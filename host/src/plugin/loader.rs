//! Loading a plugin `.so`: the only place with `unsafe` in the host.
//!
//! The caller hands over the file's bytes, read once from the file it checked (see
//! `trust`). Before anything is mapped they are checked here as data: an ELF shared
//! library for this machine, exporting exactly one plugin header under the plugin's own
//! symbol (`nightmare_monkey_plugin_v1__<crate>`, see the SDK's `export_plugin!`), of a
//! plugin header's size and starting with abi_stable's magic. Junk is refused there and
//! then: nothing of it runs, not even a constructor.
//!
//! What is mapped is a private, sealed copy of those bytes (a memfd, loaded through
//! `/proc/self/fd`): replacing or rewriting the file afterwards, `cp` over it included,
//! cannot change the code the daemon runs.
//!
//! Then abi_stable checks the header (`AbiHeaderRef::upgrade`: abi_stable's version and
//! the C ABI, as `lib_header_from_path` does; `LibHeader::init_root_module`: the
//! interface version, the layout of every type that crosses). abi_stable's
//! `load_from_file` and `load_from_directory` are not used: they cache one module per
//! root-module type, so a second plugin file would silently return the first. Its
//! `lib_header_from_path` is not used either: it looks for abi_stable's one fixed symbol,
//! which two plugin crates linked into one binary cannot both define.
//!
//! Every failure becomes one sentence naming what differs, never the layout dump
//! abi_stable prints.

use std::{io::Write as _, os::fd::AsRawFd as _, path::Path};

use abi_stable::library::{AbiHeader, AbiHeaderRef, LibHeader, LibraryError, RawLibrary};
use nightmare_monkey_plugin_api::{abi::PluginRef, sdk::SYMBOL_PREFIX};
use object::{Object, ObjectSegment, ObjectSymbol};

/// Why a file is not a loadable plugin: one sentence, without the file name (the
/// caller's context names it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(String);

fn fail<T>(why: impl Into<String>) -> Result<T, LoadError> {
    Err(LoadError(why.into()))
}

/// The machine this host was built for, as ELF names it.
fn host_architecture() -> Option<object::Architecture> {
    if cfg!(target_arch = "x86_64") {
        Some(object::Architecture::X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(object::Architecture::Aarch64)
    } else {
        None
    }
}

/// Checks the image as data and finds the one plugin header symbol it exports.
fn header_symbol(image: &[u8]) -> Result<String, LoadError> {
    let file = match object::File::parse(image) {
        Ok(f) if f.format() == object::BinaryFormat::Elf => f,
        _ => return fail("not a shared library (expected an ELF .so built as a cdylib)"),
    };
    if file.is_64() != cfg!(target_pointer_width = "64") {
        return fail(format!(
            "built for {}-bit machines; this host is {}-bit",
            if file.is_64() { 64 } else { 32 },
            if cfg!(target_pointer_width = "64") {
                64
            } else {
                32
            },
        ));
    }
    if let Some(host) = host_architecture() {
        if file.architecture() != host {
            return fail(format!(
                "built for {:?}; this host is {host:?}",
                file.architecture()
            ));
        }
    }
    if file.kind() != object::ObjectKind::Dynamic {
        return fail("not a shared library (it is an ELF file, but not a .so)");
    }
    let mut headers: Vec<(String, u64, u64)> = file
        .dynamic_symbols()
        .filter(|s| s.is_definition())
        .filter_map(|s| {
            let name = s.name().ok()?;
            name.starts_with(SYMBOL_PREFIX)
                .then(|| (name.to_owned(), s.address(), s.size()))
        })
        .collect();
    headers.sort();
    headers.dedup();
    let (name, address, size) = match headers.len() {
        0 => {
            return fail(format!(
                "not a nightmare-monkey plugin (it exports no {SYMBOL_PREFIX}* symbol; build it with nightmare_monkey_plugin_api::export_plugin!)"
            ))
        }
        1 => headers.remove(0),
        _ => {
            return fail(format!(
                "it exports several plugins ({}); a plugin library must export exactly one",
                headers
                    .iter()
                    .map(|h| h.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    };
    let expected = std::mem::size_of::<LibHeader>() as u64;
    if size != expected {
        return fail(format!(
            "its plugin header {name} is {size} bytes, not the {expected} of a header export_plugin! writes"
        ));
    }
    let bytes = file
        .segments()
        .find_map(|segment| segment.data_range(address, size).ok().flatten());
    let magic = &AbiHeader::VALUE.magic_string;
    match bytes {
        Some(bytes) if bytes.starts_with(magic) => Ok(name),
        Some(_) => fail(format!(
            "its plugin header {name} does not start with abi_stable's mark: it is not a header export_plugin! writes"
        )),
        None => fail(format!(
            "its plugin header {name} points outside the file's data"
        )),
    }
}

/// Checks an image as data, without mapping it: an ELF shared library for this machine
/// exporting one plugin header of the right size and mark.
pub fn check(image: &[u8]) -> Result<(), LoadError> {
    header_symbol(image).map(|_| ())
}

/// A private, sealed copy of the image in memory, for the dynamic loader to map: no one
/// can change it, whatever happens to the file it came from.
///
/// Sealed against writes from now on (`F_SEAL_FUTURE_WRITE`), not `F_SEAL_WRITE`: the
/// kernel refuses the latter with EBUSY when a page of the copy is still referenced
/// elsewhere after a short wait, which pages just written can be on a busy machine (seen
/// 1 load in 30 beside six CPU hogs). No mapping of the copy exists yet, so both seals
/// promise the same: nothing writes to it again.
fn private_copy(image: &[u8], name: &str) -> Result<std::fs::File, LoadError> {
    use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
    let cannot = |e: std::io::Error| LoadError(format!("cannot make a private copy of it: {e}"));
    let fd = memfd_create(
        format!("nightmare-monkey-plugin:{name}"),
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(|e| cannot(e.into()))?;
    let mut copy = std::fs::File::from(fd);
    copy.write_all(image).map_err(cannot)?;
    fcntl_add_seals(
        &copy,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::FUTURE_WRITE | SealFlags::SEAL,
    )
    .map_err(|e| cannot(e.into()))?;
    Ok(copy)
}

/// Loads the plugin whose file's bytes are `image` (`name`: the file's name, for the
/// copy's name in /proc/PID/maps) and checks it against this host's interface.
pub fn load(image: &[u8], name: &str) -> Result<PluginRef, LoadError> {
    let symbol = header_symbol(image)?;
    let copy = private_copy(image, name)?;
    let path = format!("/proc/self/fd/{}", copy.as_raw_fd());
    // The loader names the private copy's path: the file's name says more.
    let library = RawLibrary::load_at(Path::new(&path))
        .map_err(|e| LoadError(describe(&e).replace(&format!("{path}:"), &format!("{name}:"))))?;
    // The copy stays open for the life of the process: the dynamic loader knows the
    // library by that path, and a later plugin must never be handed an fd number (and so
    // a path) an earlier one had.
    std::mem::forget(copy);
    // The library stays loaded for the life of the process: the module and every fault
    // built from it point into its code. abi_stable's own loaders leak it the same way.
    let library: &'static RawLibrary = Box::leak(Box::new(library));
    let mut name = symbol.into_bytes();
    name.push(0);
    // SAFETY: the symbol was found among the library's exported definitions under our
    // prefix, which only `export_plugin!` emits, as a `static LibHeader`; its size is a
    // LibHeader's and it starts with abi_stable's magic (checked above, on the very bytes
    // mapped). Read as abi_stable reads it (`abi_header_from_raw_library`): a reference
    // to the header's first part, which `upgrade` checks (abi_stable's version, the C
    // ABI) before the rest is used. The library is never unloaded, so the reference
    // stays valid for 'static.
    #[allow(unsafe_code)]
    let header: AbiHeaderRef = unsafe {
        match library.get::<AbiHeaderRef>(&name) {
            Ok(symbol) => *symbol,
            Err(e) => return Err(LoadError(describe(&e))),
        }
    };
    // abi_stable's version and the C ABI, then its globals handed over, as
    // `lib_header_from_path` does; then every layout (`init_root_module`).
    let header: &'static LibHeader = header.upgrade().map_err(|e| LoadError(describe(&e)))?;
    header
        .init_root_module::<PluginRef>()
        .map_err(|e| LoadError(describe(&e)))
}

/// One sentence for a loading error.
fn describe(e: &LibraryError) -> String {
    match e {
        LibraryError::OpenError { err, .. } => format!("the dynamic loader refused it: {err}"),
        LibraryError::GetSymbolError { err, .. } => {
            format!("its plugin header cannot be read: {err}")
        }
        LibraryError::ParseVersionError(v) => format!("its version is unreadable: {v}"),
        // abi_stable asks only that the majors agree (1.x): a plugin of an older minor
        // is what the frozen ABI exists for, and one of a newer minor crosses nothing
        // this host cannot read (what a minor adds is text with defaults).
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "built against {INTERFACE} {actual_version}, which this host (interface {expected_version}) cannot use: rebuild it against {INTERFACE} {}.x",
            expected_version.major
        ),
        LibraryError::RootModule { err, .. } => {
            format!("its root module failed to initialize: {err}")
        }
        LibraryError::AbiInstability(report) => abi_difference(&report.to_string()),
        LibraryError::InvalidAbiHeader(h) => format!(
            "built with an incompatible abi_stable ({}.{}; this host's is {}.{}): rebuild it against this host's nightmare-monkey-plugin-api",
            h.abi_major,
            h.abi_minor,
            AbiHeader::VALUE.abi_major,
            AbiHeader::VALUE.abi_minor
        ),
        LibraryError::InvalidCAbi { .. } => {
            "built by a compiler whose C ABI differs from this host's".to_owned()
        }
        LibraryError::Many(all) => all
            .iter()
            .map(describe)
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// One layout of a type as a report shows it: its name, where it is declared, the
/// version of the package that declared it and its fields (or a trait's methods).
#[derive(Debug, Default)]
struct Layout {
    ty: String,
    module: String,
    package: String,
    version: String,
    fields: Vec<String>,
}

impl Layout {
    /// Reads the layout dump that starts after `lines[0]` ("Layout of ... type:").
    fn read(lines: &[&str]) -> Self {
        let mut layout = Layout::default();
        for line in lines.iter().skip(1) {
            if line.starts_with("Layout of") || line.starts_with("Error:") {
                break;
            }
            if let Some(ty) = line.strip_prefix("type:") {
                if layout.ty.is_empty() {
                    layout.ty = ty.to_owned();
                }
            } else if let Some(at) = line.strip_prefix("line:") {
                if layout.module.is_empty() {
                    layout.module = at
                        .split_once("mod:")
                        .map(|m| m.1.to_owned())
                        .unwrap_or_default();
                }
            } else if let Some(package) = line.strip_prefix("package:") {
                if layout.version.is_empty() {
                    let (name, version) = package_of(package);
                    layout.package = name;
                    layout.version = version;
                }
            } else if let Some(field) = line.strip_prefix("field_name:") {
                // A trait object's vtable starts with abi_stable's own entries.
                if !field.starts_with("_sabi") {
                    layout.fields.push(field.to_owned());
                }
            }
        }
        layout
    }

    /// How a user knows the type: `the Fault trait` for a trait object's vtable.
    fn shown(&self) -> (String, &'static str) {
        match self
            .module
            .rsplit("::")
            .next()
            .and_then(|m| m.strip_suffix("_trait"))
        {
            Some(name) if self.ty == "VTable" => (format!("`{name}` trait"), "method"),
            _ => (format!("`{}`", self.ty), "field"),
        }
    }
}

/// `'name' version:'1.0.0'` (after `package:`) as the name and the version.
fn package_of(text: &str) -> (String, String) {
    let name = text.split('\'').nth(1).unwrap_or_default().to_owned();
    let version = text
        .split_once("version:'")
        .map(|v| v.1.split('\'').next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    (name, version)
}

/// The interface's own package, whose version says which side is older.
const INTERFACE: &str = "nightmare-monkey-plugin-api";

/// Where in the interface a difference deep in abi_stable's own types sits: the path of
/// fields down to it (listed before a block's layouts), as the member of the interface's
/// type it is under (`the method `inject` of the `Fault` trait`), and the plugin's version
/// of the interface as that path names it.
fn interface_member(block: &[&str]) -> Option<(String, String)> {
    let path_end = block.iter().position(|l| l.starts_with("Layout of"))?;
    // (field, type, package) entries: each starts at its `field_name:` line.
    let mut entries: Vec<(String, String, String, String)> = Vec::new();
    for line in &block[..path_end] {
        if let Some(field) = line.strip_prefix("field_name:") {
            entries.push((
                field.to_owned(),
                String::new(),
                String::new(),
                String::new(),
            ));
        } else if let (Some(ty), Some(last)) = (line.strip_prefix("type:"), entries.last_mut()) {
            last.1 = ty.to_owned();
        } else if let (Some(package), Some(last)) =
            (line.strip_prefix("package:"), entries.last_mut())
        {
            (last.2, last.3) = package_of(package);
        }
    }
    let version = entries
        .iter()
        .rev()
        .find(|e| e.2 == INTERFACE)
        .map(|e| e.3.clone())
        .unwrap_or_default();
    // The last of the interface's types on the path, and the member under it.
    let at = entries.iter().rposition(|e| e.2 == INTERFACE)?;
    let member = entries.get(at + 1)?;
    let owner = &entries[at];
    let what = if owner.1 == "VTable" {
        let name = entries[..at]
            .iter()
            .rev()
            .find_map(|e| e.1.split_once("_TO<").map(|(n, _)| n.to_owned()))
            .unwrap_or_else(|| "Fault".to_owned());
        format!("the method `{}` of its `{name}` trait", member.0)
    } else {
        format!("the field `{}` of its `{}`", member.0, owner.1)
    };
    Some((what, version))
}

/// `1.2.3+x` as numbers, for telling which interface is older.
fn version_number(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.split(['+', '-']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// Which interface is older, from the versions the two layouts carry, as the end of a
/// sentence about the plugin's interface.
fn which_is_older(host: &str, plugin: &str) -> String {
    if host.is_empty() || plugin.is_empty() {
        return String::new();
    }
    match (version_number(host), version_number(plugin)) {
        (Some(h), Some(p)) if p < h => {
            format!("; it was built against an older nightmare-monkey-plugin-api ({plugin}) than this host's ({host})")
        }
        (Some(h), Some(p)) if p > h => {
            format!("; it was built against a newer nightmare-monkey-plugin-api ({plugin}) than this host's ({host}), which changed the frozen ABI")
        }
        _ => format!("; it was built against a modified nightmare-monkey-plugin-api ({plugin}; this host has {host})"),
    }
}

fn listed(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The differences abi_stable found, as one sentence: which type (and which field or
/// method), and which side's interface is older. abi_stable hands the report over as
/// formatted text only (it drops the typed errors so that they cannot point into an
/// unloaded library): hundreds of lines of layout dumps, in one block per type on the
/// way down to the difference ("N error(s)inside:"), each with the expected (this host's)
/// and found (the plugin's) layout and its `Error:` lines.
///
/// abi_stable's own words mislead here: a plugin whose trait lost a method is reported as
/// "too many fields (expected 4, found 3)", counting abi_stable's hidden vtable entries,
/// and naming no method. The layouts name every field, so this names what is missing.
fn abi_difference(report: &str) -> String {
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    // The innermost block with errors of its own is where the layouts differ.
    let start = lines
        .iter()
        .rposition(|l| {
            l.split_once(" error(s)")
                .and_then(|(n, _)| n.parse::<u32>().ok())
                .is_some_and(|n| n > 0)
        })
        .unwrap_or(0);
    let block = &lines[start..];
    let layout = |which: &str| {
        block
            .iter()
            .position(|l| *l == which)
            .map(|at| Layout::read(&block[at..]))
    };
    let (Some(host), Some(plugin)) = (
        layout("Layout of expected type:"),
        layout("Layout of found type:"),
    ) else {
        return format!("built against an incompatible nightmare-monkey-plugin-api: {}; rebuild the plugin against this host's plugin-api", errors(block));
    };
    let (what, member) = host.shown();
    // A difference deep in abi_stable's own types (an argument's type changed): named
    // by where it sits in the interface, with the interface's versions, not abi_stable's.
    if host.package != INTERFACE {
        if let Some((place, version)) = interface_member(block) {
            let ours = <nightmare_monkey_plugin_api::abi::PluginRef as abi_stable::library::RootModule>::VERSION_STRINGS.version;
            let older = which_is_older(ours.as_str(), &version);
            return format!(
                "built against an incompatible nightmare-monkey-plugin-api: {place} differs: {}{older}; rebuild the plugin against this host's plugin-api",
                errors(block)
            );
        }
    }
    let older = which_is_older(&host.version, &plugin.version);
    let lacks: Vec<String> = host
        .fields
        .iter()
        .filter(|f| !plugin.fields.contains(f))
        .cloned()
        .collect();
    let extra: Vec<String> = plugin
        .fields
        .iter()
        .filter(|f| !host.fields.contains(f))
        .cloned()
        .collect();
    let plural = |names: &[String]| if names.len() == 1 { "" } else { "s" };
    let difference = match (lacks.is_empty(), extra.is_empty()) {
        (false, true) => format!(
            "its {what} lacks the {member}{} {} that this host calls",
            plural(&lacks),
            listed(&lacks)
        ),
        (false, false) => format!(
            "its {what} has the {member}{} {} where this host has {}",
            plural(&extra),
            listed(&extra),
            listed(&lacks)
        ),
        (true, _) if host.fields != plugin.fields[..host.fields.len().min(plugin.fields.len())] => {
            format!(
                "its {what} has its {member}s in another order ({}; this host: {})",
                listed(&plugin.fields),
                listed(&host.fields)
            )
        }
        _ => format!("its {what} differs: {}", errors(block)),
    };
    format!(
        "built against an incompatible nightmare-monkey-plugin-api: {difference}{older}; rebuild the plugin against this host's plugin-api"
    )
}

/// The `Error:` lines of a report block, with abi_stable's values, in one line.
fn errors(block: &[&str]) -> String {
    let value = |from: usize| -> String {
        block[from..]
            .iter()
            .skip(1)
            .find(|l| !l.is_empty())
            .map(|l| l.trim_start_matches("field_name:").to_owned())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (i, line) in block.iter().enumerate() {
        let Some(what) = line.strip_prefix("Error:") else {
            continue;
        };
        let expected = block[i..]
            .iter()
            .position(|l| *l == "Expected:")
            .map(|at| value(i + at));
        let found = block[i..]
            .iter()
            .position(|l| *l == "Found:")
            .map(|at| value(i + at));
        out.push(match (expected, found) {
            (Some(e), Some(f)) => format!("{what} (this host: `{e}`, the plugin: `{f}`)"),
            _ => what.to_owned(),
        });
    }
    if out.is_empty() {
        "the type layouts differ".to_owned()
    } else {
        out.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_copy_holds_the_image_and_cannot_be_changed() {
        use rustix::fs::{fcntl_get_seals, SealFlags};
        use std::io::{Read as _, Seek as _};
        let image = b"\x7fELF not really a library";
        let mut copy = private_copy(image, "test").expect("a copy");
        let seals = fcntl_get_seals(&copy).expect("its seals");
        assert_eq!(
            seals,
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::FUTURE_WRITE | SealFlags::SEAL
        );
        copy.rewind().expect("rewound");
        let mut read = Vec::new();
        copy.read_to_end(&mut read).expect("read back");
        assert_eq!(read, image);
        // Neither a write, nor a resize, nor lifting the seals.
        assert!(copy.write_all(b"x").is_err());
        assert!(copy.set_len(1).is_err());
        assert!(copy.set_len(1 << 20).is_err());
        assert!(rustix::fs::fcntl_add_seals(&copy, SealFlags::empty()).is_err());
    }

    #[test]
    fn the_older_side_is_told_by_the_versions_the_layouts_carry() {
        assert_eq!(
            which_is_older("1.2.0", "1.0.3"),
            "; it was built against an older nightmare-monkey-plugin-api (1.0.3) than this host's (1.2.0)"
        );
        assert!(which_is_older("1.0.0", "1.1.0")
            .contains("a newer nightmare-monkey-plugin-api (1.1.0) than this host's (1.0.0)"));
        assert!(which_is_older("1.0.0", "1.0.0+x").contains("a modified"));
        assert_eq!(which_is_older("", "1.0.0"), "");
    }

    #[test]
    fn abi_report_becomes_one_sentence() {
        // Trimmed from a real report (the layouts' field lists cut): a renamed field.
        let report = "Compared <this>:\n    --- Type Layout ---\n    type:PrefixRef<'a, PluginModule>\n\
            Layout of expected type:\n    --- Type Layout ---\n    type:PluginModule\n    size:16 align:8\n\
            Layout of found type:\n    type:PluginModule\n\
            Error:prefix-types have a different prefix\nExpected:\n    2\nFound:\n    3\n\
            Error:unexpected field\nExpected:\n    field_name:new_fault\n    type:AFunctionPointer\n\
            Found:\n    field_name:extra\n    type:AFunctionPointer\n";
        assert_eq!(
            abi_difference(report),
            "built against an incompatible nightmare-monkey-plugin-api: its `PluginModule` \
             differs: prefix-types have a different prefix (this host: `2`, the plugin: `3`); \
             unexpected field (this host: `new_fault`, the plugin: `extra`); rebuild the \
             plugin against this host's plugin-api"
        );
    }
}

/// Real abi_stable reports, produced in this process: the root modules of interfaces
/// changed in ways the ABI forbids (`tests/fixtures/plugin-api-changed`), checked by the
/// very call the loader makes (`init_root_module`), and described by `describe`.
#[cfg(test)]
mod changed_interfaces {
    use abi_stable::library::{CheckTypeLayout, LibHeader, RootModule, RootModuleResult};
    use changed_plugin_api::{added_method, changed_argument, removed_field, removed_method};
    use nightmare_monkey_plugin_api::abi::PluginRef;

    /// What the loader says of a plugin whose module `constructor` builds.
    fn load<M: RootModule>(constructor: extern "C" fn() -> RootModuleResult) -> String {
        // SAFETY: each constructor passed here returns a module of exactly the type `M`.
        let header = unsafe { LibHeader::from_constructor::<M>(constructor, CheckTypeLayout::Yes) };
        let header: &'static LibHeader = Box::leak(Box::new(header));
        match header.init_root_module::<PluginRef>() {
            Ok(_) => "loads".to_owned(),
            Err(e) => super::describe(&e),
        }
    }

    #[test]
    fn a_removed_or_changed_member_is_named_and_the_older_side_said() {
        assert_eq!(
            load::<removed_field::PluginRef>(removed_field::constructor),
            "built against an incompatible nightmare-monkey-plugin-api: its `PluginModule` lacks \
             the field `new_fault` that this host calls; it was built against a modified \
             nightmare-monkey-plugin-api (1.1.0+changed; this host has 1.1.0); rebuild the \
             plugin against this host's plugin-api"
        );
        assert_eq!(
            load::<removed_method::PluginRef>(removed_method::constructor),
            "built against an incompatible nightmare-monkey-plugin-api: its `Fault` trait \
             lacks the method `revert` that this host calls; it was built against a modified \
             nightmare-monkey-plugin-api (1.1.0+changed; this host has 1.1.0); rebuild the \
             plugin against this host's plugin-api"
        );
        // A method whose argument changed type: named by the method, with the
        // interface's versions (not abi_stable's, whose type differs deep inside).
        assert_eq!(
            load::<changed_argument::PluginRef>(changed_argument::constructor),
            "built against an incompatible nightmare-monkey-plugin-api: the method `inject` \
             of its `Fault` trait differs: mismatched type (this host: `RStr<'a>`, the \
             plugin: `RString`); it was built against a modified nightmare-monkey-plugin-api \
             (1.1.0+changed; this host has 1.1.0); rebuild the plugin against this host's \
             plugin-api"
        );
        // A newer interface with one more method loads: an older host ignores it.
        assert_eq!(
            load::<added_method::PluginRef>(added_method::constructor),
            "loads"
        );
    }

    /// The interface's version decides by its major alone: a plugin of any 1.x loads
    /// (older: the frozen ABI; newer: what a minor adds crosses as text this host reads
    /// with defaults), one of 2.0 is refused in one sentence.
    #[test]
    fn every_1_x_plugin_loads_and_another_major_is_refused() {
        use changed_plugin_api::{newer_minor, next_major, older_minor};
        assert_eq!(
            load::<older_minor::PluginRef>(older_minor::constructor),
            "loads"
        );
        assert_eq!(
            load::<newer_minor::PluginRef>(newer_minor::constructor),
            "loads"
        );
        assert_eq!(
            load::<next_major::PluginRef>(next_major::constructor),
            "built against nightmare-monkey-plugin-api 2.0.0, which this host (interface 1.1.0) \
             cannot use: rebuild it against nightmare-monkey-plugin-api 1.x"
        );
    }
}
