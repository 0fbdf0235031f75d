//! Live sessions, side by side with `docker exec`: the time to a session's first output,
//! the round trip of one keystroke, and streamed `-i` throughput. Sessions run on a
//! pseudo-terminal of the bench's own, as a user's would.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::Res;

/// A process on a pseudo-terminal of 40 × 100; what it prints comes through `rx`.
struct OnPty {
    child: Child,
    master: std::fs::File,
    rx: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl OnPty {
    fn spawn(cmd: &mut Command) -> Res<OnPty> {
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: 40,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty fills two fds we then own.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: fresh fds from openpty, owned from here on.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let child = cmd
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave))
            .spawn()?;
        let master = std::fs::File::from(master);
        let mut reader = master.try_clone()?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Ok(OnPty {
            child,
            master,
            rx,
            seen: Vec::new(),
        })
    }

    /// Waits until `needle` has been printed (since the last wait).
    fn wait_for(&mut self, needle: &[u8], limit: Duration) -> Res<()> {
        let until = Instant::now() + limit;
        loop {
            if let Some(i) = self.seen.windows(needle.len()).position(|w| w == needle) {
                self.seen.drain(..i + needle.len());
                return Ok(());
            }
            let left = until.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(b) => self.seen.extend(b),
                Err(_) => {
                    let shown = String::from_utf8_lossy(&self.seen).into_owned();
                    return Err(format!("{needle:?} not shown within {limit:?}: {shown:?}").into());
                }
            }
        }
    }

    fn type_(&mut self, keys: &[u8]) -> Res<()> {
        self.master.write_all(keys)?;
        Ok(())
    }

    fn finish(mut self) -> Res<()> {
        let status = self.child.wait()?;
        if !status.success() {
            while let Ok(b) = self.rx.recv_timeout(Duration::from_millis(200)) {
                self.seen.extend(b);
            }
            let shown = String::from_utf8_lossy(&self.seen).into_owned();
            return Err(format!("session ended {status}: {shown}").into());
        }
        Ok(())
    }
}

fn docker_host<'a>(cmd: &'a mut Command, host: &str) -> &'a mut Command {
    cmd.env("DOCKER_HOST", host)
}

/// Time from start to the first output of `echo ready` in a `-t` session.
fn first_output(cmd: &mut Command) -> Res<Duration> {
    let t = Instant::now();
    let mut s = OnPty::spawn(cmd)?;
    s.wait_for(b"ready", Duration::from_secs(30))?;
    let d = t.elapsed();
    s.finish()?;
    Ok(d)
}

/// The median round trip of a keystroke in an `-it … cat` session: typed, echoed by the
/// remote terminal, shown here.
fn keystroke(cmd: &mut Command, keys: usize) -> Res<f64> {
    let mut s = OnPty::spawn(cmd)?;
    // Output that no echo of the typed line contains: the remote shell is there. A line
    // typed before the shell set up its terminal can be flushed by it (as with docker exec
    // -it), so it is typed again (Ctrl-U first) until the answer shows.
    let until = Instant::now() + Duration::from_secs(30);
    s.type_(b"echo $((6*7))\r")?;
    while let Err(e) = s.wait_for(b"42\r\n", Duration::from_secs(2)) {
        if Instant::now() >= until {
            return Err(e);
        }
        s.type_(b"\x15echo $((6*7))\r")?;
    }
    let mut trips = Vec::new();
    for i in 0..keys {
        let key = [b'a' + (i % 26) as u8];
        let t = Instant::now();
        s.type_(&key)?;
        s.wait_for(&key, Duration::from_secs(5))?;
        trips.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    if std::env::var_os("SX_BENCH_DEBUG").is_some() {
        eprintln!("keystrokes: {trips:?}");
    }
    // The typed letters are dropped (Ctrl-U), not run.
    s.type_(b"\x15exit 0\r")?;
    s.finish()?;
    Ok(crate::median(&mut trips))
}

/// `bytes` of random data through `cmd` (which runs `sha256sum` on its stdin); the time, once
/// the sum equals the local one.
fn streamed(cmd: &mut Command, data: &[u8], sum: &str) -> Res<Duration> {
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output()?;
    let d = t.elapsed();
    feeder.join().map_err(|_| "feeder panicked")??;
    let got = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || got.split_whitespace().next() != Some(sum) {
        return Err(format!("streamed stdin came out wrong: {got} ({})", out.status).into());
    }
    Ok(d)
}

/// `docker -H HOST ARGS...`.
fn docker_at(host: &str, args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.args(["-H", host]).args(args);
    c
}

/// What the section measures on.
pub struct Lab<'a> {
    pub bin: &'a str,
    pub manager_host: &'a str,
    /// A task on a worker (through the relay) and on the manager (direct), with containers.
    pub worker_task: &'a str,
    pub worker_container: &'a str,
    pub worker_host: String,
    pub manager_task: &'a str,
    pub manager_container: &'a str,
    /// A task on the other worker, for opens on both in turn.
    pub other_worker_task: &'a str,
}

/// Sessions opened in a row, to tasks on the two workers in turn.
const OPENS: usize = 30;

/// The "Live sessions" section of BENCHMARKS.md.
pub fn section(lab: &Lab, rounds: usize, mb: usize, date: &str, engines: &str) -> Res<String> {
    let sx = |args: &[&str]| {
        let mut c = Command::new(lab.bin);
        docker_host(c.args(args), lab.manager_host);
        c
    };
    let dx = docker_at;
    let mut data = vec![0u8; mb * 1_000_000];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut data)?;
    let sum = sha256_of(&data)?;
    let echo = ["echo", "ready"];
    let mut m: std::collections::HashMap<&str, Vec<f64>> = Default::default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut rec = |k: &'static str, v: f64| m.entry(k).or_default().push(v);
    // One of each first, unrecorded: the relay image, the network, the configs.
    first_output(&mut sx(
        &[&["task-exec", "-t", lab.worker_task][..], &echo].concat()
    ))?;
    for round in 0..rounds {
        eprintln!("bench: sessions round {}/{rounds}", round + 1);
        let worker_t = [&["task-exec", "-t", lab.worker_task][..], &echo].concat();
        let manager_t = [&["task-exec", "-t", lab.manager_task][..], &echo].concat();
        let docker_t = [&["exec", "-t", lab.manager_container][..], &echo].concat();
        rec("first worker", ms(first_output(&mut sx(&worker_t))?));
        rec("first manager", ms(first_output(&mut sx(&manager_t))?));
        rec(
            "first docker",
            ms(first_output(&mut dx(lab.manager_host, &docker_t))?),
        );
        // A plain run (no -t) into the manager's task: directly, no helper (issue 28).
        let plain = [&["task-exec", lab.manager_task][..], &echo].concat();
        let docker_plain = [&["exec", lab.manager_container][..], &echo].concat();
        rec("plain manager", ms(to_the_end(&mut sx(&plain))?));
        rec(
            "plain docker",
            ms(to_the_end(&mut dx(lab.manager_host, &docker_plain))?),
        );
        if round < 3 {
            let it = ["task-exec", "-it", lab.worker_task, "sh"];
            rec("key worker", keystroke(&mut sx(&it), 20)?);
            let dit = ["exec", "-it", lab.worker_container, "sh"];
            rec(
                "key docker",
                keystroke(&mut dx(&lab.worker_host, &dit), 20)?,
            );
            let i = ["task-exec", "-i", lab.worker_task, "sha256sum"];
            rec("i worker", ms(streamed(&mut sx(&i), &data, &sum)?));
            // The same bytes out of the task: a plain run through a session (issue 28).
            let (via, direct) = via_session(lab, &sx, &data, &sum, round)?;
            rec("via worker", ms(via));
            rec("via docker", ms(direct));
            let f = forwarded(lab, &sx, &data, &sum, round)?;
            rec("forward worker", ms(f.through));
            rec("forward docker", ms(f.direct));
            rec("forward first", f.first_byte);
            let di = ["exec", "-i", lab.worker_container, "sha256sum"];
            rec(
                "i docker",
                ms(streamed(&mut dx(&lab.worker_host, &di), &data, &sum)?),
            );
        }
    }
    let opens = opens_in_a_row(lab, &sx, &echo)?;
    let mut med = |k: &str| crate::median(m.get_mut(k).map(Vec::as_mut_slice).unwrap_or(&mut []));
    let (fw, fm, fd) = (
        med("first worker"),
        med("first manager"),
        med("first docker"),
    );
    let (pm, pd) = (med("plain manager"), med("plain docker"));
    let (kw, kd) = (med("key worker"), med("key docker"));
    let (iw, id) = (med("i worker"), med("i docker"));
    let (vw, vd) = (med("via worker"), med("via docker"));
    let (pw, pdk, pf) = (
        med("forward worker"),
        med("forward docker"),
        med("forward first"),
    );
    let rate = |t: f64| mb as f64 / (t / 1000.0);
    Ok(format!(
        "## Live sessions: `task-exec -t` / `-it` / streamed `-i`\n\n\
         | measure | swarm-exec | `docker exec` | ratio | goal |\n\
         |---|---:|---:|---:|---|\n\
         | first output of `-t … echo ready`, task on a worker (relay + overlay) | {fw:.0} ms | — | — | ≤ 2500 ms |\n\
         | {OPENS} sessions in a row, workers in turn: first output, p50 / p95 / max | {:.0} / {:.0} / {:.0} ms | — | — | p95 ≤ 3000 ms, max ≤ 6000 ms |\n\
         | first output of `-t … echo ready`, task on the manager (direct) | {fm:.0} ms | {fd:.0} ms (manager) | {:.2} | ≤ 1.5× |\n\
         | plain `task-exec … echo ready` to its end, task on the manager (direct) | {pm:.0} ms | {pd:.0} ms (manager) | {:.2} | ≤ 1.5× |\n\
         | keystroke echo round trip, `-it … sh` on a worker | {kw:.1} ms | {kd:.1} ms (worker's engine) | {:.1} | ≤ 50 ms |\n\
         | `-i` {mb} MB random into `sha256sum` on a worker | {iw:.0} ms ({:.0} MB/s) | {id:.0} ms ({:.0} MB/s, worker's engine) | {:.2} | — |\n\
         | `--via session`: {mb} MB random out of a task on a worker (`cat`) | {vw:.0} ms ({:.0} MB/s) | {vd:.0} ms ({:.0} MB/s, worker's engine) | {:.2} | ≥ 40 MB/s |\n\
         | `port-forward`: {mb} MB random over HTTP from a task on a worker | {pw:.0} ms ({:.0} MB/s) | {pdk:.0} ms ({:.0} MB/s, `wget` in the task on the worker's engine) | {:.2} | — |\n\
         | `port-forward`: a new connection's first byte, forward open | {pf:.1} ms | — | — | — |\n\n\
         Measured by `scripts/bench --sessions` on {date}: {rounds} rounds of first output and of a plain run, 3 of \
         keystrokes (20 each, median), of `-i`, of `--via session` (the same bytes, kept in \
         the task first) and of `port-forward` (the same bytes served by busybox httpd in the \
         task; the first byte: the median of {FIRST_BYTES} connections, each a GET of a \
         2-byte page), interleaved; medians. The worker session's \
         first output includes creating the relay, the envelope secret and the helper and the \
         helper joining the overlay on its node (`RUST_LOG=swarm_exec_core=debug` prints each \
         step's time). The {OPENS} in a row follow the rounds, one after the other; how their \
         first outputs spread: {}. Engines: {engines}.\n",
        opens.p50,
        opens.p95,
        opens.max,
        fm / fd,
        pm / pd,
        kw / kd,
        rate(iw),
        rate(id),
        iw / id,
        rate(vw),
        rate(vd),
        vw / vd,
        rate(pw),
        rate(pdk),
        pw / pdk,
        opens.spread,
    ))
}

/// [`OPENS`] `-t` sessions in a row, as a user or a script opens them: the workers in turn.
fn opens_in_a_row(lab: &Lab, sx: &dyn Fn(&[&str]) -> Command, echo: &[&str]) -> Res<Opens> {
    let mut opens = Vec::with_capacity(OPENS);
    for i in 0..OPENS {
        let task = [lab.worker_task, lab.other_worker_task][i % 2];
        let t = [&["task-exec", "-t", task][..], echo].concat();
        opens.push(first_output(&mut sx(&t))?.as_secs_f64() * 1000.0);
    }
    Ok(Opens::of(opens))
}

/// `data` put in a file in the worker's task, then brought out of it by `task-exec --via
/// session` and by `docker exec` on the worker's engine: how long each took.
fn via_session(
    lab: &Lab,
    sx: &dyn Fn(&[&str]) -> Command,
    data: &[u8],
    sum: &str,
    round: usize,
) -> Res<(Duration, Duration)> {
    let dx = |args: &[&str]| docker_at(&lab.worker_host, args);
    let blob = format!("/tmp/bench-via-{round}");
    let keep = format!("cat > {blob}");
    streamed_in(
        &mut dx(&["exec", "-i", lab.worker_container, "sh", "-c", &keep]),
        data,
    )?;
    let cat = format!("cat {blob}");
    let via = [
        "task-exec",
        "--via",
        "session",
        lab.worker_task,
        "sh",
        "-c",
        &cat,
    ];
    let through = out_of(&mut sx(&via), sum)?;
    let direct = out_of(
        &mut dx(&["exec", lab.worker_container, "sh", "-c", &cat]),
        sum,
    )?;
    dx(&["exec", lab.worker_container, "rm", "-f", &blob]).status()?;
    Ok((through, direct))
}

/// Connections for the time to a forward's first byte.
const FIRST_BYTES: usize = 10;

/// What one round of `port-forward` measured.
struct Forwarded {
    through: Duration,
    direct: Duration,
    /// Median, ms.
    first_byte: f64,
}

/// `data` served by busybox httpd in the worker's task, fetched through `swarm-exec
/// port-forward` from here and by `wget` in the task itself (`docker exec` on the worker's
/// engine); and the median time to the first byte of a new connection through the forward
/// once it is open.
fn forwarded(
    lab: &Lab,
    sx: &dyn Fn(&[&str]) -> Command,
    data: &[u8],
    sum: &str,
    round: usize,
) -> Res<Forwarded> {
    let dx = |args: &[&str]| docker_at(&lab.worker_host, args);
    let dir = format!("/tmp/bench-www-{round}");
    let keep = format!("mkdir -p {dir} && echo x > {dir}/one && cat > {dir}/blob");
    streamed_in(
        &mut dx(&["exec", "-i", lab.worker_container, "sh", "-c", &keep]),
        data,
    )?;
    let server = [
        "exec",
        "-d",
        lab.worker_container,
        "httpd",
        "-f",
        "-p",
        "9000",
        "-h",
        &dir,
    ];
    dx(&server).status()?;
    let mut fwd = sx(&["port-forward", lab.worker_task, "0:9000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let measured = (|| -> Res<Forwarded> {
        let mut line = String::new();
        let mut out = std::io::BufReader::new(fwd.stdout.take().ok_or("no stdout")?);
        std::io::BufRead::read_line(&mut out, &mut line)?;
        let at = line
            .split_whitespace()
            .nth(2)
            .ok_or_else(|| format!("no address in {line:?}"))?
            .to_owned();
        // Open once a page comes back.
        let until = Instant::now() + Duration::from_secs(60);
        while http_get(&at, "/one", |_| {}).is_err() {
            if Instant::now() > until {
                return Err("the forward did not open within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut firsts = Vec::new();
        for _ in 0..FIRST_BYTES {
            let t = Instant::now();
            let mut first = None;
            http_get(&at, "/one", |_| {
                first.get_or_insert_with(|| t.elapsed());
            })?;
            firsts.push(first.ok_or("no byte")?.as_secs_f64() * 1000.0);
        }
        let t = Instant::now();
        let mut hasher = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut sink = hasher.stdin.take().ok_or("no stdin")?;
        let mut body = false;
        let mut head = Vec::new();
        http_get(&at, "/blob", |chunk| {
            // The body starts after the header's blank line.
            let chunk = if body {
                chunk
            } else {
                head.extend_from_slice(chunk);
                let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return;
                };
                body = true;
                let rest = head.split_off(end + 4);
                let _ = sink.write_all(&rest);
                return;
            };
            let _ = sink.write_all(chunk);
        })?;
        let through = t.elapsed();
        drop(sink);
        let got = hasher.wait_with_output()?;
        let got = String::from_utf8_lossy(&got.stdout);
        if got.split_whitespace().next() != Some(sum) {
            return Err(format!("through the forward: sha256 {got}").into());
        }
        let url = "http://127.0.0.1:9000/blob";
        let wget = ["exec", lab.worker_container, "wget", "-q", "-O", "-", url];
        let direct = out_of(&mut dx(&wget), sum)?;
        Ok(Forwarded {
            through,
            direct,
            first_byte: crate::median(&mut firsts),
        })
    })();
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(fwd.id() as i32, libc::SIGINT) };
    fwd.wait()?;
    let stop = format!("kill $(pidof httpd); rm -rf {dir}");
    dx(&["exec", lab.worker_container, "sh", "-c", &stop]).status()?;
    measured
}

/// An HTTP/1.0 GET of `path` at `addr`, each piece of the answer to `each`.
fn http_get(addr: &str, path: &str, mut each: impl FnMut(&[u8])) -> Res<()> {
    let mut c = std::net::TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(c, "GET {path} HTTP/1.0\r\n\r\n")?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut any = false;
    loop {
        let n = c.read(&mut buf)?;
        if n == 0 {
            break;
        }
        any = true;
        each(&buf[..n]);
    }
    if !any {
        return Err(format!("nothing came back from {addr}{path}").into());
    }
    Ok(())
}

/// The SHA-256 of `data`, as `sha256sum` prints it.
fn sha256_of(data: &[u8]) -> Res<String> {
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    c.stdin.take().ok_or("no stdin")?.write_all(data)?;
    let out = c.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// `data` into `cmd`'s stdin; it must succeed.
fn streamed_in(cmd: &mut Command, data: &[u8]) -> Res<()> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
    child.stdin.take().ok_or("no stdin")?.write_all(data)?;
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}").into());
    }
    Ok(())
}

/// How long `cmd` takes to its end; its stdout must have the SHA-256 `sum`.
fn out_of(cmd: &mut Command, sum: &str) -> Res<Duration> {
    let start = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
    let mut hasher = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut from = child.stdout.take().ok_or("no stdout")?;
    std::io::copy(&mut from, hasher.stdin.as_mut().ok_or("no stdin")?)?;
    drop(hasher.stdin.take());
    let status = child.wait()?;
    let took = start.elapsed();
    let got = hasher.wait_with_output()?;
    let got = String::from_utf8_lossy(&got.stdout);
    if !status.success() || got.split_whitespace().next() != Some(sum) {
        return Err(format!("{cmd:?}: {status}, sha256 {got}").into());
    }
    Ok(took)
}

/// How long `cmd` takes to its end (its output discarded); it must succeed.
fn to_the_end(cmd: &mut Command) -> Res<Duration> {
    let start = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let took = start.elapsed();
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}").into());
    }
    Ok(took)
}

/// Open times (ms): their median, 95th percentile (nearest rank), slowest, and how many
/// fell in each band.
struct Opens {
    p50: f64,
    p95: f64,
    max: f64,
    spread: String,
}

impl Opens {
    fn of(mut ms: Vec<f64>) -> Opens {
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        let bands = [
            (0.0, 1500.0),
            (1500.0, 2000.0),
            (2000.0, 3000.0),
            (3000.0, 6000.0),
        ];
        let mut spread: Vec<String> = bands
            .iter()
            .map(|&(lo, hi)| {
                let n = ms.iter().filter(|&&t| t >= lo && t < hi).count();
                format!("{n} in {:.1}–{:.1} s", lo / 1000.0, hi / 1000.0)
            })
            .collect();
        spread.push(format!(
            "{} over 6 s",
            ms.iter().filter(|&&t| t >= 6000.0).count()
        ));
        Opens {
            p50: rank(0.5),
            p95: rank(0.95),
            max: *ms.last().unwrap_or(&0.0),
            spread: spread.join(", "),
        }
    }
}
