//! The domain: what a drill is made of, apart from how it is triggered, run or shown.
//! The injection record every layer shares, the journal that keeps it, the budget, the
//! window, the schedule and the time zones. Nothing here imports a layer above it.

pub(crate) mod active;
pub mod archive;
pub(crate) mod budget;
pub(crate) mod drill;
pub(crate) mod history;
pub mod injection;
pub mod journal;
pub(crate) mod report;
pub(crate) mod schedule;
pub(crate) mod tz;
pub(crate) mod window;
