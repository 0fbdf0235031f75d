//! The stream of a live session (`task-exec -t`, or `-i` with more stdin than a secret
//! holds) between the client and a helper on another node. The helper dials a relay
//! container on the manager over an overlay network; the client is attached to the relay
//! through the manager's Engine API. The relay pairs the one connection that presents the
//! run's relay token and then only copies bytes: it never holds the run key.
//!
//! On the connection: first the 32-byte relay token (the relay consumes it), then frames
//! both ways, each `[u32 big-endian length][ChaCha20-Poly1305 ciphertext]`, sealed under a
//! key per direction derived from the run key, with the frame's sequence number as nonce.
//! So the relay, and anything else on the overlay, can neither read nor inject a byte: a
//! frame that does not open as the next one of its direction ends the session.
//!
//! Frames (plaintext: a kind byte, then its payload): the helper's hello (always first),
//! the client's start (the helper runs nothing before it), stdin, end of stdin, a resize, stdout, stderr, the command's exit (its code and the
//! byte counts of its streams), its failure to run, the helper's deadline, a heartbeat.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

/// The most plaintext one frame carries.
pub const FRAME_MAX: usize = 64 * 1024;
/// Failure reasons are cut to this many bytes.
const MAX_REASON: usize = 4096;
/// AEAD tag length.
const TAG: usize = 16;

/// Who seals: each direction has its own key, so a frame cannot be reflected back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Helper,
}

/// One frame of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// The helper's first frame: it holds the run key.
    Hello,
    /// The client's answer to the helper's hello: only then does the helper start the
    /// command (a helper the relay did not pair runs nothing).
    Start,
    Stdin(Vec<u8>),
    StdinEof,
    /// A TTY size: rows, columns.
    Resize {
        rows: u16,
        cols: u16,
    },
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The command exited: its code, and how many bytes of stdout and stderr it wrote.
    Exit {
        code: i64,
        stdout: u64,
        stderr: u64,
    },
    /// The command could not be run, or its end could not be learnt.
    Failed(String),
    /// The helper's deadline passed; `stopped`: the command's processes are gone.
    TimedOut {
        stopped: bool,
    },
    /// Nothing but "still here", when an end has had nothing else to send for
    /// [`HEARTBEAT_EVERY`].
    Heartbeat,
    /// `cp` into a container: what the destination path is there (its Go `os.FileMode`
    /// bits), or `None` when it does not exist.
    Stat(Option<u32>),
    /// `cp` into a container: the directory the archive that follows (as stdin) unpacks in.
    PutInto(String),
}

const HELLO: u8 = 0;
const STDIN: u8 = 1;
const STDIN_EOF: u8 = 2;
const RESIZE: u8 = 3;
const STDOUT: u8 = 4;
const STDERR: u8 = 5;
const EXIT: u8 = 6;
const FAILED: u8 = 7;
const TIMED_OUT: u8 = 8;
const HEARTBEAT: u8 = 9;
const STAT: u8 = 10;
const PUT_INTO: u8 = 11;
const START: u8 = 12;

/// How often each end of an open session says it is there when it has nothing else to
/// send (a frame of any kind counts as hearing from that end).
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// How long an end that has heard a heartbeat from the other goes on hearing nothing
/// before it takes the other for gone: four heartbeats missed.
pub const SILENCE_LIMIT: std::time::Duration = std::time::Duration::from_secs(8);

/// What the helper presents to the relay before anything else: derived from the run key
/// by a one-way function, so the relay that checks it learns nothing of the frame keys.
pub fn relay_token(run_key: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"swarm-exec relay token v1\0");
    h.update(run_key);
    h.finalize().into()
}

fn cipher(run_key: &[u8; 32], sealer: Side) -> ChaCha20Poly1305 {
    let mut h = Sha256::new();
    h.update(b"swarm-exec session key v1\0");
    h.update(run_key);
    h.update([match sealer {
        Side::Client => b'c',
        Side::Helper => b'h',
    }]);
    ChaCha20Poly1305::new(Key::from_slice(&h.finalize()))
}

fn nonce(seq: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    *Nonce::from_slice(&n)
}

/// The sealing half of one side.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    seq: u64,
}

/// The opening half of one side: bytes in, in any split, frames out in order.
pub struct Opener {
    cipher: ChaCha20Poly1305,
    seq: u64,
    buf: Vec<u8>,
}

/// Both halves for `side`: it seals with its own key and opens the other side's frames.
pub fn halves(run_key: &[u8; 32], side: Side) -> (Sealer, Opener) {
    let other = match side {
        Side::Client => Side::Helper,
        Side::Helper => Side::Client,
    };
    (
        Sealer {
            cipher: cipher(run_key, side),
            seq: 0,
        },
        Opener {
            cipher: cipher(run_key, other),
            seq: 0,
            buf: Vec::new(),
        },
    )
}

impl Sealer {
    /// `msg` as one or more frames appended to `out` (data longer than [`FRAME_MAX`] is
    /// split).
    pub fn seal(&mut self, msg: &Msg, out: &mut Vec<u8>) {
        let mut plain = Vec::new();
        let data = |kind: u8, bytes: &[u8], this: &mut Sealer, out: &mut Vec<u8>| {
            for chunk in bytes.chunks(FRAME_MAX - 1) {
                let mut p = Vec::with_capacity(chunk.len() + 1);
                p.push(kind);
                p.extend_from_slice(chunk);
                this.frame(&p, out);
            }
        };
        match msg {
            Msg::Stdin(b) => return data(STDIN, b, self, out),
            Msg::Stdout(b) => return data(STDOUT, b, self, out),
            Msg::Stderr(b) => return data(STDERR, b, self, out),
            Msg::Hello => plain.push(HELLO),
            Msg::Start => plain.push(START),
            Msg::StdinEof => plain.push(STDIN_EOF),
            Msg::Heartbeat => plain.push(HEARTBEAT),
            Msg::Resize { rows, cols } => {
                plain.push(RESIZE);
                plain.extend_from_slice(&rows.to_be_bytes());
                plain.extend_from_slice(&cols.to_be_bytes());
            }
            Msg::Exit {
                code,
                stdout,
                stderr,
            } => {
                plain.push(EXIT);
                plain.extend_from_slice(&code.to_be_bytes());
                plain.extend_from_slice(&stdout.to_be_bytes());
                plain.extend_from_slice(&stderr.to_be_bytes());
            }
            Msg::Failed(reason) => {
                plain.push(FAILED);
                let mut end = reason.len().min(MAX_REASON);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                plain.extend_from_slice(&reason.as_bytes()[..end]);
            }
            Msg::TimedOut { stopped } => {
                plain.push(TIMED_OUT);
                plain.push(u8::from(*stopped));
            }
            Msg::Stat(mode) => {
                plain.push(STAT);
                if let Some(m) = mode {
                    plain.extend_from_slice(&m.to_be_bytes());
                }
            }
            Msg::PutInto(dir) => {
                plain.push(PUT_INTO);
                plain.extend_from_slice(dir.as_bytes());
            }
        }
        self.frame(&plain, out);
    }

    fn frame(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        let ct = self
            .cipher
            .encrypt(&nonce(self.seq), plain)
            .expect("ChaCha20-Poly1305 seals any frame this small");
        self.seq += 1;
        out.extend_from_slice(&(ct.len() as u32).to_be_bytes());
        out.extend_from_slice(&ct);
    }
}

/// Why a session's stream was refused: any of these ends the session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("frame {seq} is longer than any frame swarm-exec writes ({len} bytes)")]
    TooLong { seq: u64, len: usize },
    #[error("frame {seq} does not open with the run's key: it was forged, altered, replayed or reordered")]
    Unauthentic { seq: u64 },
    #[error("frame {seq} is malformed ({what})")]
    Malformed { seq: u64, what: &'static str },
}

impl Opener {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame received, if there is one.
    pub fn next_msg(&mut self) -> Option<Result<Msg, SessionError>> {
        let (len, _) = self.buf.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        let seq = self.seq;
        if len > FRAME_MAX + TAG {
            return Some(Err(SessionError::TooLong { seq, len }));
        }
        if self.buf.len() < 4 + len {
            return None;
        }
        let plain = self
            .cipher
            .decrypt(&nonce(seq), &self.buf[4..4 + len])
            .map_err(|_| SessionError::Unauthentic { seq });
        self.buf.drain(..4 + len);
        self.seq += 1;
        Some(plain.and_then(|p| parse(seq, &p)))
    }

    /// Bytes received that do not make a whole frame yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

fn parse(seq: u64, p: &[u8]) -> Result<Msg, SessionError> {
    let bad = |what| SessionError::Malformed { seq, what };
    let (&kind, rest) = p.split_first().ok_or(bad("empty"))?;
    let fixed = |n: usize| {
        if rest.len() == n {
            Ok(rest)
        } else {
            Err(bad("wrong length"))
        }
    };
    let u64_at = |b: &[u8], i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8"));
    Ok(match kind {
        HELLO => fixed(0).map(|_| Msg::Hello)?,
        START => fixed(0).map(|_| Msg::Start)?,
        STDIN_EOF => fixed(0).map(|_| Msg::StdinEof)?,
        HEARTBEAT => fixed(0).map(|_| Msg::Heartbeat)?,
        STDIN => Msg::Stdin(rest.to_vec()),
        STDOUT => Msg::Stdout(rest.to_vec()),
        STDERR => Msg::Stderr(rest.to_vec()),
        RESIZE => {
            let b = fixed(4)?;
            Msg::Resize {
                rows: u16::from_be_bytes([b[0], b[1]]),
                cols: u16::from_be_bytes([b[2], b[3]]),
            }
        }
        EXIT => {
            let b = fixed(24)?;
            Msg::Exit {
                code: u64_at(b, 0) as i64,
                stdout: u64_at(b, 8),
                stderr: u64_at(b, 16),
            }
        }
        FAILED => Msg::Failed(String::from_utf8_lossy(rest).into_owned()),
        STAT => match rest.len() {
            0 => Msg::Stat(None),
            4 => Msg::Stat(Some(u32::from_be_bytes(rest.try_into().expect("4")))),
            _ => return Err(bad("wrong length")),
        },
        PUT_INTO => Msg::PutInto(
            String::from_utf8(rest.to_vec()).map_err(|_| bad("a path that is not UTF-8"))?,
        ),
        TIMED_OUT => match fixed(1)? {
            [0] => Msg::TimedOut { stopped: false },
            [1] => Msg::TimedOut { stopped: true },
            _ => return Err(bad("not a flag")),
        },
        _ => return Err(bad("unknown kind")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Msg> {
        vec![
            Msg::Hello,
            Msg::Start,
            Msg::Stdin(b"ls\n".to_vec()),
            Msg::StdinEof,
            Msg::Resize {
                rows: 40,
                cols: 100,
            },
            Msg::Stdout(vec![0, 255, 10]),
            Msg::Stderr(b"warning\n".to_vec()),
            Msg::Exit {
                code: -1,
                stdout: 1 << 40,
                stderr: 7,
            },
            Msg::Failed("no such container".into()),
            Msg::TimedOut { stopped: true },
            Msg::Heartbeat,
            Msg::Stat(None),
            Msg::Stat(Some(0x8000_01ed)),
            Msg::PutInto("/srv/data".into()),
        ]
    }

    #[test]
    fn every_kind_round_trips_in_any_split() {
        let key = [7; 32];
        let (mut seal, _) = halves(&key, Side::Helper);
        let (_, mut open) = halves(&key, Side::Client);
        let mut wire = Vec::new();
        for m in all_kinds() {
            seal.seal(&m, &mut wire);
        }
        for split in [1, 3, 17, wire.len()] {
            let (_, mut fresh) = halves(&key, Side::Client);
            let mut got = Vec::new();
            for chunk in wire.chunks(split) {
                fresh.feed(chunk);
                while let Some(m) = fresh.next_msg() {
                    got.push(m.unwrap());
                }
            }
            assert_eq!(got, all_kinds(), "split {split}");
        }
        open.feed(&wire);
        assert_eq!(open.next_msg(), Some(Ok(Msg::Hello)));
    }

    #[test]
    fn big_data_is_split_into_frames() {
        let key = [1; 32];
        let (mut seal, _) = halves(&key, Side::Client);
        let (_, mut open) = halves(&key, Side::Helper);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let mut wire = Vec::new();
        seal.seal(&Msg::Stdin(data.clone()), &mut wire);
        open.feed(&wire);
        let mut back = Vec::new();
        while let Some(m) = open.next_msg() {
            match m.unwrap() {
                Msg::Stdin(b) => back.extend(b),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(back, data);
    }

    #[test]
    fn forged_reflected_replayed_and_reordered_frames_are_refused() {
        let key = [3; 32];
        let (mut helper, _) = halves(&key, Side::Helper);
        let mut a = Vec::new();
        helper.seal(&Msg::Stdout(b"one".to_vec()), &mut a);
        let mut b = Vec::new();
        helper.seal(&Msg::Stdout(b"two".to_vec()), &mut b);

        // Another key (someone else's run, or garbage).
        let (_, mut other) = halves(&[4; 32], Side::Client);
        other.feed(&a);
        assert_eq!(
            other.next_msg(),
            Some(Err(SessionError::Unauthentic { seq: 0 }))
        );
        // The helper's own frame sent back to it as if the client's.
        let (_, mut reflected) = halves(&key, Side::Helper);
        reflected.feed(&a);
        assert_eq!(
            reflected.next_msg(),
            Some(Err(SessionError::Unauthentic { seq: 0 }))
        );
        // Reordered: frame 1 first.
        let (_, mut reordered) = halves(&key, Side::Client);
        reordered.feed(&b);
        assert_eq!(
            reordered.next_msg(),
            Some(Err(SessionError::Unauthentic { seq: 0 }))
        );
        // Replayed: frame 0 twice.
        let (_, mut replayed) = halves(&key, Side::Client);
        replayed.feed(&a);
        replayed.feed(&a);
        assert_eq!(replayed.next_msg(), Some(Ok(Msg::Stdout(b"one".to_vec()))));
        assert_eq!(
            replayed.next_msg(),
            Some(Err(SessionError::Unauthentic { seq: 1 }))
        );
        // Altered: one bit.
        let mut altered = a.clone();
        *altered.last_mut().unwrap() ^= 1;
        let (_, mut o) = halves(&key, Side::Client);
        o.feed(&altered);
        assert_eq!(
            o.next_msg(),
            Some(Err(SessionError::Unauthentic { seq: 0 }))
        );
        // A length no frame has is refused before it is waited for.
        let (_, mut o) = halves(&key, Side::Client);
        o.feed(&[0xff, 0xff, 0xff, 0xff, 0]);
        assert!(matches!(
            o.next_msg(),
            Some(Err(SessionError::TooLong { .. }))
        ));
    }

    #[test]
    fn the_token_reveals_no_frame_key() {
        let key = [5; 32];
        let token = relay_token(&key);
        assert_ne!(token, key);
        assert_ne!(relay_token(&[6; 32]), token);
        // A sealer keyed with the token does not produce the run's frames.
        let (mut real, _) = halves(&key, Side::Helper);
        let (mut fake, _) = halves(&token, Side::Helper);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        real.seal(&Msg::Hello, &mut x);
        fake.seal(&Msg::Hello, &mut y);
        assert_ne!(x, y);
    }
}
