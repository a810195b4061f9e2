//! The frozen ABI: the root module every plugin exports and the fault trait object.
//!
//! Everything in this module is part of the 1.0.0 contract and never changes. abi_stable
//! checks these layouts when a plugin is loaded; a host whose prefix types gained a field
//! rejects every older plugin, so the types here stay exactly as they are. What needs to
//! grow (a fault's config, the request, the outcome, the manifest) crosses as text and is
//! described by the serde types of [`crate::sdk`].

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RStr, RString},
    StableAbi,
};

/// The root module a plugin exports: how the host learns what the plugin is and builds
/// faults from it.
///
/// Every error crossing here is the JSON text of a [`crate::sdk::PluginError`].
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// Describes the plugin: the JSON text of a [`crate::sdk::Manifest`].
    pub manifest: extern "C" fn() -> RResult<RString, RString>,
    /// Builds a fault from its configuration, given as RON text (empty for the defaults).
    #[sabi(last_prefix_field)]
    pub new_fault: extern "C" fn(config: RStr<'_>) -> RResult<FaultBox, RString>,
}

impl RootModule for PluginRef {
    declare_root_module_statics! {PluginRef}
    const BASE_NAME: &'static str = "nightmare_monkey_plugin";
    const NAME: &'static str = "nightmare-monkey plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// One configured fault, ready to be injected any number of times.
///
/// Calls are synchronous and may block (the host runs them off its async runtime). Both
/// methods take and return JSON text: a [`crate::sdk::Request`] or a revert state in, a
/// [`crate::sdk::Outcome`] out, a [`crate::sdk::PluginError`] on failure.
#[sabi_trait]
pub trait Fault: Send + Sync {
    /// Injects the fault once.
    fn inject(&self, request: RStr<'_>) -> RResult<RString, RString>;

    /// Undoes a reversible fault, given the `revert` state its outcome carried.
    #[sabi(last_prefix_field)]
    fn revert(&self, state: RStr<'_>) -> RResult<RString, RString>;
}

/// An owned fault trait object as it crosses the boundary.
pub type FaultBox = Fault_TO<'static, RBox<()>>;
