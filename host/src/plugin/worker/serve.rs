//! The worker's side: this very binary, started as `__plugin-worker FILE`, reads the
//! plugin's bytes on its stdin, loads them, and serves the host's calls.

use super::*;

/// The worker side: reads the plugin's image from stdin, loads it and answers calls
/// until stdin closes. `shown` names the file in messages. Never returns an error: why
/// it cannot load goes to the host as the answer to loading.
pub(crate) fn serve(shown: &Path) -> anyhow::Result<()> {
    use std::io::Read as _;
    // The protocol moves to copies of descriptors 0 and 1 that no child inherits; 0
    // becomes /dev/null and 1 the stderr the host logs.
    let (calls, replies) = private_stdio()?;
    let out = Arc::new(Mutex::new(std::fs::File::from(replies)));
    let send = move |reply: Reply| {
        let mut line = serde_json::to_string(&reply).unwrap_or_default();
        line.push('\n');
        let mut out = lock(&out);
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    };
    let mut calls = BufReader::new(std::fs::File::from(calls));
    let mut length = String::new();
    calls.read_line(&mut length)?;
    let length: usize = length.trim().parse()?;
    let mut image = vec![0u8; length];
    calls.read_exact(&mut image)?;
    let plugin = match Plugin::from_image(&image, shown) {
        Ok(plugin) => plugin,
        Err(e) => {
            send(Reply::of(0, Err(format!("{e:#}"))));
            return Ok(());
        }
    };
    drop(image);
    send(Reply::of(
        0,
        serde_json::to_string(&plugin.manifest).map_err(|e| e.to_string()),
    ));
    let send = Arc::new(send);
    let mut faults: Vec<Arc<crate::plugin::PluginFault>> = Vec::new();
    for line in calls.lines() {
        let Ok(line) = line else { break };
        let call: Call = match serde_json::from_str(&line) {
            Ok(call) => call,
            Err(e) => {
                eprintln!("unreadable call from the host: {e}");
                continue;
            }
        };
        if call.op == Op::NewFault {
            // In order, here: the host numbers faults by the order it built them.
            let answer = match plugin.new_fault(&call.text) {
                Ok(fault) => {
                    faults.push(Arc::new(fault));
                    Ok((faults.len() - 1).to_string())
                }
                Err(e) => Err(e.to_json()),
            };
            send(Reply::of(call.id, answer));
            continue;
        }
        let Some(fault) = faults.get(call.fault).cloned() else {
            send(Reply::of(
                call.id,
                Err(failed(format!("no fault {} in this worker", call.fault)).to_json()),
            ));
            continue;
        };
        let send = send.clone();
        let spawned = std::thread::Builder::new()
            .name("plugin-call".to_owned())
            .spawn(move || {
                let answer = match call.op {
                    Op::Inject => fault.inject_text(&call.text),
                    _ => fault.revert_text(&call.text),
                };
                send(Reply::of(call.id, answer));
            });
        if let Err(e) = spawned {
            eprintln!("cannot start a thread for call {}: {e}", call.id);
        }
    }
    // The host is gone (or done): calls still running end with the process.
    std::process::exit(0)
}

/// Moves stdin and stdout to close-on-exec copies (returned: calls in, replies out), and
/// points descriptor 0 at /dev/null and 1 at stderr.
fn private_stdio() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let calls = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)?;
    let replies = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdout(), 3)?;
    let null = std::fs::File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    rustix::stdio::dup2_stdout(rustix::stdio::stderr())?;
    Ok((calls, replies))
}
