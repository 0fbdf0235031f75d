//! `--persist`'s runs, many at once inside one live session with a standing helper: the
//! keeper (the client's background process) asks for a run, the helper execs it in a
//! container on its node, and the run's input, output and end travel as frames of that
//! run. The same frames carry a run between a client process and the keeper, over its
//! unix socket (there with id 0).
//!
//! Output has a window, as port-forward's streams do: the helper sends no more of a run's
//! output than the keeper has granted, and the keeper grants again what it has handed to
//! its client; input has one the other way. So a run whose reader is slow holds up only
//! itself, and neither end holds more than a window per run.
//!
//! Frames are laid out as port-forward's are (the crate's `mux`), with a run's id.

use serde::{Deserialize, Serialize};

/// What a receiver grants each new run at first, each way.
pub const WINDOW: u32 = 256 * 1024;
/// A receiver grants again once it has passed on this much.
pub const GRANT_EVERY: u32 = 64 * 1024;
/// The most one output or input frame carries.
pub const CHUNK: usize = 32 * 1024;
/// The most a run's request may be (its command and environment, as JSON).
const MAX_REQUEST: usize = 4 << 20;
/// The most any other frame's payload may be.
const MAX_PAYLOAD: usize = 64 * 1024;

const RUN: u8 = 1;
const INPUT: u8 = 2;
const INPUT_EOF: u8 = 3;
const STOP: u8 = 4;
const GRANT: u8 = 5;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;
const EXIT: u8 = 8;
const TIMED_OUT: u8 = 9;
const STOPPED: u8 = 10;
const FAILED: u8 = 11;
const CONTROL: u8 = 12;

/// One frame of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Start run `id`: its request, JSON (a [`RunSpec`] to the helper; to the keeper, what
    /// the keeper needs besides).
    Run {
        id: u32,
        request: Vec<u8>,
    },
    Input {
        id: u32,
        bytes: Vec<u8>,
    },
    InputEof {
        id: u32,
    },
    /// Stop the run's command, and what it started (the client was interrupted or gone).
    Stop {
        id: u32,
    },
    /// The receiver has room for `bytes` more.
    Grant {
        id: u32,
        bytes: u32,
    },
    Stdout {
        id: u32,
        bytes: Vec<u8>,
    },
    Stderr {
        id: u32,
        bytes: Vec<u8>,
    },
    /// The command exited with `code`, having written this many bytes to each stream.
    Exit {
        id: u32,
        code: i64,
        stdout: u64,
        stderr: u64,
    },
    /// Its timeout passed; `stopped`: its processes were seen to end.
    TimedOut {
        id: u32,
        stopped: bool,
    },
    /// Stopped as asked; `gone`: its processes were seen to end.
    Stopped {
        id: u32,
        gone: bool,
    },
    /// It could not run, or its outcome is not known, and why.
    Failed {
        id: u32,
        reason: String,
    },
    /// Between a client and the keeper only: `persist status` and `persist stop`, JSON.
    Control {
        id: u32,
        json: Vec<u8>,
    },
}

impl Frame {
    pub fn id(&self) -> u32 {
        match self {
            Frame::Run { id, .. }
            | Frame::Input { id, .. }
            | Frame::InputEof { id }
            | Frame::Stop { id }
            | Frame::Grant { id, .. }
            | Frame::Stdout { id, .. }
            | Frame::Stderr { id, .. }
            | Frame::Exit { id, .. }
            | Frame::TimedOut { id, .. }
            | Frame::Stopped { id, .. }
            | Frame::Failed { id, .. }
            | Frame::Control { id, .. } => *id,
        }
    }

    /// The same frame for run `id`.
    pub fn with_id(mut self, new: u32) -> Frame {
        match &mut self {
            Frame::Run { id, .. }
            | Frame::Input { id, .. }
            | Frame::InputEof { id }
            | Frame::Stop { id }
            | Frame::Grant { id, .. }
            | Frame::Stdout { id, .. }
            | Frame::Stderr { id, .. }
            | Frame::Exit { id, .. }
            | Frame::TimedOut { id, .. }
            | Frame::Stopped { id, .. }
            | Frame::Failed { id, .. }
            | Frame::Control { id, .. } => *id = new,
        }
        self
    }

    /// The run's last frame: after it, nothing more comes for its id.
    pub fn is_end(&self) -> bool {
        matches!(
            self,
            Frame::Exit { .. }
                | Frame::TimedOut { .. }
                | Frame::Stopped { .. }
                | Frame::Failed { .. }
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut fixed = Vec::new();
        let (kind, id, payload): (u8, u32, &[u8]) = match self {
            Frame::Run { id, request } => (RUN, *id, request),
            Frame::Input { id, bytes } => (INPUT, *id, bytes),
            Frame::InputEof { id } => (INPUT_EOF, *id, &[]),
            Frame::Stop { id } => (STOP, *id, &[]),
            Frame::Grant { id, bytes } => {
                fixed.extend_from_slice(&bytes.to_be_bytes());
                (GRANT, *id, &fixed)
            }
            Frame::Stdout { id, bytes } => (STDOUT, *id, bytes),
            Frame::Stderr { id, bytes } => (STDERR, *id, bytes),
            Frame::Exit {
                id,
                code,
                stdout,
                stderr,
            } => {
                fixed.extend_from_slice(&code.to_be_bytes());
                fixed.extend_from_slice(&stdout.to_be_bytes());
                fixed.extend_from_slice(&stderr.to_be_bytes());
                (EXIT, *id, &fixed)
            }
            Frame::TimedOut { id, stopped } => {
                fixed.push(u8::from(*stopped));
                (TIMED_OUT, *id, &fixed)
            }
            Frame::Stopped { id, gone } => {
                fixed.push(u8::from(*gone));
                (STOPPED, *id, &fixed)
            }
            Frame::Failed { id, reason } => (FAILED, *id, reason.as_bytes()),
            Frame::Control { id, json } => (CONTROL, *id, json),
        };
        // A reason is cut to fit; data frames are never made larger than CHUNK.
        crate::mux::encode(kind, id, payload, max_payload(kind))
    }
}

/// Why bytes were not frames.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("unknown run frame kind {0}")]
    Kind(u8),
    #[error("run frame of kind {kind} with {len} bytes, more than allowed")]
    TooLong { kind: u8, len: usize },
    #[error("run frame of kind {kind} with a payload of {len} bytes")]
    Malformed { kind: u8, len: usize },
}

/// Frames out of bytes as they come, in pieces of any size.
#[derive(Debug, Default)]
pub struct Decoder {
    frames: crate::mux::Splitter,
}

impl Decoder {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.frames.feed(bytes);
    }

    /// The next whole frame, if one is in.
    pub fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        Some(match self.frames.next(max_payload)? {
            Ok((kind, id, payload)) => parse(kind, id, payload),
            Err(e) => Err(FrameError::TooLong {
                kind: e.kind,
                len: e.len,
            }),
        })
    }
}

/// The most a payload of `kind` may be.
fn max_payload(kind: u8) -> usize {
    match kind {
        RUN => MAX_REQUEST,
        _ => MAX_PAYLOAD,
    }
}

fn parse(kind: u8, id: u32, payload: Vec<u8>) -> Result<Frame, FrameError> {
    let bad = || FrameError::Malformed {
        kind,
        len: payload.len(),
    };
    let flag = |p: &[u8]| match p {
        [b] => Ok(*b != 0),
        _ => Err(bad()),
    };
    Ok(match kind {
        RUN => Frame::Run {
            id,
            request: payload,
        },
        INPUT => Frame::Input { id, bytes: payload },
        INPUT_EOF => Frame::InputEof { id },
        STOP => Frame::Stop { id },
        GRANT => Frame::Grant {
            id,
            bytes: u32::from_be_bytes(payload.as_slice().try_into().map_err(|_| bad())?),
        },
        STDOUT => Frame::Stdout { id, bytes: payload },
        STDERR => Frame::Stderr { id, bytes: payload },
        EXIT => {
            let p: [u8; 24] = payload.as_slice().try_into().map_err(|_| bad())?;
            let word = |i: usize| <[u8; 8]>::try_from(&p[i..i + 8]).expect("8 bytes");
            Frame::Exit {
                id,
                code: i64::from_be_bytes(word(0)),
                stdout: u64::from_be_bytes(word(8)),
                stderr: u64::from_be_bytes(word(16)),
            }
        }
        TIMED_OUT => Frame::TimedOut {
            id,
            stopped: flag(&payload)?,
        },
        STOPPED => Frame::Stopped {
            id,
            gone: flag(&payload)?,
        },
        FAILED => Frame::Failed {
            id,
            reason: String::from_utf8_lossy(&payload).into_owned(),
        },
        CONTROL => Frame::Control { id, json: payload },
        other => return Err(FrameError::Kind(other)),
    })
}

/// What the helper runs for one [`Frame::Run`]: an exec in `container` on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The target container's full ID.
    pub container: String,
    pub command: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub privileged: bool,
    /// From the helper's receipt of the run; then the command is stopped.
    pub timeout_ms: u64,
    /// Input comes (`Input` frames, then `InputEof`); else the command gets none.
    pub stdin: bool,
    /// The run's mark, in the command's environment (for its stopper).
    pub tag: String,
}

impl RunSpec {
    pub fn from_json(bytes: &[u8]) -> Result<RunSpec, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Frame> {
        vec![
            Frame::Run {
                id: 1,
                request: b"{\"a\":1}".to_vec(),
            },
            Frame::Input {
                id: 2,
                bytes: vec![0, 255, 10],
            },
            Frame::InputEof { id: 3 },
            Frame::Stop { id: 4 },
            Frame::Grant {
                id: 5,
                bytes: 65536,
            },
            Frame::Stdout {
                id: 6,
                bytes: b"out".to_vec(),
            },
            Frame::Stderr {
                id: 7,
                bytes: Vec::new(),
            },
            Frame::Exit {
                id: 8,
                code: -1,
                stdout: 3 << 40,
                stderr: 7,
            },
            Frame::TimedOut {
                id: 9,
                stopped: true,
            },
            Frame::Stopped {
                id: 10,
                gone: false,
            },
            Frame::Failed {
                id: 11,
                reason: "no such container".into(),
            },
            Frame::Control {
                id: 0,
                json: b"{}".to_vec(),
            },
        ]
    }

    #[test]
    fn every_kind_comes_back_the_same_whatever_the_pieces() {
        let wire: Vec<u8> = every_kind().iter().flat_map(Frame::encode).collect();
        for piece in [1, 2, 7, 9, 64, wire.len()] {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for part in wire.chunks(piece) {
                d.feed(part);
                while let Some(f) = d.next_frame() {
                    got.push(f.unwrap());
                }
            }
            assert_eq!(got, every_kind(), "pieces of {piece}");
        }
    }

    #[test]
    fn only_the_last_frames_of_a_run_end_it_and_ids_are_changed_alone() {
        let ends: Vec<bool> = every_kind().iter().map(Frame::is_end).collect();
        let expected = [
            false, false, false, false, false, false, false, true, true, true, true, false,
        ];
        assert_eq!(ends, expected);
        for f in every_kind() {
            let moved = f.clone().with_id(77);
            assert_eq!(moved.id(), 77);
            assert_eq!(moved.with_id(f.id()), f);
        }
    }

    #[test]
    fn oversized_and_malformed_frames_are_refused() {
        let mut d = Decoder::default();
        let mut long = vec![STDOUT, 0, 0, 0, 1];
        long.extend_from_slice(&((MAX_PAYLOAD + 1) as u32).to_be_bytes());
        d.feed(&long);
        assert_eq!(
            d.next_frame(),
            Some(Err(FrameError::TooLong {
                kind: STDOUT,
                len: MAX_PAYLOAD + 1
            }))
        );
        let mut d = Decoder::default();
        d.feed(&[EXIT, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0]);
        assert_eq!(
            d.next_frame(),
            Some(Err(FrameError::Malformed { kind: EXIT, len: 2 }))
        );
        let mut d = Decoder::default();
        d.feed(&[99, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Some(Err(FrameError::Kind(99))));
    }
}
