//! The adapter between a [`FaultPlugin`] and the frozen ABI: the root module, the
//! library header, and every entry point run under `catch_unwind`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    library::{CheckTypeLayout, LibHeader, RootModuleResult},
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr, RString},
};
use serde::Serialize;

use super::{
    parse_config, ErrorKind, FaultPlugin, Manifest, Phase, PluginError, Request, API_VERSION,
};
use crate::abi::{Fault, FaultBox, Fault_TO, PluginModule, PluginRef};

/// The root module of plugin `P`. The host calls this directly for the faults it links
/// statically; the `.so` exports it through the header made by [`export_plugin!`].
///
/// [`export_plugin!`]: crate::export_plugin
pub fn root_module<P: FaultPlugin>() -> PluginRef {
    PluginModule {
        manifest: manifest::<P>,
        new_fault: new_fault::<P>,
    }
    .leak_into_prefix()
}

/// The library header the export macro places under the plugin's symbol.
#[doc(hidden)]
pub const fn __lib_header<P: FaultPlugin>() -> LibHeader {
    // SAFETY: `constructor::<P>` returns exactly the module type `PluginRef` named here,
    // which is the contract `from_constructor` asks for.
    #[allow(unsafe_code)]
    unsafe {
        LibHeader::from_constructor::<PluginRef>(constructor::<P>, CheckTypeLayout::Yes)
    }
}

extern "C" fn constructor<P: FaultPlugin>() -> RootModuleResult {
    abi_stable::library::__call_root_module_loader(root_module::<P>)
}

/// Runs one entry point, turning a panic into a [`ErrorKind::Panic`] error: a panic
/// that unwound across the boundary would make abi_stable abort the whole host.
fn guarded<T>(f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, RString> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(e)) => RResult::RErr(e.to_json().into()),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic payload".to_owned());
            // Dropping the payload runs foreign code too: keep that inside the guard.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            let e = PluginError::new(ErrorKind::Panic, format!("the plugin panicked: {what}"));
            RResult::RErr(e.to_json().into())
        }
    }
}

/// The deepest nesting of an answer the host keeps: serde_json refuses a 128th level,
/// and the host's checkpoint holds a revert state three levels below the top (the
/// checkpoint, its open faults, the fault, its outcome).
const MAX_NESTING: usize = 124;

/// How deep the arrays and objects of the JSON `text` nest (strings skipped).
pub(super) fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'[' | b'{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn to_json_text<T: Serialize>(value: &T) -> Result<RString, PluginError> {
    // Most replies are some hundred bytes: one allocation, not a doubling from 8.
    let mut text = Vec::with_capacity(512);
    serde_json::to_writer(&mut text, value)
        .map_err(|e| PluginError::new(ErrorKind::Failed, format!("cannot encode reply: {e}")))?;
    String::from_utf8(text)
        .map(RString::from)
        .map_err(|e| PluginError::new(ErrorKind::Failed, format!("cannot encode reply: {e}")))
}

extern "C" fn manifest<P: FaultPlugin>() -> RResult<RString, RString> {
    guarded(|| {
        to_json_text(&Manifest {
            name: P::NAME.to_owned(),
            version: P::VERSION.to_owned(),
            description: P::DESCRIPTION.to_owned(),
            api_version: API_VERSION.to_owned(),
            prepares: P::PREPARES,
        })
    })
}

extern "C" fn new_fault<P: FaultPlugin>(config: RStr<'_>) -> RResult<FaultBox, RString> {
    guarded(|| {
        let config = parse_config::<P::Config>(config.as_str())?;
        let plugin = P::new(config)?;
        Ok(Fault_TO::from_value(Adapter(Some(plugin)), TD_Opaque))
    })
}

/// Carries a plugin's fault across the boundary; its drop is guarded like every call.
struct Adapter<P>(Option<P>);

impl<P: FaultPlugin> Adapter<P> {
    fn plugin(&self) -> Result<&P, PluginError> {
        self.0
            .as_ref()
            .ok_or_else(|| PluginError::new(ErrorKind::Failed, "the fault was already dropped"))
    }
}

impl<P> Drop for Adapter<P> {
    fn drop(&mut self) {
        let inner = self.0.take();
        let _ = catch_unwind(AssertUnwindSafe(move || drop(inner)));
    }
}

impl<P: FaultPlugin> Fault for Adapter<P> {
    fn inject(&self, request: RStr<'_>) -> RResult<RString, RString> {
        guarded(|| {
            let request: Request = serde_json::from_str(request.as_str()).map_err(|e| {
                PluginError::new(ErrorKind::Failed, format!("unreadable request: {e}"))
            })?;
            let plugin = self.plugin()?;
            let outcome = match (request.phase, &request.prepared) {
                (Phase::Whole, _) => plugin.inject(&request)?,
                (Phase::Prepare, _) => plugin.prepare(&request)?,
                (Phase::Apply, Some(prepared)) => plugin.apply(&request, prepared)?,
                (Phase::Apply, None) => {
                    return Err(PluginError::new(
                        ErrorKind::Failed,
                        "an apply request without the prepared state",
                    ))
                }
            };
            let text = to_json_text(&outcome)?;
            // Every answer has a few brackets: counting them (a loop the compiler
            // vectorises) bounds the depth; only a rare one is walked.
            let opening = text
                .as_bytes()
                .iter()
                .filter(|b| matches!(b, b'[' | b'{'))
                .count();
            if opening <= MAX_NESTING {
                return Ok(text);
            }
            let depth = nesting(text.as_str());
            if depth <= MAX_NESTING {
                return Ok(text);
            }
            // The host could not read it, nor so journal how to undo what was done:
            // undone here and now, while the state is in hand (a prepare did nothing).
            let undone = match (&request.phase, &outcome.revert) {
                (Phase::Prepare, _) | (_, None) => String::new(),
                (_, Some(state)) => match plugin.revert(state) {
                    Ok(_) => "; reverted at once".to_owned(),
                    Err(e) => format!("; its revert at once failed too: {}", e.message),
                },
            };
            Err(PluginError::new(
                ErrorKind::Failed,
                format!(
                    "its answer nests {depth} levels deep, past the {MAX_NESTING} the host keeps{undone}"
                ),
            ))
        })
    }

    fn revert(&self, state: RStr<'_>) -> RResult<RString, RString> {
        guarded(|| {
            let state: serde_json::Value = serde_json::from_str(state.as_str()).map_err(|e| {
                PluginError::new(ErrorKind::Failed, format!("unreadable revert state: {e}"))
            })?;
            to_json_text(&self.plugin()?.revert(&state)?)
        })
    }
}
