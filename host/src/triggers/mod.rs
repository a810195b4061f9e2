//! Triggers: each one only produces requests and hands them to `daemon::inject`; none
//! calls a plugin or knows another.

pub mod http;
pub mod poller;
pub mod timer;
