//! What the fleet's bench speaks to: a loopback HTTP/1.1 client (the daemons' API and
//! etcd's JSON gateway), and one etcd member started and stopped by the harness.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

/// A free loopback port: bound, read, released.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// One HTTP/1.1 request on a connection of its own: the status and the body.
pub fn request(port: u16, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let mut client = Client::open(port)?;
    client.send(method, path, body)
}

/// A keep-alive connection to one daemon (or etcd).
pub struct Client {
    reader: BufReader<TcpStream>,
    port: u16,
}

impl Client {
    pub fn open(port: u16) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .with_context(|| format!("cannot connect to 127.0.0.1:{port}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client {
            reader: BufReader::new(stream),
            port,
        })
    }

    /// Sends one request, reads its whole answer: the status and the body.
    pub fn send(&mut self, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
        write!(
            self.reader.get_mut(),
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP answer: {line:?}"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("the connection closed in the headers");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse()?;
                }
            }
        }
        let mut answer = vec![0; length];
        self.reader.read_exact(&mut answer)?;
        Ok((status, String::from_utf8_lossy(&answer).into_owned()))
    }
}

/// One etcd member on loopback, its data in `dir`; killed (our child, by its PID) when
/// stopped or dropped.
pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
    peer: u16,
}

impl Etcd {
    pub fn start(dir: &Path) -> anyhow::Result<Etcd> {
        fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
        let mut etcd = Etcd {
            child: None,
            dir: dir.to_owned(),
            port: free_port()?,
            peer: free_port()?,
        };
        etcd.restart()?;
        Ok(etcd)
    }

    /// Starts it (again, on its data) and waits until it answers.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let (client, peer) = (
            format!("http://127.0.0.1:{}", self.port),
            format!("http://127.0.0.1:{}", self.peer),
        );
        let child = Command::new("etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("bench={peer}")])
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.dir.join("etcd.log"))?)
            .spawn()
            .context("cannot start etcd (Debian: apt-get install etcd-server)")?;
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        while !matches!(
            request(self.port, "POST", "/v3/kv/range", r#"{"key":"AA=="}"#),
            Ok((200, _))
        ) {
            if Instant::now() > until {
                bail!(
                    "etcd did not answer within 30 s; see {}",
                    self.dir.join("etcd.log").display()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The holder of `key` at `revision` (its value), if any.
    pub fn at(&self, key: &str, revision: i64) -> anyhow::Result<Option<serde_json::Value>> {
        let body =
            serde_json::json!({ "key": base64(key.as_bytes()), "revision": revision.to_string() });
        let (status, answer) = request(self.port, "POST", "/v3/kv/range", &body.to_string())?;
        if status != 200 {
            bail!("etcd answered {status} to a range at {revision}: {answer}");
        }
        let answer: serde_json::Value = serde_json::from_str(&answer)?;
        let Some(value) = answer["kvs"].get(0).and_then(|kv| kv["value"].as_str()) else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&unbase64(value)?).ok())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let (mut n, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&b| b == c).context("not base64")? as u32;
        n = n << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits & 0xff) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_goes_there_and_back() {
        for text in ["", "a", "ab", "abc", "/nm-bench/slots/12"] {
            assert_eq!(unbase64(&base64(text.as_bytes())).unwrap(), text.as_bytes());
        }
        assert_eq!(base64(b"/nm"), "L25t");
        assert_eq!(base64(b"ab"), "YWI=");
    }
}
