//! The `Http` probe: a GET that must answer an expected status and, if asked, a body
//! matching a regular expression.

use std::time::Duration;

use super::Pattern;

/// How much of a body is matched against `body`.
const MAX_BODY: usize = 64 * 1024;

/// Which statuses pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// A class: `2` for `"2xx"`.
    Class(u16),
    /// Any of these codes.
    Codes(Vec<u16>),
}

impl Status {
    fn passes(&self, code: u16) -> bool {
        match self {
            Status::Class(class) => code / 100 == *class,
            Status::Codes(codes) => codes.contains(&code),
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Class(class) => write!(f, "{class}xx"),
            Status::Codes(codes) => {
                let codes: Vec<String> = codes.iter().map(u16::to_string).collect();
                write!(f, "{}", codes.join(" or "))
            }
        }
    }
}

/// `Http(url, status, body, timeout)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Http {
    pub(super) url: String,
    pub(super) status: Status,
    pub(super) body: Option<Pattern>,
    pub(super) timeout: Duration,
}

impl Http {
    pub(super) async fn check(&self) -> Result<String, String> {
        let client = super::client(self.timeout)?;
        let answer = client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("GET failed: {}", super::request_error(&e, self.timeout)))?;
        let code = answer.status().as_u16();
        if !self.status.passes(code) {
            return Err(format!("answered {code}, expected {}", self.status));
        }
        let Some(pattern) = &self.body else {
            return Ok(format!("answered {code}"));
        };
        let body = super::body_upto(answer, MAX_BODY).await?;
        let body = String::from_utf8_lossy(&body);
        if pattern.0.is_match(&body) {
            Ok(format!(
                "answered {code}, body matches /{}/",
                pattern.0.as_str()
            ))
        } else {
            Err(format!(
                "answered {code}, but the body does not match /{}/",
                pattern.0.as_str()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_passes_by_class_or_by_code() {
        assert!(Status::Class(2).passes(204));
        assert!(!Status::Class(2).passes(301));
        assert!(Status::Codes(vec![200, 204]).passes(204));
        assert!(!Status::Codes(vec![200]).passes(201));
        assert_eq!(Status::Codes(vec![200, 204]).to_string(), "200 or 204");
        assert_eq!(Status::Class(2).to_string(), "2xx");
    }
}
