//! Small helpers with no knowledge of faults: where a setting was written and the checks
//! every component's config shares, the state directory and atomic writes,
//! retry waits with jitter, the signals a child starts with, locks that outlive a panic, threads of their own for
//! blocking work, the orphans a daemon adopts and ends, and files a person points it at
//! read within bounds.

pub mod backoff;
pub mod child;
pub mod flocks;
pub mod located;
pub mod lock;
pub mod orphans;
pub mod shown_url;
pub mod small_file;
pub mod state;
pub mod text;
pub(crate) mod thread;
pub mod unique;
mod usage;

pub use usage::UsageError;
