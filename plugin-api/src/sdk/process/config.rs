//! The selection settings every process fault takes, declared once. A fault declares its
//! configuration with [`process_config!`](crate::process_config): its own fields, then these.
//! A macro rather than `#[serde(flatten)]`, because serde cannot combine `flatten` with
//! `deny_unknown_fields`, and a misspelt `exclude_name` must be refused, not ignored.

/// Declares a process fault's configuration: the fault's own fields first, then the
/// selection (`include_names`, `exclude_names`, `include_cmdlines`, `exclude_cmdlines`,
/// `users`), then the fields given in `after_users { .. }`, then `scope`, in that order
/// (it is the order serde lists them in when it refuses an unknown one). The struct
/// derives `Debug`, `Default`, `Clone` and `Deserialize` (every field optional, unknown
/// fields refused) and gets `selection()`, the [`Selection`]
/// it asks for. The crate using it depends on `serde` (with `derive`).
///
/// ```
/// nightmare_monkey_plugin_api::process_config! {
///     /// The fault's configuration, as written in RON.
///     pub struct Config {
///         /// The signal to send.
///         pub signal: Option<String>,
///     }
///     after_users {
///         /// How long to wait, in milliseconds.
///         pub grace_ms: Option<u64>,
///     }
/// }
/// let config: Config =
///     nightmare_monkey_plugin_api::sdk::parse_config(r#"(signal: "TERM", users: ["www-data"])"#)
///         .unwrap();
/// assert_eq!(config.selection().users, ["www-data"]);
/// ```
#[macro_export]
macro_rules! process_config {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty, )*
        }
        $( after_users {
            $( $(#[$ameta:meta])* $avis:vis $afield:ident : $aty:ty, )*
        } )?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, ::serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $ty, )*
            /// Only processes whose short name matches one of these regexes (empty: any).
            pub include_names: Vec<String>,
            /// Never processes whose short name matches one of these regexes.
            pub exclude_names: Vec<String>,
            /// Only processes whose command line matches one of these regexes (empty: any).
            pub include_cmdlines: Vec<String>,
            /// Never processes whose command line matches one of these regexes.
            pub exclude_cmdlines: Vec<String>,
            /// Only processes whose real user is one of these names or UIDs (empty: any).
            pub users: Vec<String>,
            $( $( $(#[$ameta])* $avis $afield: $aty, )* )?
            /// Only processes in this scope: `Cgroup("system.slice/x.service")`, `Tree(PID)`,
            /// `Namespace(PID)` (default: the whole host).
            pub scope: Option<$crate::sdk::process::Scope>,
        }

        impl $name {
            /// The processes this configuration lets the fault choose from.
            pub fn selection(&self) -> $crate::sdk::process::Selection {
                $crate::sdk::process::Selection {
                    include_names: self.include_names.clone(),
                    exclude_names: self.exclude_names.clone(),
                    include_cmdlines: self.include_cmdlines.clone(),
                    exclude_cmdlines: self.exclude_cmdlines.clone(),
                    users: self.users.clone(),
                    scope: self.scope.clone(),
                }
            }
        }
    };
}

crate::process_config! {
    /// Which processes a fault may choose, as its configuration spells it: the selection
    /// fields alone.
    pub struct Selection {}
}
