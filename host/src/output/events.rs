//! What happens, as it happens, for whoever watches live (the dashboard, through
//! `GET /api/events`): every journal record as it is written (intent, outcome, revert,
//! detected, recovered, refused, halted, ...), the kill switch's flips and the timer's
//! next fault. A bounded broadcast: a watcher too slow to keep up is told it missed
//! some (and looks again), the daemon never waits for one, and with nobody watching
//! nothing is even rendered.

use std::sync::OnceLock;

use tokio::sync::broadcast;

use crate::storage::journal::Record;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Its kind (a record's `type`, `switch`, `next`) and its JSON.
    Happened { kind: String, data: String },
    /// The daemon shuts down: every watch ends.
    Closing,
}

/// How many events a watcher may fall behind before it is told it missed some.
const BACKLOG: usize = 256;

fn channel() -> &'static broadcast::Sender<Event> {
    static CHANNEL: OnceLock<broadcast::Sender<Event>> = OnceLock::new();
    CHANNEL.get_or_init(|| broadcast::channel(BACKLOG).0)
}

/// Tells the watchers of `record`, just written to the journal (or that would have
/// been, without one).
pub(crate) fn record(record: &Record) {
    if channel().receiver_count() == 0 {
        return;
    }
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(record) {
        let kind = fields
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("record")
            .to_owned();
        send(kind, &serde_json::Value::Object(fields));
    }
}

/// Tells the watchers that `kind` happened, with `data`.
pub fn publish(kind: &str, data: serde_json::Value) {
    if channel().receiver_count() > 0 {
        send(kind.to_owned(), &data);
    }
}

fn send(kind: String, data: &serde_json::Value) {
    // No watcher left between the count and now: nothing to do.
    let _ = channel().send(Event::Happened {
        kind,
        data: data.to_string(),
    });
}

/// Every event from now on.
pub fn subscribe() -> broadcast::Receiver<Event> {
    channel().subscribe()
}

static CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ends every watch: the daemon shuts down (or restarts). A watch that begins after
/// this ends at once ([`closed`]).
pub fn close() {
    CLOSED.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = channel().send(Event::Closing);
}

/// Whether the daemon shuts down: no watch goes on.
pub fn closed() -> bool {
    CLOSED.load(std::sync::atomic::Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::journal::HaltedRecord;

    #[test]
    fn a_watcher_hears_each_record_by_its_type_and_the_end() {
        let mut watch = subscribe();
        let halted = Record::Halted(HaltedRecord {
            at: chrono::Utc::now(),
            probe: "api".to_owned(),
            reason: "<down>\n".to_owned(),
        });
        record(&halted);
        publish("switch", serde_json::json!({ "paused": true }));
        close();
        // Other tests publish on the same channel: look for ours among what came.
        let mut seen = Vec::new();
        while let Ok(event) = watch.try_recv() {
            seen.push(event);
        }
        let Some(Event::Happened { kind, data }) = seen
            .iter()
            .find(|e| matches!(e, Event::Happened { kind, .. } if kind == "halted"))
        else {
            panic!("no halted event in {seen:?}");
        };
        assert_eq!(kind, "halted");
        let data: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["reason"], "<down>\n", "the JSON carries it, escaped");
        assert!(!data.to_string().contains('\n'), "one line of data");
        assert!(seen.contains(&Event::Happened {
            kind: "switch".to_owned(),
            data: r#"{"paused":true}"#.to_owned()
        }));
        assert!(seen.contains(&Event::Closing));
    }
}
