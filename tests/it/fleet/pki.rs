//! A certificate authority for one test, made with the `openssl` command: a CA, a server
//! certificate for 127.0.0.1 (which etcd also presents to itself as a client), and a
//! client certificate for the daemons.

use crate::util::TestDir;

pub struct Pki {
    dir: TestDir,
}

/// The extensions of each certificate: webpki wants the address in the SAN, Go wants
/// the client usage on certificates presented as clients.
const EXTENSIONS: &str = "\
[server]
basicConstraints = CA:FALSE
subjectAltName = IP:127.0.0.1
extendedKeyUsage = serverAuth, clientAuth
[client]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
";

impl Pki {
    /// Makes the CA and its certificates in a directory of their own: `ca.pem`,
    /// `server.pem`/`server.key`, `client.pem`/`client.key`.
    pub fn new(name: &str) -> Pki {
        let dir = TestDir::new(name);
        std::fs::write(dir.join("extensions.cnf"), EXTENSIONS).unwrap();
        let script = r#"set -e
key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $key -keyout ca.key -out ca.pem -days 2 -subj /CN=nm-test-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
for who in server client; do
    openssl req -new $key -keyout $who.key -out $who.csr -subj /CN=$who
    openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -out $who.pem -extfile extensions.cnf -extensions $who
done"#;
        let made = std::process::Command::new("sh")
            .args(["-c", script])
            .current_dir(&*dir)
            .output()
            .expect("sh runs");
        assert!(
            made.status.success(),
            "openssl made no certificates (install openssl): {}",
            String::from_utf8_lossy(&made.stderr)
        );
        Pki { dir }
    }

    /// The path of one of its files, as text.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_owned()
    }
}
