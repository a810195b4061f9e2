//! The toxics a `net-proxy` fault turns on (Toxiproxy's names and meanings), as written
//! in RON and as checked: every duration and size bounded, a direction only where one
//! applies. Pure: what a toxic does to bytes in flight is `proxy::run`'s.

use std::{fmt, time::Duration};

use nightmare_monkey_plugin_api::sdk::{self, ErrorKind, PluginError};
use serde::{Deserialize, Serialize};

/// The longest delay any toxic may add (latency, jitter, slow close, a slicer's pause,
/// the time before a timeout or a reset).
pub const MAX_DELAY: Duration = Duration::from_secs(600);
/// The most data `LimitData` may let through, and the slowest and fastest bandwidth.
const MAX_BYTES: u64 = 1 << 40;
const MAX_RATE_KB: u64 = 10_000_000;

/// A toxic as written: `Latency(latency: "100ms", jitter: "10ms")`, `Down`, ...
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum RawToxic {
    /// Each chunk waits `latency`, give or take up to `jitter`.
    Latency {
        /// The delay (`"100ms"`).
        latency: sdk::DurationText,
        /// Up to this much more or less, at random.
        #[serde(default)]
        jitter: Option<sdk::DurationText>,
    },
    /// At most `rate` KB (1,024 bytes) a second.
    Bandwidth {
        /// KB a second.
        rate: u64,
    },
    /// A close waits `delay` before it is passed on.
    SlowClose {
        /// How long.
        delay: sdk::DurationText,
    },
    /// Nothing is forwarded, and what is sent meanwhile is dropped (as in Toxiproxy);
    /// the connection is closed after `timeout` (`"0s"`: never, as in Toxiproxy).
    Timeout {
        /// When the connection is closed, after the toxic began (or the connection).
        timeout: sdk::DurationText,
    },
    /// The connection is reset (TCP RST to both ends) after `timeout` (`"0s"`: at once).
    ResetPeer {
        /// How long after the toxic began (or the connection).
        timeout: sdk::DurationText,
    },
    /// Data is cut into pieces of about `average_size` bytes, `delay` apart.
    Slicer {
        /// The average piece, in bytes.
        average_size: u64,
        /// Up to this many bytes more or less.
        #[serde(default)]
        size_variation: u64,
        /// The pause between two pieces.
        #[serde(default)]
        delay: Option<sdk::DurationText>,
    },
    /// The connection is closed once `bytes` have passed (in the toxic's direction).
    LimitData {
        /// How many bytes pass.
        bytes: u64,
    },
    /// The proxy refuses new connections and closes those it has.
    Down,
}

/// Which way the bytes a toxic acts on flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the client to the upstream.
    Upstream,
    /// From the upstream to the client (Toxiproxy's default).
    Downstream,
    /// Both ways.
    Both,
}

impl Direction {
    /// Whether bytes flowing `to_upstream` (or not) are this direction's.
    pub fn covers(self, to_upstream: bool) -> bool {
        match self {
            Direction::Both => true,
            Direction::Upstream => to_upstream,
            Direction::Downstream => !to_upstream,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
            Direction::Both => "both ways",
        }
    }
}

/// A checked toxic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Toxic {
    /// See [`RawToxic::Latency`].
    Latency {
        /// Milliseconds.
        latency_ms: u64,
        /// Milliseconds.
        jitter_ms: u64,
    },
    /// See [`RawToxic::Bandwidth`].
    Bandwidth {
        /// KB a second.
        rate_kb: u64,
    },
    /// See [`RawToxic::SlowClose`].
    SlowClose {
        /// Milliseconds.
        delay_ms: u64,
    },
    /// See [`RawToxic::Timeout`].
    Timeout {
        /// Milliseconds; none: never closed.
        timeout_ms: Option<u64>,
    },
    /// See [`RawToxic::ResetPeer`].
    ResetPeer {
        /// Milliseconds.
        timeout_ms: u64,
    },
    /// See [`RawToxic::Slicer`].
    Slicer {
        /// Bytes.
        average_size: u64,
        /// Bytes.
        size_variation: u64,
        /// Microseconds.
        delay_us: u64,
    },
    /// See [`RawToxic::LimitData`].
    LimitData {
        /// Bytes.
        bytes: u64,
    },
    /// See [`RawToxic::Down`].
    Down,
}

fn invalid(message: String) -> PluginError {
    PluginError::new(ErrorKind::Config, message)
}

/// A duration field in milliseconds, at most [`MAX_DELAY`]. A nonzero one under a
/// millisecond is refused, not made zero: the proxy counts its delays in whole
/// milliseconds, and a `Timeout(timeout: "500us")` turned into 0 would mean "never
/// closed", a `Latency` of 999us no latency at all.
fn millis(field: &str, text: &str) -> Result<u64, PluginError> {
    let d = sdk::duration(field, Some(text), Duration::ZERO, MAX_DELAY)?;
    if !d.is_zero() && d < Duration::from_millis(1) {
        return Err(invalid(format!(
            "{field} `{text}`: expected 1ms or more (the proxy counts whole milliseconds)"
        )));
    }
    Ok(d.as_millis() as u64)
}

/// A duration field in milliseconds where zero means something (`"0s"`).
fn millis_or_zero(field: &str, text: &str) -> Result<u64, PluginError> {
    if humantime::parse_duration(text).is_ok_and(|d| d.is_zero()) {
        return Ok(0);
    }
    millis(field, text)
}

/// `ms` milliseconds in words (`10m`, not `600000ms`).
fn shown(ms: u64) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(ms))
}

impl RawToxic {
    /// The toxic checked, with the direction it acts in (`None` for those acting on the
    /// whole connection or proxy, which refuse one).
    pub fn check(
        &self,
        direction: Option<Direction>,
    ) -> Result<(Toxic, Option<Direction>), PluginError> {
        let toxic = match self {
            RawToxic::Latency { latency, jitter } => {
                let latency_ms = millis("latency", latency)?;
                let jitter_ms = jitter
                    .as_ref()
                    .map(|j| millis("jitter", j))
                    .transpose()?
                    .unwrap_or(0);
                if jitter_ms > latency_ms {
                    return Err(invalid(format!(
                        "jitter {}: expected at most the latency ({})",
                        shown(jitter_ms),
                        shown(latency_ms)
                    )));
                }
                Toxic::Latency {
                    latency_ms,
                    jitter_ms,
                }
            }
            RawToxic::Bandwidth { rate } => {
                if !(1..=MAX_RATE_KB).contains(rate) {
                    return Err(invalid(format!(
                        "rate {rate}: expected KB a second, 1 to {MAX_RATE_KB}"
                    )));
                }
                Toxic::Bandwidth { rate_kb: *rate }
            }
            RawToxic::SlowClose { delay } => Toxic::SlowClose {
                delay_ms: millis("delay", delay)?,
            },
            RawToxic::Timeout { timeout } => Toxic::Timeout {
                timeout_ms: Some(millis_or_zero("timeout", timeout)?).filter(|&ms| ms > 0),
            },
            RawToxic::ResetPeer { timeout } => Toxic::ResetPeer {
                timeout_ms: millis_or_zero("timeout", timeout)?,
            },
            RawToxic::Slicer {
                average_size,
                size_variation,
                delay,
            } => {
                if !(1..=MAX_BYTES).contains(average_size) || size_variation >= average_size {
                    return Err(invalid(format!(
                        "average_size {average_size}, size_variation {size_variation}: expected a size of at least 1 byte and a variation below it"
                    )));
                }
                let delay_us = match delay {
                    Some(d) => sdk::duration("delay", Some(d), Duration::ZERO, MAX_DELAY)?
                        .as_micros() as u64,
                    None => 0,
                };
                Toxic::Slicer {
                    average_size: *average_size,
                    size_variation: *size_variation,
                    delay_us,
                }
            }
            RawToxic::LimitData { bytes } => {
                if *bytes > MAX_BYTES {
                    return Err(invalid(format!(
                        "bytes {bytes}: expected at most {MAX_BYTES}"
                    )));
                }
                Toxic::LimitData { bytes: *bytes }
            }
            RawToxic::Down => Toxic::Down,
        };
        let direction = match (toxic.has_direction(), direction) {
            (true, d) => Some(d.unwrap_or(Direction::Downstream)),
            (false, None) => None,
            (false, Some(_)) => {
                return Err(invalid(format!(
                    "direction: {} acts on the whole {}; leave direction out",
                    toxic.name(),
                    if toxic == Toxic::Down {
                        "proxy"
                    } else {
                        "connection"
                    }
                )))
            }
        };
        Ok((toxic, direction))
    }
}

impl Toxic {
    /// Toxiproxy's name for it.
    pub fn name(&self) -> &'static str {
        match self {
            Toxic::Latency { .. } => "latency",
            Toxic::Bandwidth { .. } => "bandwidth",
            Toxic::SlowClose { .. } => "slow_close",
            Toxic::Timeout { .. } => "timeout",
            Toxic::ResetPeer { .. } => "reset_peer",
            Toxic::Slicer { .. } => "slicer",
            Toxic::LimitData { .. } => "limit_data",
            Toxic::Down => "down",
        }
    }

    /// Whether it acts on bytes flowing one way (else on whole connections).
    pub fn has_direction(&self) -> bool {
        !matches!(
            self,
            Toxic::ResetPeer { .. } | Toxic::Down | Toxic::SlowClose { .. }
        )
    }

    /// How long a chunk of `bytes` waits at `rate_kb` KB a second.
    pub fn pace(bytes: usize, rate_kb: u64) -> Duration {
        Duration::from_nanos((bytes as u64).saturating_mul(1_000_000_000) / (rate_kb * 1024))
    }

    /// The latency of one chunk: `latency` moved by `draw` (uniform in 0..=2*jitter).
    pub fn delay(latency_ms: u64, jitter_ms: u64, draw: u64) -> Duration {
        let span = jitter_ms * 2 + 1;
        let ms = (latency_ms + draw % span).saturating_sub(jitter_ms);
        Duration::from_millis(ms)
    }

    /// The size of the next slice, `draw` moving it within the variation.
    pub fn slice(average: u64, variation: u64, draw: u64) -> usize {
        let span = variation * 2 + 1;
        (average + draw % span).saturating_sub(variation).max(1) as usize
    }
}

/// What a toxic is, in words, with its direction: for the log, the dry run and `status`.
pub struct Described<'a>(pub &'a Toxic, pub Option<Direction>);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Described(toxic, direction) = self;
        match toxic {
            Toxic::Latency {
                latency_ms,
                jitter_ms: 0,
            } => write!(f, "latency {}", shown(*latency_ms))?,
            Toxic::Latency {
                latency_ms,
                jitter_ms,
            } => write!(f, "latency {} ± {}", shown(*latency_ms), shown(*jitter_ms))?,
            Toxic::Bandwidth { rate_kb } => write!(f, "bandwidth {rate_kb} KB/s")?,
            Toxic::SlowClose { delay_ms } => {
                write!(f, "slow_close: closes wait {}", shown(*delay_ms))?
            }
            Toxic::Timeout { timeout_ms: None } => {
                write!(f, "timeout: nothing forwarded, connections kept open")?
            }
            Toxic::Timeout {
                timeout_ms: Some(t),
            } => write!(
                f,
                "timeout: nothing forwarded, connections closed after {}",
                shown(*t)
            )?,
            Toxic::ResetPeer { timeout_ms: 0 } => write!(f, "reset_peer: connections reset")?,
            Toxic::ResetPeer { timeout_ms } => write!(
                f,
                "reset_peer: connections reset after {}",
                shown(*timeout_ms)
            )?,
            Toxic::Slicer {
                average_size,
                size_variation,
                delay_us,
            } => write!(
                f,
                "slicer: pieces of {average_size} ± {size_variation} bytes, {} apart",
                humantime::format_duration(Duration::from_micros(*delay_us))
            )?,
            Toxic::LimitData { bytes } => {
                write!(f, "limit_data: connections closed after {bytes} bytes")?
            }
            Toxic::Down => write!(f, "down: new connections refused, open ones closed")?,
        }
        if let Some(d) = direction {
            write!(f, " ({})", d.word())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(d: &str) -> sdk::DurationText {
        sdk::DurationText(d.to_owned())
    }

    #[test]
    fn a_latency_is_checked_and_told() {
        let raw = RawToxic::Latency {
            latency: text("100ms"),
            jitter: Some(text("10ms")),
        };
        let (toxic, direction) = raw.check(None).unwrap();
        assert_eq!(
            toxic,
            Toxic::Latency {
                latency_ms: 100,
                jitter_ms: 10
            }
        );
        assert_eq!(direction, Some(Direction::Downstream));
        assert_eq!(
            Described(&toxic, direction).to_string(),
            "latency 100ms ± 10ms (downstream)"
        );
        let too_much = RawToxic::Latency {
            latency: text("10ms"),
            jitter: Some(text("20ms")),
        };
        assert_eq!(
            too_much.check(None).unwrap_err().message,
            "jitter 20ms: expected at most the latency (10ms)"
        );
    }

    #[test]
    fn a_nonzero_duration_under_a_millisecond_is_refused_not_made_zero() {
        let e = RawToxic::Timeout {
            timeout: text("500us"),
        }
        .check(None)
        .unwrap_err();
        assert_eq!(
            e.message,
            "timeout `500us`: expected 1ms or more (the proxy counts whole milliseconds)"
        );
        let e = RawToxic::Latency {
            latency: text("999us"),
            jitter: None,
        }
        .check(None)
        .unwrap_err();
        assert_eq!(
            e.message,
            "latency `999us`: expected 1ms or more (the proxy counts whole milliseconds)"
        );
        let never = RawToxic::Timeout {
            timeout: text("0s"),
        };
        assert_eq!(
            never.check(None).unwrap().0,
            Toxic::Timeout { timeout_ms: None }
        );
        let (toxic, _) = RawToxic::SlowClose { delay: text("10m") }
            .check(None)
            .unwrap();
        assert_eq!(
            Described(&toxic, None).to_string(),
            "slow_close: closes wait 10m"
        );
        let (toxic, direction) = RawToxic::Timeout {
            timeout: text("1500ms"),
        }
        .check(None)
        .unwrap();
        assert_eq!(
            Described(&toxic, direction).to_string(),
            "timeout: nothing forwarded, connections closed after 1s 500ms (downstream)"
        );
    }

    #[test]
    fn a_toxic_of_the_whole_connection_refuses_a_direction() {
        let e = RawToxic::Down.check(Some(Direction::Upstream)).unwrap_err();
        assert_eq!(
            e.message,
            "direction: down acts on the whole proxy; leave direction out"
        );
        let (toxic, direction) = RawToxic::ResetPeer {
            timeout: text("0s"),
        }
        .check(None)
        .unwrap();
        assert_eq!(toxic, Toxic::ResetPeer { timeout_ms: 0 });
        assert_eq!(direction, None);
        assert!(RawToxic::Bandwidth { rate: 0 }.check(None).is_err());
        assert!(RawToxic::Slicer {
            average_size: 10,
            size_variation: 10,
            delay: None
        }
        .check(None)
        .is_err());
    }

    #[test]
    fn delays_paces_and_slices_stay_in_their_bounds() {
        assert_eq!(Toxic::delay(100, 0, 12345), Duration::from_millis(100));
        for draw in 0..100 {
            let d = Toxic::delay(100, 10, draw).as_millis();
            assert!((90..=110).contains(&d), "{d}");
            let s = Toxic::slice(100, 20, draw);
            assert!((80..=120).contains(&s), "{s}");
        }
        assert_eq!(Toxic::pace(1024, 1), Duration::from_secs(1));
        assert_eq!(Toxic::pace(512, 1024), Duration::from_nanos(488_281));
        assert!(Direction::Both.covers(true) && Direction::Both.covers(false));
        assert!(Direction::Upstream.covers(true) && !Direction::Upstream.covers(false));
    }
}
