use std::path::Path;

use super::*;

#[derive(Debug, Deserialize)]
struct Doc {
    #[serde(default)]
    steady_state: Vec<RawProbe>,
    #[serde(default)]
    recovery: Option<RawRecovery>,
    #[serde(default)]
    halt: Option<RawHalt>,
}

fn parse(text: &str) -> Doc {
    ron::Options::default()
        .with_default_extension(
            ron::extensions::Extensions::IMPLICIT_SOME
                | ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES,
        )
        .from_str(text)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_form_is_read_and_validated() {
    let text = r#"(
  steady_state: [
    Http(url: "http://127.0.0.1:9/health", status: [200, 204], body: "ok", timeout: 2),
    Http(url: "http://127.0.0.1:9/", status: 200),
    Http(url: "http://127.0.0.1:9/"),
    Process(name: "^nginx$", min: 2),
    Command(argv: ["true"], timeout: "5s"),
    Prometheus(url: "http://127.0.0.1:9090", query: "up", above: 0),
  ],
  recovery: (deadline: "5m", every: "1s"),
  halt: (probes: [Process(name: "^db$")], after: "1m", every: "10s"),
)"#;
    let doc = parse(text);
    let src = Source::new(Path::new("c.ron"), text);
    let mut errors = Vec::new();
    let probes = validate_list(&doc.steady_state, &["steady_state"], &src, &mut errors);
    assert_eq!(errors, Vec::<String>::new());
    let labels: Vec<String> = probes.iter().map(Probe::label).collect();
    assert_eq!(
        labels,
        [
            "http http://127.0.0.1:9/health",
            "http http://127.0.0.1:9/",
            "http http://127.0.0.1:9/",
            "process ^nginx$",
            "command true",
            "prometheus up",
        ]
    );
    let recovery = doc
        .recovery
        .unwrap()
        .validate(&probes, &[], &src, &mut errors)
        .unwrap();
    assert_eq!(recovery.probes.len(), 6, "the steady state by default");
    assert_eq!(recovery.deadline, Duration::from_secs(300));
    let halt = doc.halt.unwrap().validate(&src, &mut errors).unwrap();
    assert_eq!(
        (halt.after, halt.every),
        (Duration::from_secs(60), Duration::from_secs(10))
    );
    assert_eq!(errors, Vec::<String>::new());
}

#[test]
fn every_error_is_located_and_reported_at_once() {
    let text = r#"(
  steady_state: [
    Http(url: "ftp://x", status: "7xx", body: "(", timeout: "1h"),
    Process(min: 0),
    Command(argv: []),
    Prometheus(url: "http://p", query: "", below: 1, above: 2),
  ],
  recovery: (every: "10ms"),
  halt: (probes: [Command(argv: ["true"])], after: "2d", every: 0),
)"#;
    let doc = parse(text);
    let src = Source::new(Path::new("c.ron"), text);
    let mut errors = Vec::new();
    let probes = validate_list(&doc.steady_state, &["steady_state"], &src, &mut errors);
    assert!(probes.is_empty());
    assert!(doc
        .recovery
        .unwrap()
        .validate(&probes, &[], &src, &mut errors)
        .is_none());
    assert!(doc.halt.unwrap().validate(&src, &mut errors).is_none());
    assert_eq!(
        errors,
        [
            "c.ron:3:5: invalid URL `ftp://x`: expected http:// or https://",
            r#"c.ron:3:26: invalid status "7xx": expected a class ("2xx"), a code from 100 to 599 (200) or a list of codes ([200, 204])"#,
            "c.ron:3:41: invalid body `(`: unclosed group",
            "c.ron:3:52: timeout `1h` is too long: at most 10m",
            "c.ron:4:5: a Process probe needs a name (a regular expression of short process names)",
            "c.ron:4:13: min 0 is out of range: from 1 to 100000",
            "c.ron:5:13: a Command probe needs an argv: the program, then its arguments (no shell)",
            "c.ron:6:33: a Prometheus probe needs a query (PromQL, at most 4096 characters)",
            "c.ron:6:5: a Prometheus probe needs one bound: below: x or above: x (a finite number)",
            "c.ron:8:14: every `10ms` is too short: at least 100ms",
            "c.ron:8:3: recovery has no probes: give probes: [...] or a steady_state to default to",
            "c.ron:9:45: after `2d` is too long: at most 1day",
            "c.ron:9:58: invalid every `0s`: expected a duration like 10m, 30s or 250ms",
        ]
    );
}
