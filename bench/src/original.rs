//! The original Nightmare Monkey (the 2017 Go daemon, github.com/etsxxx/nightmare-monkey),
//! measured beside this one when its binary is given (`--original PATH`): how it is
//! started, and what the report says of it.
//!
//! It is always started dry: without `--execute` it only logs what it would kill. It
//! binds every interface, so the harness runs it only inside the network namespace it
//! made, where loopback is the only interface.

/// How a user gives the original's binary, for the report and the messages.
pub const HOW_TO_GIVE: &str = "build the original from its source \
     (github.com/etsxxx/nightmare-monkey, Go, GOPATH mode: it needs gorilla/mux, \
     mitchellh/go-ps and urfave/cli v1) and give its binary with \
     `bench/run --original PATH`";

/// The original's command line: its API on `port`, awake every day and every minute,
/// its own timer hours to years away, and dry (no `--execute`, ever).
pub fn arguments(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        // Weekdays 0-7 and 00:00-24:00: its window cannot wrap, and these bounds hold
        // every day and minute (outside its window it answers 500).
        "--day",
        "0-7",
        "--time",
        "00:00-24:00",
        // Its timer waits a uniform 1..(max - min) seconds: the odds that it fires
        // within a benchmark's minutes are about one in a million (and it is dry).
        "--min-interval",
        "0",
        "--max-interval",
        "1000000000",
    ]
    .map(String::from)
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_is_never_told_to_execute() {
        let args = arguments(8080);
        assert!(!args.iter().any(|a| a.contains("execute")), "{args:?}");
        assert_eq!(args[..2], ["--port", "8080"]);
    }
}
