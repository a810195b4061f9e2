//! The fault proxy (`proxies:` and the `net-proxy` fault), for real: each test runs the
//! daemon `--execute` in a user, network and PID namespace of its own
//! (`network::in_network_namespace`), with an upstream and clients written in Perl on
//! its loopback. Times are measured against a baseline taken in the same run, as
//! medians, so a busy machine moves both alike.

use std::fs;

use crate::{
    network::in_network_namespace,
    util::{in_namespace, monkey, pairs, Drill, TestDir},
};

/// Shell helpers: `echo_server PORT [SECONDS]` echoes every connection (each answer
/// that many seconds late); `blast PORT BYTES` sends
/// BYTES to every connection and closes it; `rtt ADDR N` makes N one-byte round trips
/// and prints their median and their shortest in microseconds; `talk ADDR [SECONDS]` sends `ping` and says
/// what came back (`got ping`, `closed`, `error (why)`, `silent`); `fetch ADDR` reads to
/// the end and prints the milliseconds and the bytes; `same ADDR BYTES` sends random
/// bytes through an echo and says whether they came back unchanged.
pub(crate) const PROXY_PRELUDE: &str = r#"
echo_server() { perl -MIO::Socket::INET -e '
  $SIG{CHLD} = "IGNORE";
  my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$ARGV[0]", Listen => 64, ReuseAddr => 1) or die "listen: $!";
  while (my $c = $l->accept) { if (!fork) { my $buf;
    while (my $n = sysread($c, $buf, 65536)) { select(undef, undef, undef, $ARGV[1]) if $ARGV[1];
      my $o = 0; $o += syswrite($c, $buf, $n - $o, $o) while $o < $n }
    exit 0 } close $c }' "$@" &
  n=0; until [ "$(tcp 127.0.0.1:$1)" = connected ] || [ $n -gt 200 ]; do n=$((n+1)); sleep 0.02; done; }
blast() { perl -MIO::Socket::INET -e '
  $SIG{CHLD} = "IGNORE";
  my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$ARGV[0]", Listen => 64, ReuseAddr => 1) or die "listen: $!";
  while (my $c = $l->accept) { if (!fork) { print $c ("x" x $ARGV[1]); close $c; exit 0 } close $c }' "$@" &
  n=0; until [ "$(tcp 127.0.0.1:$1)" = connected ] || [ $n -gt 200 ]; do n=$((n+1)); sleep 0.02; done; }
rtt() { perl -MIO::Socket::INET -MTime::HiRes=time -e '
  my ($to, $n) = @ARGV; my $s = IO::Socket::INET->new(PeerAddr => $to) or die "connect: $!";
  setsockopt($s, 6, 1, 1); my (@t, $buf);
  for (1..$n) { my $t0 = time; syswrite($s, "x"); sysread($s, $buf, 1) or die "closed"; push @t, (time - $t0) * 1e6 }
  @t = sort { $a <=> $b } @t; printf "%d %d\n", $t[$#t / 2], $t[0];' "$@"; }
talk() { perl -MIO::Socket::INET -MIO::Select -e '
  $SIG{PIPE} = "IGNORE";
  my $s = IO::Socket::INET->new(PeerAddr => $ARGV[0], Timeout => 3) or do { print "failed ($!)\n"; exit };
  syswrite($s, "ping\n"); my $buf;
  if (!IO::Select->new($s)->can_read($ARGV[1] // 5)) { print "silent\n"; exit }
  my $n = sysread($s, $buf, 64);
  print defined $n ? ($n ? "got $buf" : "closed\n") : "error ($!)\n";' "$@"; }
fetch() { perl -MIO::Socket::INET -MTime::HiRes=time -e '
  my $s = IO::Socket::INET->new(PeerAddr => $ARGV[0]) or die "connect: $!"; my ($buf, $got) = ("", 0); my $t = time;
  while (my $n = sysread($s, $buf, 65536)) { $got += $n } printf "%d %d\n", (time - $t) * 1000, $got;' "$1"; }
same() { perl -MIO::Socket::INET -e '
  my $s = IO::Socket::INET->new(PeerAddr => $ARGV[0]) or die "connect: $!";
  my $data = join "", map { chr(int(rand(256))) } 1..$ARGV[1];
  if (!fork) { print $s $data; shutdown($s, 1); exit 0 }
  my ($buf, $back) = ("", ""); $back .= $buf while sysread($s, $buf, 65536); wait;
  print $back eq $data ? "same\n" : "differ (" . length($back) . " bytes)\n";' "$@"; }
"#;

/// A drill config in `dir` with these proxies and faults (the maps' entries).
fn config(dir: &std::path::Path, proxies: &str, faults: &str) -> String {
    Drill::new(dir)
        .config(&format!(
            "proxies: {{ {proxies} }},\nfaults: {{ {faults} }}"
        ))
        .write()
}

fn numbers(stdout: &str, key: &str) -> Vec<i64> {
    pairs(stdout, key)
        .iter()
        .flat_map(|v| v.split_whitespace().map(|n| n.parse().unwrap_or(-1)))
        .collect()
}

/// A latency toxic of 100 ms on the way back adds 100 ms (within 5) to the round trip,
/// measured against the proxy without it; `status` shows it; the kill switch turns it
/// off, and the bytes pass unchanged afterwards. On a busy machine a process that
/// sleeps wakes late, by a different amount each time: the yardstick is an upstream
/// that itself answers 100 ms late (through the proxy, no toxic), measured in the same
/// run, and the 5 ms are held by the shortest round trips, the ones a busy machine
/// delayed least (the median may be up to 50 ms more than the yardstick's). The toxic
/// is never shorter than asked.
#[test]
fn the_latency_toxic_adds_its_delay_until_the_switch_turns_it_off() {
    let dir = TestDir::new("proxy-latency");
    let cfg = config(
        &dir,
        r#""db": (listen: "127.0.0.1:15432", upstream: "127.0.0.1:7000"),
           "late": (listen: "127.0.0.1:15433", upstream: "127.0.0.1:7003")"#,
        r#""slow-db": (plugin: "net-proxy", config: (proxy: "db", toxic: Latency(latency: "100ms"), duration: "10m"))"#,
    );
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
{PROXY_PRELUDE}
echo_server 7000
echo_server 7003 0.1
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
echo "direct $(rtt 127.0.0.1:7000 31)"
echo "base $(rtt 127.0.0.1:15432 31)"
echo "control $(rtt 127.0.0.1:15433 11)"
post $p /api/faults/slow-db '{{"desc":"slow database"}}' >/dev/null
echo "during $(rtt 127.0.0.1:15432 11)"
"$NM" status --url http://127.0.0.1:$p > {d}/status
post $p /api/pause '' >/dev/null
await 'Revert (pause): reverted' {d}/log
echo "after $(rtt 127.0.0.1:15432 31)"
echo "bytes $(same 127.0.0.1:15432 200000)"
kill -TERM $m; wait $m; echo "code $?""#
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    let status = fs::read_to_string(dir.join("status")).unwrap_or_default();
    // Each round trip's median, then its shortest.
    let at = |key, i: usize| numbers(&run.stdout, key).get(i).copied().unwrap_or(-1);
    let (direct, base, during, after) = (
        at("direct", 0),
        at("base", 0),
        at("during", 0),
        at("after", 0),
    );
    let control = at("control", 0);
    let context = format!("{}\n{}\n{log}", run.stdout, run.stderr);
    assert!(
        base > 0 && during > 0 && after > 0 && control > 0,
        "{context}"
    );
    let (base_min, during_min, control_min) = (at("base", 1), at("during", 1), at("control", 1));
    let (added, yardstick) = (during_min - base_min, control_min - base_min);
    assert!(
        (yardstick - 5_000..=yardstick + 5_000).contains(&added) && added >= 99_000,
        "the shortest round trip grew by {added} us (base {base_min}, an upstream 100 ms late: +{yardstick}): expected 100 ms +- 5 as this machine sleeps\n{context}"
    );
    let (added, yardstick) = (during - base, control - base);
    assert!(
        (99_000..=yardstick + 50_000).contains(&added),
        "the median round trip grew by {added} us (base {base}, direct {direct}, an upstream 100 ms late: +{yardstick})\n{context}"
    );
    assert!(
        after - base < 20_000,
        "after the revert {after} us against {base} before\n{context}"
    );
    assert_eq!(pairs(&run.stdout, "bytes"), ["same"], "{context}");
    assert!(
        status.contains("proxy db: 127.0.0.1:15432 -> 127.0.0.1:7000")
            && status.contains(": latency 100ms (downstream)"),
        "{status}"
    );
    assert!(
        log.contains("Proxy db: listening on 127.0.0.1:15432, forwarding to 127.0.0.1:7000"),
        "{log}"
    );
    assert!(
        log.contains("Revert (pause): reverted: turned off latency 100ms (downstream) on proxy db"),
        "{log}"
    );
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{context}");
}

/// `Down` refuses new connections until it is reverted (here when due); `ResetPeer`
/// resets; `Timeout` forwards nothing; after each, the proxy answers as before.
#[test]
fn down_reset_and_timeout_break_connections_each_its_way_and_go() {
    let dir = TestDir::new("proxy-down");
    let cfg = config(
        &dir,
        r#""db": (listen: "127.0.0.1:15432", upstream: "127.0.0.1:7000")"#,
        r#""down": (plugin: "net-proxy", config: (proxy: "db", toxic: Down, duration: "2s")),
           "reset": (plugin: "net-proxy", config: (proxy: "db", toxic: ResetPeer(timeout: "0s"), duration: "10m")),
           "timeout": (plugin: "net-proxy", config: (proxy: "db", toxic: Timeout(timeout: "0s"), direction: "both", duration: "10m"))"#,
    );
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
{PROXY_PRELUDE}
echo_server 7000
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
echo "before $(talk 127.0.0.1:15432)"
post $p /api/faults/down '{{"desc":"db down"}}' >/dev/null
echo "down $(tcp 127.0.0.1:15432)"
await 'Revert (due): reverted' {d}/log
echo "up $(talk 127.0.0.1:15432)"
post $p /api/faults/reset '{{"desc":"resets"}}' >/dev/null
echo "reset $(talk 127.0.0.1:15432)"
post $p /api/pause '' >/dev/null; await 'Revert (pause): reverted' {d}/log
post $p /api/resume '' >/dev/null
echo "unreset $(talk 127.0.0.1:15432)"
post $p /api/faults/timeout '{{"desc":"black hole"}}' >/dev/null
echo "timeout $(talk 127.0.0.1:15432 2)"
post $p /api/pause '' >/dev/null
n=0; until [ "$(grep -c 'Revert (pause): reverted' {d}/log)" -ge 2 ] || [ $n -gt 500 ]; do n=$((n+1)); sleep 0.02; done
echo "untimed $(talk 127.0.0.1:15432)"
kill -TERM $m; wait $m; echo "code $?""#
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    let context = format!("{}\n{}\n{log}", run.stdout, run.stderr);
    // Reset while connecting or at the first read, as the race goes: reset either way.
    let reset = pairs(&run.stdout, "reset");
    assert!(
        reset.len() == 1 && reset[0].ends_with("(Connection reset by peer)"),
        "{context}"
    );
    for (key, want) in [
        ("before", "got ping"),
        ("down", "failed (Connection refused)"),
        ("up", "got ping"),
        ("unreset", "got ping"),
        ("timeout", "silent"),
        ("untimed", "got ping"),
        ("code", "0"),
    ] {
        assert_eq!(pairs(&run.stdout, key), [want], "{key}\n{context}");
    }
}

/// `Bandwidth` at 100 KB/s makes 300,000 bytes take about 2.9 s, where they take a
/// fraction of a second without it.
#[test]
fn the_bandwidth_toxic_limits_the_rate() {
    let dir = TestDir::new("proxy-bandwidth");
    let cfg = config(
        &dir,
        r#""bulk": (listen: "127.0.0.1:15433", upstream: "127.0.0.1:7001")"#,
        r#""thin": (plugin: "net-proxy", config: (proxy: "bulk", toxic: Bandwidth(rate: 100), duration: "10m"))"#,
    );
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
{PROXY_PRELUDE}
blast 7001 300000
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
echo "base $(fetch 127.0.0.1:15433)"
post $p /api/faults/thin '{{"desc":"thin pipe"}}' >/dev/null
echo "during $(fetch 127.0.0.1:15433)"
kill -TERM $m; wait $m; echo "code $?""#
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    let context = format!("{}\n{}\n{log}", run.stdout, run.stderr);
    let (base, during) = (numbers(&run.stdout, "base"), numbers(&run.stdout, "during"));
    assert_eq!(
        (base.get(1), during.get(1)),
        (Some(&300_000), Some(&300_000)),
        "{context}"
    );
    assert!(base[0] < 1_500, "{context}");
    assert!(
        (2_400..=6_000).contains(&during[0]),
        "300,000 bytes at 100 KB/s took {} ms\n{context}",
        during[0]
    );
    assert!(
        log.contains("Revert (shutdown): reverted: turned off bandwidth 100 KB/s"),
        "{log}"
    );
}

/// A proxy whose upstream does not answer closes each client's connection, and the
/// log says so once for the outage (and once when the upstream is back).
#[test]
fn an_upstream_that_is_down_gives_closed_connections_and_one_line() {
    let dir = TestDir::new("proxy-upstream");
    let cfg = config(
        &dir,
        r#""gone": (listen: "127.0.0.1:15434", upstream: "127.0.0.1:7002")"#,
        r#""slow": (plugin: "net-proxy", config: (proxy: "gone", toxic: Latency(latency: "1ms")))"#,
    );
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
{PROXY_PRELUDE}
"$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log
for i in 1 2 3; do echo "closed $(talk 127.0.0.1:15434)"; done
echo_server 7002
echo "back $(talk 127.0.0.1:15434)"
kill -TERM $m; wait $m; echo "code $?""#
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    let context = format!("{}\n{}\n{log}", run.stdout, run.stderr);
    assert_eq!(pairs(&run.stdout, "closed"), ["closed"; 3], "{context}");
    assert_eq!(pairs(&run.stdout, "back"), ["got ping"], "{context}");
    assert_eq!(
        log.matches("proxy gone: cannot connect to upstream 127.0.0.1:7002: Connection refused")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("proxy gone: upstream 127.0.0.1:7002 answers again")
            .count(),
        1,
        "{log}"
    );
}

/// The dry run says the exact toxic; check-config names every mistake of `proxies:`
/// and of a net-proxy fault at its place.
#[test]
fn a_dry_run_says_the_toxic_and_check_config_the_mistakes() {
    let dir = TestDir::new("proxy-check");
    let cfg = config(
        &dir,
        r#""db": (listen: "127.0.0.1:15432", upstream: "10.0.0.5:5432")"#,
        r#""slow-db": (plugin: "net-proxy", config: (proxy: "db", toxic: Latency(latency: "100ms", jitter: "10ms"), direction: "both", duration: "2m"))"#,
    );
    let run = monkey(&[
        "kill", "--config", &cfg, "--fault", "slow-db", "--seed", "7",
    ]);
    assert!(
        run.stdout.contains("(Dryrun) Toxic: would turn on latency 100ms ± 10ms (both ways) on proxy db (127.0.0.1:15432 -> 10.0.0.5:5432) for 2m - by monkey"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    let bad = config(
        &dir,
        r#""db": (listen: "127.0.0.1:15432", upstream: "10.0.0.5:5432"),
           "db2": (listen: "localhost:1", upstream: "10.0.0.5:5432"),
           "db3": (listen: "127.0.0.1:15432", upstream: "10.0.0.6:5432"),
           "db4": (listen: "127.0.0.1:15433", upstream: "10.0.0.5")"#,
        r#""typo": (plugin: "net-proxy", config: (proxy: "dbx", toxic: Down)),
           "way": (plugin: "net-proxy", config: (proxy: "db", toxic: Down, direction: "upstream"))"#,
    );
    let run = monkey(&["check-config", &bad]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    for want in [
        "proxy `db4`: upstream `10.0.0.5`: expected a host or an address and a port",
        "proxy `db2`: listen `localhost:1`: expected an IP address and a port",
        "proxy `db3` listens on 127.0.0.1:15432, as proxy `db` does",
        "proxy `dbx`: no such proxy (declared: db)",
        "direction: down acts on the whole proxy; leave direction out",
    ] {
        assert!(run.stderr.contains(want), "{want}\n{}", run.stderr);
    }
}

/// check-config warns of a proxy listening beyond loopback (other hosts reach it, and
/// its upstream through it), and of none on loopback.
#[test]
fn check_config_warns_of_a_proxy_reachable_from_other_hosts() {
    let dir = TestDir::new("proxy-exposed");
    let cfg = config(
        &dir,
        r#""db": (listen: "127.0.0.1:15432", upstream: "10.0.0.5:5432"),
           "web": (listen: "0.0.0.0:18081", upstream: "10.0.0.6:80")"#,
        r#""slow-db": (plugin: "net-proxy", config: (proxy: "db", toxic: Down))"#,
    );
    let run = monkey(&["check-config", &cfg]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let warnings: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("warning: proxy"))
        .collect();
    assert_eq!(
        warnings,
        ["  warning: proxy `web` listens on 0.0.0.0:18081: it is reachable from other hosts, and through it so is 10.0.0.6:80 (listen on 127.0.0.1 unless they are to use it)"],
        "{}",
        run.stdout
    );
}

/// Under a limit of open files the API and the reserve take whole (700: the API lowers
/// its 512 connections to 444, and 256 are kept for the reverts), nothing is left for
/// the proxies' connections: the start is refused, naming the limit, rather than
/// listening and accepting no one. Under 1,024 a client gets through.
#[test]
fn a_limit_of_open_files_that_leaves_the_proxies_nothing_stops_the_start() {
    let dir = TestDir::new("proxy-nofile");
    let cfg = config(
        &dir,
        r#""db": (listen: "127.0.0.1:15432", upstream: "127.0.0.1:7000")"#,
        r#""process-kill": ()"#,
    );
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
{PROXY_PRELUDE}
echo_server 7000
(ulimit -n 700; exec timeout 10 "$NM" --config {cfg} 2>{d}/log); echo "code $?"
(ulimit -n 1024; exec "$NM" --config {cfg} 2>{d}/log2) & m=$!
await Listening {d}/log2
echo "then $(talk 127.0.0.1:15432)"
kill -TERM $m; wait $m"#
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert_eq!(pairs(&run.stdout, "code"), ["2"], "{}\n{log}", run.stderr);
    assert!(
        log.contains("error: proxies: the limit of open files is 700: the API's 444 connections and the 256 descriptors kept for reverts, plugins and the journal leave none for the proxies' connections (6 descriptors each); raise it (LimitNOFILE=, ulimit -n) or lower http.max_connections"),
        "{log}"
    );
    assert_eq!(pairs(&run.stdout, "then"), ["got ping"], "{}", run.stderr);
}

/// A listen address another program holds stops the start with one line naming it.
#[test]
fn a_listen_address_in_use_stops_the_start() {
    let dir = TestDir::new("proxy-taken");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = config(
        &dir,
        &format!(r#""db": (listen: "127.0.0.1:{port}", upstream: "127.0.0.1:5432")"#),
        r#""process-kill": ()"#,
    );
    let run = monkey(&["--config", &cfg]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "error: proxy db: cannot listen on 127.0.0.1:{port}: the address is in use"
        )),
        "{}",
        run.stderr
    );
}

/// A SIGHUP whose configuration adds a proxy on an address another program holds is
/// refused, naming it, and the daemon runs on with its proxy; once the address is free
/// the same SIGHUP restarts with both.
#[test]
fn a_sighup_with_a_taken_listen_address_is_refused() {
    let dir = TestDir::new("proxy-sighup");
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (up, new) = (
        upstream.local_addr().unwrap(),
        taken.local_addr().unwrap().port(),
    );
    // Kept for the daemon's proxy to take (a port let go may be any other test's next).
    let reserved = crate::util::ReservedPort::reserve();
    let listen = reserved.addr();
    let db = format!(r#""db": (listen: "{listen}", upstream: "{up}")"#);
    let cfg = config(&dir, &db, r#""process-kill": ()"#);
    let mut d = crate::util::Daemon::start(&["--config", &cfg]);
    let port = d.port();
    let both = format!(r#"{db}, "new": (listen: "127.0.0.1:{new}", upstream: "{up}")"#);
    assert_eq!(config(&dir, &both, r#""process-kill": ()"#), cfg);
    d.signal("HUP");
    d.wait_for(|l| l.contains("not applied. Running on unchanged."));
    let refused = format!(
        "warning: SIGHUP: proxy new: cannot listen on 127.0.0.1:{new}: the address is in use"
    );
    assert!(
        d.log.iter().any(|l| l.starts_with(&refused)),
        "{:#?}",
        d.log
    );
    // The daemon and its proxy run on.
    let healthy = crate::util::http(port, "GET", "/healthz", &[], b"");
    assert_eq!(healthy.status, 200);
    let _client = std::net::TcpStream::connect(listen).unwrap();
    upstream.accept().expect("the proxy forwards");

    drop(taken);
    d.signal("HUP");
    d.wait_for(|l| l.starts_with(&format!("Proxy new: listening on 127.0.0.1:{new}")));
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{:#?}", d.log);
}

/// A SIGHUP that widens a proxy from 127.0.0.1 to 0.0.0.0 on the same port is applied
/// (the daemon's own proxy holds the port until the restart lets go of it), while one
/// whose port another program holds on another address is refused, naming that
/// program's address and not the daemon's own proxy.
#[test]
fn a_sighup_widens_a_proxy_on_its_own_port_unless_another_program_holds_it() {
    let dir = TestDir::new("proxy-widen");
    let cfg = config(
        &dir,
        r#""db": (listen: "127.0.0.1:15432", upstream: "127.0.0.1:7000"),
           "b": (listen: "127.0.0.1:15433", upstream: "127.0.0.1:7000")"#,
        r#""process-kill": ()"#,
    );
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
{PROXY_PRELUDE}
echo_server 7000
perl -MIO::Socket::INET -e 'my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.2:15433", Listen => 1) or die "listen: $!"; sleep 60' &
n=0; until [ "$(tcp 127.0.0.2:15433)" = connected ] || [ $n -gt 200 ]; do n=$((n+1)); sleep 0.02; done
"$NM" --config {cfg} 2>{d}/log & m=$!
await Listening {d}/log
sed -i 's/"127.0.0.1:1543/"0.0.0.0:1543/' {cfg}
kill -HUP $m
await 'not applied. Running on unchanged.' {d}/log
sed -i 's/"0.0.0.0:15433"/"127.0.0.1:15433"/' {cfg}
kill -HUP $m
await 'Proxy db: listening on 0.0.0.0:15432' {d}/log
echo "widened $(talk 127.0.0.3:15432)"
kill -TERM $m; wait $m; echo "code $?""#
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    let refused: Vec<&str> = log
        .lines()
        .filter_map(|l| l.find("warning: SIGHUP: proxy").map(|at| &l[at..]))
        .collect();
    assert_eq!(
        refused,
        ["warning: SIGHUP: proxy b: cannot listen on 0.0.0.0:15433: another program listens on 127.0.0.2:15433; choose another listen address or stop it"],
        "{log}"
    );
    assert_eq!(
        pairs(&run.stdout, "widened"),
        ["got ping"],
        "{}\n{log}",
        run.stderr
    );
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{log}");
}

/// An upstream named by a host name that resolves to the proxy's own listen address
/// (here through an `/etc/hosts` of the test's own, bind-mounted in its mount
/// namespace) is a loop as the address itself is: refused by check-config and by a
/// start, saying what the name resolved to. A name that resolves elsewhere passes.
#[test]
fn an_upstream_name_that_resolves_to_the_listen_address_is_refused() {
    let dir = TestDir::new("proxy-name-loop");
    fs::write(
        dir.join("hosts"),
        "127.0.0.1 localhost\n127.0.0.1 db.test\n10.0.0.7 other.test\n",
    )
    .unwrap();
    let cfg = config(
        &dir,
        r#""db": (listen: "127.0.0.1:15432", upstream: "db.test:15432"),
           "ok": (listen: "127.0.0.1:15433", upstream: "other.test:15433")"#,
        r#""process-kill": ()"#,
    );
    let d = dir.display();
    let run = in_namespace(&format!(
        r#"
mount --bind {d}/hosts /etc/hosts || exit 1
"$NM" check-config {cfg} 2>{d}/check; echo "check $?"
timeout 30 "$NM" --config {cfg} 2>{d}/start; echo "start $?""#
    ));
    let (check, start) = (
        fs::read_to_string(dir.join("check")).unwrap_or_default(),
        fs::read_to_string(dir.join("start")).unwrap_or_default(),
    );
    let context = format!("{}\n{}\n{check}\n{start}", run.stdout, run.stderr);
    assert_eq!(pairs(&run.stdout, "check"), ["2"], "{context}");
    assert_eq!(pairs(&run.stdout, "start"), ["2"], "{context}");
    let want = "proxy `db` forwards to db.test:15432 (which resolves to 127.0.0.1), its own listen address: a loop; expected the address of the real service";
    for said in [&check, &start] {
        assert!(said.contains(want), "{context}");
        assert_eq!(said.matches("a loop").count(), 1, "{context}");
    }
}

/// Clients that hold a proxy's connections open never take the descriptors the API and
/// the reverts need: under a tight limit of open files, the proxies stop accepting at
/// their share (said once), and `/healthz` and the kill switch still answer.
#[test]
fn idle_clients_of_a_proxy_never_starve_the_api() {
    let dir = TestDir::new("proxy-files");
    let cfg = config(
        &dir,
        r#""db": (listen: "127.0.0.1:15435", upstream: "127.0.0.1:7003")"#,
        r#""slow": (plugin: "net-proxy", config: (proxy: "db", toxic: Latency(latency: "1ms")))"#,
    );
    let d = dir.display();
    let run = in_network_namespace(&format!(
        r#"
{PROXY_PRELUDE}
perl -MIO::Socket::INET -e '
  my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:7003", Listen => 1024, ReuseAddr => 1) or die "listen: $!";
  my @held; while (my $c = $l->accept) {{ push @held, $c }}' &
prlimit --nofile=1024:1024 -- "$NM" --config {cfg} --execute 2>{d}/log & m=$!
await Listening {d}/log; p=$(port {d}/log)
perl -MIO::Socket::INET -e '
  my @held; for (1..400) {{ my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:15435", Timeout => 2); push @held, $c if $c }}
  print "clients ", scalar(@held), "\n"; sleep 1000' > {d}/clients & c=$!
await 'connections open, its most' {d}/log
echo "healthz $(curl -s -m 5 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:$p/healthz)"
echo "pause $(curl -s -m 5 -o /dev/null -w '%{{http_code}}' -X POST http://127.0.0.1:$p/api/pause)"
kill $c
kill -TERM $m; wait $m; echo "code $?""#
    ));
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    let context = format!("{}\n{}\n{log}", run.stdout, run.stderr);
    assert_eq!(pairs(&run.stdout, "healthz"), ["200"], "{context}");
    assert_eq!(pairs(&run.stdout, "pause"), ["200"], "{context}");
    assert_eq!(pairs(&run.stdout, "code"), ["0"], "{context}");
    assert!(!log.contains("cannot accept a connection"), "{log}");
}
