//! `port-forward`: connections here to an HTTP server in a task on a worker.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::process::Child;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::util::*;

/// busybox httpd on port 8080 of every node's task, serving a small page and 50 MB of
/// random bytes.
fn http_server() -> Service {
    let script = "mkdir -p /www && echo hello > /www/index.html && \
                  head -c 50000000 /dev/urandom > /www/big && exec httpd -f -p 8080 -h /www";
    Service::global_of(TARGET_IMAGE, &[], &["sh", "-c", script])
}

/// A running `port-forward` and the local addresses it printed, in order.
struct Forward {
    child: Child,
    at: Vec<String>,
}

fn forward(options: &[&str], task: &str, ports: &[&str]) -> Forward {
    let mut args = vec!["port-forward"];
    args.extend_from_slice(options);
    args.push(task);
    args.extend_from_slice(ports);
    let mut child = spawn_swarm_exec(&args);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut at = Vec::new();
    for _ in ports {
        let line = lines.next().expect("a Forwarding line").unwrap();
        // "Forwarding from 127.0.0.1:43121 -> 8080"
        let addr = line
            .strip_prefix("Forwarding from ")
            .and_then(|l| l.split(' ').next())
            .unwrap_or_else(|| panic!("{line:?}"));
        at.push(addr.to_owned());
    }
    // Read on to the end, so that the pipe stays open.
    std::thread::spawn(move || lines.for_each(drop));
    Forward { child, at }
}

/// An HTTP/1.0 GET of `path` at `addr`: the body, or what went wrong.
fn get(addr: &str, path: &str) -> Result<Vec<u8>, String> {
    let mut c = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    c.read_to_end(&mut all).map_err(|e| e.to_string())?;
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header in {} bytes", all.len()))?;
    if !all.starts_with(b"HTTP/1.0 200") && !all.starts_with(b"HTTP/1.1 200") {
        return Err(String::from_utf8_lossy(&all[..end]).into_owned());
    }
    Ok(all[end + 4..].to_vec())
}

/// An address of this machine's that is not loopback (the one it reaches the lab by).
fn non_loopback_ip() -> IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // No packet is sent: connecting a UDP socket only picks the route and source.
    probe.connect("10.77.0.2:9").unwrap();
    let ip = probe.local_addr().unwrap().ip();
    assert!(!ip.is_loopback(), "{ip}");
    ip
}

#[test]
fn forwards_to_a_task_on_a_worker_and_leaves_nothing() {
    let svc = http_server();
    let at = svc.at(remote_worker());
    let f = forward(&[], &at, &["0:8080", ":9999"]);
    let (web, nothing) = (f.at[0].clone(), f.at[1].clone());
    assert!(web.starts_with("127.0.0.1:"), "{web}");
    assert_eq!(get(&web, "/index.html").as_deref(), Ok(&b"hello\n"[..]));
    // 50 MB byte-exact, as the task holds it.
    let body = get(&web, "/big").unwrap();
    assert_eq!(body.len(), 50_000_000);
    let sum = task_exec(&[], &at, &["sha256sum", "/www/big"]);
    assert_exit(&sum, 0);
    let digest = format!("{:x}", Sha256::digest(&body));
    assert!(
        sum.stdout_str().starts_with(&digest),
        "{}",
        sum.stdout_str()
    );
    // Twenty at once, all answered.
    let many: Vec<_> = (0..20)
        .map(|_| {
            let web = web.clone();
            std::thread::spawn(move || get(&web, "/index.html"))
        })
        .collect();
    for t in many {
        assert_eq!(t.join().unwrap().as_deref(), Ok(&b"hello\n"[..]));
    }
    // A port nothing listens on: that connection is closed, the forward goes on.
    let mut refused = TcpStream::connect(&nothing).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(refused.read(&mut buf), Ok(0) | Err(_)));
    assert_eq!(get(&web, "/index.html").as_deref(), Ok(&b"hello\n"[..]));
    // On loopback only.
    let port = web.rsplit(':').next().unwrap();
    let outside = format!("{}:{port}", non_loopback_ip());
    assert!(TcpStream::connect(&outside).is_err(), "{outside} answered");
    kill(&f.child, "INT");
    let out = wait(f.child, Duration::from_secs(30));
    assert_eq!(out.code, 130, "{}", out.stderr_str());
    assert_stderr_has(&out, "port 9999");
    assert!(out.stderr_str().contains("refused"), "{}", out.stderr_str());
    no_session_left(&svc.name);
    no_container_beside(&svc, "forward");
}

#[test]
fn any_address_when_asked_and_the_tasks_end_ends_it() {
    let svc = http_server();
    let at = svc.at(remote_worker());
    let f = forward(&["--address", "0.0.0.0"], &at, &[":8080"]);
    let port = f.at[0].rsplit(':').next().unwrap().to_owned();
    let outside = format!("{}:{port}", non_loopback_ip());
    assert_eq!(get(&outside, "/index.html").as_deref(), Ok(&b"hello\n"[..]));
    // The task goes: the forward ends with 125, saying so.
    assert_eq!(docker(&["service", "rm", &svc.name]).code, 0);
    let out = wait(f.child, Duration::from_secs(60));
    assert_exit(&out, 125);
    assert_stderr_has(&out, "no longer running");
    no_session_left(&svc.name);
}
