//! Network faults, for real: every test runs in a user, network and PID namespace of its
//! own (loopback only), where the daemon runs `--execute` and its nftables rules touch
//! nothing of this machine's. Traffic is UDP datagrams and TCP connections on `lo`,
//! sent and counted by Perl (`perl-base`, on every Debian).

mod report;
mod scoped;

use std::{fs, path::Path, process::Command};

use crate::{
    drill::PRELUDE,
    util::{self, monkey, pairs, Drill, Run, TestDir},
};

/// Shell helpers beside [`PRELUDE`]: `udp FROM TO N` sends N datagrams from one
/// loopback `addr:port` to another and prints how many arrived (the receiver is drained
/// after every send: nothing is lost to a full buffer); `tcp ADDR:PORT` tries to connect
/// (`connected`, or `failed` and why); `bulk PORT BYTES` sends BYTES over one TCP
/// connection on 127.0.0.1 and prints how many milliseconds until all arrived;
/// `listen PORT` accepts TCP connections on
/// 127.0.0.1 in the background; `table` says whether our table is there. Each runs in
/// the network namespace `$IN` enters (`IN="nsenter --net=/proc/PID/ns/net"`), or here.
const NET_PRELUDE: &str = r#"
udp() { $IN perl -MIO::Socket::INET -MIO::Select -e '
  my ($from, $to, $n) = @ARGV; my $buf; my $got = 0;
  my $rx = IO::Socket::INET->new(LocalAddr => $to, Proto => "udp") or die "bind $to: $!";
  my $tx = IO::Socket::INET->new(LocalAddr => $from, PeerAddr => $to, Proto => "udp") or die "bind $from: $!";
  $rx->blocking(0);
  for (1..$n) { $tx->send("x"); $got++ while defined $rx->recv($buf, 64) && length $buf; }
  my $sel = IO::Select->new($rx);
  while ($sel->can_read(0.3)) { last unless defined $rx->recv($buf, 64) && length $buf; $got++; }
  print "$got\n";' "$@"; }
tcp() { perl -MIO::Socket::INET -e '
  my $s = IO::Socket::INET->new(PeerAddr => $ARGV[0], Timeout => 2);
  print $s ? "connected\n" : "failed ($!)\n";' "$1"; }
listen() { perl -MIO::Socket::INET -e '
  my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$ARGV[0]", Listen => 16, ReuseAddr => 1) or die "listen: $!";
  while (my $c = $l->accept) { close $c }' "$1" & 
  n=0; until [ "$(tcp 127.0.0.1:$1)" = connected ] || [ $n -gt 200 ]; do n=$((n+1)); sleep 0.02; done; }
bulk() { $IN perl -MIO::Socket::INET -MTime::HiRes=time -e '
  my ($port, $n) = @ARGV; my $b;
  my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port", Listen => 1, ReuseAddr => 1) or die "listen: $!";
  my $pid = fork;
  if (!$pid) { my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
    my $t = time; print $c ("x" x $n); shutdown($c, 1); 1 while sysread($c, $b, 1);
    printf "%d\n", (time - $t) * 1000; exit 0 }
  my $s = $l->accept; 1 while sysread($s, $b, 65536); close $s; waitpid $pid, 0;' "$@"; }
table() { $IN nft list table inet nightmare_monkey >/dev/null 2>&1 && echo present || echo absent; }
"#;

/// Runs `script` (after [`PRELUDE`] and [`NET_PRELUDE`], loopback up) as PID 1 of a
/// fresh user, network and PID namespace, `$NM` naming the binary.
pub(crate) fn in_network_namespace(script: &str) -> Run {
    util::in_network_namespace(&[], &format!("{PRELUDE}{NET_PRELUDE}{script}"))
}

/// A drill config in `dir` (the shared header: every day and hour, no timer, the API on
/// a free loopback port) with these `faults` (the map's entries); its path.
fn config(dir: &Path, faults: &str) -> String {
    Drill::new(dir)
        .config(&format!("faults: {{ {faults} }}"))
        .write()
}

fn number(run: &Run, key: &str) -> u32 {
    let values = pairs(&run.stdout, key);
    values
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{key}` in\n{}\n{}", run.stdout, run.stderr))
}

/// net-loss of 30% on one UDP port, measured over 4,000 datagrams: within 3 points of
/// 30%; another port loses nothing, and nothing is lost before or after.
#[test]
fn net_loss_drops_its_share_of_the_matching_packets() {
    let dir = TestDir::new("net-loss");
    let cfg = config(
        &dir,
        r#""loss": (plugin: "net-loss", config: (percent: 30, protocol: "udp", ports: [9999], direction: "in", duration: "10m"))"#,
    );
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
echo "before $(udp 127.0.0.1:40000 127.0.0.1:9999 4000)"
post $p /api/faults/loss '{{"desc":"flaky link"}}'
echo "during $(udp 127.0.0.1:40000 127.0.0.1:9999 4000)"
echo "other $(udp 127.0.0.1:40001 127.0.0.1:9998 4000)"
post $p /api/pause ''
await 'Revert (pause): reverted' {d}/log
echo "after $(udp 127.0.0.1:40000 127.0.0.1:9999 4000)"
echo "table $(table)"
kill -TERM $m; wait $m; echo "code $?""#
    ));
    let (before, during, other, after) = (
        number(&run, "before"),
        number(&run, "during"),
        number(&run, "other"),
        number(&run, "after"),
    );
    let lost = 100.0 * f64::from(4000 - during) / 4000.0;
    assert!(
        (27.0..=33.0).contains(&lost),
        "lost {lost:.1}% of 4000 (expected 30 +- 3)\n{}\n{}",
        run.stdout,
        fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
    assert_eq!((before, other, after), (4000, 4000, 4000), "{}", run.stdout);
    assert_eq!(pairs(&run.stdout, "table"), ["absent"]);
    assert_eq!(pairs(&run.stdout, "code"), ["0"]);
}

/// net-partition from a peer (127.0.0.2, another loopback address): nothing passes
/// either way between it and this host's 127.0.0.1, while 127.0.0.1 to itself and the
/// daemon's own API (spared) still work. The host's own table is untouched.
#[test]
fn net_partition_drops_both_ways_and_nothing_else() {
    let dir = TestDir::new("net-partition");
    let cfg = config(
        &dir,
        r#""split": (plugin: "net-partition", config: (peers: ["127.0.0.2"], duration: "10m"))"#,
    );
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
nft -f - <<'EOF'
table inet host {{ chain input {{ type filter hook input priority 0; policy accept; udp dport 7777 counter accept; }} }}
EOF
nft list table inet host > {d}/host-before
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
listen 9997
post $p /api/faults/split '{{"desc":"split brain"}}'
echo "table $(table)"
echo "to_peer $(udp 127.0.0.1:40000 127.0.0.2:9999 500)"
echo "from_peer $(udp 127.0.0.2:40000 127.0.0.1:9999 500)"
echo "local $(udp 127.0.0.1:40001 127.0.0.1:9998 500)"
echo "tcp_local $(tcp 127.0.0.1:9997)"
echo "api $(curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:$p/api/status)"
kill -TERM $m; wait $m; echo "code $?"
echo "table $(table)"
nft list table inet host | diff - {d}/host-before && echo "host unchanged""#
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert_eq!(pairs(&run.stdout, "table"), ["present", "absent"], "{log}");
    assert_eq!(pairs(&run.stdout, "to_peer"), ["0"], "{}", run.stdout);
    assert_eq!(pairs(&run.stdout, "from_peer"), ["0"]);
    assert_eq!(pairs(&run.stdout, "local"), ["500"]);
    assert_eq!(pairs(&run.stdout, "tcp_local"), ["connected"]);
    assert_eq!(pairs(&run.stdout, "api"), ["200"]);
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{log}");
    assert!(run.stdout.contains("host unchanged"), "{}", run.stdout);
}

/// net-reject on a TCP port: a connection is refused at once (a reset), where a
/// partition would leave it hanging; when due, the port answers again.
#[test]
fn net_reject_resets_connections_until_due() {
    let dir = TestDir::new("net-reject");
    let cfg = config(
        &dir,
        r#""refuse": (plugin: "net-reject", config: (protocol: "tcp", ports: [9997], duration: "3s"))"#,
    );
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
listen 9997
post $p /api/faults/refuse '{{"desc":"connection refused"}}'
echo "during $(tcp 127.0.0.1:9997)"
await 'Revert (due): reverted' {d}/log
echo "after $(tcp 127.0.0.1:9997)"
echo "table $(table)"
kill -TERM $m; wait $m; echo "code $?""#
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert_eq!(
        pairs(&run.stdout, "during"),
        ["failed (Connection refused)"],
        "{}\n{log}",
        run.stdout
    );
    assert_eq!(pairs(&run.stdout, "after"), ["connected"], "{log}");
    assert_eq!(pairs(&run.stdout, "table"), ["absent"]);
    assert_eq!(pairs(&run.stdout, "code"), ["0"]);
}

/// A daemon killed outright leaves its rules in effect; the next start removes them
/// from the journal (the chains were journaled before they were applied).
#[test]
fn rules_left_by_a_killed_daemon_are_removed_by_the_next_start() {
    let dir = TestDir::new("net-crash");
    let cfg = config(
        &dir,
        r#""loss": (plugin: "net-loss", config: (percent: 100, protocol: "udp", ports: [9999], duration: "10m"))"#,
    );
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
"$NM" --config {cfg} --execute 2>{d}/log1 & m=$!
await Listening {d}/log1; p=$(port {d}/log1)
post $p /api/faults/loss '{{"desc":"crash"}}' >/dev/null
kill -KILL $m; wait $m
echo "crashed $(table) $(udp 127.0.0.1:40000 127.0.0.1:9999 200)"
"$NM" --config {cfg} --execute 2>{d}/log2 & m=$!
await 'Revert (recovery): reverted' {d}/log2
echo "recovered $(table) $(udp 127.0.0.1:40000 127.0.0.1:9999 200)"
kill -TERM $m; wait $m; echo "code $?""#
    ));
    let log = fs::read_to_string(dir.join("log2")).unwrap_or_default();
    assert_eq!(
        pairs(&run.stdout, "crashed"),
        ["present 0"],
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(pairs(&run.stdout, "recovered"), ["absent 200"], "{log}");
    assert!(
        log.contains("Revert (recovery): reverted: removed chains loss_"),
        "{log}"
    );
    assert_eq!(pairs(&run.stdout, "code"), ["0"]);
}

/// The dry run (`kill --fault NAME`, no namespace needed: nothing is applied) says the
/// exact script nft would run.
#[test]
fn a_dry_run_prints_the_exact_rules() {
    let run = monkey(&[
        "kill",
        "--fault",
        "net-partition",
        "--fault-config",
        r#"(protocol: "tcp", ports: [5432], direction: "out")"#,
        "--seed",
        "7",
        "--json",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let answer: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(answer["result"], "dry-run");
    let script = answer["details"]["nft"].as_str().unwrap();
    let chain = answer["details"]["chains"][0].as_str().unwrap();
    assert_eq!(
        script.lines().last(),
        Some(
            format!("add rule inet nightmare_monkey {chain} meta l4proto tcp th sport 5432 drop")
                .as_str()
        )
    );
    assert!(
        answer["summary"]
            .as_str()
            .unwrap()
            .contains(&script.lines().collect::<Vec<_>>().join("; ")),
        "{answer}"
    );
    let unknown = monkey(&["kill", "--fault", "net-los"]);
    assert_eq!(unknown.code, Some(2));
    assert!(
        unknown
            .stderr
            .starts_with("error: --fault: no built-in fault is named `net-los` (built-in: "),
        "{}",
        unknown.stderr
    );
}

/// net-delay on a kernel without netem: refused by check-config, by a start and by an
/// injection (`kill --fault net-delay`, dry or `--execute`, in a network namespace of
/// the test's), each time naming the missing module and the way around it (the
/// net-proxy fault). On a kernel with netem the config is checked as any other, and
/// the fault is applied and measured instead ([`net_delay_with_netem`]).
#[test]
fn net_delay_without_netem_is_refused_saying_why() {
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net"])
        .args([
            "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ])
        .output()
        .expect("unshare runs");
    let dir = TestDir::new("net-delay");
    let cfg = config(
        &dir,
        r#""slow": (plugin: "net-delay", config: (delay: "100ms"))"#,
    );
    let run = monkey(&["check-config", &cfg]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    if probe.status.success() {
        assert!(
            run.stderr.contains("interface is required"),
            "{}",
            run.stderr
        );
        eprintln!("this kernel has netem: net-delay is applied and measured, not refused");
        return net_delay_with_netem(&dir);
    }
    let said = String::from_utf8_lossy(&probe.stderr);
    assert!(
        said.contains("qdisc kind is unknown"),
        "the netem probe (unshare ... tc qdisc add dev lo root netem) failed for another reason: {said}"
    );
    let d = dir.display();
    let fault = r#"--fault net-delay --fault-config '(interface: "lo", delay: "100ms")'"#;
    let refused = in_network_namespace(&format!(
        r#"
timeout 30 "$NM" --config {cfg} --execute 2>{d}/start; echo "start $?"
"$NM" kill {fault} 2>{d}/dry; echo "dry $?"
"$NM" kill --execute --journal {d}/journal.jsonl {fault} 2>{d}/execute; echo "execute $?"
echo "qdisc $(tc qdisc show dev lo | cut -d' ' -f2)""#
    ));
    let said = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
    let context = format!("{}\n{}", refused.stdout, refused.stderr);
    for (name, stderr) in [
        ("check-config", run.stderr),
        ("start", said("start")),
        ("dry", said("dry")),
        ("execute", said("execute")),
    ] {
        for want in [
            "net-delay needs the kernel's netem queueing discipline (module sch_netem), which this kernel lacks",
            "modprobe sch_netem",
            "the net-proxy fault with toxic Latency",
        ] {
            assert!(stderr.contains(want), "{name}: {want}\n{stderr}\n{context}");
        }
    }
    for key in ["start", "dry", "execute"] {
        assert_eq!(pairs(&refused.stdout, key), ["2"], "{key}\n{context}");
    }
    assert_eq!(pairs(&refused.stdout, "qdisc"), ["noqueue"], "{context}");
}

/// On a kernel with netem: net-delay of 50 ms on `lo` in the test's network namespace.
/// A one-byte TCP echo over loopback crosses `lo` twice (the byte, then its echo), so
/// its median round trip grows by twice the delay (never less; at most 50 ms more on
/// a busy machine); the kill switch removes our netem, `lo` has its own qdisc again and
/// the round trip its old length.
fn net_delay_with_netem(dir: &Path) {
    let cfg = config(
        dir,
        r#""slow": (plugin: "net-delay", config: (interface: "lo", delay: "50ms", duration: "10m"))"#,
    );
    let checked = monkey(&["check-config", &cfg]);
    assert_eq!(checked.code, Some(0), "{}", checked.stderr);
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
{}
echo_server 7000
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
echo "before $(rtt 127.0.0.1:7000 11)"
post $p /api/faults/slow '{{"desc":"slow link"}}' >/dev/null
echo "qdisc $(tc qdisc show dev lo | cut -d' ' -f2,3)"
echo "during $(rtt 127.0.0.1:7000 11)"
post $p /api/pause '' >/dev/null
await 'Revert (pause): reverted' {d}/log
echo "qdisc $(tc qdisc show dev lo | cut -d' ' -f2,3)"
echo "after $(rtt 127.0.0.1:7000 11)"
kill -TERM $m; wait $m; echo "code $?""#,
        crate::proxy::PROXY_PRELUDE
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    let context = format!("{}\n{}\n{log}", run.stdout, run.stderr);
    // `rtt` prints the median and the shortest of its round trips: the shortest, the one
    // a busy machine delayed least, holds the bounds.
    let shortest = |key: &str| -> u32 {
        let said = pairs(&run.stdout, key);
        said.first()
            .and_then(|v| v.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{key}` round trips in\n{context}"))
    };
    let (before, during, after) = (shortest("before"), shortest("during"), shortest("after"));
    // Microseconds: 2 x 50 ms more, give or take how late a busy machine wakes.
    let added = during.saturating_sub(before);
    assert!(
        (100_000..=150_000).contains(&added),
        "the round trip grew by {added} us (before {before}, during {during}): expected 100 ms, twice the delay\n{context}"
    );
    assert!(
        after < before + 20_000,
        "after the revert {after} us against {before} before\n{context}"
    );
    assert_eq!(
        pairs(&run.stdout, "qdisc"),
        ["netem 4e4d:", "noqueue 0:"],
        "{context}"
    );
    assert!(
        log.contains("Revert (pause): reverted: removed the netem qdisc 4e4d: of lo"),
        "{context}"
    );
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{context}");
}

/// What [`strike_a_child`] saw: the script's lines, what `kill` printed and logged.
struct Struck {
    run: Run,
    out: String,
    log: String,
}

/// Runs, in the namespaces of [`in_network_namespace`] and those `more` asks for, a
/// child (`sleep 1000`, `$c`) in a network namespace of its own, then `setup`, then a
/// one-shot `kill --execute` of `fault` (`--fault NAME --fault-config ...`) until
/// Ctrl-C: `traffic` (a command printing what arrived) runs in the child's namespace
/// and in the parent's while the fault is on (`child`, `parent`: our table's presence
/// and what arrived), and in the child's after (`reverted`).
fn strike_a_child(dir: &Path, more: &[&str], setup: &str, fault: &str, traffic: &str) -> Struck {
    let d = dir.display();
    let run = util::in_network_namespace(
        more,
        &format!(
            r#"{PRELUDE}{NET_PRELUDE}
unshare --net sh -c 'ip link set lo up && exec sleep 1000' & c=$!
until [ "$(readlink /proc/$c/ns/net)" != "$(readlink /proc/self/ns/net)" ] \
  && nsenter --net=/proc/$c/ns/net ip link show lo 2>/dev/null | grep -q UP; do sleep 0.02; done
echo "child_pid $c"
{setup}
set -m
"$NM" kill --execute --journal {d}/journal.jsonl {fault} 2>{d}/log >{d}/out & k=$!
set +m
await 'Reverting at' {d}/log
IN="nsenter --net=/proc/$c/ns/net"
echo "child $(table) $({traffic})"
IN=
echo "parent $(table) $({traffic})"
kill -INT $k; wait $k; echo "code $?"
IN="nsenter --net=/proc/$c/ns/net"
echo "reverted $(table) $({traffic})""#
        ),
    );
    Struck {
        run,
        out: fs::read_to_string(dir.join("out")).unwrap_or_default(),
        log: fs::read_to_string(dir.join("log")).unwrap_or_default(),
    }
}

impl Struck {
    /// The child's namespace was struck (nothing of `sent` arrived) and the parent's
    /// not, the fault said in which namespace it was, and Ctrl-C removed `chains`.
    fn only_the_child(&self, sent: &str, chains: &str) {
        let Struck { run, out, log } = self;
        assert_eq!(
            pairs(&run.stdout, "child"),
            ["present 0"],
            "{}\n{}\n{out}\n{log}",
            run.stdout,
            run.stderr
        );
        assert_eq!(pairs(&run.stdout, "parent"), [format!("absent {sent}")]);
        assert_eq!(pairs(&run.stdout, "code"), ["0"], "{log}");
        assert_eq!(
            pairs(&run.stdout, "reverted"),
            [format!("absent {sent}")],
            "{log}"
        );
        let child = pairs(&run.stdout, "child_pid");
        assert!(
            out.contains(&format!("in the network namespace of PID {}", child[0])),
            "{out}"
        );
        assert!(
            log.contains(&format!(
                "Revert (interrupted): reverted: removed chains {chains}"
            )),
            "{log}"
        );
    }
}

/// A fault scoped to a child's network namespace (`scope: Namespace(PID)`): its rules
/// are there and hit its traffic; the parent's namespace has no rule and loses nothing.
/// Ctrl-C (the one-shot `kill` reverts) removes them from the child's namespace.
#[test]
fn a_scoped_fault_strikes_the_childs_namespace_and_leaves_the_parents() {
    let dir = TestDir::new("net-scope");
    strike_a_child(
        &dir,
        &[],
        "",
        r#"--fault net-loss --fault-config "(percent: 100, protocol: \"udp\", ports: [9999], scope: Namespace($c))""#,
        "udp 127.0.0.1:40000 127.0.0.1:9999 300",
    )
    .only_the_child("300", "loss_");
}

/// `scope: Cgroup(PATH)`: the fault strikes the network namespace of the cgroup's
/// process (a container's), not the daemon's. The cgroup is the test's own: a child of
/// the test's cgroup, made in a cgroup namespace of its own whose cgroup2 hierarchy is
/// mounted on /sys/fs/cgroup in the test's mount namespace (what the daemon reads),
/// holding only the child; removed at the end.
#[test]
fn a_fault_scoped_to_a_cgroup_strikes_its_process_namespace_and_not_the_parents() {
    let dir = TestDir::new("net-cgroup");
    let group = format!("nm-it-net-{}", std::process::id());
    let setup = format!(
        r#"mount -t cgroup2 cgroup2 /sys/fs/cgroup || exit 1
mkdir /sys/fs/cgroup/{group} && echo $c > /sys/fs/cgroup/{group}/cgroup.procs || exit 1
trap 'kill $c; wait $c; n=0; until rmdir /sys/fs/cgroup/{group} || [ $n -gt 100 ]; do n=$((n+1)); sleep 0.05; done' EXIT"#
    );
    let struck = strike_a_child(
        &dir,
        &["--cgroup"],
        &setup,
        &format!(
            r#"--fault net-partition --fault-config "(peers: [\"127.0.0.2\"], scope: Cgroup(\"/{group}\"))""#
        ),
        "udp 127.0.0.1:40000 127.0.0.2:9999 300",
    );
    struck.only_the_child("300", "partition_");
    assert!(
        struck.out.contains("127.0.0.2"),
        "{}\n{}",
        struck.out,
        struck.run.stderr
    );
}

/// net-bandwidth limits what `lo` sends to 4 Mbit/s: 1.5 MB take at least 2.7 s (3 s at
/// the rate, less one burst of 128 KiB), where they take milliseconds before and after;
/// a second such fault meanwhile is refused, saying the root qdisc is the monkey's;
/// the kill switch removes the qdisc, and `lo` has its own again. The `tc` the daemon
/// runs (a wrapper first on its `PATH` that notes its signal mask) starts with the stop
/// signals the daemon blocks unblocked.
#[test]
fn net_bandwidth_limits_the_rate_until_the_switch() {
    let dir = TestDir::new("net-bandwidth");
    let cfg = config(
        &dir,
        r#""slow": (plugin: "net-bandwidth", config: (interface: "lo", rate: "4mbit", duration: "10m")),
           "slower": (plugin: "net-bandwidth", config: (interface: "lo", rate: "1mbit", duration: "10m"))"#,
    );
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
real=$(command -v tc || echo /usr/sbin/tc); mkdir {d}/bin
# Builtins only: a shell blocks every signal while it forks a command.
printf '#!/bin/sh\nwhile read -r k v; do [ "$k" = SigBlk: ] && echo "$k $v" >>{d}/masks; done </proc/$$/status\nexec %s "$@"\n' "$real" >{d}/bin/tc
chmod +x {d}/bin/tc
PATH={d}/bin:$PATH "$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
echo "before $(bulk 9996 1500000)"
post $p /api/faults/slow '{{"desc":"thin pipe"}}' >/dev/null
echo "qdisc $(tc qdisc show dev lo | cut -d' ' -f2,3)"
echo "during $(bulk 9996 1500000)"
echo "second $(post $p /api/faults/slower '{{"desc":"thinner"}}')"
post $p /api/pause '' >/dev/null
await 'Revert (pause): reverted' {d}/log
echo "qdisc $(tc qdisc show dev lo | cut -d' ' -f2,3)"
echo "after $(bulk 9996 1500000)"
kill -TERM $m; wait $m; echo "code $?""#
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    let (before, during, after) = (
        number(&run, "before"),
        number(&run, "during"),
        number(&run, "after"),
    );
    assert!(
        during >= 2500,
        "{during} ms at 4mbit\n{}\n{log}",
        run.stdout
    );
    assert!(
        before < 1500 && after < 1500,
        "{before} and {after} ms unlimited"
    );
    assert_eq!(
        pairs(&run.stdout, "qdisc"),
        ["tbf 4e4d:", "noqueue 0:"],
        "{log}"
    );
    assert!(
        log.contains("Revert (pause): reverted: removed the tbf qdisc 4e4d: of lo"),
        "{log}"
    );
    let second = run
        .stdout
        .lines()
        .find(|l| l.starts_with("second "))
        .unwrap_or_default();
    assert!(
        second.contains("lo already has the monkey's tbf qdisc 4e4d: (another fault in effect there): net-bandwidth waits for its revert (nothing applied)"),
        "{second}\n{log}"
    );
    assert_eq!(pairs(&run.stdout, "code"), ["0"]);
    let masks = fs::read_to_string(dir.join("masks")).unwrap_or_default();
    let masks: Vec<u64> = masks
        .lines()
        .filter_map(|line| util::signal_mask(line, "SigBlk:"))
        .collect();
    // Added, then removed: at least two runs of tc by the daemon.
    assert!(masks.len() >= 2, "{masks:x?}\n{log}");
    assert!(
        masks.iter().all(|m| m & util::STOP_SIGNALS == 0),
        "tc blocks stop signals: {masks:x?}"
    );
}

/// Everything dropped (net-loss of 100%, no filter) but the daemon's API, spared: the
/// kill switch answers and ends the fault. With `spare_api: false` the API goes dark
/// too, and the pause file still ends it.
#[test]
fn the_api_is_spared_and_the_pause_file_works_when_it_is_not() {
    let dir = TestDir::new("net-spared");
    let cfg = config(
        &dir,
        r#""all": (plugin: "net-loss", config: (percent: 100, duration: "10m")),
           "dark": (plugin: "net-loss", config: (percent: 100, duration: "10m", spare_api: false))"#,
    );
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
api() {{ curl -s -m 2 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:$p/api/status; }}
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
post $p /api/faults/all '{{"desc":"blackout"}}' >/dev/null
echo "spared $(api) $(udp 127.0.0.1:40000 127.0.0.1:9999 100)"
post $p /api/pause '' >/dev/null
await 'Revert (pause): reverted' {d}/log
post $p /api/resume '' >/dev/null
echo "after $(table) $(udp 127.0.0.1:40000 127.0.0.1:9999 100)"
curl -s -m 2 -X POST http://127.0.0.1:$p/api/faults/dark -d '{{"desc":"dark"}}' >/dev/null
await 'Drop: dropping 100% of' {d}/log
echo "dark $(api)"
touch {d}/paused
n=0; until [ "$(table)" = absent ] || [ $n -gt 500 ]; do n=$((n+1)); sleep 0.02; done
echo "file $(table) $(api)"
kill -TERM $m; wait $m; echo "code $?""#
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert_eq!(
        pairs(&run.stdout, "spared"),
        ["200 0"],
        "{}\n{log}",
        run.stdout
    );
    assert_eq!(pairs(&run.stdout, "after"), ["absent 100"], "{log}");
    assert_eq!(pairs(&run.stdout, "dark"), ["000"], "{log}");
    assert_eq!(pairs(&run.stdout, "file"), ["absent 200"], "{log}");
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{log}");
}

/// A one-shot `kill --execute` of a network fault spares the API of the daemon its
/// config describes (the kill switch), though that daemon runs in another process (on
/// a journal of its own: the command's is another).
#[test]
fn a_one_shot_network_fault_spares_the_configured_daemons_api() {
    let dir = TestDir::new("net-oneshot-spared");
    let cfg = Drill::new(&dir)
        .set("http", r#"(listen: "127.0.0.1:18080")"#)
        .config(
            r#"faults: { "all": (plugin: "net-loss", config: (percent: 100, duration: "1m")) }"#,
        )
        .write();
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
api() {{ curl -s -m 2 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:18080/healthz; }}
"$NM" --config {cfg} 2>{d}/log & m=$!
await Listening {d}/log
echo "before $(api)"
"$NM" kill --config {cfg} --journal {d}/kill.jsonl --fault all --execute >{d}/kill.log 2>&1 & k=$!
await 'Reverting at' {d}/kill.log
echo "during $(api) $(udp 127.0.0.1:40000 127.0.0.1:9999 100)"
kill -INT $k; wait $k
kill -TERM $m; wait $m"#
    ));
    let log = fs::read_to_string(dir.join("kill.log")).unwrap_or_default();
    assert_eq!(pairs(&run.stdout, "before"), ["200"], "{}", run.stderr);
    assert_eq!(
        pairs(&run.stdout, "during"),
        ["200 0"],
        "{}\n{log}",
        run.stdout
    );
}

/// A scoped fault whose process is gone while something else still holds its network
/// namespace (here a descriptor, as a container engine's bind mount would) is reverted
/// there: its rules removed, never taken for gone with the namespace.
#[test]
fn a_scoped_fault_is_reverted_in_a_namespace_its_process_left() {
    let dir = TestDir::new("net-scope-held");
    let d = dir.display();
    let run = util::in_network_namespace(
        &[],
        &format!(
            r#"{PRELUDE}{NET_PRELUDE}
unshare --net sh -c 'ip link set lo up && exec sleep 1000' & c=$!
n=0; until [ "$(readlink /proc/$c/ns/net)" != "$(readlink /proc/self/ns/net)" ] \
  && nsenter --net=/proc/$c/ns/net ip link show lo 2>/dev/null | grep -q UP || [ $n -gt 500 ]; do n=$((n+1)); sleep 0.02; done
[ "$(readlink /proc/$c/ns/net)" != "$(readlink /proc/self/ns/net)" ] || {{ echo "no child namespace" >&2; exit 1; }}
exec 7</proc/$c/ns/net
"$NM" kill --execute --journal {d}/journal.jsonl --fault net-loss --fault-config "(percent: 100, protocol: \"udp\", ports: [9999], scope: Namespace($c))" 2>{d}/log >{d}/out & k=$!
await 'Reverting at' {d}/log
kill $c; wait $c
IN="nsenter --net=/proc/$$/fd/7"
echo "held $(table)"
kill -INT $k; wait $k; echo "code $?"
echo "reverted $(table)""#
        ),
    );
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert_eq!(
        pairs(&run.stdout, "held"),
        ["present"],
        "{}\n{log}",
        run.stderr
    );
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{log}");
    assert_eq!(pairs(&run.stdout, "reverted"), ["absent"], "{log}");
    assert!(
        log.contains("Revert (interrupted): reverted: removed chains loss_"),
        "{log}"
    );
}
