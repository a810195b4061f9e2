//! etcd over https with certificates from files: the CA that signs etcd's server
//! certificate (`ca_file`), and the client certificate and key etcd asks for with
//! `--client-cert-auth` (`cert_file`, `key_file`). Read and checked once, as the config
//! is; the key is never printed (`Debug` included).

use std::path::{Path, PathBuf};

/// The files of the `Etcd(...)` coordinator, as written.
pub struct Files<'a> {
    pub ca: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
}

/// The certificates etcd is reached with, as read from their files.
#[derive(Clone, PartialEq, Eq)]
pub struct Tls {
    /// The CA certificates etcd's server certificate must chain to (PEM); without
    /// one, the usual web roots.
    pub ca: Option<Vec<u8>>,
    /// The client certificate (PEM), then its key (PEM).
    pub identity: Option<Vec<u8>>,
    /// Where the client certificate was read from (for people).
    pub cert_file: Option<PathBuf>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tls(ca: {}, client certificate: {}, <key>)",
            if self.ca.is_some() {
                "file"
            } else {
                "web roots"
            },
            self.cert_file
                .as_ref()
                .map_or_else(|| "none".to_owned(), |p| p.display().to_string())
        )
    }
}

impl Tls {
    /// Sets `builder` up to reach etcd with these certificates: only the given CA is
    /// trusted when there is one.
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> anyhow::Result<reqwest::ClientBuilder> {
        let mut builder = builder.use_rustls_tls();
        if let Some(ca) = &self.ca {
            builder = builder.tls_built_in_root_certs(false);
            for cert in reqwest::Certificate::from_pem_bundle(ca)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(identity) = &self.identity {
            builder = builder.identity(reqwest::Identity::from_pem(identity)?);
        }
        Ok(builder)
    }

    /// What `check-config` says of it.
    pub fn describe(&self) -> String {
        let ca = if self.ca.is_some() {
            "its ca_file"
        } else {
            "the web roots"
        };
        match &self.cert_file {
            Some(cert) => format!(
                "https checked against {ca}, client certificate {}",
                cert.display()
            ),
            None => format!("https checked against {ca}"),
        }
    }
}

/// Reads and checks the files, each error naming its file; `None` when none is given
/// or one is unusable. `at` locates a key of the coordinator in the config.
pub fn read(
    files: Files<'_>,
    endpoints: &[String],
    at: &dyn Fn(&[&str]) -> String,
    errors: &mut Vec<String>,
) -> Option<Tls> {
    if files.ca.is_none() && files.cert.is_none() && files.key.is_none() {
        return None;
    }
    let before = errors.len();
    if let Some(plain) = endpoints.iter().find(|e| e.starts_with("http://")) {
        errors.push(format!(
            "{}: endpoint {plain} is plain http: ca_file, cert_file and key_file need https:// endpoints",
            at(&["endpoints"])
        ));
    }
    let ca = files.ca.and_then(|file| {
        let pem = read_file(file, "ca_file", &at(&["ca_file"]), errors)?;
        certificates(&pem, file, "ca_file", &at(&["ca_file"]), errors).then_some(pem)
    });
    let identity = match (files.cert, files.key) {
        (None, None) => None,
        (Some(_), None) => {
            errors.push(format!(
                "{}: a cert_file needs a key_file",
                at(&["cert_file"])
            ));
            None
        }
        (None, Some(_)) => {
            errors.push(format!(
                "{}: a key_file needs a cert_file",
                at(&["key_file"])
            ));
            None
        }
        (Some(cert_file), Some(key_file)) => identity(cert_file, key_file, at, errors),
    };
    if errors.len() > before {
        return None;
    }
    Some(Tls {
        ca,
        identity,
        cert_file: files.cert.map(Path::to_owned),
    })
}

/// The client certificate then its key, checked to make a client identity.
fn identity(
    cert_file: &Path,
    key_file: &Path,
    at: &dyn Fn(&[&str]) -> String,
    errors: &mut Vec<String>,
) -> Option<Vec<u8>> {
    let cert = read_file(cert_file, "cert_file", &at(&["cert_file"]), errors);
    let key = read_file(key_file, "key_file", &at(&["key_file"]), errors);
    let (mut cert, key) = (cert?, key?);
    if !certificates(&cert, cert_file, "cert_file", &at(&["cert_file"]), errors) {
        return None;
    }
    let text = String::from_utf8_lossy(&key);
    if !text.contains("-----BEGIN") || !text.contains("PRIVATE KEY-----") {
        errors.push(format!(
            "{}: key_file {} holds no PEM private key (expected -----BEGIN PRIVATE KEY-----)",
            at(&["key_file"]),
            key_file.display()
        ));
        return None;
    }
    cert.push(b'\n');
    cert.extend_from_slice(&key);
    let usable = reqwest::Identity::from_pem(&cert).and_then(|identity| {
        reqwest::Client::builder()
            .use_rustls_tls()
            .identity(identity)
            .build()
    });
    if let Err(e) = usable {
        errors.push(format!(
            "{}: cannot use key_file {} with cert_file {}: {}",
            at(&["key_file"]),
            key_file.display(),
            cert_file.display(),
            innermost(&e)
        ));
        return None;
    }
    Some(cert)
}

fn read_file(file: &Path, key: &str, at: &str, errors: &mut Vec<String>) -> Option<Vec<u8>> {
    std::fs::read(file)
        .map_err(|e| {
            errors.push(format!("{at}: cannot read {key} {}: {e}", file.display()));
        })
        .ok()
}

/// Whether `pem` holds at least one PEM certificate (else says so, naming `file`).
fn certificates(pem: &[u8], file: &Path, key: &str, at: &str, errors: &mut Vec<String>) -> bool {
    let found = reqwest::Certificate::from_pem_bundle(pem).map_or(0, |all| all.len());
    if found == 0 {
        errors.push(format!(
            "{at}: {key} {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            file.display()
        ));
    }
    found > 0
}

/// The innermost cause of an error.
fn innermost(e: &dyn std::error::Error) -> String {
    let mut why = e;
    while let Some(source) = why.source() {
        why = source;
    }
    why.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_and_non_pem_files_are_named() {
        let dir = std::env::temp_dir().join(format!("nm-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let missing = dir.join("missing.pem");
        let mut errors = Vec::new();
        let at = |keys: &[&str]| format!("f.ron:{}", keys.join("."));
        let tls = read(
            Files {
                ca: Some(&junk),
                cert: Some(&missing),
                key: Some(&junk),
            },
            &[
                "https://127.0.0.1:2379".to_owned(),
                "http://e:2379".to_owned(),
            ],
            &at,
            &mut errors,
        );
        assert!(tls.is_none());
        let junk = junk.display();
        assert_eq!(
            errors,
            [
                "f.ron:endpoints: endpoint http://e:2379 is plain http: ca_file, cert_file and key_file need https:// endpoints".to_owned(),
                format!("f.ron:ca_file: ca_file {junk} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"),
                format!("f.ron:cert_file: cannot read cert_file {}: No such file or directory (os error 2)", missing.display()),
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_key_is_never_printed() {
        let tls = Tls {
            ca: None,
            identity: Some(b"-----BEGIN PRIVATE KEY-----\nsecret".to_vec()),
            cert_file: Some("/etc/monkey/client.pem".into()),
        };
        let shown = format!("{tls:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("/etc/monkey/client.pem"), "{shown}");
    }
}
