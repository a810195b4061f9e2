//! The examples of the README and of the guide, run as written, so that they cannot drift
//! from the binary; and the links between those pages, followed.
//!
//! Every ```` ```console ```` block of README.md and of every `doc/guide/*.md` chapter is
//! a shell session (one indented under a list item would escape the runner, so it is
//! refused: show such output as ```` ```text ````): its `$ ` lines run in
//! order, in one fresh namespace of their own (user, PID, mount and network: its own
//! /proc, loopback, /tmp and /var/lib, so `127.0.0.1:8080`, `/tmp/st` and the default
//! state directory are the block's alone, and whatever it signals is its own), from a
//! directory holding the repository's `examples/`, `tests/`, `Cargo.toml` and the built
//! plugins where the pages say they are (`target/release/`, `target/debug/`), with
//! `nightmare-monkey` on the PATH. What each command prints (stdout and stderr, as a
//! terminal shows them) must be what the page shows, line for line, once what changes
//! from run to run is masked: log timestamps, instants with fractions of a second,
//! start times. A `...` line stands for any number of lines. A command whose shown output
//! has an `error:` line must fail; any other must succeed.
//!
//! An HTML comment just above a block (invisible on the rendered page) says what the
//! reader is assumed to have done first, one directive a line:
//!
//! ```text
//! <!-- readme-test
//! setup: printf '(seed: 7)\n' > drill.ron      a shell line, run before, quietly
//! daemon: nightmare-monkey --seed 7            started in the background; the block
//!                                              waits for its "Listening on"
//! until: 2 Next:                               the command is a daemon run: interrupted
//!                                              (SIGINT, the reader's Ctrl-C) once its
//!                                              output holds "Next:" twice
//! meanwhile: curl -d '{"desc":"x"}' localhost:8080/api/kill
//!                                              run once that daemon listens, as from
//!                                              another terminal ($pid is its PID)
//! meanwhile-after: Next fault:                 ... once it has printed that (default:
//!                                              "Listening on")
//! redact: in \d+h \d+m \d+s                    one more pattern to mask
//! skip: it polls qiita.com                     not run, and why
//! -->
//! ```
//!
//! The help texts' examples are checked too, by a unit test of `cli.rs`: each one parses.
//!
//! Every relative link of those pages and of the other top-level Markdown files resolves:
//! to a file of the repository, and an `#anchor` to a heading of the page it names (as
//! GitHub makes anchors), so moving a section cannot leave a link behind.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use regex::Regex;

use crate::util;

/// One console block of the README or the guide.
#[derive(Debug)]
struct Block {
    /// The page it is on, from the repository's root (`README.md`, `doc/guide/api.md`).
    file: String,
    /// Its first line on that page (1-based), to name it.
    line: usize,
    /// What runs before its commands, in order.
    steps: Vec<Step>,
    until: Option<(usize, String)>,
    /// Shell lines run, quietly, once the interrupted command listens (`$pid` is its PID).
    meanwhile: Vec<String>,
    /// What the interrupted command prints before `meanwhile` runs (once).
    meanwhile_after: String,
    redact: Vec<Regex>,
    skip: Option<String>,
    commands: Vec<Shown>,
}

/// A hidden step before a block's commands.
#[derive(Debug, PartialEq)]
enum Step {
    /// A shell line that must succeed.
    Setup(String),
    /// A daemon started in the background; the block waits for its "Listening on".
    Daemon(String),
}

/// A `$ ` line and the output the page shows under it.
#[derive(Debug)]
struct Shown {
    command: String,
    output: Vec<String>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The guide's chapters, from the repository's root, in name order.
fn guide() -> Vec<String> {
    let mut chapters: Vec<String> = std::fs::read_dir(repo().join("doc/guide"))
        .expect("doc/guide is readable")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("doc/guide/{name}"))
        .collect();
    chapters.sort();
    chapters
}

/// The pages whose console blocks run: README.md, then the guide's chapters.
fn pages() -> Vec<String> {
    let mut pages = vec!["README.md".to_owned()];
    pages.extend(guide());
    pages
}

fn read(page: &str) -> String {
    std::fs::read_to_string(repo().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"))
}

/// The console blocks of `text` (the page `file`), with the directives of the comment
/// above each.
fn blocks(file: &str, text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut pending: Option<Block> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim_start().starts_with("<!-- readme-test") {
            let mut block = empty_block(file, i + 1);
            i += 1;
            while i < lines.len() && !lines[i].trim_start().starts_with("-->") {
                directive(&mut block, lines[i].trim(), i + 1);
                i += 1;
            }
            pending = Some(block);
        } else if line.trim_start().starts_with("```console") && !line.starts_with("```") {
            panic!(
                "{file}:{}: an indented ```console block is not run: unindent it, or show its output as ```text",
                i + 1
            );
        } else if line.starts_with("```console") {
            let mut block = pending.take().unwrap_or_else(|| empty_block(file, i + 1));
            block.line = i + 1;
            i += 1;
            while i < lines.len() && !lines[i].starts_with("```") {
                match lines[i].strip_prefix("$ ") {
                    Some(command) => block.commands.push(Shown {
                        command: command.to_owned(),
                        output: Vec::new(),
                    }),
                    None => block
                        .commands
                        .last_mut()
                        .unwrap_or_else(|| panic!("{file}:{}: output before any `$ ` line", i + 1))
                        .output
                        .push(lines[i].to_owned()),
                }
                i += 1;
            }
            out.push(block);
        } else if !line.trim().is_empty() && pending.is_some() {
            panic!(
                "{file}:{}: a readme-test comment must sit just above a ```console block",
                i + 1
            );
        }
        i += 1;
    }
    out
}

fn empty_block(file: &str, line: usize) -> Block {
    Block {
        file: file.to_owned(),
        line,
        steps: Vec::new(),
        until: None,
        meanwhile: Vec::new(),
        meanwhile_after: "Listening on".to_owned(),
        redact: Vec::new(),
        skip: None,
        commands: Vec::new(),
    }
}

/// Reads one directive line of a readme-test comment into `block`.
fn directive(block: &mut Block, line: &str, at: usize) {
    if line.is_empty() {
        return;
    }
    let file = block.file.clone();
    let (key, value) = line
        .split_once(": ")
        .unwrap_or_else(|| panic!("{file}:{at}: expected `key: value`, got {line:?}"));
    match key {
        "setup" => block.steps.push(Step::Setup(value.to_owned())),
        "daemon" => block.steps.push(Step::Daemon(value.to_owned())),
        "until" => {
            let (n, text) = value
                .split_once(' ')
                .and_then(|(n, text)| Some((n.parse().ok()?, text.to_owned())))
                .unwrap_or_else(|| panic!("{file}:{at}: expected `until: N TEXT`"));
            block.until = Some((n, text));
        }
        "meanwhile" => block.meanwhile.push(value.to_owned()),
        "meanwhile-after" => block.meanwhile_after = value.to_owned(),
        "redact" => block
            .redact
            .push(Regex::new(value).unwrap_or_else(|e| panic!("{file}:{at}: bad redact: {e}"))),
        "skip" => block.skip = Some(value.to_owned()),
        _ => {
            panic!("{file}:{at}: unknown directive `{key}` (setup, daemon, until, meanwhile, meanwhile-after, redact, skip)")
        }
    }
}

/// What changes from run to run, masked on both sides.
fn mask(line: &str, extra: &[Regex]) -> String {
    static FIXED: OnceLock<Vec<(Regex, &str)>> = OnceLock::new();
    let fixed = FIXED.get_or_init(|| {
        [
            (r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d", "[TIME]"),
            (
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d)",
                "[INSTANT]",
            ),
            (r#""start_time":\d+"#, r#""start_time":[N]"#),
            // A fault's id: its run (the start's instant, in ms) and a count.
            (r"\b\d{13}-\d+\b", "[ID]"),
        ]
        .into_iter()
        .map(|(re, to)| (Regex::new(re).unwrap(), to))
        .collect()
    });
    let mut line = line.trim_end().to_owned();
    for (re, to) in fixed {
        line = re.replace_all(&line, *to).into_owned();
    }
    for re in extra {
        line = re.replace_all(&line, "[..]").into_owned();
    }
    line
}

/// Whether `actual` is what `shown` shows, `...` standing for any number of lines.
fn matches(shown: &[String], actual: &[String]) -> bool {
    match shown.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "..." => {
            (0..=actual.len()).any(|skip| matches(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(a, more)| a == first && matches(rest, more)),
    }
}

/// The directory every block's working directory links to: the binary, the examples,
/// the test configs, and the plugins where the pages say they are. Made once.
fn prepared() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = util::temp_dir("readme");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        link_or_copy(&util::bin(), &dir.join("bin/nightmare-monkey"));
        copy_tree(&repo.join("examples"), &dir.join("examples"), &["target"]);
        copy_tree(
            &repo.join("tests/it/invalid_configs"),
            &dir.join("tests/it/invalid_configs"),
            &[],
        );
        // The report's mixed journal, which the guide draws.
        copy_tree(
            &repo.join("tests/it/report"),
            &dir.join("tests/it/report"),
            &[],
        );
        std::fs::copy(repo.join("Cargo.toml"), dir.join("Cargo.toml")).unwrap();
        for profile in ["release", "debug"] {
            let to = dir.join("target").join(profile);
            std::fs::create_dir_all(&to).unwrap();
            // The workspace's plugins, as `cargo build --release --workspace` leaves
            // them: not the procedural macros beside them, nor what another build put
            // in the same directory (`.ci/template`'s renamed copy).
            for name in workspace_cdylibs(&repo) {
                let path = util::lib_dir().join(&name);
                if path.exists() {
                    link_or_copy(&path, &to.join(&name));
                }
            }
        }
        for d in [
            "bin",
            "target",
            "target/release",
            "target/debug",
            "tests",
            "tests/it",
        ] {
            util::trusted_mode(&dir.join(d));
        }
        dir
    })
    .clone()
}

/// The `lib<name>.so` files the workspace's members build as cdylibs, from the root
/// manifest's `members` and each member's own.
fn workspace_cdylibs(repo: &Path) -> Vec<String> {
    let root = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap();
    let members = root
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .unwrap_or_default();
    let quoted = Regex::new(r#""([^"]+)""#).unwrap();
    let name = Regex::new(r#"(?m)^name = "([^"]+)""#).unwrap();
    quoted
        .captures_iter(members)
        .filter_map(|c| {
            let manifest = std::fs::read_to_string(repo.join(&c[1]).join("Cargo.toml")).ok()?;
            manifest.contains("cdylib").then(|| {
                format!(
                    "lib{}.so",
                    name.captures(&manifest).unwrap()[1].replace('-', "_")
                )
            })
        })
        .collect()
}

fn link_or_copy(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}

fn copy_tree(from: &Path, to: &Path, leave: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    util::trusted_mode(to);
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if leave.iter().any(|l| name == *l) {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&name), leave);
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// A single-quoted shell word.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script that runs `block` in its namespace, with markers the output is split by.
fn script(block: &Block) -> String {
    let mut s = String::from(
        r#"exec 2>&1
fail() { echo "@@@FAIL $*"; exit 1; }
ip link set lo up || fail "cannot bring up loopback (install iproute2)"
mount --bind "$PREP" /mnt && mount -t tmpfs -o mode=1777 tmpfs /tmp \
  && mount -t tmpfs -o mode=755 tmpfs /var/lib || fail "cannot mount"
mkdir -p /var/lib/nightmare-monkey /tmp/readme && cd /tmp/readme || fail "cannot make the directory"
for f in /mnt/*; do [ "$f" = /mnt/bin ] || ln -s "$f" .; done
export PATH=/mnt/bin:$PATH
unset STATE_DIRECTORY RUST_LOG RUST_BACKTRACE NIGHTMARE_MONKEY_TOKEN
export TZ=UTC
# curl as on a terminal: no progress meter (it shows one when its output is a pipe).
mkdir /tmp/.home && printf 'silent\nshow-error\n' > /tmp/.home/.curlrc && export HOME=/tmp/.home
mkfifo /tmp/.tick && exec 9<>/tmp/.tick
# Waits, forking nothing (the monkey may be choosing among these processes), until
# file $1 holds text $3 $2 times.
nm_wait() {
  local i c rest
  for ((i = 0; i < 600; i++)); do
    c=; read -r -d '' c < "$1"
    rest=${c//"$3"/}
    (( (${#c} - ${#rest}) / ${#3} >= $2 )) && return 0
    read -t 0.05 -u 9
  done
  echo "@@@FAIL no $2 x \"$3\" within 30 s in $1:"; cat "$1"; exit 1
}
"#,
    );
    for (n, step) in block.steps.iter().enumerate() {
        match step {
            Step::Setup(line) => {
                s += &format!(
                    "eval {} >/tmp/.setup.log 2>&1 || {{ cat /tmp/.setup.log; fail \"setup: \"{}; }}\n",
                    quoted(line),
                    quoted(line)
                )
            }
            Step::Daemon(daemon) => {
                s += &format!(
                    "eval {} >/tmp/.daemon{n}.log 2>&1 &\nnm_wait /tmp/.daemon{n}.log 1 'Listening on'\n",
                    quoted(&format!("exec {daemon}"))
                )
            }
        }
    }
    // What the setup started in the background has become what it runs (a forked
    // shell is not left for the monkey to find in /proc, a moment before its exec).
    s += SETTLED;
    for (i, shown) in block.commands.iter().enumerate() {
        s += &format!("echo '@@@CMD {i}'\n");
        match &block.until {
            Some((n, text)) => {
                // A job of its own (set -m), so that SIGINT is not ignored in it and
                // goes to its whole process group, as the terminal's Ctrl-C does.
                s += &format!(
                    ": >/tmp/.fg.log\nset -m\neval {} >/tmp/.fg.log 2>&1 </dev/null &\npid=$!\nset +m\n",
                    quoted(&format!("exec {}", shown.command)),
                );
                if !block.meanwhile.is_empty() {
                    s += &format!(
                        "nm_wait /tmp/.fg.log 1 {}\n",
                        quoted(&block.meanwhile_after)
                    );
                }
                for line in &block.meanwhile {
                    s += &format!("eval {} >/dev/null 2>&1\n", quoted(line));
                }
                s += &format!(
                    "nm_wait /tmp/.fg.log {n} {}\nkill -INT -- -$pid; wait $pid; code=$?; cat /tmp/.fg.log\n",
                    quoted(text)
                );
            }
            None => s += &format!("eval {} </dev/null; code=$?\n", quoted(&shown.command)),
        }
        s += "printf '\\n@@@EXIT %d\\n' $code\n";
    }
    s
}

/// `lines`, cut to a screenful for a failure message.
fn shorten(lines: &[String]) -> String {
    if lines.len() <= 40 {
        return lines.join("\n");
    }
    format!(
        "{}\n[{} more lines]",
        lines[..40].join("\n"),
        lines.len() - 40
    )
}

/// Waits (forking nothing) until no child of the block's shell is a copy of it still.
const SETTLED: &str = r#"for ((i = 0; i < 200; i++)); do
  forked=; read -r -d '' kids < /proc/1/task/1/children
  for k in $kids; do read -r comm < /proc/$k/comm 2>/dev/null && [ "$comm" = bash ] && forked=1; done
  [ -z "$forked" ] && break
  read -t 0.01 -u 9
done
"#;

/// Runs `block`; `Err` says how it differs from its page.
fn run(block: &Block) -> Result<(), String> {
    let out = Command::new("timeout")
        .args([
            "--signal=KILL",
            "60",
            "unshare",
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount-proc",
            "--mount",
            "--net",
            "--kill-child",
            "bash",
            "-c",
            &script(block),
        ])
        .env("PREP", prepared())
        .current_dir("/")
        .output()
        .expect("timeout and unshare run (coreutils, util-linux)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let name = format!("{}:{}", block.file, block.line);
    if let Some(at) = text
        .find("\n@@@FAIL ")
        .or(text.starts_with("@@@FAIL ").then_some(0))
    {
        return Err(format!(
            "{name}: {}",
            text[at..].trim_start().trim_start_matches("@@@FAIL ")
        ));
    }
    let mut failures = Vec::new();
    for (i, shown) in block.commands.iter().enumerate() {
        let start = format!("@@@CMD {i}\n");
        let Some(from) = text.find(&start) else {
            return Err(format!("{name}: `{}` never ran:\n{text}", shown.command));
        };
        let rest = &text[from + start.len()..];
        let Some(end) = rest.find("\n@@@EXIT ") else {
            return Err(format!(
                "{name}: `{}` did not finish within 60 s:\n{}",
                shown.command,
                shorten(&rest.lines().map(str::to_owned).collect::<Vec<_>>())
            ));
        };
        let code: i32 = rest[end + 9..]
            .lines()
            .next()
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(-1);
        let raw: Vec<String> = rest[..end]
            .trim_end_matches('\n')
            .lines()
            .map(str::to_owned)
            .collect();
        let actual: Vec<String> = raw.iter().map(|l| mask(l, &block.redact)).collect();
        // `^C` is the terminal's echo of the reader's Ctrl-C, which the test sends.
        let expected: Vec<String> = shown
            .output
            .iter()
            .filter(|l| block.until.is_none() || *l != "^C")
            .map(|l| mask(l, &block.redact))
            .collect();
        let should_fail = shown.output.iter().any(|l| l.starts_with("error:"));
        // Interrupted, a command exits as its kind does on Ctrl-C (the daemon 0, the
        // sandbox with its command's status): the output says which.
        let code_differs = block.until.is_none() && should_fail != (code != 0);
        if !matches(&expected, &actual) || code_differs {
            failures.push(format!(
                "{name}: $ {}\n--- the page shows{}:\n{}\n--- it printed (exit {code}):\n{}",
                shown.command,
                if should_fail { " (a failure)" } else { "" },
                expected.join("\n"),
                shorten(&raw)
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n\n"))
    }
}

#[test]
fn the_readme_and_guide_console_examples_print_what_they_show() {
    let all: Vec<Block> = pages()
        .iter()
        .flat_map(|page| blocks(page, &read(page)))
        .collect();
    // The README's tour and the guide's chapters: a page that lost its blocks (a file
    // renamed, a fence mistyped) must not pass by running nothing.
    let on = |page: &str| all.iter().filter(|b| b.file == page).count();
    assert!(
        on("README.md") >= 5,
        "only {} console blocks in README.md",
        on("README.md")
    );
    for page in [
        "api",
        "configuration",
        "daemon",
        "drills",
        "faults",
        "fleet",
        "operations",
        "plugins",
        "safety",
    ] {
        let page = format!("doc/guide/{page}.md");
        assert!(on(&page) >= 1, "no console block in {page}");
    }
    assert!(all.len() >= 39, "only {} console blocks found", all.len());
    let skipped: Vec<String> = all
        .iter()
        .filter_map(|b| Some(format!("{}:{}: {}", b.file, b.line, b.skip.as_ref()?)))
        .collect();
    // Skipping is for what needs the world (the network); each skip says why.
    assert!(skipped.len() <= 2, "too many skipped blocks: {skipped:#?}");
    let queue = std::sync::Mutex::new(all.iter().filter(|b| b.skip.is_none()));
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let Some(block) = queue.lock().unwrap().next() else {
                    break;
                };
                if let Err(e) = run(block) {
                    failures.lock().unwrap().push(e);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} example(s) of the README and the guide differ from the binary:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_readme_matcher_takes_ellipses_and_masks_and_nothing_else() {
    let lines = |s: &str| s.lines().map(|l| mask(l, &[])).collect::<Vec<_>>();
    assert!(matches(&lines("a\n...\nd"), &lines("a\nb\nc\nd")));
    assert!(matches(&lines("a\n...\nd"), &lines("a\nd")));
    assert!(matches(&lines("..."), &lines("")));
    assert!(!matches(&lines("a\n...\nd"), &lines("a\nb\nc")));
    assert!(!matches(&lines("a\nb"), &lines("a\nb\nc")));
    assert!(!matches(&lines("a\nb\nc"), &lines("a\nb")));
    assert!(matches(
        &lines("2026/11/25 17:16:32 Seed: 7"),
        &lines("2027/01/02 03:04:05 Seed: 7")
    ));
    assert!(!matches(
        &lines("2026/11/25 17:16:32 Seed: 7"),
        &lines("2026/11/25 17:16:32 Seed: 8")
    ));
    let block = blocks(
        "test.md",
        "<!-- readme-test\nsetup: touch x\nuntil: 2 Next:\nredact: PID:\\d+\n-->\n```console\n$ a\nout\n$ b\n```\n",
    );
    assert_eq!(block.len(), 1);
    assert_eq!(block[0].steps, [Step::Setup("touch x".to_owned())]);
    assert_eq!(block[0].until, Some((2, "Next:".to_owned())));
    assert_eq!(block[0].commands.len(), 2);
    assert_eq!(block[0].commands[0].output, ["out"]);
    assert_eq!(mask("sleep(PID:12)", &block[0].redact), "sleep([..])");
}

#[test]
fn an_indented_console_block_is_refused_rather_than_skipped() {
    let refused =
        std::panic::catch_unwind(|| blocks("test.md", "- a list\n\n  ```console\n  $ a\n  ```\n"));
    let message = *refused.unwrap_err().downcast::<String>().unwrap();
    assert_eq!(
        message,
        "test.md:3: an indented ```console block is not run: unindent it, or show its output as ```text"
    );
}

mod links;
