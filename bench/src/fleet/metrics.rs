//! The daemons' own timing of their admissions: `nightmare_monkey_fleet_admission_seconds`
//! from each one's `GET /metrics`, read before and after a load.

use super::{client, Node};

/// The fleet's admission histogram summed over `nodes`: (bucket bound in s, cumulative
/// count), the sum in s and the count, from each daemon's `GET /metrics`.
pub type Histogram = (Vec<(f64, f64)>, f64, f64);

pub fn admission_histogram(nodes: &[Node]) -> anyhow::Result<Histogram> {
    const NAME: &str = "nightmare_monkey_fleet_admission_seconds";
    let (mut buckets, mut sum, mut count): Histogram = (Vec::new(), 0.0, 0.0);
    for node in nodes {
        let (_, text) = client::request(node.port, "GET", "/metrics", "")?;
        for line in text.lines() {
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if let Some(le) = key
                .strip_prefix(&format!("{NAME}_bucket{{le=\""))
                .and_then(|rest| rest.strip_suffix("\"}"))
            {
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse()?
                };
                match buckets.iter_mut().find(|(b, _)| *b == le) {
                    Some((_, n)) => *n += value,
                    None => buckets.push((le, value)),
                }
            } else if key == format!("{NAME}_sum") {
                sum += value;
            } else if key == format!("{NAME}_count") {
                count += value;
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok((buckets, sum, count))
}

/// What the daemons timed between two readings: the mean, and the bucket bounds the
/// p50 and p99 fall under, in ms (`None`: nothing timed, or no such metric).
pub fn timed(before: &Histogram, after: &Histogram) -> Option<(f64, f64, f64)> {
    let count = after.2 - before.2;
    if count <= 0.0 {
        return None;
    }
    let under = |q: f64| {
        after
            .0
            .iter()
            .map(|(le, n)| {
                let was = before.0.iter().find(|(b, _)| b == le).map_or(0.0, |b| b.1);
                (*le, n - was)
            })
            .find(|(_, n)| *n >= q * count)
            .map_or(f64::NAN, |(le, _)| le * 1e3)
    };
    Some(((after.1 - before.1) / count * 1e3, under(0.5), under(0.99)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_timing_is_read_between_two_readings() {
        let before: Histogram = (
            vec![(0.001, 10.0), (0.002, 10.0), (f64::INFINITY, 10.0)],
            0.01,
            10.0,
        );
        let after: Histogram = (
            vec![(0.001, 60.0), (0.002, 109.0), (f64::INFINITY, 110.0)],
            0.16,
            110.0,
        );
        let (mean, p50, p99) = timed(&before, &after).unwrap();
        assert!((mean - 1.5).abs() < 1e-9, "{mean}");
        assert_eq!((p50, p99), (1.0, 2.0));
        assert_eq!(timed(&after, &after), None);
    }
}
