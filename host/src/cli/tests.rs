//! The command line's help: every example parses, none is wrapped, and the flags each
//! subcommand offers.

use clap::{CommandFactory as _, Parser as _};

use super::Cli;

/// The example command lines of `cmd`'s help and its subcommands', each with the
/// subcommand path whose help shows it (`["plugins"]`).
fn examples(cmd: &clap::Command, path: &[String], out: &mut Vec<(Vec<String>, String)>) {
    if let Some(help) = cmd.get_after_help() {
        // A long example goes on over lines ending in ` \`, as in a shell.
        let help = help.to_string();
        let mut joined: Vec<String> = Vec::new();
        for line in help.lines() {
            match joined.last_mut() {
                Some(last) if last.ends_with(" \\") => {
                    last.pop();
                    last.push_str(line.trim_start());
                }
                _ => joined.push(line.to_owned()),
            }
        }
        for line in &joined {
            // `NAME=value nightmare-monkey ...  what it does`: the command alone,
            // up to the description (two spaces) or a shell operator.
            let words = line.trim_start().split(' ');
            let line: Vec<&str> = words
                .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                .collect();
            let line = line.join(" ");
            if !line.starts_with("nightmare-monkey") {
                continue;
            }
            let end = ["  ", " && ", " | ", " > "]
                .iter()
                .filter_map(|cut| line.find(cut))
                .min()
                .unwrap_or(line.len());
            out.push((path.to_vec(), line[..end].to_owned()));
        }
    }
    for sub in cmd.get_subcommands() {
        let mut path = path.to_vec();
        path.push(sub.get_name().to_owned());
        examples(sub, &path, out);
    }
}

/// Shell words: blanks split, single and double quotes group (no escapes needed
/// in the examples).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (Some(q), c) if c == q => quote = None,
            (None, ' ') => out.extend(word.take()),
            (_, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    out
}

#[test]
fn the_shell_words_of_an_example_are_split_as_a_shell_does() {
    assert_eq!(
        words(r#"a -d '*' --fault-config '(signal: "TERM")' "x y" z"#),
        [
            "a",
            "-d",
            "*",
            "--fault-config",
            r#"(signal: "TERM")"#,
            "x y",
            "z"
        ]
    );
}

/// A reason goes with a pause of the fleet; turning the switch off has none to show,
/// so `resume --help` offers none, and a script that passes one still works.
#[test]
fn a_reason_is_offered_by_pause_only() {
    let help = |verb: &str| {
        let mut cli = Cli::command();
        let sub = cli.find_subcommand_mut(verb).map(|s| s.render_long_help());
        sub.map(|h| h.to_string()).unwrap_or_default()
    };
    assert!(help("pause").contains("--reason"), "{}", help("pause"));
    assert!(!help("resume").contains("--reason"), "{}", help("resume"));
    for verb in ["pause", "resume"] {
        let parsed = Cli::try_parse_from(["nightmare-monkey", verb, "--fleet", "--reason", "x"]);
        assert!(parsed.is_ok(), "{verb}: {parsed:?}");
    }
}

/// Every example line after a command's options (indented) fits clap's 100 columns
/// (the width of help that goes to a pipe or a narrow terminal), so none is wrapped
/// into what reads as two commands; a long example goes on over a line ending in
/// ` \`. Prose may wrap.
#[test]
fn no_line_of_the_examples_is_wrapped() {
    fn check(cmd: &clap::Command, path: &str) {
        if let Some(help) = cmd.get_after_help() {
            for line in help.to_string().lines().filter(|l| l.starts_with("  ")) {
                assert!(
                    line.chars().count() < 100,
                    "`{path} --help` wraps this line of {} characters:\n{line}",
                    line.chars().count()
                );
            }
        }
        for sub in cmd.get_subcommands() {
            check(sub, &format!("{path} {}", sub.get_name()));
        }
    }
    check(&Cli::command(), "nightmare-monkey");
}

/// Every example the help texts show parses, as the subcommand whose help shows it.
#[test]
fn every_help_example_parses() {
    let mut all = Vec::new();
    examples(&Cli::command(), &[], &mut all);
    assert!(
        all.len() >= 25,
        "only {} examples found: {all:#?}",
        all.len()
    );
    for (path, line) in &all {
        let argv = words(line);
        assert_eq!(
            &argv[1..=path.len()],
            path.as_slice(),
            "`{line}` is shown in the help of `{}`",
            path.join(" ")
        );
        if let Err(e) = Cli::try_parse_from(&argv) {
            panic!("the help example `{line}` does not parse: {e}");
        }
    }
}
