//! The `fleet:` section: which coordinator, how many faults at once across the fleet,
//! the fleet's budget and gap, and the lease's TTL. Validated with every error located,
//! bounded like every other number of the configuration.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::tls::Tls;
use crate::support::located::{check_url, duration, DurationText, Source};

/// The longest lease TTL: a node that cannot renew holds its slots this long at most.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);
/// The shortest lease TTL etcd grants with its default timing (1.5 election timeouts).
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
/// The lease TTL when none is written.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// The most slots a fleet may have.
pub const MAX_CONCURRENT: u32 = 1000;
/// The most faults a fleet budget may count (the budget's key holds one time per fault).
pub const MAX_BUDGET: u32 = 10_000;
/// The longest span of a fleet budget, and the longest `min_gap`: a week.
pub const MAX_SPAN: Duration = Duration::from_secs(7 * 24 * 3600);

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "fleet")]
pub struct RawFleet {
    coordinator: RawCoordinator,
    #[serde(default)]
    max_concurrent: Option<u32>,
    #[serde(default)]
    budget: Option<RawFleetBudget>,
    #[serde(default)]
    min_gap: Option<DurationText>,
    #[serde(default)]
    lease_ttl: Option<DurationText>,
}

/// The coordinator as written: `Etcd(endpoints: [...], prefix: "...")`.
#[derive(Debug, Deserialize)]
enum RawCoordinator {
    Etcd(RawEtcd),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcd {
    endpoints: Vec<String>,
    prefix: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    /// Lets the password cross plain http to a host that is not loopback.
    #[serde(default)]
    allow_plaintext_credentials: bool,
}

/// The fleet's budget as written: `budget: (max: 10, per: "1h")`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleetBudget {
    max: u32,
    per: DurationText,
}

/// A validated `fleet:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// The etcd cluster's client URLs.
    pub endpoints: Vec<String>,
    /// Every key of the fleet lives under it (`/nightmare-monkey/<fleet>`).
    pub prefix: String,
    /// etcd's user and password, when etcd has authentication on.
    pub credentials: Option<Credentials>,
    /// The CA and client certificate etcd is reached with over https, if any.
    pub tls: Option<Tls>,
    /// Nodes with a fault in flight or in effect at once, fleet-wide.
    pub max_concurrent: u32,
    /// At most `max` faults of the fleet in any `per`.
    pub budget: Option<(u32, Duration)>,
    /// The least time between two faults of the fleet.
    pub min_gap: Option<Duration>,
    /// The lease that holds a node's slots.
    pub lease_ttl: Duration,
}

/// A user and its password (read from a file; never printed, `Debug` included).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The etcd user.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <password>)", self.username)
    }
}

impl FleetConfig {
    /// How long past its last renewal a node may go before it refuses and reverts what
    /// it holds: half the TTL, so the reverts have the other half before the lease ends.
    pub fn fail_after(&self) -> Duration {
        self.lease_ttl / 2
    }

    /// How often the lease is renewed: a third of the TTL.
    pub fn renew_every(&self) -> Duration {
        self.lease_ttl / 3
    }
}

impl RawFleet {
    /// Validates the section; `None` when an error makes it unusable.
    pub fn validate(&self, src: &Source<'_>, errors: &mut Vec<String>) -> Option<FleetConfig> {
        let before = errors.len();
        let RawCoordinator::Etcd(etcd) = &self.coordinator;
        let at = |keys: &[&str]| src.at(&[&["fleet", "coordinator"][..], keys].concat());
        if etcd.endpoints.is_empty() {
            errors.push(format!(
                "{}: no etcd endpoint: expected at least one, like \"http://127.0.0.1:2379\"",
                at(&["endpoints"])
            ));
        }
        for endpoint in &etcd.endpoints {
            check_url(endpoint, &at(&["endpoints", endpoint]), errors);
        }
        let prefix = &etcd.prefix;
        if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.len() < 2 {
            errors.push(format!(
                "{}: invalid prefix `{prefix}`: expected a key path like \"/nightmare-monkey/staging\" (a leading slash, none at the end)",
                at(&["prefix"])
            ));
        }
        let credentials = credentials(etcd, src, errors);
        if credentials.is_some() && !etcd.allow_plaintext_credentials {
            for endpoint in etcd.endpoints.iter().filter(|e| !private(e)) {
                errors.push(format!(
                    "{}: the etcd password would cross the network in clear to {endpoint}: use an https:// endpoint with ca_file, or set allow_plaintext_credentials: true if that network is trusted",
                    at(&["endpoints", endpoint])
                ));
            }
        }
        let tls = super::tls::read(
            super::tls::Files {
                ca: etcd.ca_file.as_deref(),
                cert: etcd.cert_file.as_deref(),
                key: etcd.key_file.as_deref(),
            },
            &etcd.endpoints,
            &at,
            errors,
        );
        let max_concurrent = self.max_concurrent.unwrap_or(1);
        if !(1..=MAX_CONCURRENT).contains(&max_concurrent) {
            errors.push(format!(
                "{}: max_concurrent must be between 1 and {MAX_CONCURRENT}",
                src.at(&["fleet", "max_concurrent"])
            ));
        }
        let budget = self.budget.as_ref().and_then(|b| {
            if !(1..=MAX_BUDGET).contains(&b.max) {
                errors.push(format!(
                    "{}: max must be between 1 and {MAX_BUDGET} (leave budget out for no limit)",
                    src.at(&["fleet", "budget", "max"])
                ));
            }
            let per = duration(
                &b.per,
                &src.at(&["fleet", "budget", "per"]),
                "per",
                MAX_SPAN,
                errors,
            )?;
            Some((b.max, per))
        });
        let min_gap = self.min_gap.as_ref().and_then(|gap| {
            duration(
                gap,
                &src.at(&["fleet", "min_gap"]),
                "min_gap",
                MAX_SPAN,
                errors,
            )
        });
        let lease_ttl = match &self.lease_ttl {
            None => Some(DEFAULT_LEASE_TTL),
            Some(text) => {
                let at = src.at(&["fleet", "lease_ttl"]);
                duration(text, &at, "lease_ttl", MAX_LEASE_TTL, errors).and_then(|ttl| {
                    if ttl < MIN_LEASE_TTL || ttl.subsec_nanos() != 0 {
                        errors.push(format!(
                            "{at}: invalid lease_ttl `{}`: expected whole seconds, at least 2s (etcd's shortest lease)",
                            text.0
                        ));
                        None
                    } else {
                        Some(ttl)
                    }
                })
            }
        };
        if errors.len() > before {
            return None;
        }
        Some(FleetConfig {
            endpoints: etcd
                .endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_owned())
                .collect(),
            prefix: prefix.clone(),
            credentials,
            tls,
            max_concurrent,
            budget,
            min_gap,
            lease_ttl: lease_ttl?,
        })
    }
}

/// Whether what is sent to `endpoint` stays off the network's wire or is encrypted:
/// https, or http to a loopback address (`127.0.0.0/8`, `::1`, `localhost`).
fn private(endpoint: &str) -> bool {
    if !endpoint.starts_with("http://") {
        return true;
    }
    let Ok(url) = reqwest::Url::parse(endpoint) else {
        // No password is sent to a URL that cannot be used.
        return true;
    };
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The user and password etcd is reached with, if any: both or neither, the password
/// read from its file (never from the config itself, never logged).
fn credentials(etcd: &RawEtcd, src: &Source<'_>, errors: &mut Vec<String>) -> Option<Credentials> {
    let at = |keys: &[&str]| src.at(&[&["fleet", "coordinator"][..], keys].concat());
    match (&etcd.username, &etcd.password_file) {
        (None, None) => None,
        (Some(username), Some(file)) => match crate::support::small_file::read_text(
            file,
            crate::support::small_file::MAX_SECRET,
        ) {
            Ok(password) if !password.trim().is_empty() => Some(Credentials {
                username: username.clone(),
                password: password.trim_end_matches(['\n', '\r']).to_owned(),
            }),
            Ok(_) => {
                errors.push(format!(
                    "{}: password file {} is empty",
                    at(&["password_file"]),
                    file.display()
                ));
                None
            }
            Err(e) => {
                errors.push(format!(
                    "{}: cannot read password file {}: {e}",
                    at(&["password_file"]),
                    file.display()
                ));
                None
            }
        },
        (Some(_), None) => {
            errors.push(format!(
                "{}: a username needs a password_file",
                at(&["username"])
            ));
            None
        }
        (None, Some(_)) => {
            errors.push(format!(
                "{}: a password_file needs a username",
                at(&["password_file"])
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(text: &str) -> Result<FleetConfig, Vec<String>> {
        #[derive(Deserialize)]
        struct Top {
            fleet: RawFleet,
        }
        // As the config's parser reads it (`Etcd(endpoints: ...)` unwrapped).
        let top: Top = ron::Options::default()
            .with_default_extension(
                ron::extensions::Extensions::IMPLICIT_SOME
                    | ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES,
            )
            .from_str(text)
            .map_err(|e| vec![e.to_string()])?;
        let src = Source::new(Path::new("f.ron"), text);
        let mut errors = Vec::new();
        top.fleet.validate(&src, &mut errors).ok_or(errors)
    }

    #[test]
    fn a_fleet_reads_with_its_defaults() {
        let fleet = check(
            r#"(fleet: (coordinator: Etcd(endpoints: ["http://127.0.0.1:2379/"], prefix: "/nm/staging")))"#,
        )
        .unwrap();
        assert_eq!(fleet.endpoints, ["http://127.0.0.1:2379"]);
        assert_eq!(fleet.max_concurrent, 1);
        assert_eq!(fleet.lease_ttl, DEFAULT_LEASE_TTL);
        assert_eq!(fleet.fail_after(), Duration::from_secs(5));
        assert_eq!((fleet.budget, fleet.min_gap), (None, None));
    }

    #[test]
    fn every_error_is_located_and_said_at_once() {
        let errors = check(
            "(fleet: (\n coordinator: Etcd(endpoints: [\"etcd:2379\"], prefix: \"nm/\", username: \"m\"),\n max_concurrent: 0,\n budget: (max: 0, per: \"1h\"),\n min_gap: \"soon\",\n lease_ttl: \"1s\"))",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "f.ron:2:20: invalid URL `etcd:2379`: expected http:// or https://",
                "f.ron:2:46: invalid prefix `nm/`: expected a key path like \"/nightmare-monkey/staging\" (a leading slash, none at the end)",
                "f.ron:2:61: a username needs a password_file",
                "f.ron:3:2: max_concurrent must be between 1 and 1000",
                "f.ron:4:11: max must be between 1 and 10000 (leave budget out for no limit)",
                "f.ron:5:2: invalid min_gap `soon`: expected a duration like 10m, 30s or 250ms",
                "f.ron:6:2: invalid lease_ttl `1s`: expected whole seconds, at least 2s (etcd's shortest lease)",
            ]
        );
    }

    #[test]
    fn a_password_crosses_plain_http_only_to_loopback_or_when_allowed() {
        let dir = std::env::temp_dir().join(format!("nm-fleet-plain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let password = dir.join("password");
        std::fs::write(&password, "s3cret\n").unwrap();
        let with = |endpoints: &str, extra: &str| {
            check(&format!(
                r#"(fleet: (coordinator: Etcd(endpoints: [{endpoints}], prefix: "/nm", username: "m", password_file: {password:?}{extra})))"#
            ))
        };
        for loopback in [
            r#""http://127.0.0.1:2379""#,
            r#""http://127.3.4.5:2379""#,
            r#""http://localhost:2379""#,
            r#""http://[::1]:2379""#,
        ] {
            assert!(with(loopback, "").is_ok(), "{loopback}");
        }
        let errors = with(r#""http://127.0.0.1:2379", "http://etcd.svc:2379""#, "").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].ends_with(": the etcd password would cross the network in clear to http://etcd.svc:2379: use an https:// endpoint with ca_file, or set allow_plaintext_credentials: true if that network is trusted"),
            "{errors:?}"
        );
        assert!(with(r#""http://10.0.0.7:2379""#, "").is_err());
        assert!(with(
            r#""http://etcd.svc:2379""#,
            ", allow_plaintext_credentials: true"
        )
        .is_ok());
        // Without a password nothing secret is sent.
        let plain = check(
            r#"(fleet: (coordinator: Etcd(endpoints: ["http://etcd.svc:2379"], prefix: "/nm")))"#,
        );
        assert!(plain.is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_password_is_never_printed() {
        let c = Credentials {
            username: "monkey".into(),
            password: "s3cret".into(),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
