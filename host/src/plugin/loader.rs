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
//! Then abi_stable checks the header (`LibHeader::init_root_module`: abi_stable version,
//! interface version, the layout of every type that crosses). abi_stable's
//! `load_from_file` and `load_from_directory` are not used: they cache one module per
//! root-module type, so a second plugin file would silently return the first. Its
//! `lib_header_from_path` is not used either: it looks for abi_stable's one fixed symbol,
//! which two plugin crates linked into one binary cannot both define.
//!
//! Every failure becomes one sentence naming what differs, never the layout dump
//! abi_stable prints.

use std::{fmt::Write as _, io::Write as _, os::fd::AsRawFd as _, path::Path};

use abi_stable::library::{AbiHeader, LibHeader, LibraryError, RawLibrary};
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
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
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
    let library = RawLibrary::load_at(Path::new(&path)).map_err(|e| LoadError(describe(&e)))?;
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
    // mapped). The header's own checks (`init_root_module`) verify the abi_stable version
    // and every layout before anything else in it is used. The library is never
    // unloaded, so the reference stays valid for 'static.
    #[allow(unsafe_code)]
    let header: &'static LibHeader = unsafe {
        // The symbol's value is the address of the static, hence `*const LibHeader`.
        match library.get::<*const LibHeader>(&name) {
            Ok(symbol) => &**symbol,
            Err(e) => return Err(LoadError(describe(&e))),
        }
    };
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
        LibraryError::IncompatibleVersionNumber {
            library_name,
            expected_version,
            actual_version,
        } => format!(
            "built against {library_name} {actual_version}, which this host (interface {expected_version}) cannot use: rebuild it against nightmare-monkey-plugin-api {}.x",
            expected_version.major
        ),
        LibraryError::RootModule { err, .. } => {
            format!("its root module failed to initialize: {err}")
        }
        LibraryError::AbiInstability(report) => abi_difference(&report.to_string()),
        LibraryError::InvalidAbiHeader(h) => format!(
            "built with an incompatible abi_stable (header {h:?}): rebuild it against this host's nightmare-monkey-plugin-api"
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

/// The differences abi_stable found, as "which type, what differs". abi_stable hands the
/// report over as formatted text only (it drops the typed errors so that they cannot point
/// into an unloaded library), hundreds of lines of layout dumps with one `Error:` block
/// per difference; this keeps the type and those blocks.
fn abi_difference(report: &str) -> String {
    let mut out = String::from("built against an incompatible nightmare-monkey-plugin-api");
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let value = |i: usize| -> String {
        lines[i + 1..]
            .iter()
            .find(|l| !l.is_empty())
            .map(|l| l.trim_start_matches("field_name:").to_owned())
            .unwrap_or_default()
    };
    if let Some(ty) = lines
        .iter()
        .position(|l| *l == "Layout of expected type:")
        .and_then(|at| lines[at..].iter().find_map(|l| l.strip_prefix("type:")))
    {
        let _ = write!(out, ": in `{ty}`");
    }
    let mut differences = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(what) = line.strip_prefix("Error:") else {
            continue;
        };
        let expected = lines[i..]
            .iter()
            .position(|l| *l == "Expected:")
            .map(|at| value(i + at));
        let found = lines[i..]
            .iter()
            .position(|l| *l == "Found:")
            .map(|at| value(i + at));
        differences.push(match (expected, found) {
            (Some(e), Some(f)) => format!("{what} (this host expects `{e}`, the plugin has `{f}`)"),
            _ => what.to_owned(),
        });
    }
    if differences.is_empty() {
        out.push_str(": the type layouts differ");
    } else {
        let _ = write!(out, ", {}", differences.join("; "));
    }
    out.push_str("; rebuild the plugin against this host's plugin-api");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_report_becomes_one_sentence() {
        // Trimmed from a real report: a plugin whose root module has an extra field.
        let report = "Compared <this>:\n    --- Type Layout ---\n    type:PrefixRef<'a, PluginModule>\n\
            Layout of expected type:\n    --- Type Layout ---\n    type:PluginModule\n    size:16 align:8\n\
            Layout of found type:\n    type:PluginModule\n\
            Error:prefix-types have a different prefix\nExpected:\n    2\nFound:\n    3\n\
            Error:unexpected field\nExpected:\n    field_name:new_fault\n    type:AFunctionPointer\n\
            Found:\n    field_name:extra\n    type:AFunctionPointer\n";
        assert_eq!(
            abi_difference(report),
            "built against an incompatible nightmare-monkey-plugin-api: in `PluginModule`, \
             prefix-types have a different prefix (this host expects `2`, the plugin has `3`); \
             unexpected field (this host expects `new_fault`, the plugin has `extra`); \
             rebuild the plugin against this host's plugin-api"
        );
    }
}
