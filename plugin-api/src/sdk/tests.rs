use abi_stable::std_types::RStr;

use super::*;

#[test]
fn streams_are_value_stable() {
    // Pinned: a change here breaks every recorded drill's replay.
    let mut r = Rng::stream(42, "schedule");
    let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
    let mut again = Rng::stream(42, "schedule");
    assert_eq!(first, (0..3).map(|_| again.next_u64()).collect::<Vec<_>>());
    let mut other = Rng::stream(42, "fault/process-kill");
    assert_ne!(first[0], other.next_u64());
    assert_eq!(
        first,
        [
            3435474016366078515,
            6085315798184635446,
            12556004097444616518
        ]
    );
}

#[test]
fn below_stays_in_range_and_covers_it() {
    let mut r = Rng::from_seed(7);
    let mut seen = [false; 5];
    for _ in 0..1000 {
        let v = r.below(5);
        assert!(v < 5);
        seen[v as usize] = true;
    }
    assert!(seen.iter().all(|s| *s));
    assert_eq!(r.below(0), 0);
    assert_eq!(r.between(3, 3), 3);
    assert!((0..100).all(|_| (10..=20).contains(&r.between(10, 20))));
}

#[test]
fn durations_are_bounded_and_errors_say_so() {
    use std::time::Duration;
    let (d, max) = (Duration::from_secs(30), Duration::from_secs(3600));
    assert_eq!(duration("duration", None, d, max), Ok(d));
    assert_eq!(
        duration("duration", Some("5m"), d, max),
        Ok(Duration::from_secs(300))
    );
    for bad in ["0s", "2h", "soon"] {
        assert_eq!(
            duration("duration", Some(bad), d, max).unwrap_err().message,
            format!("duration: invalid duration `{bad}`: expected more than 0 and at most 1h, e.g. 30s, 5m or 500ms")
        );
    }
}

#[test]
fn stop_flags_stop_once() {
    let flags = StopFlags::default();
    let flag = flags.start(7);
    assert_eq!(StopFlags::token(&StopFlags::state(7)), Ok(7));
    assert!(flags.stop(7));
    assert!(flag.load(std::sync::atomic::Ordering::Relaxed));
    assert!(!flags.stop(7));
    assert!(StopFlags::token(&serde_json::json!({})).is_err());
}

/// A fault in two phases, through the ABI as the host drives it: the manifest says
/// so, and each phase reaches its method.
#[test]
fn each_phase_reaches_its_method_through_the_abi() {
    struct Twice;
    impl FaultPlugin for Twice {
        const NAME: &'static str = "twice";
        const VERSION: &'static str = "0.1.0";
        const DESCRIPTION: &'static str = "two phases";
        const PREPARES: bool = true;
        type Config = ();
        fn new((): ()) -> Result<Self, PluginError> {
            Ok(Twice)
        }
        fn inject(&self, _: &Request) -> Result<Outcome, PluginError> {
            Ok(Outcome {
                result: "whole".into(),
                ..Outcome::default()
            })
        }
        fn prepare(&self, request: &Request) -> Result<Outcome, PluginError> {
            Ok(Outcome {
                result: "prepared".into(),
                revert: Some(serde_json::json!({ "target": request.seed })),
                ..Outcome::default()
            })
        }
        fn apply(&self, _: &Request, prepared: &serde_json::Value) -> Result<Outcome, PluginError> {
            Ok(Outcome {
                result: format!("applied to {}", prepared["target"]),
                ..Outcome::default()
            })
        }
    }
    let module = root_module::<Twice>();
    let manifest: Manifest = serde_json::from_str(&(module.manifest())().unwrap()).unwrap();
    assert!(manifest.prepares);
    let fault = (module.new_fault())(RStr::from("")).unwrap();
    let call = |request: Request| {
        let text = serde_json::to_string(&request).unwrap();
        fault
            .inject(RStr::from(text.as_str()))
            .into_result()
            .map(|out| serde_json::from_str::<Outcome>(&out).unwrap().result)
            .map_err(|e| PluginError::from_json(&e).message)
    };
    let request = Request {
        seed: 9,
        ..Request::default()
    };
    assert_eq!(call(request.clone()).unwrap(), "whole");
    let prepare = Request {
        phase: Phase::Prepare,
        ..request.clone()
    };
    assert_eq!(call(prepare).unwrap(), "prepared");
    let apply = Request {
        phase: Phase::Apply,
        prepared: Some(serde_json::json!({ "target": 9 })),
        ..request.clone()
    };
    assert_eq!(call(apply).unwrap(), "applied to 9");
    let lost = Request {
        phase: Phase::Apply,
        ..request
    };
    assert_eq!(
        call(lost).unwrap_err(),
        "an apply request without the prepared state"
    );
    // A plugin that does not prepare says nothing of it in its manifest.
    let text = (root_module::<Twice>().manifest())().unwrap();
    assert!(text.contains(r#""prepares":true"#));
    let plain: Manifest = serde_json::from_str(r#"{"name":"a","version":"1"}"#).unwrap();
    assert!(!plain.prepares);
}

#[test]
fn a_one_phase_request_reads_as_version_1_0_0_wrote_it() {
    let whole = Request {
        seed: 3,
        dry_run: false,
        ..Request::default()
    };
    // What a 1.0.0 plugin reads: no field it does not know.
    assert_eq!(
        serde_json::to_string(&whole).unwrap(),
        r#"{"seed":3,"dry_run":false,"desc":"","avoid":[]}"#
    );
    let apply = Request {
        phase: Phase::Apply,
        prepared: Some(serde_json::json!({"pid": 7})),
        ..whole
    };
    let text = serde_json::to_string(&apply).unwrap();
    assert!(
        text.contains(r#""phase":"apply","prepared":{"pid":7}"#),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), apply);
}

#[test]
fn an_absent_config_reads_as_unit_and_names_a_required_field() {
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Needs {
        #[allow(dead_code)]
        path: String,
    }
    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Optional {
        mib: Option<u64>,
    }
    let e = parse_config::<Needs>("").unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            ErrorKind::Config,
            "no configuration given, but the field `path` is required"
        )
    );
    // Exactly what `()` gives, but for the position.
    assert!(parse_config::<Needs>("()")
        .unwrap_err()
        .message
        .ends_with("Unexpected missing field named `path` in `Needs`"));
    assert_eq!(parse_config::<Optional>("  "), Ok(Optional::default()));
    assert_eq!(
        parse_config::<Optional>("(mib: 3)"),
        Ok(Optional { mib: Some(3) })
    );
    assert_eq!(parse_config::<()>(""), Ok(()));
    let e = parse_config::<Optional>("(mb: 3)").unwrap_err();
    assert!(
        !e.message.contains('\n') && e.message.contains("`mb`"),
        "{}",
        e.message
    );
}

#[test]
fn request_without_dry_run_field_is_dry() {
    let r: Request = serde_json::from_str(r#"{"seed":1,"desc":"x"}"#).unwrap();
    assert!(r.dry_run);
}

#[test]
fn errors_round_trip_and_plain_text_is_kept() {
    let e = PluginError::new(ErrorKind::NoTarget, "nothing to kill");
    assert_eq!(PluginError::from_json(&e.to_json()), e);
    let plain = PluginError::from_json("boom");
    assert_eq!(
        (plain.kind, plain.message.as_str()),
        (ErrorKind::Failed, "boom")
    );
    let future: PluginError =
        serde_json::from_str(r#"{"kind":"quota-exceeded","message":"m"}"#).unwrap();
    assert_eq!(future.kind, ErrorKind::Other);
}

/// An answer the host could not read (nested past serde_json's limit) never leaves its
/// fault in effect unseen: the plugin's own revert runs at once, and the host gets an
/// error that says so. The bound is the host's: one level less is read whole.
#[test]
fn an_answer_nested_past_the_hosts_limit_is_reverted_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static REVERTED: AtomicUsize = AtomicUsize::new(0);
    struct Deep;
    impl FaultPlugin for Deep {
        const NAME: &'static str = "deep";
        const VERSION: &'static str = "0.1.0";
        const DESCRIPTION: &'static str = "a state nested as deep as the seed says";
        type Config = ();
        fn new((): ()) -> Result<Self, PluginError> {
            Ok(Deep)
        }
        fn inject(&self, request: &Request) -> Result<Outcome, PluginError> {
            let mut state = serde_json::json!(1);
            for _ in 0..request.seed {
                state = serde_json::json!([state]);
            }
            Ok(Outcome {
                result: "applied".into(),
                revert: Some(state),
                ..Outcome::default()
            })
        }
        fn revert(&self, _: &serde_json::Value) -> Result<Outcome, PluginError> {
            REVERTED.fetch_add(1, Ordering::SeqCst);
            Ok(Outcome::default())
        }
    }
    let fault = (root_module::<Deep>().new_fault())(RStr::from("")).unwrap();
    let call = |seed: u64| {
        let text = serde_json::to_string(&Request {
            seed,
            ..Request::default()
        })
        .unwrap();
        fault.inject(RStr::from(text.as_str())).into_result()
    };
    // The outcome is one level, its `revert` the rest: 123 arrays are kept, read whole
    // three levels deeper still, as the checkpoint holds them.
    let read = call(123).unwrap();
    let wrapped = format!("[[[{read}]]]");
    assert!(serde_json::from_str::<serde_json::Value>(&wrapped).is_ok());
    assert_eq!(REVERTED.load(Ordering::SeqCst), 0);
    let refused = PluginError::from_json(&call(200).unwrap_err());
    assert_eq!(
        refused.message,
        "its answer nests 201 levels deep, past the 124 the host keeps; reverted at once"
    );
    assert_eq!(REVERTED.load(Ordering::SeqCst), 1);
    // Just past the bound: the checkpoint could not be read back.
    let past = call(124).unwrap_err();
    assert!(PluginError::from_json(&past)
        .message
        .starts_with("its answer nests 125 levels deep"));
    assert!(serde_json::from_str::<serde_json::Value>(&"[".repeat(128))
        .is_err_and(|e| e.to_string().contains("recursion limit")));
    assert_eq!(export::nesting(r#"{"a":"[[[{{","b":[{"c":"\"]"}]}"#), 3);
}
