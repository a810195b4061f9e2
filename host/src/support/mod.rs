//! Small helpers with no knowledge of faults: where a setting was written and the checks
//! every component's config shares, the state directory and atomic writes,
//! retry waits with jitter, and locks that outlive a panic.

pub mod backoff;
pub mod located;
pub mod lock;
pub mod state;
pub mod text;
mod usage;

pub use usage::UsageError;
