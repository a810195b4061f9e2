//! Signals by name as users write them (`SIGTERM`, `TERM`, `term`, `15`) and as outcomes
//! report them (`SIGTERM`).

use rustix::process::Signal as Raw;

/// A signal a process fault sends. Its own type, so that the SDK's public API does not
/// carry the system crate it is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(pub(crate) Raw);

impl Signal {
    /// SIGKILL.
    pub const KILL: Signal = Signal(Raw::KILL);
    /// SIGTERM.
    pub const TERM: Signal = Signal(Raw::TERM);
    /// SIGINT.
    pub const INT: Signal = Signal(Raw::INT);
    /// SIGHUP.
    pub const HUP: Signal = Signal(Raw::HUP);
    /// SIGSTOP: stops the process until SIGCONT.
    pub const STOP: Signal = Signal(Raw::STOP);
    /// SIGCONT: lets a stopped process go on.
    pub const CONT: Signal = Signal(Raw::CONT);

    /// Reads a signal by name, with or without `SIG`, in any case, or by number; the error
    /// says what is accepted.
    pub fn parse(text: &str) -> Result<Signal, String> {
        parse(text).map(Signal)
    }

    /// The conventional name (`SIGKILL`).
    pub fn name(self) -> String {
        name(self.0)
    }

    /// The signal's number.
    pub fn number(self) -> i32 {
        self.0.as_raw()
    }

    /// Whether it stops the process (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU): a fault that sends
    /// one must also continue the process, or it stays stopped for good.
    pub fn stops(self) -> bool {
        [Raw::STOP, Raw::TSTP, Raw::TTIN, Raw::TTOU].contains(&self.0)
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

const SIGNALS: &[(&str, Raw)] = &[
    ("SIGHUP", Raw::HUP),
    ("SIGINT", Raw::INT),
    ("SIGQUIT", Raw::QUIT),
    ("SIGILL", Raw::ILL),
    ("SIGTRAP", Raw::TRAP),
    ("SIGABRT", Raw::ABORT),
    ("SIGBUS", Raw::BUS),
    ("SIGFPE", Raw::FPE),
    ("SIGKILL", Raw::KILL),
    ("SIGUSR1", Raw::USR1),
    ("SIGSEGV", Raw::SEGV),
    ("SIGUSR2", Raw::USR2),
    ("SIGPIPE", Raw::PIPE),
    ("SIGALRM", Raw::ALARM),
    ("SIGTERM", Raw::TERM),
    ("SIGCHLD", Raw::CHILD),
    ("SIGCONT", Raw::CONT),
    ("SIGSTOP", Raw::STOP),
    ("SIGTSTP", Raw::TSTP),
    ("SIGTTIN", Raw::TTIN),
    ("SIGTTOU", Raw::TTOU),
    ("SIGURG", Raw::URG),
    ("SIGXCPU", Raw::XCPU),
    ("SIGXFSZ", Raw::XFSZ),
    ("SIGVTALRM", Raw::VTALARM),
    ("SIGPROF", Raw::PROF),
    ("SIGWINCH", Raw::WINCH),
    ("SIGIO", Raw::IO),
    ("SIGPWR", Raw::POWER),
    ("SIGSYS", Raw::SYS),
];

fn parse(text: &str) -> Result<Raw, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Raw::from_named_raw(n)
            .ok_or_else(|| format!("unknown signal number {n}: expected 1 to 31, e.g. 9"));
    }
    let upper = t.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    SIGNALS
        .iter()
        .find(|(name, _)| *name == full)
        .map(|(_, sig)| *sig)
        .ok_or_else(|| {
            format!(
                "unknown signal `{text}`: expected a name like SIGKILL, TERM or a number like 9"
            )
        })
}

fn name(signal: Raw) -> String {
    SIGNALS
        .iter()
        .find(|(_, s)| *s == signal)
        .map(|(n, _)| (*n).to_owned())
        .unwrap_or_else(|| format!("signal {}", signal.as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_usual_spellings() {
        for text in ["SIGTERM", "TERM", "term", "sigterm", " 15 "] {
            assert_eq!(parse(text), Ok(Raw::TERM), "{text}");
        }
        assert_eq!(Signal::parse("kill").unwrap().name(), "SIGKILL");
        assert!(Signal::parse("tstp").unwrap().stops() && !Signal::KILL.stops());
    }

    #[test]
    fn rejects_unknown_names_with_the_accepted_form() {
        assert_eq!(
            parse("SIGFOO").unwrap_err(),
            "unknown signal `SIGFOO`: expected a name like SIGKILL, TERM or a number like 9"
        );
        assert!(parse("0").is_err());
        assert!(parse("99").is_err());
    }
}
