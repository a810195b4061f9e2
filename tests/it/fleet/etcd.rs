//! A real etcd for one test: one member (or a cluster) on free loopback ports, its data
//! on a tmpfs of its own, killed by its exact PID and removed when dropped.

use std::{process::Child, time::Instant};

use base64::{engine::general_purpose::STANDARD, Engine as _};

use super::pki::Pki;
use crate::util::{http, ReservedPort, TestDir, DEADLINE};

pub struct Etcd {
    child: Option<Child>,
    dir: TestDir,
    pub port: u16,
    /// Its client and peer ports, kept for it as long as it lives, stopped or not: no
    /// other test's `127.0.0.1:0` gets them (two members on one port is a cluster etcd
    /// refuses, "has duplicate url"; a stopped member's port taken by another server
    /// would answer the daemons in its place).
    _ports: [ReservedPort; 2],
}

impl Etcd {
    /// Starts a one-member etcd and waits until it answers.
    pub fn start(name: &str) -> Etcd {
        Self::cluster(name, 1).pop().unwrap()
    }

    /// Starts a cluster of `size` members on loopback and waits until each answers.
    pub fn cluster(name: &str, size: usize) -> Vec<Etcd> {
        Self::launch(name, size, None)
    }

    /// Starts a one-member etcd serving its clients over https only, asking each for a
    /// client certificate signed by `pki`'s CA; waits until it listens.
    pub fn start_tls(name: &str, pki: &Pki) -> Etcd {
        Self::launch(name, 1, Some(pki)).pop().unwrap()
    }

    /// Starts `size` members, each with its data on a tmpfs of its own (a mount
    /// namespace of its own, gone with it): no fsync of a busy disk can stall it past
    /// the daemons' admission deadline.
    ///
    /// The ports are kept for etcd ([`ReservedPort`]); should a member still find one
    /// taken and stop saying so, the cluster is started again on new ports.
    fn launch(name: &str, size: usize, tls: Option<&Pki>) -> Vec<Etcd> {
        let mut tries = 0;
        loop {
            match Self::try_launch(name, size, tls) {
                Ok(members) => return members,
                Err(log) if log.contains("address already in use") && tries < 5 => tries += 1,
                Err(log) => panic!("etcd did not start: {log}"),
            }
        }
    }

    /// One try of [`Etcd::launch`]: the members, or the log of one that did not start.
    fn try_launch(name: &str, size: usize, tls: Option<&Pki>) -> Result<Vec<Etcd>, String> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut reserved = ReservedPort::many(2 * size).into_iter();
        let mut pairs = Vec::new();
        while let (Some(client), Some(peer)) = (reserved.next(), reserved.next()) {
            pairs.push([client, peer]);
        }
        let ports: Vec<(u16, u16)> = pairs.iter().map(|[c, p]| (c.port(), p.port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let members: Vec<Etcd> = ports
            .iter()
            .zip(pairs)
            .enumerate()
            .map(|(i, (&(port, peer), reserved))| {
                let dir = TestDir::new(&format!("etcd-{name}-{i}"));
                let data = dir.join("data");
                std::fs::create_dir_all(&data).unwrap();
                let client = format!("{scheme}://127.0.0.1:{port}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let mut command = std::process::Command::new("unshare");
                command
                    .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
                    .arg(r#"mount -t tmpfs -o size=256m tmpfs "$0" && exec etcd "$@""#)
                    .arg(&data)
                    .args(["--name", &format!("m{i}"), "--data-dir"])
                    .arg(&data)
                    .args(["--listen-client-urls", &client])
                    .args(["--advertise-client-urls", &client])
                    .args(["--listen-peer-urls", &peer_url])
                    .args(["--initial-advertise-peer-urls", &peer_url])
                    .args(["--initial-cluster", &initial.join(",")]);
                if let Some(pki) = tls {
                    command
                        .args(["--cert-file", &pki.path("server.pem")])
                        .args(["--key-file", &pki.path("server.key")])
                        .args(["--trusted-ca-file", &pki.path("ca.pem")])
                        .arg("--client-cert-auth");
                }
                let child = command
                    .stdout(std::process::Stdio::null())
                    .stderr(std::fs::File::create(dir.join("etcd.log")).unwrap())
                    .spawn()
                    .expect("etcd runs (install etcd-server and util-linux)");
                Etcd {
                    child: Some(child),
                    dir,
                    port,
                    _ports: reserved,
                }
            })
            .collect();
        let until = Instant::now() + DEADLINE;
        let mut members = members;
        for etcd in &mut members {
            while std::net::TcpStream::connect(("127.0.0.1", etcd.port)).is_err()
                || (tls.is_none() && etcd.try_call("/v3/kv/range", r#"{"key":"AA=="}"#).is_none())
            {
                let exited = etcd
                    .child
                    .as_mut()
                    .is_some_and(|c| c.try_wait().ok().flatten().is_some());
                if exited || Instant::now() >= until {
                    // The others are killed as they are dropped.
                    return Err(etcd.log());
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Ok(members)
    }

    /// Whether this member leads its cluster now.
    pub fn leads(&self) -> bool {
        self.try_call("/v3/maintenance/status", "{}")
            .is_some_and(|s| s["leader"].is_string() && s["leader"] == s["header"]["member_id"])
    }

    /// The leases etcd holds now.
    pub fn leases(&self) -> usize {
        http(self.port, "POST", "/v3/lease/leases", &[], b"{}").json()["leases"]
            .as_array()
            .map_or(0, Vec::len)
    }

    /// The leases etcd holds now that were granted for less than a day: the nodes'
    /// (and the gap's and the budget's), not those the admissions are kept under.
    pub fn short_leases(&self) -> usize {
        let all = http(self.port, "POST", "/v3/lease/leases", &[], b"{}").json();
        all["leases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ID"].as_str().and_then(|id| id.parse().ok()))
            .filter(|id| self.granted_ttl(*id) < 24 * 3600)
            .count()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    fn try_call(&self, path: &str, body: &str) -> Option<serde_json::Value> {
        std::panic::catch_unwind(|| http(self.port, "POST", path, &[], body.as_bytes()))
            .ok()
            .filter(|a| a.status == 200)
            .map(|a| a.json())
    }

    /// Every key under `prefix` and its value, as text.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().unwrap() += 1;
        let body = format!(
            r#"{{"key":"{}","range_end":"{}"}}"#,
            STANDARD.encode(prefix),
            STANDARD.encode(end)
        );
        let answer = http(self.port, "POST", "/v3/kv/range", &[], body.as_bytes()).json();
        let text = |v: &serde_json::Value| {
            String::from_utf8(STANDARD.decode(v.as_str().unwrap_or("")).unwrap()).unwrap()
        };
        answer["kvs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|kv| (text(&kv["key"]), text(&kv["value"])))
            .collect()
    }

    /// Writes `key` (no lease).
    pub fn put(&self, key: &str, value: &str) {
        let body = format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            STANDARD.encode(key),
            STANDARD.encode(value)
        );
        assert_eq!(
            http(self.port, "POST", "/v3/kv/put", &[], body.as_bytes()).status,
            200
        );
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) {
        let body = format!(r#"{{"key":"{}"}}"#, STANDARD.encode(key));
        let answer = http(
            self.port,
            "POST",
            "/v3/kv/deleterange",
            &[],
            body.as_bytes(),
        );
        assert_eq!(answer.status, 200);
    }

    /// Stops etcd where it is (`SIGSTOP`, to our own child by its PID: it takes
    /// connections and answers nothing) or lets it go on (`SIGCONT`).
    pub fn freeze(&self, frozen: bool) {
        if let Some(child) = &self.child {
            super::signal(child.id(), if frozen { "STOP" } else { "CONT" });
        }
    }

    /// Kills etcd (our own child, by its PID) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Before its directory goes (a field dropped after this).
        self.stop();
    }
}

impl Etcd {
    /// The value of `key` at revision `revision` (history), if it existed then.
    pub fn get_at(&self, key: &str, revision: i64) -> Option<String> {
        let body = format!(
            r#"{{"key":"{}","revision":"{revision}"}}"#,
            STANDARD.encode(key)
        );
        let answer = http(self.port, "POST", "/v3/kv/range", &[], body.as_bytes()).json();
        let value = answer["kvs"].as_array()?.first()?["value"]
            .as_str()?
            .to_owned();
        Some(String::from_utf8(STANDARD.decode(value).unwrap()).unwrap())
    }
}

impl Etcd {
    /// The lease `key` is tied to (0: none, or no such key).
    pub fn lease_of(&self, key: &str) -> i64 {
        let body = format!(r#"{{"key":"{}"}}"#, STANDARD.encode(key));
        let answer = http(self.port, "POST", "/v3/kv/range", &[], body.as_bytes()).json();
        answer["kvs"][0]["lease"]
            .as_str()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0)
    }

    /// The TTL lease `lease` was granted with, in seconds (0: no such lease).
    pub fn granted_ttl(&self, lease: i64) -> i64 {
        let body = format!(r#"{{"ID":"{lease}"}}"#);
        let answer = http(
            self.port,
            "POST",
            "/v3/lease/timetolive",
            &[],
            body.as_bytes(),
        );
        answer.json()["grantedTTL"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    }

    /// Writes `key` tied to lease `lease`.
    pub fn put_with_lease(&self, key: &str, value: &str, lease: i64) {
        let body = format!(
            r#"{{"key":"{}","value":"{}","lease":"{lease}"}}"#,
            STANDARD.encode(key),
            STANDARD.encode(value)
        );
        let answer = http(self.port, "POST", "/v3/kv/put", &[], body.as_bytes());
        assert_eq!(answer.status, 200, "{}", answer.body);
    }

    /// Ends lease `lease` and every key tied to it, as its TTL would.
    pub fn revoke(&self, lease: i64) {
        let body = format!(r#"{{"ID":"{lease}"}}"#);
        let answer = http(self.port, "POST", "/v3/lease/revoke", &[], body.as_bytes());
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
}

impl Etcd {
    /// The value of the Prometheus metric `name` (no labels) etcd exposes now.
    pub fn metric(&self, name: &str) -> f64 {
        let text = http(self.port, "GET", "/metrics", &[], b"").body;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("etcd exposes no {name}"))
    }
}
