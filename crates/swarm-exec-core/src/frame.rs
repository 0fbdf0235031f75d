//! The line protocol the helper writes on its stdout, which reaches the manager through the
//! helper service's logs.
//!
//! Service logs pass through the node's log driver, which is line-oriented and not
//! binary-safe (json-file replaces invalid UTF-8). So the helper never writes the command's
//! bytes raw: each chunk is base64-encoded on a line of its own,
//!
//! ```text
//! swx1 <nonce> o <i> <base64>   a chunk of the stdout of the command in target <i>
//! swx1 <nonce> e <i> <base64>   a chunk of its stderr
//! swx1 <nonce> x <i> <code>     the command in target <i> exited with <code>
//! swx1 <nonce> f <i> <base64>   the command in target <i> could not be run (why)
//! swx1 <nonce> d                every target has its x or f record (the last record)
//! swx1 <nonce> t                the helper's own deadline passed (the last record)
//! ```
//!
//! A helper serves one or more targets (containers on its node), numbered from 0 in the
//! order it was given them.
//!
//! The nonce is chosen by the manager per run. Lines without it are not records, and since
//! the command's output is always encoded, nothing the command prints can forge a record.
//! Lines stay well below 16 KiB so no log driver splits them.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

const MAGIC: &str = "swx1";

/// Raw bytes per output record; 8 KiB encodes to a line of about 11 KiB.
pub const CHUNK: usize = 8 * 1024;

/// Failure reasons longer than this are cut (at a character boundary), so that their line
/// too stays below the log drivers' 16 KiB.
pub const MAX_REASON: usize = CHUNK;

/// One decoded record; the `usize` is the target's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Stdout(usize, Vec<u8>),
    Stderr(usize, Vec<u8>),
    Exit(usize, i64),
    Failed(usize, String),
    Done,
    TimedOut,
}

/// Encodes records for one nonce.
#[derive(Debug, Clone)]
pub struct Encoder {
    prefix: String,
}

impl Encoder {
    pub fn new(nonce: &str) -> Self {
        Encoder {
            prefix: format!("{MAGIC} {nonce} "),
        }
    }

    /// Appends the lines for `record` to `out`; output is split into [`CHUNK`]-sized records.
    pub fn encode(&self, record: &Record, out: &mut Vec<u8>) {
        let mut line = |tag: &str, payload: &str| {
            out.extend_from_slice(self.prefix.as_bytes());
            out.extend_from_slice(tag.as_bytes());
            if !payload.is_empty() {
                out.push(b' ');
                out.extend_from_slice(payload.as_bytes());
            }
            out.push(b'\n');
        };
        match record {
            Record::Stdout(i, bytes) | Record::Stderr(i, bytes) => {
                let tag = if matches!(record, Record::Stdout(..)) {
                    "o"
                } else {
                    "e"
                };
                for chunk in bytes.chunks(CHUNK) {
                    line(tag, &format!("{i} {}", B64.encode(chunk)));
                }
            }
            Record::Exit(i, code) => line("x", &format!("{i} {code}")),
            Record::Failed(i, msg) => {
                let mut end = msg.len().min(MAX_REASON);
                while !msg.is_char_boundary(end) {
                    end -= 1;
                }
                line("f", &format!("{i} {}", B64.encode(&msg.as_bytes()[..end])));
            }
            Record::Done => line("d", ""),
            Record::TimedOut => line("t", ""),
        }
    }
}

/// Reassembles lines from arbitrarily split log chunks and decodes the records in them.
#[derive(Debug)]
pub struct Decoder {
    prefix: Vec<u8>,
    pending: Vec<u8>,
}

/// What one complete line turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Record(Record),
    /// Not ours (no nonce), e.g. a diagnostic the helper printed before it knew the nonce.
    Other(Vec<u8>),
}

impl Decoder {
    pub fn new(nonce: &str) -> Self {
        Decoder {
            prefix: format!("{MAGIC} {nonce} ").into_bytes(),
            pending: Vec::new(),
        }
    }

    /// Feeds a chunk of the log stream; calls `f` for every line it completes.
    pub fn feed(&mut self, chunk: &[u8], mut f: impl FnMut(Line)) {
        // What was pending holds no newline: only the new bytes need scanning.
        let mut scan = self.pending.len();
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(pos) = self.pending[scan..].iter().position(|&b| b == b'\n') {
            let end = scan + pos;
            f(self.decode_line(&self.pending[start..end]));
            start = end + 1;
            scan = start;
        }
        self.pending.drain(..start);
    }

    /// Forgets a partial line (the stream is being read again from its start).
    pub fn reset(&mut self) {
        self.pending.clear();
    }

    /// Whatever is left after the stream ended (a line without its newline).
    pub fn finish(&mut self) -> Option<Line> {
        if self.pending.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.pending);
        Some(self.decode_line(&rest))
    }

    fn decode_line(&self, line: &[u8]) -> Line {
        let other = || Line::Other(line.to_vec());
        let Some(body) = line.strip_prefix(self.prefix.as_slice()) else {
            return other();
        };
        let Ok(body) = std::str::from_utf8(body) else {
            return other();
        };
        let (tag, rest) = body.split_once(' ').unwrap_or((body, ""));
        let indexed = || -> Option<(usize, &str)> {
            let (i, payload) = rest.split_once(' ')?;
            Some((i.parse().ok()?, payload))
        };
        let record = match tag {
            "o" => indexed().and_then(|(i, p)| Some(Record::Stdout(i, B64.decode(p).ok()?))),
            "e" => indexed().and_then(|(i, p)| Some(Record::Stderr(i, B64.decode(p).ok()?))),
            "x" => indexed().and_then(|(i, p)| Some(Record::Exit(i, p.parse().ok()?))),
            "f" => indexed().and_then(|(i, p)| {
                let msg = B64.decode(p).ok()?;
                Some(Record::Failed(
                    i,
                    String::from_utf8_lossy(&msg).into_owned(),
                ))
            }),
            "d" if rest.is_empty() => Some(Record::Done),
            "t" if rest.is_empty() => Some(Record::TimedOut),
            _ => None,
        };
        record.map_or_else(other, Line::Record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(nonce: &str, stream: &[u8], split: usize) -> Vec<Line> {
        let mut d = Decoder::new(nonce);
        let mut lines = Vec::new();
        for piece in stream.chunks(split.max(1)) {
            d.feed(piece, |l| lines.push(l));
        }
        lines.extend(d.finish());
        lines
    }

    #[test]
    fn round_trip_is_byte_exact_however_the_stream_is_split() {
        let binary: Vec<u8> = (0..=255u8).cycle().take(3 * CHUNK + 17).collect();
        let enc = Encoder::new("n0nce");
        let mut wire = Vec::new();
        enc.encode(&Record::Stdout(0, binary.clone()), &mut wire);
        enc.encode(
            &Record::Stderr(0, b"\xff\xfe no newline".to_vec()),
            &mut wire,
        );
        enc.encode(&Record::Stdout(1, b"other target".to_vec()), &mut wire);
        enc.encode(&Record::Exit(0, 7), &mut wire);
        enc.encode(&Record::Done, &mut wire);
        for split in [1, 3, 100, 4096, wire.len()] {
            let lines = decode_all("n0nce", &wire, split);
            let mut out = Vec::new();
            let mut err = Vec::new();
            let mut other = Vec::new();
            let mut exit = None;
            let mut done = false;
            for l in lines {
                match l {
                    Line::Record(Record::Stdout(0, b)) => out.extend(b),
                    Line::Record(Record::Stdout(1, b)) => other.extend(b),
                    Line::Record(Record::Stderr(0, b)) => err.extend(b),
                    Line::Record(Record::Exit(0, c)) => exit = Some(c),
                    Line::Record(Record::Done) => done = true,
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(out, binary);
            assert_eq!(err, b"\xff\xfe no newline");
            assert_eq!(other, b"other target");
            assert_eq!(exit, Some(7));
            assert!(done);
        }
    }

    #[test]
    fn lines_stay_under_the_log_driver_split() {
        let mut wire = Vec::new();
        Encoder::new(&"n".repeat(32)).encode(&Record::Stdout(999, vec![0; 10 * CHUNK]), &mut wire);
        assert!(wire.split(|&b| b == b'\n').all(|l| l.len() < 16 * 1024));
    }

    #[test]
    fn other_nonces_and_garbage_are_not_records() {
        let mut wire = Vec::new();
        Encoder::new("other").encode(&Record::Exit(0, 0), &mut wire);
        wire.extend_from_slice(
            b"swx1 right x 0 notanumber\nswx1 right o 0 !!!\nswx1 right x 7\nswx1 right d 1\nplain text\n",
        );
        let lines = decode_all("right", &wire, 5);
        assert_eq!(lines.len(), 6);
        assert!(lines.iter().all(|l| matches!(l, Line::Other(_))));
    }

    #[test]
    fn failure_and_timeout_records() {
        let enc = Encoder::new("k");
        let mut wire = Vec::new();
        enc.encode(
            &Record::Failed(2, "no such container: abc".into()),
            &mut wire,
        );
        enc.encode(&Record::TimedOut, &mut wire);
        let lines = decode_all("k", &wire, 7);
        assert_eq!(
            lines,
            vec![
                Line::Record(Record::Failed(2, "no such container: abc".into())),
                Line::Record(Record::TimedOut)
            ]
        );
    }
}
