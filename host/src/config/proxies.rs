//! The `proxies:` section: the TCP proxies the daemon runs for the `net-proxy` fault
//! (`proxies: {"db": (listen: "127.0.0.1:15432", upstream: "10.0.0.5:5432")}`). Each
//! is checked where it was written; the proxy itself is `net_faults::proxy`'s.

use std::{collections::BTreeMap, net::SocketAddr};

use net_faults::proxy::{clashes, Spec};
use serde::Deserialize;

use crate::support::located::Source;

/// A proxy as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "proxy")]
pub struct RawProxy {
    listen: String,
    upstream: String,
}

/// The proxies, each checked: a name of lower-case letters, digits and dashes, a listen
/// address of its own (no other proxy's, nor the API's, on the same port: one of them
/// on every address takes the port on all), an upstream `host:port` that is neither a proxy's listen address
/// nor the daemon's API's (`api`), by its name as by the addresses the system resolver
/// gives for it now. A proxy in front of the API is refused whatever guards the API: it
/// is never a fault worth injecting, and a proxy on a public address in front of an API
/// that needs no token on loopback would hand the monkey to anyone who reaches it.
pub fn validate(
    raw: &BTreeMap<String, RawProxy>,
    api: Option<SocketAddr>,
    src: &Source<'_>,
    errors: &mut Vec<String>,
) -> Vec<Spec> {
    let mut specs: Vec<Spec> = Vec::new();
    for (name, proxy) in raw {
        let key = format!("\"{name}\"");
        if !super::valid_fault_name(name) {
            errors.push(format!(
                "{}: invalid proxy name `{name}`: expected lower-case letters, digits and dashes",
                src.at(&["proxies", &key])
            ));
            continue;
        }
        match Spec::parse(name, &proxy.listen, &proxy.upstream) {
            Ok(spec) => {
                let at = || src.at(&["proxies", &key, "listen"]);
                if let Some(api) = api.filter(|&api| clashes(api, spec.listen)) {
                    errors.push(format!(
                        "{}: proxy `{name}` listens on {}, {}: give the proxy a listen address of its own",
                        at(),
                        spec.listen,
                        if api == spec.listen {
                            format!("where the daemon's own API listens ({api})")
                        } else {
                            format!("which clashes with the daemon's own API on {api} (the same port, one of them on every address)")
                        }
                    ));
                    continue;
                }
                if let Some(other) = specs.iter().find(|s| clashes(s.listen, spec.listen)) {
                    let how = if other.listen == spec.listen {
                        format!("as proxy `{}` does", other.name)
                    } else {
                        format!(
                            "which clashes with proxy `{}` on {} (the same port, one of them on every address)",
                            other.name, other.listen
                        )
                    };
                    errors.push(format!(
                        "{}: proxy `{name}` listens on {}, {how}: give each proxy a listen address of its own",
                        at(),
                        spec.listen,
                    ));
                    continue;
                }
                specs.push(spec);
            }
            Err(why) => {
                let field = if why.starts_with("listen") {
                    "listen"
                } else {
                    "upstream"
                };
                errors.push(format!(
                    "{}: proxy `{name}`: {why}",
                    src.at(&["proxies", &key, field])
                ));
            }
        }
    }
    // Every upstream's addresses, the names resolved at once (each waits a little at
    // most for the resolver): a name for this very host is a loop like its address.
    let addresses: Vec<Vec<std::net::IpAddr>> = std::thread::scope(|scope| {
        let asked: Vec<_> = specs
            .iter()
            .map(|spec| scope.spawn(|| spec.upstream_addresses()))
            .collect();
        asked
            .into_iter()
            .map(|a| a.join().unwrap_or_default())
            .collect()
    });
    for (spec, addresses) in specs.iter().zip(&addresses) {
        if let Some(ip) = api.and_then(|api| spec.forwards_to(addresses, api)) {
            let resolved = if spec.upstream_is_a_name() {
                format!(" (which resolves to {ip})")
            } else {
                String::new()
            };
            errors.push(format!(
                "{}: proxy `{}` forwards to {}{resolved}, where the daemon's own API listens ({}): a proxy in front of the API would let whoever reaches the proxy drive the monkey; expected the address of the real service",
                src.at(&["proxies", &format!("\"{}\"", spec.name), "upstream"]),
                spec.name,
                spec.upstream,
                api.map(|a| a.to_string()).unwrap_or_default()
            ));
            continue;
        }
        let Some((other, ip)) = specs
            .iter()
            .find_map(|o| Some((o, spec.forwards_to(addresses, o.listen)?)))
        else {
            continue;
        };
        let whose = if other.name == spec.name {
            "its own listen address".to_owned()
        } else {
            format!("where proxy `{}` listens ({})", other.name, other.listen)
        };
        let resolved = if spec.upstream_is_a_name() {
            format!(" (which resolves to {ip})")
        } else {
            String::new()
        };
        errors.push(format!(
            "{}: proxy `{}` forwards to {}{resolved}, {whose}: a loop; expected the address of the real service",
            src.at(&["proxies", &format!("\"{}\"", spec.name), "upstream"]),
            spec.name,
            spec.upstream
        ));
    }
    specs
}
