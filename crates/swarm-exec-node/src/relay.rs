//! `node-relay`: the relay of a live session, in a container on the manager that the client
//! is attached to (its stdin and stdout) through the manager's Engine API, on the
//! session's overlay network.
//!
//! It listens, pairs the first connection that presents the relay token, and from then on
//! copies bytes both ways without looking at them: the frames are sealed end to end between
//! the client and the helper with keys the relay never has (see
//! [`swarm_exec_proto::session`]). A connection that presents anything else (someone else's
//! container on the overlay) is closed, having been sent nothing.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use swarm_exec_proto::args::RelayArgs;

/// How long a connection may take to present its whole token.
const TOKEN_WAIT: Duration = Duration::from_secs(5);
/// At most this many connections are waited on for their token at once; one more pushes
/// the oldest out. Someone on the overlay who opens connections by the thousand only
/// ever displaces their own: the helper sends its token as soon as it connects.
const CANDIDATES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reading the relay token from stdin: {0}")]
    Token(#[source] std::io::Error),
    #[error("listening on port {port}: {source}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for connections: {0}")]
    Accept(#[source] std::io::Error),
    #[error("no helper connected within {0:?}")]
    NoHelper(Duration),
    #[error("copying the session: {0}")]
    Copy(#[source] std::io::Error),
}

/// The whole relay: returns once the helper's connection has closed (everything it sent
/// is on stdout) or the client's stdin has, whichever comes first.
pub fn node_relay(args: &RelayArgs) -> Result<(), RelayError> {
    let mut token = [0u8; 32];
    std::io::stdin()
        .lock()
        .read_exact(&mut token)
        .map_err(RelayError::Token)?;
    let listener =
        TcpListener::bind(("0.0.0.0", args.port)).map_err(|source| RelayError::Listen {
            port: args.port,
            source,
        })?;
    // Once paired, the listener is closed: nothing else is accepted.
    let conn = pair(listener, &token, args.wait)?;
    let mut to_helper = conn.try_clone().map_err(RelayError::Copy)?;
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to_helper.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            // The client is gone or done: the helper sees the end of the stream and stops.
            let _ = to_helper.shutdown(std::net::Shutdown::Both);
        })
        .map_err(RelayError::Copy)?;
    let mut from_helper = conn;
    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from_helper.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                stdout.write_all(&buf[..n]).map_err(RelayError::Copy)?;
                stdout.flush().map_err(RelayError::Copy)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The client closed its side (shutdown above): nothing more is wanted.
            Err(_) => return Ok(()),
        }
    }
}

/// A connection waited on for its token.
struct Candidate {
    conn: TcpStream,
    got: Vec<u8>,
    since: Instant,
}

/// Accepts connections on `listener` until one presents `token` (its first 32 bytes, within
/// [`TOKEN_WAIT`] of its accept, compared in constant time), for at most `wait`; returns it
/// blocking, with nothing read past the token. Every other connection is closed having been
/// sent nothing. One thread, no allocation per connection beyond its 32 bytes: a flood
/// neither stalls the relay nor ends it.
fn pair(listener: TcpListener, token: &[u8; 32], wait: Duration) -> Result<TcpStream, RelayError> {
    listener.set_nonblocking(true).map_err(RelayError::Accept)?;
    let until = Instant::now() + wait;
    let mut waiting: VecDeque<Candidate> = VecDeque::new();
    loop {
        let now = Instant::now();
        if now >= until {
            return Err(RelayError::NoHelper(wait));
        }
        waiting.retain(|c| now.duration_since(c.since) < TOKEN_WAIT);
        let next = waiting
            .iter()
            .map(|c| c.since + TOKEN_WAIT)
            .min()
            .unwrap_or(until)
            .min(until);
        let ready = poll(&listener, &waiting, next.saturating_duration_since(now))
            .map_err(RelayError::Accept)?;
        if ready.listener {
            accept_all(&listener, &mut waiting);
        }
        // Back to front, so that removing one leaves the indices still to visit intact.
        for i in ready.candidates.into_iter().rev() {
            match read_token(&mut waiting[i]) {
                Some(false) => {}
                Some(true) if same(&waiting[i].got, token) => {
                    let c = waiting.remove(i).expect("in range");
                    c.conn.set_nonblocking(false).map_err(RelayError::Copy)?;
                    return Ok(c.conn);
                }
                // Ended, failed, or the wrong token: closed.
                _ => {
                    waiting.remove(i);
                }
            }
        }
    }
}

/// Accepts what is waiting; past [`CANDIDATES`], the oldest goes.
fn accept_all(listener: &TcpListener, waiting: &mut VecDeque<Candidate>) {
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                if conn.set_nonblocking(true).is_err() {
                    continue;
                }
                if waiting.len() >= CANDIDATES {
                    waiting.pop_front();
                }
                waiting.push_back(Candidate {
                    conn,
                    got: Vec::with_capacity(32),
                    since: Instant::now(),
                });
            }
            // Nothing more now; or a connection that failed before it was accepted, or
            // no file descriptor to be had: refused, and the relay carries on.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => return,
        }
    }
}

/// Reads what `c` has of its token, never past it: `Some(true)` once it is whole,
/// `Some(false)` when more is to come, `None` when the connection ended or failed.
fn read_token(c: &mut Candidate) -> Option<bool> {
    let mut buf = [0u8; 32];
    let want = 32 - c.got.len();
    match c.conn.read(&mut buf[..want]) {
        Ok(0) => None,
        Ok(n) => {
            c.got.extend_from_slice(&buf[..n]);
            Some(c.got.len() == 32)
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(false),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Some(false),
        Err(_) => None,
    }
}

/// Equal in constant time.
fn same(got: &[u8], token: &[u8; 32]) -> bool {
    got.len() == 32 && got.iter().zip(token).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

/// What `poll` found readable.
struct Ready {
    listener: bool,
    /// Indices into the candidates, ascending.
    candidates: Vec<usize>,
}

/// Waits up to `timeout` for the listener or a candidate to be readable.
fn poll(
    listener: &TcpListener,
    waiting: &VecDeque<Candidate>,
    timeout: Duration,
) -> std::io::Result<Ready> {
    let mut fds: Vec<libc::pollfd> = std::iter::once(listener.as_raw_fd())
        .chain(waiting.iter().map(|c| c.conn.as_raw_fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Rounded up, so that a deadline a fraction of a millisecond away is not spun on.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for the whole call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(Ready {
                listener: false,
                candidates: Vec::new(),
            });
        }
        return Err(e);
    }
    let readable = |p: &libc::pollfd| p.revents != 0;
    Ok(Ready {
        listener: readable(&fds[0]),
        candidates: fds[1..]
            .iter()
            .enumerate()
            .filter(|(_, p)| readable(p))
            .map(|(i, _)| i)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: [u8; 32] = [7; 32];

    /// A relay's listener on a free loopback port, paired on a thread of its own.
    fn relay(wait: Duration) -> (u16, std::thread::JoinHandle<Result<TcpStream, RelayError>>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let paired = std::thread::spawn(move || pair(listener, &TOKEN, wait));
        (port, paired)
    }

    fn connect(port: u16) -> TcpStream {
        TcpStream::connect(("127.0.0.1", port)).unwrap()
    }

    #[test]
    fn pairs_the_token_among_a_flood_and_reads_nothing_past_it() {
        let (port, paired) = relay(Duration::from_secs(20));
        // More silent connections than are waited on at once, wrong tokens, and slow
        // senders that trickle a byte at a time.
        let silent: Vec<TcpStream> = (0..CANDIDATES + 250).map(|_| connect(port)).collect();
        let wrong: Vec<TcpStream> = (0..5)
            .map(|_| {
                let mut c = connect(port);
                c.write_all(&[9; 32]).unwrap();
                c
            })
            .collect();
        let slow: Vec<_> = (0..20)
            .map(|_| {
                std::thread::spawn(move || {
                    // One that starts after the pairing finds the listener closed.
                    let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
                        return;
                    };
                    for _ in 0..10 {
                        if c.write_all(&[7]).is_err() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                })
            })
            .collect();
        let mut helper = connect(port);
        helper.write_all(&TOKEN).unwrap();
        helper.write_all(b"hello after the token").unwrap();
        let mut conn = paired.join().unwrap().expect("the helper is paired");
        let mut rest = [0u8; 21];
        conn.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"hello after the token");
        // Paired: the listener is closed, nothing more is accepted.
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        // Bytes go both ways on the pair.
        conn.write_all(b"to the helper").unwrap();
        let mut back = [0u8; 13];
        helper.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"to the helper");
        drop((silent, wrong));
        for s in slow {
            s.join().unwrap();
        }
    }

    #[test]
    fn a_token_sent_in_pieces_counts_and_a_wrong_one_is_closed_unanswered() {
        let (port, paired) = relay(Duration::from_secs(20));
        let mut wrong = connect(port);
        wrong.write_all(&[7; 31]).unwrap();
        wrong.write_all(&[8]).unwrap();
        let mut right = connect(port);
        for b in TOKEN {
            right.write_all(&[b]).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        paired.join().unwrap().expect("paired");
        // The wrong one was closed, having been sent nothing.
        let mut buf = [0u8; 1];
        assert_eq!(wrong.read(&mut buf).unwrap_or(0), 0);
    }

    #[test]
    fn no_helper_within_the_wait_is_an_error() {
        let (port, paired) = relay(Duration::from_millis(300));
        let _silent = connect(port);
        assert!(matches!(
            paired.join().unwrap(),
            Err(RelayError::NoHelper(_))
        ));
    }
}
