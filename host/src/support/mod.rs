//! Small helpers with no knowledge of faults: where a setting was written and the checks
//! every component's config shares, the state directory and atomic writes,
//! retry waits with jitter, locks that outlive a panic, and threads of their own for
//! blocking work.

pub mod backoff;
pub mod located;
pub mod lock;
pub mod state;
pub mod text;
pub(crate) mod thread;
mod usage;

pub use usage::UsageError;
