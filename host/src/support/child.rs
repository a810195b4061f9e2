//! What a child process starts with: the daemon blocks SIGTERM, SIGINT and SIGHUP in
//! every thread (`runtime::stop` reads them from a signalfd), so every program it starts
//! (a worker, a probe's command, the sandbox's) is started through
//! [`stop_signals_unblocked`], the one the built-in faults use too.

pub use nightmare_monkey_plugin_api::sdk::child::stop_signals_unblocked;
