//! Where injections go out: the daemon's log (the original's plain lines or JSON), the
//! Prometheus metrics, the webhook notifiers and the live events of the dashboard. Each
//! renders the one injection record in its own shape; none decides anything. `picture`
//! draws the drill and the plan (SVG and self-contained HTML).

pub mod answer;
pub mod events;
pub mod log;
pub mod logline;
pub mod metrics;
pub mod notifier;
pub mod picture;
