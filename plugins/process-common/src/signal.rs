//! Signal names as users write them (`SIGTERM`, `TERM`, `term`, `15`) and as we report
//! them (`SIGTERM`).

use rustix::process::Signal;

const SIGNALS: &[(&str, Signal)] = &[
    ("SIGHUP", Signal::HUP),
    ("SIGINT", Signal::INT),
    ("SIGQUIT", Signal::QUIT),
    ("SIGILL", Signal::ILL),
    ("SIGTRAP", Signal::TRAP),
    ("SIGABRT", Signal::ABORT),
    ("SIGBUS", Signal::BUS),
    ("SIGFPE", Signal::FPE),
    ("SIGKILL", Signal::KILL),
    ("SIGUSR1", Signal::USR1),
    ("SIGSEGV", Signal::SEGV),
    ("SIGUSR2", Signal::USR2),
    ("SIGPIPE", Signal::PIPE),
    ("SIGALRM", Signal::ALARM),
    ("SIGTERM", Signal::TERM),
    ("SIGCHLD", Signal::CHILD),
    ("SIGCONT", Signal::CONT),
    ("SIGSTOP", Signal::STOP),
    ("SIGTSTP", Signal::TSTP),
    ("SIGTTIN", Signal::TTIN),
    ("SIGTTOU", Signal::TTOU),
    ("SIGURG", Signal::URG),
    ("SIGXCPU", Signal::XCPU),
    ("SIGXFSZ", Signal::XFSZ),
    ("SIGVTALRM", Signal::VTALARM),
    ("SIGPROF", Signal::PROF),
    ("SIGWINCH", Signal::WINCH),
    ("SIGIO", Signal::IO),
    ("SIGPWR", Signal::POWER),
    ("SIGSYS", Signal::SYS),
];

/// Reads a signal by name, with or without `SIG`, in any case, or by number.
pub fn parse(text: &str) -> Result<Signal, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::from_named_raw(n)
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

/// The conventional name of a signal (`SIGKILL`).
pub fn name(signal: Signal) -> String {
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
            assert_eq!(parse(text), Ok(Signal::TERM), "{text}");
        }
        assert_eq!(name(parse("kill").unwrap()), "SIGKILL");
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
