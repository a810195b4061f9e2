//! The one error kind that changes the exit code: a mistake of the user's (a flag, a
//! config, a plugin file) exits 2, anything else 1. Low in the house so that every
//! command and the daemon can raise it and `main` can tell it apart.

/// An error the user caused with a flag, a config or a plugin file: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UsageError(#[from] pub anyhow::Error);
