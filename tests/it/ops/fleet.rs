//! Fleet drills: one seed and a node name per host; the Kubernetes and Nomad manifests.

use super::repo_file;
use crate::util::{http, monkey, Daemon, Sleeper, TestDir};

/// Checks a configuration as the daemon would; panics with its errors.
fn assert_checks(config_text: &str, dir: &std::path::Path, what: &str) {
    let file = dir.join(format!("{what}.ron"));
    std::fs::write(&file, config_text).unwrap();
    let run = monkey(&["check-config", file.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{what}: {}", run.stderr);
}

#[test]
fn one_seed_and_the_node_name_replay_each_node_of_a_fleet() {
    let plan = |node: Option<&str>| {
        let mut args = vec![
            "plan",
            "--seed",
            "42",
            "--count",
            "3",
            "-d",
            "*",
            "-t",
            "00:00-24:00",
            "--from",
            "2026-12-01T00:00:00Z",
        ];
        if let Some(node) = node {
            args.extend(["--node", node]);
        }
        let run = monkey(&args);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        run.stdout
    };
    assert_eq!(plan(Some("web-1")), plan(Some("web-1")), "a node replays");
    assert_ne!(plan(Some("web-1")), plan(Some("web-2")), "nodes differ");
    assert_ne!(plan(Some("web-1")), plan(None));
    let run = monkey(&["plan", "--node", "not a name"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("invalid node name `not a name`"),
        "{}",
        run.stderr
    );

    // The fault streams too: the same pick on the same node, another on another.
    let _victims: Vec<Sleeper> = (0..8).map(|_| Sleeper::start()).collect();
    let seed_of = |node: &str| {
        let mut d = Daemon::start(&[
            "--listen",
            "127.0.0.1:0",
            "--seed",
            "9",
            "--node",
            node,
            "-d",
            "*",
            "-t",
            "00:00-24:00",
        ]);
        let port = d.port();
        let a = http(port, "POST", "/api/kill", &[], br#"{"desc":"fleet"}"#);
        assert_eq!(a.status, 200, "{}", a.body);
        let line = d.log.iter().find(|l| l.starts_with("Node: ")).cloned();
        assert_eq!(
            line.as_deref(),
            Some(
                format!(
                    "Node: {node} (every random stream is labelled with it: streams@node/{node})"
                )
                .as_str()
            )
        );
        a.json()["seed"].as_u64().unwrap()
    };
    assert_eq!(seed_of("db-1"), seed_of("db-1"));
    assert_ne!(seed_of("db-1"), seed_of("db-2"));
}

#[test]
fn the_kubernetes_manifests_give_the_daemon_what_it_needs() {
    let text =
        std::fs::read_to_string(repo_file("deploy/kubernetes/nightmare-monkey.yaml")).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let (config_map, secret, daemon_set, service) = (
        find("ConfigMap"),
        find("Secret"),
        find("DaemonSet"),
        find("Service"),
    );
    let pod = &daemon_set["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostPID"], true,
        "the monkey must see the node's processes"
    );
    // /metrics takes the token: an annotation-driven scrape, which sends none, would
    // only earn 401s.
    let annotations = &daemon_set["spec"]["template"]["metadata"]["annotations"];
    assert!(
        annotations["prometheus.io/scrape"].is_null(),
        "a scrape annotation for a /metrics behind a token: {annotations:?}"
    );
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let after = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
    assert_eq!(after("--node"), "$(NODE_NAME)");
    let env = &container["env"][0];
    assert_eq!(env["name"], "NODE_NAME");
    assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    let caps = &container["securityContext"]["capabilities"];
    assert_eq!(caps["drop"][0], "ALL");
    assert_eq!(caps["add"][0], "KILL");

    // The config file is where the ConfigMap is mounted, under its key.
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    let mount_of = |volume: &str| {
        mounts.iter().find(|m| m["name"] == volume).unwrap()["mountPath"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let volumes = pod["volumes"].as_sequence().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap();
    let config_path = after("--config");
    assert_eq!(
        volume("config")["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    let (dir, key) = config_path.rsplit_once('/').unwrap();
    assert_eq!(dir, mount_of("config"));
    let config = config_map["data"][key]
        .as_str()
        .expect("the config in the ConfigMap");

    // The token file the config names is the Secret's key where it is mounted.
    assert_eq!(
        volume("token")["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    let token_key = secret["stringData"]
        .as_mapping()
        .unwrap()
        .keys()
        .next()
        .unwrap();
    let token_path = format!("{}/{}", mount_of("token"), token_key.as_str().unwrap());
    assert!(
        config.contains(&format!("token_file: \"{token_path}\"")),
        "{config}"
    );
    // The Service and the probes reach the port the config listens on.
    assert!(config.contains("listen: \"0.0.0.0:8080\""));
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "api");
    assert_eq!(
        service["spec"]["selector"],
        daemon_set["spec"]["selector"]["matchLabels"]
    );
    assert!(config.contains(&format!("state_dir: \"{}\"", mount_of("state"))));

    // etcd's password file is the etcd Secret's key where it is mounted.
    let etcd_secret = docs
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == "nightmare-monkey-etcd")
        .expect("etcd's Secret");
    assert_eq!(
        volume("etcd")["secret"]["secretName"],
        etcd_secret["metadata"]["name"]
    );
    assert!(etcd_secret["stringData"]["password"].is_string());
    let password_path = format!("{}/password", mount_of("etcd"));
    assert!(
        config.contains(&format!("password_file: \"{password_path}\"")),
        "{config}"
    );

    // etcd is reached over https, its certificate checked against the Secret's CA: the
    // password never crosses in clear.
    assert!(config.contains("endpoints: [\"https://"), "{config}");
    assert!(etcd_secret["stringData"]["ca.crt"].is_string());
    let ca_path = format!("{}/ca.crt", mount_of("etcd"));
    assert!(
        config.contains(&format!("ca_file: \"{ca_path}\"")),
        "{config}"
    );

    // And the daemon accepts the config, with a token, a password and a CA where the
    // Secrets would be.
    let dir = TestDir::new("k8s-config");
    let token = dir.join("api-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef").unwrap();
    let password = dir.join("etcd-password");
    std::fs::write(&password, "p").unwrap();
    let pki = crate::fleet::pki::Pki::new("k8s-config-pki");
    assert_checks(
        &config
            .replace(&token_path, token.to_str().unwrap())
            .replace(&password_path, password.to_str().unwrap())
            .replace(&ca_path, &pki.path("ca.pem")),
        &dir,
        "configmap",
    );
}

#[test]
fn the_nomad_job_runs_one_monkey_per_node_with_a_config_that_checks() {
    let text =
        std::fs::read_to_string(repo_file("deploy/nomad/nightmare-monkey.nomad.hcl")).unwrap();
    assert!(text.contains("type        = \"system\""));
    assert!(text.contains("\"--node\", \"${node.unique.name}\""));
    assert!(text.contains("path     = \"/healthz\""));
    // The config template, rendered as Nomad would, checks.
    let start = text.find("<<-EOT\n").unwrap() + "<<-EOT\n".len();
    let end = text.find("EOT\n      }").unwrap();
    let dir = TestDir::new("nomad-config");
    std::fs::write(dir.join("api-token"), "0123456789abcdef0123456789abcdef").unwrap();
    std::fs::write(dir.join("etcd-password"), "p").unwrap();
    let pki = crate::fleet::pki::Pki::new("nomad-config-pki");
    std::fs::copy(pki.path("ca.pem"), dir.join("etcd-ca.crt")).unwrap();
    assert!(text.contains("destination = \"secrets/etcd-password\""));
    assert!(text.contains("destination = \"secrets/etcd-ca.crt\""));
    assert!(text.contains("endpoints: [\"https://"), "etcd over https");
    let rendered = text[start..end]
        .replace("{{ env \"NOMAD_PORT_api\" }}", "8080")
        .replace("{{ env \"NOMAD_SECRETS_DIR\" }}", dir.to_str().unwrap());
    assert!(!rendered.contains("{{"), "{rendered}");
    assert_checks(&rendered, &dir, "nomad");
}
