//! The flags of the commands that talk to a running daemon through its API: `pause`,
//! `resume`, `status`, `ack` and `revert`, with their help texts.

use std::path::PathBuf;

use clap::Args;

pub(super) const PAUSE_EXAMPLES: &str = "\
The same as POST /api/pause; the daemon answers once every active fault is reverted.
Without a running daemon, `touch` the config's pause_file instead.

Examples:
  nightmare-monkey pause                                  the daemon on 127.0.0.1:8080
  nightmare-monkey pause --config /etc/nightmare-monkey/config.ron
  NIGHTMARE_MONKEY_TOKEN=s3cret nightmare-monkey pause --url http://10.0.0.5:8080
  nightmare-monkey pause --fleet --config /etc/nightmare-monkey/config.ron \\
    --reason \"incident 4521\"";

pub(super) const RESUME_EXAMPLES: &str = "\
The same as POST /api/resume. While the pause file exists the daemon stays paused: resume
then fails (exit 1) and says so; remove the file.

Examples:
  nightmare-monkey resume
  nightmare-monkey resume --config /etc/nightmare-monkey/config.ron \\
    --token-file /run/secrets/monkey
  nightmare-monkey resume --fleet --config /etc/nightmare-monkey/config.ron";

pub(super) const STATUS_EXAMPLES: &str = "\
The same as GET /api/status, as lines (or its JSON with --json). Exit code 1 when the
daemon cannot be reached.

Examples:
  nightmare-monkey status
  nightmare-monkey status --url 127.0.0.1:18099 --json
  nightmare-monkey status --config /etc/nightmare-monkey/config.ron
  nightmare-monkey status --fleet --config /etc/nightmare-monkey/config.ron";

/// `pause` and `resume`.
#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// The daemon's API; without a scheme, http:// [default: from the config, else
    /// http://127.0.0.1:8080]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The daemon's configuration, for its address and token
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A file holding the bearer token [default: $NIGHTMARE_MONKEY_TOKEN, else the config's]
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// `pause` and `resume`: a daemon, or the whole fleet.
#[derive(Debug, Args)]
pub struct PauseArgs {
    #[command(flatten)]
    pub daemon: SwitchArgs,
    /// The whole fleet: the switch in the coordinator of the config's fleet: section,
    /// which every daemon of the fleet follows within a second (no daemon needed here)
    #[arg(long)]
    pub fleet: bool,
    /// Why the fleet is paused, shown by every daemon's status (with --fleet; a
    /// sentence, at most 1024 bytes)
    #[arg(long, value_name = "TEXT", requires = "fleet", value_parser = reason)]
    pub reason: Option<String>,
}

/// A `--reason`: as `POST /api/pause?scope=fleet` takes it.
fn reason(text: &str) -> Result<String, String> {
    crate::fleet::Switch::check_reason(text).map(|()| text.to_owned())
}

/// `resume`: the daemon, or with `--fleet` the fleet's switch. Turning a switch off
/// has no reason to show, so `--reason` is not offered; a script that passes one (as it
/// did to `pause`) still works: it is taken and not used.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub daemon: SwitchArgs,
    /// The whole fleet: the switch in the coordinator of the config's fleet: section,
    /// which every daemon of the fleet follows within a second (no daemon needed here)
    #[arg(long)]
    pub fleet: bool,
    #[arg(long, value_name = "TEXT", requires = "fleet", hide = true)]
    pub reason: Option<String>,
}

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub daemon: SwitchArgs,
    /// Print the JSON of GET /api/status
    #[arg(long)]
    pub json: bool,
    /// The whole fleet, from its coordinator (the config's fleet: section): its nodes,
    /// who holds the slots, the fleet budget used, the fleet's switch
    #[arg(long, conflicts_with_all = ["json", "url"])]
    pub fleet: bool,
}

pub(super) const ACK_EXAMPLES: &str = "\
The same as POST /api/ack. Time to detect counts from the fault's injection to the first
ack (or Alertmanager alert, POST /api/alerts); a fault is noticed once. Dry runs and
failed injections cannot be acknowledged: nothing happened to notice.

Examples:
  nightmare-monkey ack                          the latest unnoticed fault, by $USER
  nightmare-monkey ack --by alice
  nightmare-monkey ack --id 1795723590302-1 --config /etc/nightmare-monkey/config.ron";

/// `ack`.
#[derive(Debug, Args)]
pub struct AckArgs {
    #[command(flatten)]
    pub daemon: SwitchArgs,
    /// Who noticed [default: $USER]
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// The fault's id (from the log, `history --json` or the report) [default: the latest
    /// fault injected for real in the last 24 hours that nobody noticed yet]
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Print the daemon's JSON answer
    #[arg(long)]
    pub json: bool,
}

pub(super) const REVERT_EXAMPLES: &str = "\
The same as POST /api/revert/{id}: the fault is reverted at once, as the kill switch would,
and the monkey goes on playing. `status` lists the faults in effect and their ids; with
--all, every one of them (what `pause` does, without pausing).

Examples:
  nightmare-monkey revert 1795723590302-1
  nightmare-monkey revert --all --config /etc/nightmare-monkey/config.ron";

/// `revert`.
#[derive(Debug, Args)]
pub struct RevertArgs {
    #[command(flatten)]
    pub daemon: SwitchArgs,
    /// The fault's id (as `status` lists it)
    #[arg(value_name = "ID", conflicts_with = "all")]
    pub id: Option<String>,
    /// Every fault in effect now
    #[arg(long)]
    pub all: bool,
    /// Print the daemon's JSON answers, one a line
    #[arg(long)]
    pub json: bool,
}
