//! Live sessions with tasks on other nodes, without a terminal: `-i` with more stdin than a
//! secret holds is streamed through a relay on the manager and the session overlay, sealed
//! end to end; what else is on that overlay can neither read nor inject.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn stdin_of_any_size_is_streamed_exactly() {
    // Services of their own: nothing_left must not see other tests' helpers.
    let svc = &Service::global();
    // 300 MB to a worker, through the relay; 50 MB to the manager's own task, attached.
    for (node, mb) in [("node2", 300), ("node1", 50)] {
        let script = format!(
            "head -c {mb}M /dev/urandom | tee >(sha256sum > \"$D/sent\") | \
             \"$SX\" task-exec -i {} sha256sum; rc=$?; sleep 1; cat \"$D/sent\"; exit $rc",
            svc.at(node)
        );
        let dir = std::env::temp_dir().join(format!("sx-stream-{}", unique_hex(8)));
        std::fs::create_dir_all(&dir).unwrap();
        let out = run(Command::new("bash")
            .args(["-c", &script])
            .env("SX", SWARM_EXEC)
            .env("D", &dir));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_exit(&out, 0);
        let shown = out.stdout_str();
        let sums: Vec<&str> = shown
            .lines()
            .map(|l| l.split_whitespace().next().unwrap_or_default())
            .collect();
        assert_eq!(sums.len(), 2, "{shown}");
        assert_eq!(
            sums[0], sums[1],
            "{node}: the command read other bytes than were sent"
        );
    }
    no_session_left(&svc.name);
}

#[test]
fn a_streamed_command_echoes_its_input_and_keeps_its_streams_and_code() {
    let svc = &Service::global();
    let input: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    // `cat` writes while it reads: neither end may wait on the other.
    let out = swarm_exec_stdin(
        &task_exec_args(
            &["-i"],
            &svc.at("node3"),
            &sh("cat; echo to-stderr >&2; exit 5"),
        ),
        &input,
    );
    assert_exit(&out, 5);
    assert!(
        out.stdout == input,
        "stdout: {} bytes, not the input",
        out.stdout.len()
    );
    assert_stderr_has(&out, "to-stderr");
    no_session_left(&svc.name);
}

/// Streamed stdin whose read fails part-way (here the other end of a TCP socket resets
/// it) is no success, though the command, seeing its input end, exits 0: 125, and stderr
/// says after how many bytes.
#[test]
fn stdin_that_breaks_off_is_no_success() {
    use std::io::Write;
    use std::os::fd::{AsRawFd, OwnedFd};
    let svc = &Service::global();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let watch = ours.try_clone().unwrap();
    let child = spawn_piped(
        Command::new(SWARM_EXEC)
            .args(task_exec_args(&["-i"], &svc.at("node2"), &["wc", "-c"]))
            .stdin(std::process::Stdio::from(OwnedFd::from(ours))),
    );
    // More than a secret holds, so it is streamed; all of it read by swarm-exec before
    // the reset (nothing left unread on its socket), so its read then fails.
    let sent = 1_500_000usize;
    peer.write_all(&vec![b'x'; sent]).unwrap();
    let start = Instant::now();
    loop {
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD into an int we own, on a socket we hold.
        assert_eq!(
            unsafe { libc::ioctl(watch.as_raw_fd(), libc::FIONREAD, &mut unread) },
            0
        );
        if unread == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "stdin not read: {unread} bytes left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: SO_LINGER with a linger we own: the close below then resets the connection.
    let set = unsafe {
        libc::setsockopt(
            peer.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0);
    drop(peer);
    drop(watch);
    let out = wait(child, Duration::from_secs(180));
    assert_exit(&out, 125);
    assert_stderr_has(&out, &format!("reading stdin failed after {sent} bytes"));
    assert_stderr_has(&out, "exit code is not given");
    // The command did run, on what it got: its count, but no code taken from it.
    assert_eq!(out.stdout_str().trim(), sent.to_string());
    no_session_left(&svc.name);
}

/// `-i` beyond a secret in a task on the client's own engine is an attached exec, without a
/// helper: its `--timeout` and a SIGINT stop the command and the child it daemonized too.
#[test]
fn a_streamed_command_on_the_clients_own_engine_is_stopped_at_its_timeout_or_signal() {
    let svc = &Service::global();
    let input = vec![b'y'; 700_000];
    for (how, code, n) in [("timeout", 124, 1), ("INT", 130, 2)] {
        let (daemon, main) = (format!("sleep 31{n}"), format!("sleep 32{n}"));
        let script =
            format!("cat >/dev/null; sh -c 'setsid {daemon} </dev/null >/dev/null 2>&1 &'; {main}");
        let opts: &[&str] = if how == "timeout" {
            &["-i", "--timeout", "8s"]
        } else {
            &["-i"]
        };
        let at = svc.at("node1");
        let child = spawn_swarm_exec_stdin(&task_exec_args(opts, &at, &sh(&script)), &input);
        let sleeps = [daemon.as_str(), main.as_str()];
        await_processes(svc.on("node1"), &sleeps);
        if how == "INT" {
            kill(&child, "INT");
        }
        let out = wait(child, Duration::from_secs(90));
        assert_eq!(out.code, code, "{how}: {}", out.stderr_str());
        assert!(
            !out.stderr_str().contains("warning"),
            "{how}: {}",
            out.stderr_str()
        );
        await_processes_gone(svc.on("node1"), &sleeps);
    }
    assert!(svc.helpers().is_empty());
}

/// A session stopped at any moment while it is being set up leaves nothing behind: also
/// when the signal comes while the relay, envelope or helper create is on its way to the
/// manager (which may make it after all). The interrupts sweep the moments around the
/// helper's create, as a first, traced session timed it (before the fix, 1 service and
/// secret in 61 such interrupts were left).
#[test]
fn a_session_interrupted_while_it_is_set_up_leaves_nothing() {
    let svc = &Service::global();
    let input = vec![b'z'; 700_000];
    let at = svc.at("node2");
    let args = task_exec_args(&["-i"], &at, &["wc", "-c"]);
    let traced = {
        let mut cmd = Command::new(SWARM_EXEC);
        cmd.args(&args)
            .env("SWARM_EXEC_LOG", "swarm_exec_core=debug")
            .env("NO_COLOR", "1");
        let mut child = spawn_piped(cmd.stdin(std::process::Stdio::piped()));
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, &input).unwrap();
        drop(stdin);
        wait(child, Duration::from_secs(120))
    };
    assert_exit(&traced, 0);
    // "   0.55s DEBUG … helper created …": when, from the start.
    let at_ms = traced
        .stderr_str()
        .lines()
        .find(|l| l.contains("helper created"))
        .and_then(|l| {
            l.split_whitespace()
                .next()?
                .trim_end_matches('s')
                .parse::<f64>()
                .ok()
        })
        .map(|s| (s * 1000.0) as u64)
        .unwrap_or_else(|| panic!("no traced helper create: {}", traced.stderr_str()));
    for ms in (at_ms.saturating_sub(60)..at_ms + 60).step_by(3) {
        let child = spawn_swarm_exec_stdin(&args, &input);
        std::thread::sleep(Duration::from_millis(ms));
        kill(&child, "INT");
        let out = wait(child, Duration::from_secs(60));
        // Interrupted (130); ended by the signal itself, before its handlers were there
        // (nothing made yet); or done before the signal came (0 and the count).
        match out.code {
            0 => assert_eq!(out.stdout_str().trim(), input.len().to_string()),
            130 | -1 => {}
            c => panic!("{ms} ms: exit {c}: {}", out.stderr_str()),
        }
        assert!(
            !out.stderr_str().contains("could not remove"),
            "{ms} ms: {}",
            out.stderr_str()
        );
    }
    no_session_left(&svc.name);
}

/// A container on the session overlay, removed when dropped.
struct OnOverlay(String);

impl Drop for OnOverlay {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

/// An overlay network of a test's, removed when dropped (after what is on it).
struct Network(String);

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.0]);
    }
}

/// Issue 26: thirty sessions in a row, to tasks on the two workers in turn (Docker 26 and
/// 20.10 on the lab), all open, print and exit as their commands do, each on a network of
/// its own that is gone when it ends. (On one network kept between sessions, one in ten
/// took 5 to 50 s to open, see the design document; the cap here is generous and the
/// figures are the benchmark's.)
#[test]
fn thirty_sessions_in_a_row_open_and_leave_nothing() {
    let svc = Service::global();
    let tasks = [svc.on("node2").id.clone(), svc.on("node3").id.clone()];
    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let task = &tasks[i % 2];
        let code = (i % 7).to_string();
        let script = format!("read line; cat >/dev/null; echo \"$line\" {i}; exit {code}");
        // More than a secret holds: streamed through a session.
        let mut input = format!("hello from {i}\n").into_bytes();
        input.resize(600_000, b'.');
        let start = Instant::now();
        let out = swarm_exec_stdin(&task_exec_args(&["-i"], task, &sh(&script)), &input);
        slowest = slowest.max(start.elapsed());
        assert_exit(&out, i32::try_from(i % 7).unwrap());
        assert_eq!(
            out.stdout_str(),
            format!("hello from {i} {i}\n"),
            "session {i}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "session {i} took {:?}",
            start.elapsed()
        );
    }
    eprintln!("thirty sessions: the slowest took {slowest:?}");
    no_session_left(&svc.name);
}

/// Issue 25: from another container on the session overlay, 500 connections that send
/// nothing, 20 that send a byte a second and 30 that send 64 KiB of garbage, opened as soon
/// as the relay listens: the session opening through them still pairs with its helper, the
/// strangers are sent nothing, and the command's input and output are exact.
#[test]
fn a_session_opens_through_a_flood_of_idle_and_slow_connections() {
    use std::io::BufRead as _;
    let svc = Service::replicated(3);
    // A worker's task: the session goes through the relay.
    let task = svc.on("node2").id.clone();
    // The session's network is the test's (--network), so that the flooding container can
    // be on it before the relay starts.
    let label = format!("{TEST_LABEL}=e2e");
    let network = Network(format!("sx-flood-{}", unique_hex(6)));
    docker_ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--attachable",
        "--label",
        &label,
        &network.0,
    ]);
    let flood = OnOverlay(format!("sx-flood-{}", unique_hex(6)));
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &flood.0,
        "--label",
        &label,
        "--network",
        &network.0,
        TARGET_IMAGE,
        "sleep",
        "300",
    ]);

    let input: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    let options = ["-v", "-i", "--network", &network.0];
    let mut child = spawn_swarm_exec_stdin(
        &task_exec_args(&options, &task, &sh("cat; echo done >&2; exit 3")),
        &input,
    );
    let stdout = read_in_background(child.stdout.take().unwrap());
    let mut stderr = String::new();
    let mut flooded = false;
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(ip) = line.split_once("relay started").and_then(|(_, rest)| {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix("ip="))
        }) {
            // Each connection's nc exit code: 0 once it connected (and the relay closed it),
            // 1 when refused (the relay stops listening once it has paired) or, started
            // after the relay is gone, when its connect timed out. Whatever the garbage
            // connections are sent goes to /tmp/got.
            let nc = format!("nc -w 3 {ip} 7373");
            let one = format!("({nc} >/dev/null 2>&1; echo $? >> /tmp/rc)");
            let script = format!(
                "touch /tmp/got; \
                 for i in $(seq 30); do (head -c 65536 /dev/urandom | {nc} >> /tmp/got 2>/dev/null; \
                 echo >> /tmp/garbage) & done; \
                 for i in $(seq 500); do sleep 60 | {one} & done; \
                 for i in $(seq 20); do (while :; do printf x; sleep 1; done) | {one} & done"
            );
            docker_ok(&["exec", "-d", &flood.0, "sh", "-c", &script]);
            flooded = true;
        }
        if line.contains("session open") {
            assert!(
                flooded,
                "the session opened before the flood began:\n{stderr}{line}"
            );
        }
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let status = child.wait().unwrap();
    let out = stdout.join().unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(
        out == input,
        "stdout is not exactly the input ({} bytes)",
        out.len()
    );
    assert!(stderr.contains("done\n"), "{stderr}");
    // With the relay gone every flooding connection has ended. Those that connected got in
    // while the relay listened, that is before the helper paired.
    let codes = eventually("the flood to end", Duration::from_secs(30), || {
        let rc = docker(&["exec", &flood.0, "cat", "/tmp/rc", "/tmp/garbage"]).stdout_str();
        (rc.lines().count() == 550).then_some(rc)
    });
    let got = docker_ok(&["exec", &flood.0, "wc", "-c", "/tmp/got"]);
    assert!(
        got.starts_with("0 "),
        "the relay sent a stranger something: {got}"
    );
    let connected = codes.lines().filter(|c| *c == "0").count();
    // (The garbage connections' lines are empty: their nc's code says nothing, as the relay
    // resets a connection it closes with bytes unread.)
    assert!(
        connected > 0,
        "no flooding connection reached the relay: {codes}"
    );
    eprintln!("flood: {connected} of 520 quiet connections reached the relay before it paired");
    drop(flood);
    no_session_left(&svc.name);
}

/// Issue 28: `--via session` brings a plain run's output through a live session instead of
/// the log: 50 MB of random bytes from a task on the Docker 20.10 worker arrive exact, with
/// the exit code and stderr apart; `-i`'s stdin, read whole, reaches the command.
#[test]
fn a_plain_run_via_session_brings_large_output_exact() {
    use sha2::{Digest, Sha256};
    let svc = Service::global();
    let task = svc.on("node3").id.clone();
    let script = "head -c 50000000 /dev/urandom > /tmp/sx-via; sha256sum < /tmp/sx-via >&2; \
                  cat /tmp/sx-via; rm /tmp/sx-via; exit 3";
    let out = wait(
        spawn_swarm_exec(&task_exec_args(&["--via", "session"], &task, &sh(script))),
        Duration::from_secs(300),
    );
    assert_exit(&out, 3);
    assert_eq!(out.stdout.len(), 50_000_000);
    let sum = format!("{:x}", Sha256::digest(&out.stdout));
    assert_eq!(
        out.stderr_str().split_whitespace().next(),
        Some(sum.as_str()),
        "{}",
        out.stderr_str()
    );
    let out = swarm_exec_stdin(
        &task_exec_args(&["-i", "--via", "session"], &task, &["wc", "-c"]),
        vec![b'z'; 12_345],
    );
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str().trim(), "12345");
    no_session_left(&svc.name);
}
