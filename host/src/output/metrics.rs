//! `GET /metrics`: what the monkey did and refused, in the Prometheus (OpenMetrics) text
//! format, through the `prometheus-client` crate. One registry for the process: every
//! part of the daemon counts into it, the API renders it.

use std::sync::LazyLock;

use nightmare_monkey_plugin_api::sdk::results;
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram, info::Info},
    registry::Registry,
};

/// A label value named in the configuration (a fault, a notifier, a poller), escaped
/// as the text format asks (backslash, double quote, newline). prometheus-client 0.24
/// writes a `String` label value as it is: a quote and a newline in it would end the
/// sample and start one of the writer's choosing.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Named(String);

impl EncodeLabelValue for Named {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        let mut rest = self.0.as_str();
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..at])?;
            encoder.write_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[at + 1..];
        }
        encoder.write_str(rest)
    }
}

impl From<&str> for Named {
    fn from(name: &str) -> Self {
        Named(name.to_owned())
    }
}

/// The `result` label of a fault: the outcome's word if it is one of the SDK's
/// (`sdk::results`) or `failed` (the plugin erred), else `other`. A plugin chooses its
/// word freely; taken as it is, each new word would add a series for good (and a word
/// made to look like a sample would be one). The journal and the log keep the word.
fn result_label(result: &str) -> &'static str {
    const KNOWN: [&str; 8] = [
        results::DRY_RUN,
        results::KILLED,
        results::SURVIVED,
        results::VANISHED,
        results::PAUSED,
        results::INJECTED,
        results::REVERTED,
        FAILED,
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == result)
        .unwrap_or("other")
}

/// The result of a fault whose plugin erred.
pub const FAILED: &str = "failed";

/// A fault that was injected, or failed in its plugin.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    fault: Named,
    trigger: &'static str,
    result: &'static str,
}

/// A request refused before any plugin ran.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

/// A poller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PollerLabels {
    poller: Named,
}

/// A notification's end.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    notifier: Named,
    result: &'static str,
}

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    faults: Family<FaultLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    active: Gauge,
    paused: Gauge,
    poller_errors: Family<PollerLabels, Counter>,
    plugin_load_failures: Counter,
    notifications: Family<NotificationLabels, Counter>,
    ttd: Histogram,
    ttr: Histogram,
    recoveries: Family<RecoveryLabels, Counter>,
    halts: Counter,
    log_lines_dropped: Counter,
    admissions: Histogram,
}

/// How a fault's recovery ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecoveryLabels {
    fault: Named,
    result: &'static str,
}

/// The buckets of the times to detect and recover, seconds: a second to an hour.
const DRILL_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The buckets of a fleet admission, seconds: half a millisecond to its deadline.
const ADMISSION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.5, 2.5,
];

/// Why a request was refused, as the `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Outside the window.
    Window,
    /// Over a budget.
    Budget,
    /// The kill switch is on.
    Paused,
    /// No valid token.
    Auth,
    /// From another site's page, or for a `Host` that is not the API's.
    Origin,
    /// The journal could not be written.
    Journal,
    /// A steady-state probe failed.
    SteadyState,
    /// The fault's plugin file is still loading.
    Loading,
    /// The fleet's coordinator refused it.
    Fleet,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Window => "window",
            Refusal::Budget => "budget",
            Refusal::Paused => "paused",
            Refusal::Auth => "auth",
            Refusal::Origin => "origin",
            Refusal::Journal => "journal",
            Refusal::SteadyState => "steady-state",
            Refusal::Loading => "loading",
            Refusal::Fleet => "fleet",
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("nightmare_monkey");
        let faults = Family::<FaultLabels, Counter>::default();
        registry.register(
            "faults",
            "Faults injected (dry runs included), by fault, trigger and result",
            faults.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "refusals",
            "Requests refused before any plugin ran, by reason (window, budget, paused, auth, origin, journal, steady-state, loading, fleet)",
            refusals.clone(),
        );
        let active = Gauge::default();
        registry.register(
            "active_faults",
            "Reversible faults in effect now, to be reverted",
            active.clone(),
        );
        let paused = Gauge::default();
        registry.register(
            "paused",
            "1 while the kill switch (the API's or the pause file) holds every trigger back",
            paused.clone(),
        );
        let poller_errors = Family::<PollerLabels, Counter>::default();
        registry.register(
            "poller_errors",
            "Failed polls, by poller",
            poller_errors.clone(),
        );
        let plugin_load_failures = Counter::default();
        registry.register(
            "plugin_load_failures",
            "Plugin files that could not be loaded at startup",
            plugin_load_failures.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Webhook notifications, by notifier and result (sent, failed after every retry)",
            notifications.clone(),
        );
        let ttd = Histogram::new(DRILL_BUCKETS);
        registry.register(
            "ttd_seconds",
            "Time to detect: from a fault to its first ack or alert (POST /api/ack, /api/alerts)",
            ttd.clone(),
        );
        let ttr = Histogram::new(DRILL_BUCKETS);
        registry.register(
            "ttr_seconds",
            "Time to recover: from a fault (or its revert) to every recovery probe passing",
            ttr.clone(),
        );
        let recoveries = Family::<RecoveryLabels, Counter>::default();
        registry.register(
            "recoveries",
            "Faults' recovery probes, by fault and result (recovered, late, not-recovered)",
            recoveries.clone(),
        );
        let halts = Counter::default();
        registry.register(
            "halts",
            "Times a halt probe failed for too long and the monkey paused itself",
            halts.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stderr was not read (its queue was full): the daemon never waits for its log",
            log_lines_dropped.clone(),
        );
        let admissions = Histogram::new(ADMISSION_BUCKETS);
        registry.register(
            "fleet_admission_seconds",
            "Time to ask the fleet's coordinator for an admission (admitted or refused), in a fleet drill",
            admissions.clone(),
        );
        registry.register(
            "build",
            "The version and git revision of this daemon",
            Info::new(vec![
                ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
                (
                    "revision".to_owned(),
                    env!("NIGHTMARE_MONKEY_REVISION").to_owned(),
                ),
            ]),
        );
        // Every reason shows from the start, at zero, so alerts need no `absent()`.
        for reason in [
            Refusal::Window,
            Refusal::Budget,
            Refusal::Paused,
            Refusal::Auth,
            Refusal::Origin,
            Refusal::Journal,
            Refusal::SteadyState,
            Refusal::Loading,
            Refusal::Fleet,
        ] {
            drop(refusals.get_or_create(&RefusalLabels {
                reason: reason.label(),
            }));
        }
        Self {
            registry,
            faults,
            refusals,
            active,
            paused,
            poller_errors,
            plugin_load_failures,
            notifications,
            ttd,
            ttr,
            recoveries,
            halts,
            log_lines_dropped,
            admissions,
        }
    }

    /// The fleet's coordinator answered an admission after `took`.
    pub fn admission(&self, took: std::time::Duration) {
        self.admissions.observe(took.as_secs_f64());
    }

    /// A log line was dropped: stderr was not read and its queue was full.
    pub fn log_line_dropped(&self) {
        self.log_lines_dropped.inc();
    }

    /// A fault was noticed after `ttd_ms`.
    pub fn detected(&self, ttd_ms: u64) {
        self.ttd.observe(ttd_ms as f64 / 1000.0);
    }

    /// The system came back `ttr_ms` after a fault.
    pub fn recovered(&self, ttr_ms: u64) {
        self.ttr.observe(ttr_ms as f64 / 1000.0);
    }

    /// A fault's recovery ended (`recovered`, `late`) or passed its deadline
    /// (`not-recovered`).
    pub fn recovery(&self, fault: &str, result: &'static str) {
        self.recoveries
            .get_or_create(&RecoveryLabels {
                fault: fault.into(),
                result,
            })
            .inc();
    }

    /// The monkey halted itself.
    pub fn halted(&self) {
        self.halts.inc();
    }

    /// A notification was sent, or given up on.
    pub fn notification(&self, notifier: &str, result: &'static str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                notifier: notifier.into(),
                result,
            })
            .inc();
    }

    /// A fault ran through its plugin with this result ([`FAILED`] when the plugin
    /// erred), counted under [`result_label`].
    pub fn fault(&self, fault: &str, trigger: &'static str, result: &str) {
        self.faults
            .get_or_create(&FaultLabels {
                fault: fault.into(),
                trigger,
                result: result_label(result),
            })
            .inc();
    }

    /// A request was refused.
    pub fn refused(&self, why: Refusal) {
        self.refusals
            .get_or_create(&RefusalLabels {
                reason: why.label(),
            })
            .inc();
    }

    /// How many reversible faults are in effect.
    pub fn set_active(&self, count: usize) {
        self.active.set(count as i64);
    }

    /// Whether the monkey is paused.
    pub fn set_paused(&self, paused: bool) {
        self.paused.set(i64::from(paused));
    }

    /// A poll failed.
    pub fn poller_error(&self, poller: &str) {
        self.poller_errors
            .get_or_create(&PollerLabels {
                poller: poller.into(),
            })
            .inc();
    }

    /// A plugin file could not be loaded.
    pub fn plugin_load_failed(&self) {
        self.plugin_load_failures.inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    /// A plugin's result made to look like samples, and a notifier's name from the
    /// configuration with every character the text format escapes.
    #[test]
    fn label_values_from_outside_cannot_forge_a_sample_or_add_series() {
        let metrics = Metrics::new();
        let forged = "dry-run\"} 1\nnightmare_monkey_paused 1\nx{a=\"";
        for seed in 0..3 {
            metrics.fault("hostile", "http", &format!("{forged}{seed}"));
        }
        metrics.fault("hostile", "http", "unchanged");
        metrics.fault("hostile", "http", results::KILLED);
        metrics.fault("hostile", "http", FAILED);
        metrics.notification("team \"chat\"\n\\", "sent");
        metrics.poller_error("a\nb");
        let text = metrics.render();
        let faults: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("nightmare_monkey_faults_total"))
            .collect();
        let want = [
            r#"nightmare_monkey_faults_total{fault="hostile",trigger="http",result="other"} 4"#,
            r#"nightmare_monkey_faults_total{fault="hostile",trigger="http",result="killed"} 1"#,
            r#"nightmare_monkey_faults_total{fault="hostile",trigger="http",result="failed"} 1"#,
        ];
        let mut sorted = faults.clone();
        sorted.sort_unstable();
        let mut wanted = want.to_vec();
        wanted.sort_unstable();
        assert_eq!(sorted, wanted, "{text}");
        assert!(
            text.lines().any(|l| l
                == r#"nightmare_monkey_notifications_total{notifier="team \"chat\"\n\\",result="sent"} 1"#),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == r#"nightmare_monkey_poller_errors_total{poller="a\nb"} 1"#),
            "{text}"
        );
        // Every line is a comment or one sample of a family the registry declares.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("nightmare_monkey_"), "{line:?} in\n{text}");
        }
    }

    #[test]
    fn a_result_outside_the_sdks_words_is_other() {
        for word in [
            "dry-run", "killed", "survived", "vanished", "paused", "injected", "reverted", "failed",
        ] {
            assert_eq!(result_label(word), word);
        }
        for word in ["", "Killed", "unchanged", "prepared", "killed\n"] {
            assert_eq!(result_label(word), "other", "{word:?}");
        }
    }
}
