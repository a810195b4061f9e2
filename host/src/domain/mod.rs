//! The domain: what a drill is made of, apart from how it is triggered, run, stored or
//! shown. The injection record every layer shares, the records of a drill, the budget,
//! the window, the schedule and the time zones: rules and data, no files. Nothing here
//! imports a layer above it.

pub(crate) mod budget;
pub(crate) mod drill;
pub mod injection;
pub(crate) mod schedule;
pub(crate) mod tz;
pub(crate) mod window;
