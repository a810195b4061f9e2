//! etcd over https with client certificates (`--client-cert-auth`): the daemon and the
//! commands reach it with the files of the config; the files' errors name them.

use super::{config_with, etcd::Etcd, journal, kill, leased, pki::Pki, until};
use crate::util::{monkey, Daemon, Sleeper, TestDir, DEADLINE};

#[test]
fn etcd_over_https_with_client_certificates() {
    let pki = Pki::new("fleet-tls-pki");
    let etcd = Etcd::start_tls("tls", &pki);
    let _sleeper = Sleeper::start();
    let endpoints = [format!("https://127.0.0.1:{}", etcd.port)];
    let files = format!(
        r#", ca_file: {:?}, cert_file: {:?}, key_file: {:?}"#,
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key")
    );
    let dir = TestDir::new("fleet-tls");
    let cfg = config_with(&dir, &endpoints, "/nm/tls", &files, "max_concurrent: 1");

    // check-config --connect reaches it (once it serves), and prints no key.
    let mut run = None;
    until(
        DEADLINE,
        "check-config --connect reaches etcd over https",
        || {
            let checked = monkey(&["check-config", "--connect", &cfg]);
            let reached = checked.code == Some(0);
            run = Some(checked);
            reached
        },
    );
    let run = run.unwrap();
    assert!(
        run.stdout.contains(&format!(
            "etcd: https checked against its ca_file, client certificate {}",
            pki.path("client.pem")
        )) && run.stdout.contains("etcd: 1 member(s) listed at revision"),
        "{}",
        run.stdout
    );
    let key = std::fs::read_to_string(pki.path("client.key")).unwrap();
    let body = key.lines().nth(1).unwrap();
    assert!(!run.stdout.contains(body) && !run.stderr.contains(body));

    // A daemon is admitted over it.
    let mut daemon = Daemon::start(&["--config", &cfg, "--node", "a"]);
    let port = daemon.port();
    leased(port, "a");
    let answer = kill(port);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let intent = journal(&dir)
        .into_iter()
        .find(|r| r["type"] == "intent")
        .expect("an intent");
    assert!(intent["fleet"]["revision"].as_i64() > Some(0), "{intent}");
    drop(daemon);

    // Without a client certificate, etcd turns it away: said, non-zero.
    let ca_only = format!(r#", ca_file: {:?}"#, pki.path("ca.pem"));
    let cfg = config_with(&dir, &endpoints, "/nm/tls", &ca_only, "");
    let refused = monkey(&["check-config", "--connect", &cfg]);
    assert_ne!(refused.code, Some(0), "{}", refused.stdout);
    assert!(
        refused
            .stderr
            .contains("fleet: cannot reach etcd at https://127.0.0.1:"),
        "{}",
        refused.stderr
    );
}

#[test]
fn certificate_files_that_cannot_serve_are_named() {
    let pki = Pki::new("fleet-tls-bad-pki");
    let dir = TestDir::new("fleet-tls-bad");
    let endpoints = ["https://127.0.0.1:2379".to_owned()];
    let missing = dir.join("missing.pem");
    let files = format!(
        r#", ca_file: {missing:?}, cert_file: {:?}, key_file: {:?}"#,
        pki.path("client.pem"),
        pki.path("client.pem")
    );
    let cfg = config_with(&dir, &endpoints, "/nm/tls", &files, "");
    let checked = monkey(&["check-config", &cfg]);
    assert_ne!(checked.code, Some(0), "{}", checked.stdout);
    for expected in [
        format!("cannot read ca_file {}: No such file", missing.display()),
        format!(
            "key_file {} holds no PEM private key (expected -----BEGIN PRIVATE KEY-----)",
            pki.path("client.pem")
        ),
    ] {
        assert!(checked.stderr.contains(&expected), "{}", checked.stderr);
    }
    // A key that is not the certificate's.
    let files = format!(
        r#", cert_file: {:?}, key_file: {:?}"#,
        pki.path("client.pem"),
        pki.path("server.key")
    );
    let cfg = config_with(&dir, &endpoints, "/nm/tls", &files, "");
    let checked = monkey(&["check-config", &cfg]);
    let expected = format!(
        "cannot use key_file {} with cert_file {}: ",
        pki.path("server.key"),
        pki.path("client.pem")
    );
    assert!(checked.stderr.contains(&expected), "{}", checked.stderr);
    // Certificates need https.
    let plain = ["http://127.0.0.1:2379".to_owned()];
    let cfg = config_with(
        &dir,
        &plain,
        "/nm/tls",
        &format!(r#", ca_file: {:?}"#, pki.path("ca.pem")),
        "",
    );
    let checked = monkey(&["check-config", &cfg]);
    assert!(
        checked
            .stderr
            .contains("endpoint http://127.0.0.1:2379 is plain http: ca_file, cert_file and key_file need https:// endpoints"),
        "{}",
        checked.stderr
    );
}

#[test]
fn a_ca_file_that_did_not_sign_etcds_certificate_is_said_and_fails_closed() {
    let pki = Pki::new("fleet-wrong-ca-pki");
    let other = Pki::new("fleet-wrong-ca-other");
    let etcd = Etcd::start_tls("wrong-ca", &pki);
    let _sleeper = Sleeper::start();
    let endpoints = [format!("https://127.0.0.1:{}", etcd.port)];
    let files = |ca: &Pki| {
        format!(
            r#", ca_file: {:?}, cert_file: {:?}, key_file: {:?}"#,
            ca.path("ca.pem"),
            pki.path("client.pem"),
            pki.path("client.key")
        )
    };
    let dir = TestDir::new("fleet-wrong-ca");
    let good = config_with(&dir, &endpoints, "/nm/wrong-ca", &files(&pki), "");
    until(DEADLINE, "etcd serves over https", || {
        monkey(&["check-config", "--connect", &good]).code == Some(0)
    });
    let wrong = TestDir::new("fleet-wrong-ca-config");
    let cfg = config_with(&wrong, &endpoints, "/nm/wrong-ca", &files(&other), "");
    let checked = monkey(&["check-config", "--connect", &cfg]);
    assert_ne!(checked.code, Some(0), "{}", checked.stdout);
    assert!(
        checked.stderr.contains(&format!(
            "fleet: cannot reach etcd at https://127.0.0.1:{}",
            etcd.port
        )) && checked.stderr.contains(": invalid peer certificate: ")
            && checked
                .stderr
                .contains("is etcd's certificate signed by the CA of ca_file?"),
        "{}",
        checked.stderr
    );
    // The daemon starts, but refuses every fault: it fails closed.
    let mut daemon = Daemon::start(&["--config", &cfg, "--node", "a"]);
    let port = daemon.port();
    let refused = kill(port);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("fleet: the coordinator is unreachable"),
        "{}",
        refused.body
    );
    assert!(journal(&wrong).iter().all(|r| r["type"] != "intent"));
}

#[test]
fn a_password_over_plain_http_to_another_host_is_refused() {
    let dir = TestDir::new("fleet-plaintext");
    let password = dir.join("etcd-password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let endpoints = [
        "http://127.0.0.1:2379".to_owned(),
        "http://etcd.example:2379".to_owned(),
    ];
    let credentials = format!(r#", username: "monkey", password_file: {password:?}"#);
    let cfg = config_with(&dir, &endpoints, "/nm/plain", &credentials, "");
    let expected = "the etcd password would cross the network in clear to http://etcd.example:2379: use an https:// endpoint with ca_file, or set allow_plaintext_credentials: true if that network is trusted";
    let checked = monkey(&["check-config", &cfg]);
    assert_ne!(checked.code, Some(0), "{}", checked.stdout);
    assert!(checked.stderr.contains(expected), "{}", checked.stderr);
    // The same check refuses to start the daemon (our own child, killed if it runs).
    let mut daemon = crate::util::command()
        .args(["--config", &cfg, "--node", "a"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = until_exit(&mut daemon);
    let mut said = String::new();
    std::io::Read::read_to_string(&mut daemon.stderr.take().unwrap(), &mut said).unwrap();
    assert_ne!(exited, Some(0), "{said}");
    assert!(said.contains(expected), "{said}");
    // Allowed on purpose, or to loopback only, it checks.
    let allowed = format!("{credentials}, allow_plaintext_credentials: true");
    let cfg = config_with(&dir, &endpoints, "/nm/plain", &allowed, "");
    let checked = monkey(&["check-config", &cfg]);
    assert_eq!(checked.code, Some(0), "{}", checked.stderr);
    let cfg = config_with(&dir, &endpoints[..1], "/nm/plain", &credentials, "");
    let checked = monkey(&["check-config", &cfg]);
    assert_eq!(checked.code, Some(0), "{}", checked.stderr);
}

/// The exit code of `child` (our own), killed if it is still running after [`DEADLINE`].
fn until_exit(child: &mut std::process::Child) -> Option<i32> {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon started with a password over plain http");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
