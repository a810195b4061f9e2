//! Triggers: each one only produces asks and hands them to `dispatch::Injector`; none
//! calls a plugin, writes the journal or knows another. Each owns its settings (`config`
//! beside its code).

pub mod http;
pub mod poller;
pub mod timer;
