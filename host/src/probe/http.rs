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
        let body = String::from_utf8_lossy(&body.bytes);
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

    /// A loopback server answering every request with `status` and `body`, or never
    /// answering at all (`None`).
    fn server(answer: Option<(u16, &'static str)>) -> String {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = [0; 1024];
                let _ = stream.read(&mut request);
                match answer {
                    Some((status, body)) => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    None => held.push(stream),
                }
            }
        });
        url
    }

    fn probe(url: String, body: Option<&str>, timeout_ms: u64) -> Http {
        Http {
            url,
            status: Status::Class(2),
            body: body.map(|b| Pattern(regex::Regex::new(b).unwrap())),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[tokio::test]
    async fn a_get_passes_on_its_status_and_body_and_fails_with_a_reason() {
        let up = server(Some((200, "{\"status\":\"ok\"}")));
        assert_eq!(
            probe(up.clone(), Some("\"ok\""), 2000).check().await,
            Ok("answered 200, body matches /\"ok\"/".into())
        );
        assert_eq!(
            probe(up, Some("degraded"), 2000).check().await,
            Err("answered 200, but the body does not match /degraded/".into())
        );
        let down = server(Some((503, "")));
        assert_eq!(
            probe(down, None, 2000).check().await,
            Err("answered 503, expected 2xx".into())
        );
        let hung = server(None);
        let started = std::time::Instant::now();
        assert_eq!(
            probe(hung, None, 200).check().await,
            Err("GET failed: no answer within 200ms".into())
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

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
