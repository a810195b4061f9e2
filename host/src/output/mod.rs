//! Where injections go out: the daemon's log (the original's plain lines or JSON), the
//! Prometheus metrics and the webhook notifiers. Each renders the one injection record
//! in its own shape; none decides anything. `picture` draws the drill and the plan (SVG
//! and self-contained HTML).

pub mod answer;
pub mod log;
pub mod logline;
pub mod metrics;
pub mod notifier;
pub mod picture;
