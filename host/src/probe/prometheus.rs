//! The `Prometheus` probe: an instant query through the HTTP API (`/api/v1/query`),
//! whose one value must be below or above a bound.

use std::time::Duration;

/// How much of an answer is read.
const MAX_ANSWER: usize = 256 * 1024;

/// Which side of the bound passes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// The value must be below this.
    Below(f64),
    /// The value must be above this.
    Above(f64),
}

/// `Prometheus(url, query, below | above, timeout)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prometheus {
    pub(super) url: String,
    pub(super) query: String,
    pub(super) bound: Bound,
    pub(super) timeout: Duration,
}

impl Prometheus {
    pub(super) async fn check(&self) -> Result<String, String> {
        let client = super::client(self.timeout)?;
        let endpoint = format!("{}/api/v1/query", self.url.trim_end_matches('/'));
        let answer = client
            .get(&endpoint)
            .query(&[("query", self.query.as_str())])
            .send()
            .await
            .map_err(|e| format!("query failed: {}", super::request_error(&e, self.timeout)))?;
        let code = answer.status().as_u16();
        let body = super::body_upto(answer, MAX_ANSWER).await?;
        if code != 200 {
            return Err(format!("the query answered {code}"));
        }
        if body.cut {
            return Err(format!(
                "the answer is over {} KiB: a query of one value answers in a few hundred bytes (aggregate it, e.g. sum(...))",
                MAX_ANSWER / 1024
            ));
        }
        let value = value_of(&body.bytes)?;
        judge(value, self.bound)
    }
}

/// Whether `value` is on the passing side of `bound`, and the reason.
fn judge(value: f64, bound: Bound) -> Result<String, String> {
    match bound {
        Bound::Below(b) if value < b => Ok(format!("{value} < {b}")),
        Bound::Below(b) => Err(format!("{value}, expected below {b}")),
        Bound::Above(b) if value > b => Ok(format!("{value} > {b}")),
        Bound::Above(b) => Err(format!("{value}, expected above {b}")),
    }
}

/// The one value of an instant query's answer: a scalar, or a vector of one sample.
fn value_of(body: &[u8]) -> Result<f64, String> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON ({e})"))?;
    if json["status"] != "success" {
        let error = json["error"].as_str().unwrap_or("no error given");
        return Err(format!("the query failed: {error}"));
    }
    let data = &json["data"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([one]) => &one["value"],
            Some([]) => return Err("no data (an empty vector)".to_owned()),
            Some(many) => {
                return Err(format!(
                    "{} series, expected one (aggregate the query)",
                    many.len()
                ))
            }
            None => return Err("the answer has no result".to_owned()),
        },
        other => {
            return Err(format!(
                "a {} result, expected a scalar or a vector",
                other.unwrap_or("missing")
            ))
        }
    };
    // A sample is `[time, "value"]`; the value is text (it may be "NaN" or "+Inf").
    let text = sample[1].as_str().ok_or("the answer has no sample value")?;
    let value: f64 = text
        .parse()
        .map_err(|_| format!("the sample value `{text}` is not a number"))?;
    if value.is_nan() {
        return Err("the value is NaN".to_owned());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_answer_gives_one_value() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"0.25"]}]}}"#;
        assert_eq!(value_of(vector), Ok(0.25));
        let scalar =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"3"]}}"#;
        assert_eq!(value_of(scalar), Ok(3.0));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(value_of(empty), Err("no data (an empty vector)".into()));
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(value_of(error), Err("the query failed: parse error".into()));
        assert!(value_of(b"<html>").is_err());
        assert_eq!(judge(0.25, Bound::Below(0.5)), Ok("0.25 < 0.5".into()));
        assert_eq!(
            judge(0.75, Bound::Below(0.5)),
            Err("0.75, expected below 0.5".into())
        );
        assert_eq!(judge(2.0, Bound::Above(1.0)), Ok("2 > 1".into()));
        assert!(judge(1.0, Bound::Above(1.0)).is_err());
    }
}
