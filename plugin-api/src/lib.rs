//! The stable plugin interface of nightmare-monkey, and the SDK for writing fault plugins.
//!
//! A fault plugin is a Rust `cdylib` that depends on this crate only, implements
//! [`sdk::FaultPlugin`] and calls [`export_plugin!`]. The host loads it at run time through
//! [abi_stable](https://docs.rs/abi_stable), which checks the layout of every type that
//! crosses before any code runs, so a plugin built against an incompatible interface is
//! refused with an error instead of crashing the host.
//!
//! Beside the ABI, the SDK gives a plugin author what the built-in faults use:
//! [`sdk::process`] (choosing a process with every guard, seeded, and signalling exactly
//! it through a pidfd) and [`sdk::testing`] (a harness that drives a fault through the
//! ABI as the host does and checks its dry-run, revert, config-error and panic contracts).
//!
//! # The ABI rules
//!
//! The ABI is [`abi::PluginModule`] (the root module: `manifest`, `new_fault`) and the
//! trait object [`abi::Fault`] (`inject`, `revert`). It is **frozen at 1.0.0**:
//!
//! - abi_stable loads a plugin only if each prefix type in it (the root module, the trait's
//!   vtable) has at least the host's fields. A host whose interface gained a field would
//!   refuse every older plugin with "too many fields"; an older host still loads a newer
//!   plugin. So no field is ever added to, removed from or reordered in [`abi`].
//! - Everything that will grow crosses as text instead: the fault's configuration (RON),
//!   the [`sdk::Request`], the [`sdk::Outcome`], the [`sdk::Manifest`] and every
//!   [`sdk::PluginError`] (JSON). Each side reads them with serde defaults, so a field
//!   added later is ignored by an old reader and defaulted for a new one. Fields are only
//!   ever added, never renamed or removed.
//! - A panic must never unwind across the boundary (abi_stable aborts the host when one
//!   does). The functions [`export_plugin!`] generates catch every panic, including one
//!   in the fault's `Drop`, and return it as an error of kind [`sdk::ErrorKind::Panic`].
//!   Build plugins with `panic = "unwind"` (the default): with `panic = "abort"` nothing
//!   can be caught.
//! - A plugin never sees HTTP, schedules or the journal: it gets a seed, a dry-run flag
//!   and a description, and returns an outcome. In a dry run it changes nothing.
//! - Its random choices come from [`sdk::Rng::from_seed`] with the request's seed only,
//!   so the same seed and the same host state replay the same fault.
//!
//! # Example
//!
//! A complete fault, driven through the ABI exactly as the host drives a loaded plugin:
//!
//! ```
//! use nightmare_monkey_plugin_api::sdk::{self, FaultPlugin, Outcome, PluginError, Request, Rng};
//! use nightmare_monkey_plugin_api::abi_stable::std_types::RStr;
//!
//! #[derive(serde::Deserialize, Default)]
//! #[serde(default, deny_unknown_fields)]
//! struct Config { sides: u64 }
//!
//! struct Dice(u64);
//!
//! impl FaultPlugin for Dice {
//!     const NAME: &'static str = "dice";
//!     const VERSION: &'static str = "0.1.0";
//!     const DESCRIPTION: &'static str = "rolls a die and changes nothing";
//!     type Config = Config;
//!
//!     fn new(config: Config) -> Result<Self, PluginError> {
//!         Ok(Dice(config.sides.max(1)))
//!     }
//!
//!     fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
//!         let roll = 1 + Rng::from_seed(request.seed).below(self.0);
//!         Ok(Outcome {
//!             action: "Roll".into(),
//!             result: sdk::results::DRY_RUN.into(),
//!             summary: format!("rolled {roll}"),
//!             ..Outcome::default()
//!         })
//!     }
//! }
//!
//! nightmare_monkey_plugin_api::export_plugin!(Dice);
//!
//! let module = plugin_module();
//! let manifest: sdk::Manifest = serde_json::from_str(&(module.manifest())().unwrap()).unwrap();
//! assert_eq!(manifest.name, "dice");
//!
//! let fault = (module.new_fault())(RStr::from("(sides: 6)")).unwrap();
//! let request = serde_json::to_string(&Request { seed: 7, ..Request::default() }).unwrap();
//! let outcome: Outcome = serde_json::from_str(&fault.inject(RStr::from(request.as_str())).unwrap()).unwrap();
//! assert!(outcome.summary.starts_with("rolled "));
//!
//! // A bad config is an error, not a panic; so is anything the plugin panics on.
//! let Err(err) = (module.new_fault())(RStr::from("(colour: 6)")).into_result() else {
//!     panic!("an unknown field is rejected");
//! };
//! assert_eq!(PluginError::from_json(&err).kind, sdk::ErrorKind::Config);
//! ```

// abi_stable's derives expand to `unsafe impl`s and impls in nested modules; the
// module holds no hand-written unsafe code.
#[allow(unsafe_code, non_local_definitions)]
pub mod abi;
pub mod sdk;

pub use abi_stable;
