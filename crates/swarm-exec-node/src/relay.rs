//! `node-relay`: the relay of a live session, in a container on the manager that the client
//! is attached to (its stdin and stdout) through the manager's Engine API, on the
//! session's overlay network.
//!
//! It listens, pairs the first connection that presents the relay token, and from then on
//! copies bytes both ways without looking at them: the frames are sealed end to end between
//! the client and the helper with keys the relay never has (see
//! [`swarm_exec_proto::session`]). A connection that presents anything else (someone else's
//! container on the overlay) is closed, having been sent nothing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use swarm_exec_proto::args::RelayArgs;

/// How long a connection may take to present its token.
const TOKEN_WAIT: Duration = Duration::from_secs(5);

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
    let (paired_tx, paired) = mpsc::channel::<TcpStream>();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let tx = paired_tx.clone();
            // Each candidate on a thread of its own: one that stays silent holds up no
            // other.
            std::thread::spawn(move || {
                if presents(&conn, &token) {
                    let _ = tx.send(conn);
                }
            });
        }
    });
    let conn = paired
        .recv_timeout(args.wait)
        .map_err(|_| RelayError::NoHelper(args.wait))?;
    let _ = conn.set_read_timeout(None);
    let mut to_helper = conn.try_clone().map_err(RelayError::Copy)?;
    std::thread::spawn(move || {
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
    });
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

/// Whether `conn` sends exactly the token first (within [`TOKEN_WAIT`]); compared in
/// constant time.
fn presents(mut conn: &TcpStream, token: &[u8; 32]) -> bool {
    let _ = conn.set_read_timeout(Some(TOKEN_WAIT));
    let mut got = [0u8; 32];
    if conn.read_exact(&mut got).is_err() {
        return false;
    }
    got.iter().zip(token).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}
