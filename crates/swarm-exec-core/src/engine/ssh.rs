//! `ssh://[user@]host[:port][/path/to/socket]` endpoints, reached as the docker CLI reaches
//! them: each HTTP connection is one `ssh … -- host docker system dial-stdio` process,
//! and HTTP runs over its stdin and stdout.
//!
//! ssh is the system's: it reads `~/.ssh/config` and the agent, and must not need to ask
//! for anything (a passphrase, a host key). bollard's own `ssh` feature is not used: it
//! drops the port of the URL and opens a control master per connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard::{BollardRequest, Docker, API_DEFAULT_VERSION};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

/// sshd drops handshakes beyond its `MaxStartups` (10 by default): open a few at a time.
const HANDSHAKES_AT_ONCE: usize = 4;

/// Why an `ssh://` endpoint cannot be used; each names the URL.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{0}: not an ssh:// address")]
    NotSsh(String),
    #[error("{0}: unbalanced [ in the host")]
    Bracket(String),
    #[error("{0}: invalid user or host")]
    UserOrHost(String),
    #[error("{url}: invalid port {port:?}")]
    Port { url: String, port: String },
    #[error("{0}: invalid socket path")]
    SocketPath(String),
    /// The URL is in the endpoint's own message.
    #[error("{source}")]
    Client {
        url: String,
        #[source]
        source: bollard::errors::Error,
    },
}

/// ssh's arguments for an `ssh://` URL, ending with the remote `docker system dial-stdio`.
pub fn ssh_args(url: &str) -> Result<Vec<String>, SshError> {
    let rest = url
        .strip_prefix("ssh://")
        .ok_or_else(|| SshError::NotSsh(url.to_owned()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        // [IPv6]:port
        let (h, after) = bracketed
            .split_once(']')
            .ok_or_else(|| SshError::Bracket(url.to_owned()))?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let safe = |s: &str| {
        !s.is_empty()
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:%".contains(&b))
    };
    if !safe(host) || user.is_some_and(|u| !safe(u)) {
        return Err(SshError::UserOrHost(url.to_owned()));
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |n| n == 0) {
            return Err(SshError::Port {
                url: url.to_owned(),
                port: p.to_owned(),
            });
        }
    }
    let mut args = vec![
        "-o".to_owned(),
        "ConnectTimeout=30".to_owned(),
        "-T".to_owned(),
    ];
    if let Some(u) = user {
        args.extend(["-l".to_owned(), u.to_owned()]);
    }
    if let Some(p) = port {
        args.extend(["-p".to_owned(), p.to_owned()]);
    }
    args.extend(["--".to_owned(), host.to_owned(), "docker".to_owned()]);
    if let Some(p) = path.filter(|p| *p != "/") {
        // The remote side runs it through a shell: plain path characters only.
        if !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
        {
            return Err(SshError::SocketPath(url.to_owned()));
        }
        args.push(format!("--host=unix://{p}"));
    }
    args.extend(["system".to_owned(), "dial-stdio".to_owned()]);
    Ok(args)
}

/// A client for an `ssh://` endpoint. Nothing runs until the first request.
pub fn connect(url: &str) -> Result<Docker, SshError> {
    let argv = ssh_args(url)?;
    let connector = SshConnector {
        argv: Arc::new(argv),
        handshakes: Arc::new(Semaphore::new(HANDSHAKES_AT_ONCE)),
    };
    let client = Arc::new(Client::builder(TokioExecutor::new()).build(connector));
    Docker::connect_with_custom_transport(
        move |req: BollardRequest| {
            let client = client.clone();
            async move { Ok(client.request(req).await?) }
        },
        Some("http://docker"),
        120,
        API_DEFAULT_VERSION,
    )
    .map_err(|source| SshError::Client {
        url: url.to_owned(),
        source,
    })
}

/// One HTTP connection: an ssh process's pipes. Dropping it ends the process.
pub struct SshStream {
    _child: Child,
    w: TokioIo<ChildStdin>,
    r: TokioIo<ChildStdout>,
}

impl hyper::rt::Read for SshStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.r).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for SshStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.w).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.w).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.w).poll_shutdown(cx)
    }
}

impl Connection for SshStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

#[derive(Clone)]
struct SshConnector {
    argv: Arc<Vec<String>>,
    handshakes: Arc<Semaphore>,
}

impl tower_service::Service<hyper::Uri> for SshConnector {
    type Response = SshStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<SshStream>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let _permit = me.handshakes.acquire().await.map_err(io::Error::other)?;
            let mut cmd = Command::new("ssh");
            cmd.args(me.argv.iter())
                .kill_on_drop(true)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            // Its own session, as docker does: Ctrl-C on the terminal must not end ssh before
            // swarm-exec has removed its helper through it.
            // SAFETY: setsid is async-signal-safe and touches no memory of this process.
            unsafe {
                cmd.pre_exec(|| {
                    libc::setsid();
                    Ok(())
                })
            };
            let mut child = cmd.spawn()?;
            let (w, r, mut e) = match (child.stdin.take(), child.stdout.take(), child.stderr.take())
            {
                (Some(w), Some(r), Some(e)) => (w, r, e),
                _ => return Err(io::Error::other("ssh started without its pipes")),
            };
            let stream = SshStream {
                _child: child,
                w: TokioIo::new(w),
                r: TokioIo::new(r),
            };
            // A ping first: the pool only ever gets a working connection, and when ssh
            // fails, its own message (e.g. "Permission denied (publickey)") is the error.
            let (mut tx, conn) = hyper::client::conn::http1::handshake(stream)
                .await
                .map_err(io::Error::other)?;
            let ping = hyper::Request::head("/_ping")
                .header("host", "docker")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .map_err(io::Error::other)?;
            // Once the ping's answer is in, `tx` is dropped, which lets the connection
            // future hand back the stream.
            let ping = async move { tx.send_request(ping).await };
            match tokio::join!(ping, conn.without_shutdown()) {
                (Ok(res), Ok(parts)) if res.status().is_success() && parts.read_buf.is_empty() => {
                    tokio::spawn(
                        async move { tokio::io::copy(&mut e, &mut tokio::io::sink()).await },
                    );
                    Ok(parts.io)
                }
                _ => {
                    let mut msg = String::new();
                    let _ = e.read_to_string(&mut msg).await;
                    Err(io::Error::other(format!(
                        "ssh {}: {}",
                        me.argv.join(" "),
                        msg.trim()
                    )))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_ssh_arguments() {
        let tail = |v: Vec<String>| v[3..].join(" ");
        assert_eq!(
            tail(ssh_args("ssh://root@m1:2222").unwrap()),
            "-l root -p 2222 -- m1 docker system dial-stdio"
        );
        assert_eq!(
            tail(ssh_args("ssh://m1").unwrap()),
            "-- m1 docker system dial-stdio"
        );
        assert_eq!(
            tail(ssh_args("ssh://u@[fe80::1]:22/run/d.sock").unwrap()),
            "-l u -p 22 -- fe80::1 docker --host=unix:///run/d.sock system dial-stdio"
        );
        for bad in [
            "ssh://",
            "ssh://-oProxyCommand=x",
            "ssh://h:0",
            "ssh://h:99999",
            "ssh://a b",
            "ssh://h/x;rm",
            "ssh://u@h/x>/tmp/pwned#",
            "ssh://h/$(id)",
            "tcp://h",
        ] {
            assert!(ssh_args(bad).is_err(), "{bad}");
        }
    }
}
