//! The frames a helper writes on its stdout, which reach the manager through the helper
//! service's log stream.
//!
//! Each frame is one line, `swx2 <tag> <base64>`, where `<tag>` names the helper (public: it
//! is also in the helper's service name) and the base64 holds an 8-byte big-endian sequence
//! number and the frame, sealed with ChaCha20-Poly1305 under a key derived from the run's
//! key and the tag, with the sequence number as its nonce. So what lands in the node's log
//! is ciphertext; a frame that was forged, altered, replayed, reordered or dropped is
//! detected; and since the command's output only ever travels inside frames, nothing it
//! prints can pass for a frame.
//!
//! Frames (plaintext): output (`target`, `stream`, bytes of that stream's zstd stream), a
//! target's exit (its code and the number of bytes of each of its streams), a target's
//! failure to run (why), the end of the run (`done`: every target has its exit or failure),
//! or the helper's deadline (`timed out`, and whether the commands were seen to stop).
//! Sequence numbers count every frame of a helper from 0, so the reader knows the output is
//! whole exactly when it has read frames 0 to `done` without a gap and each target's byte
//! counts match.
//!
//! Lines stay below the log drivers' 16 KiB, so none is split.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};
use zstd::stream::raw::{Decoder, Encoder, InBuffer, Operation, OutBuffer};

const MAGIC: &str = "swx2";

/// Compressed bytes per output frame: with its header, tag and base64, a line of about
/// 14.7 KiB.
pub const DATA_MAX: usize = 11_000;
/// Failure reasons are cut to this many bytes (at a character boundary).
pub const MAX_REASON: usize = 4096;

/// zstd level and window: fast on the helper's half CPU; a 128 KiB window keeps each
/// stream's state small on both sides (a helper may serve many containers).
const ZSTD_LEVEL: i32 = 1;
const ZSTD_WINDOW_LOG: u32 = 17;
const SCRATCH: usize = 64 * 1024;

/// A command's output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    pub const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

const DATA_OUT: u8 = 0;
const DATA_ERR: u8 = 1;
const EXIT: u8 = 2;
const FAILED: u8 = 3;
const DONE: u8 = 4;
const TIMED_OUT: u8 = 5;

/// The frame key of one helper: runs serving several helpers share one run key, and each
/// helper numbers its frames from 0, so each needs a key of its own.
fn frame_cipher(run_key: &[u8; 32], tag: &str) -> ChaCha20Poly1305 {
    let mut h = Sha256::new();
    h.update(b"swarm-exec frame key v2\0");
    h.update(run_key);
    h.update(tag.as_bytes());
    ChaCha20Poly1305::new(Key::from_slice(&h.finalize()))
}

fn nonce(seq: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    *Nonce::from_slice(&n)
}

/// What both sides derive from the run key and one helper's tag: the frame key, and the
/// start of that helper's lines. Frame `seq` is sealed with `seq` as its nonce and the tag
/// as associated data.
struct FrameKey {
    cipher: ChaCha20Poly1305,
    tag: String,
    prefix: Vec<u8>,
}

impl FrameKey {
    fn new(run_key: &[u8; 32], tag: &str) -> Self {
        FrameKey {
            cipher: frame_cipher(run_key, tag),
            tag: tag.to_owned(),
            prefix: format!("{MAGIC} {tag} ").into_bytes(),
        }
    }

    fn payload<'a>(&'a self, msg: &'a [u8]) -> Payload<'a, 'a> {
        Payload {
            msg,
            aad: self.tag.as_bytes(),
        }
    }

    fn seal(&self, seq: u64, plain: &[u8]) -> Vec<u8> {
        self.cipher
            .encrypt(&nonce(seq), self.payload(plain))
            .expect("ChaCha20-Poly1305 seals any frame this small")
    }

    /// The frame, unless `sealed` is not frame `seq` of this helper as it was sealed.
    fn open(&self, seq: u64, sealed: &[u8]) -> Option<Vec<u8>> {
        self.cipher.decrypt(&nonce(seq), self.payload(sealed)).ok()
    }
}

/// Per target and stream, on either side: its zstd state, made on first output (most
/// streams of most runs stay empty), and how many bytes of output it carried so far.
struct Streams<C> {
    codecs: Vec<[Option<C>; 2]>,
    bytes: Vec<[u64; 2]>,
}

impl<C> Streams<C> {
    fn new(targets: usize) -> Self {
        Streams {
            codecs: (0..targets).map(|_| [None, None]).collect(),
            bytes: vec![[0; 2]; targets],
        }
    }
}

/// The helper side: output in, sealed lines out (appended to a caller's buffer, to be
/// written as they are).
pub struct Writer {
    key: FrameKey,
    seq: u64,
    streams: Streams<Compressor>,
    scratch: Vec<u8>,
    plain: Vec<u8>,
}

struct Compressor {
    enc: Encoder<'static>,
    pending: Vec<u8>,
}

impl Writer {
    pub fn new(run_key: &[u8; 32], tag: &str, targets: usize) -> Self {
        Writer {
            key: FrameKey::new(run_key, tag),
            seq: 0,
            streams: Streams::new(targets),
            scratch: Vec::new(),
            plain: Vec::with_capacity(DATA_MAX + 32),
        }
    }

    fn seal(&mut self, out: &mut Vec<u8>) {
        let ct = self.key.seal(self.seq, &self.plain);
        let mut sealed = Vec::with_capacity(8 + ct.len());
        sealed.extend_from_slice(&self.seq.to_be_bytes());
        sealed.extend_from_slice(&ct);
        out.extend_from_slice(&self.key.prefix);
        let mut text = String::with_capacity(sealed.len() * 4 / 3 + 4);
        B64.encode_string(&sealed, &mut text);
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
        self.seq += 1;
    }

    fn start(&mut self, kind: u8, target: usize) {
        self.plain.clear();
        self.plain.push(kind);
        let target = u16::try_from(target).expect("at most 65536 targets per helper");
        self.plain.extend_from_slice(&target.to_be_bytes());
    }

    /// Takes output of `target`'s `stream`. It is compressed, and written as frames once a
    /// frame's worth has gathered or on [`Writer::flush`].
    pub fn output(
        &mut self,
        target: usize,
        stream: Stream,
        bytes: &[u8],
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        self.streams.bytes[target][stream as usize] += bytes.len() as u64;
        if self.scratch.is_empty() {
            self.scratch = vec![0; SCRATCH];
        }
        let c = match &mut self.streams.codecs[target][stream as usize] {
            Some(c) => c,
            slot => {
                let mut enc = Encoder::new(ZSTD_LEVEL)?;
                enc.set_parameter(zstd::stream::raw::CParameter::WindowLog(ZSTD_WINDOW_LOG))?;
                slot.insert(Compressor {
                    enc,
                    pending: Vec::new(),
                })
            }
        };
        let mut input = InBuffer::around(bytes);
        while input.pos() < bytes.len() {
            let n = {
                let mut o = OutBuffer::around(&mut self.scratch[..]);
                c.enc.run(&mut input, &mut o)?;
                o.pos()
            };
            c.pending.extend_from_slice(&self.scratch[..n]);
        }
        self.emit(target, stream, false, out);
        Ok(())
    }

    /// Writes all output taken so far of `target`'s `stream` (so it is live at the other
    /// end).
    pub fn flush(
        &mut self,
        target: usize,
        stream: Stream,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let Some(c) = &mut self.streams.codecs[target][stream as usize] else {
            return Ok(());
        };
        loop {
            let (n, left) = {
                let mut o = OutBuffer::around(&mut self.scratch[..]);
                let left = c.enc.flush(&mut o)?;
                (o.pos(), left)
            };
            c.pending.extend_from_slice(&self.scratch[..n]);
            if left == 0 {
                break;
            }
        }
        self.emit(target, stream, true, out);
        Ok(())
    }

    /// Seals the compressed bytes gathered for a stream: whole frames, and with `all` the
    /// rest too.
    fn emit(&mut self, target: usize, stream: Stream, all: bool, out: &mut Vec<u8>) {
        let kind = match stream {
            Stream::Stdout => DATA_OUT,
            Stream::Stderr => DATA_ERR,
        };
        loop {
            let pending = match &self.streams.codecs[target][stream as usize] {
                Some(c) => c.pending.len(),
                None => return,
            };
            if pending == 0 || (!all && pending < DATA_MAX) {
                return;
            }
            let n = pending.min(DATA_MAX);
            self.start(kind, target);
            let c = self.streams.codecs[target][stream as usize]
                .as_mut()
                .expect("checked above");
            self.plain.extend(c.pending.drain(..n));
            self.seal(out);
        }
    }

    /// `target`'s command exited with `code`: its output is flushed, then the exit frame
    /// carries the byte counts of both its streams.
    pub fn exit(&mut self, target: usize, code: i64, out: &mut Vec<u8>) -> std::io::Result<()> {
        self.end_streams(target, out)?;
        self.start(EXIT, target);
        self.plain.extend_from_slice(&code.to_be_bytes());
        for n in self.streams.bytes[target] {
            self.plain.extend_from_slice(&n.to_be_bytes());
        }
        self.seal(out);
        Ok(())
    }

    /// `target`'s command could not be run (or its end could not be learnt).
    pub fn failed(
        &mut self,
        target: usize,
        reason: &str,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        self.end_streams(target, out)?;
        self.start(FAILED, target);
        let mut end = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.plain.extend_from_slice(&reason.as_bytes()[..end]);
        self.seal(out);
        Ok(())
    }

    fn end_streams(&mut self, target: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
        for s in Stream::BOTH {
            self.flush(target, s, out)?;
            self.streams.codecs[target][s as usize] = None;
        }
        Ok(())
    }

    /// The last frame of a run in which every target has its exit or failure frame.
    pub fn done(&mut self, out: &mut Vec<u8>) {
        self.plain.clear();
        self.plain.push(DONE);
        self.seal(out);
    }

    /// The last frame of a run whose deadline passed; `stopped`: the commands' processes
    /// were seen to be gone.
    pub fn timed_out(&mut self, stopped: bool, out: &mut Vec<u8>) {
        self.plain.clear();
        self.plain.push(TIMED_OUT);
        self.plain.push(u8::from(stopped));
        self.seal(out);
    }
}

/// What the reader found in a frame, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Output {
        target: usize,
        stream: Stream,
        bytes: &'a [u8],
    },
    Exit {
        target: usize,
        code: i64,
    },
    Failed {
        target: usize,
        reason: String,
    },
    /// Every target has its exit or failure, and all their output was read.
    Done,
    TimedOut {
        stopped: bool,
    },
}

/// What one line was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The next frame; its events were handed over.
    Frame,
    /// A frame read before (a stream read again from its start); skipped.
    Stale,
    /// A later frame than the next one: frames `expected..got` did not arrive on this
    /// stream. Nothing was handed over.
    Gap { expected: u64, got: u64 },
    /// Tagged as this helper's, but it does not open with the run's key (altered or
    /// forged). Skipped; if it stood for a real frame, the next one shows the gap.
    Unauthentic,
    /// Not a frame of this helper (e.g. a diagnostic the helper printed).
    NotOurs,
}

/// A frame that opened but cannot be right: the helper and the reader disagree.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("frame {seq} is malformed ({what})")]
    Malformed { seq: u64, what: &'static str },
    #[error("the {} of target {target} does not decompress: {source}", .stream.name())]
    Decompress {
        target: usize,
        stream: Stream,
        #[source]
        source: std::io::Error,
    },
    #[error("target {target}'s {} holds {received} bytes, its exit frame says {declared}", .stream.name())]
    Count {
        target: usize,
        stream: Stream,
        declared: u64,
        received: u64,
    },
}

/// The manager side: lines in (from the start of the helper's log, as often as it is read
/// again), each frame's events out exactly once and in order.
pub struct Reader {
    key: FrameKey,
    next: u64,
    streams: Streams<Decoder<'static>>,
    /// Byte counts from each target's exit frame.
    declared: Vec<Option<[u64; 2]>>,
    done: bool,
    scratch: Vec<u8>,
}

impl Reader {
    pub fn new(run_key: &[u8; 32], tag: &str, targets: usize) -> Self {
        Reader {
            key: FrameKey::new(run_key, tag),
            next: 0,
            streams: Streams::new(targets),
            declared: vec![None; targets],
            done: false,
            scratch: Vec::new(),
        }
    }

    /// The sequence number of the next frame to read.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// The `done` or `timed out` frame was read: nothing more is to come.
    pub fn ended(&self) -> bool {
        self.done
    }

    /// What is known to be missing, for a message: per target, the bytes its exit frame
    /// declared but that did not arrive, or that its exit never arrived.
    pub fn missing(&self) -> String {
        let mut parts = Vec::new();
        for (t, declared) in self.declared.iter().enumerate() {
            match declared {
                Some(d) => {
                    for s in Stream::BOTH {
                        let short = d[s as usize].saturating_sub(self.streams.bytes[t][s as usize]);
                        if short > 0 {
                            parts.push(format!("{short} bytes of target {t}'s {}", s.name()));
                        }
                    }
                }
                None => parts.push(format!(
                    "target {t}'s end (and any output after its first {} bytes of stdout, {} of stderr)",
                    self.streams.bytes[t][0], self.streams.bytes[t][1]
                )),
            }
        }
        if parts.is_empty() {
            parts.push("the run's last frame".to_owned());
        }
        format!("{} (from frame {} on)", parts.join(", "), self.next)
    }

    /// Reads one line (without its newline).
    pub fn line(&mut self, line: &[u8], f: &mut impl FnMut(Event<'_>)) -> Result<Step, ReadError> {
        let Some(body) = line.strip_prefix(self.key.prefix.as_slice()) else {
            return Ok(Step::NotOurs);
        };
        let Some(sealed) = B64.decode(body).ok().filter(|s| s.len() >= 8 + 16) else {
            return Ok(Step::Unauthentic);
        };
        let seq = u64::from_be_bytes(sealed[..8].try_into().expect("8 bytes"));
        if self.done || seq < self.next {
            return Ok(Step::Stale);
        }
        if seq > self.next {
            return Ok(Step::Gap {
                expected: self.next,
                got: seq,
            });
        }
        let Some(plain) = self.key.open(seq, &sealed[8..]) else {
            return Ok(Step::Unauthentic);
        };
        self.next += 1;
        self.frame(seq, &plain, f)?;
        Ok(Step::Frame)
    }

    fn frame(
        &mut self,
        seq: u64,
        plain: &[u8],
        f: &mut impl FnMut(Event<'_>),
    ) -> Result<(), ReadError> {
        let malformed = |what| ReadError::Malformed { seq, what };
        let (&kind, rest) = plain.split_first().ok_or(malformed("empty"))?;
        if kind == DONE || kind == TIMED_OUT {
            self.done = true;
            if kind == DONE {
                if self.declared.iter().any(Option::is_none) {
                    return Err(malformed("done before every target ended"));
                }
                f(Event::Done);
            } else {
                f(Event::TimedOut {
                    stopped: rest.first() == Some(&1),
                });
            }
            return Ok(());
        }
        let (target, rest) = rest
            .split_first_chunk::<2>()
            .ok_or(malformed("no target"))?;
        let target = usize::from(u16::from_be_bytes(*target));
        if target >= self.streams.codecs.len() || self.declared[target].is_some() {
            return Err(malformed("target unknown or already ended"));
        }
        match kind {
            DATA_OUT | DATA_ERR => {
                let stream = if kind == DATA_OUT {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                };
                self.decompress(target, stream, rest, f)
            }
            EXIT => {
                if rest.len() != 24 {
                    return Err(malformed("exit frame size"));
                }
                let num = |i: usize| u64::from_be_bytes(rest[i..i + 8].try_into().expect("8"));
                let code = num(0) as i64;
                let declared = [num(8), num(16)];
                for s in Stream::BOTH {
                    let (d, r) = (declared[s as usize], self.streams.bytes[target][s as usize]);
                    if d != r {
                        return Err(ReadError::Count {
                            target,
                            stream: s,
                            declared: d,
                            received: r,
                        });
                    }
                }
                self.declared[target] = Some(declared);
                self.streams.codecs[target] = [None, None];
                f(Event::Exit { target, code });
                Ok(())
            }
            FAILED => {
                self.declared[target] = Some(self.streams.bytes[target]);
                self.streams.codecs[target] = [None, None];
                f(Event::Failed {
                    target,
                    reason: String::from_utf8_lossy(rest).into_owned(),
                });
                Ok(())
            }
            _ => Err(malformed("unknown kind")),
        }
    }

    fn decompress(
        &mut self,
        target: usize,
        stream: Stream,
        bytes: &[u8],
        f: &mut impl FnMut(Event<'_>),
    ) -> Result<(), ReadError> {
        let err = |source| ReadError::Decompress {
            target,
            stream,
            source,
        };
        if self.scratch.is_empty() {
            self.scratch = vec![0; SCRATCH];
        }
        let dec = match &mut self.streams.codecs[target][stream as usize] {
            Some(d) => d,
            slot => slot.insert(Decoder::new().map_err(err)?),
        };
        let mut input = InBuffer::around(bytes);
        loop {
            let n = {
                let mut o = OutBuffer::around(&mut self.scratch[..]);
                dec.run(&mut input, &mut o).map_err(err)?;
                o.pos()
            };
            if n > 0 {
                self.streams.bytes[target][stream as usize] += n as u64;
                f(Event::Output {
                    target,
                    stream,
                    bytes: &self.scratch[..n],
                });
            }
            // Done once the input is used up and the decoder had no more to give.
            if input.pos() == bytes.len() && n < self.scratch.len() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::Lines;

    const KEY: [u8; 32] = [7; 32];

    /// A run's lines: `blob` on target 0's stdout, a little stderr, target 1 fails.
    fn run(blob: &[u8]) -> Vec<Vec<u8>> {
        let mut w = Writer::new(&KEY, "tag0", 2);
        let mut wire = Vec::new();
        for piece in blob.chunks(30_000) {
            w.output(0, Stream::Stdout, piece, &mut wire).unwrap();
        }
        w.output(0, Stream::Stderr, b"\xff\xfe warn", &mut wire)
            .unwrap();
        w.exit(0, 3, &mut wire).unwrap();
        w.failed(1, "no such container", &mut wire).unwrap();
        w.done(&mut wire);
        let mut lines = Vec::new();
        let mut l = Lines::default();
        l.feed(&wire, |line| lines.push(line.to_vec()));
        assert!(l.finish().is_none());
        lines
    }

    #[derive(Default, Debug, PartialEq)]
    struct Got {
        out: Vec<u8>,
        err: Vec<u8>,
        exit: Option<i64>,
        failed: Option<String>,
        done: bool,
    }

    fn read(lines: &[Vec<u8>], r: &mut Reader, got: &mut Got) -> Vec<Step> {
        let mut steps = Vec::new();
        for line in lines {
            let step = r
                .line(line, &mut |e| match e {
                    Event::Output {
                        stream: Stream::Stdout,
                        bytes,
                        ..
                    } => got.out.extend(bytes),
                    Event::Output {
                        stream: Stream::Stderr,
                        bytes,
                        ..
                    } => got.err.extend(bytes),
                    Event::Exit { code, .. } => got.exit = Some(code),
                    Event::Failed { reason, .. } => got.failed = Some(reason),
                    Event::Done => got.done = true,
                    Event::TimedOut { .. } => panic!("no timeout here"),
                })
                .unwrap();
            steps.push(step);
        }
        steps
    }

    fn noise(len: usize) -> Vec<u8> {
        // xorshift: incompressible, reproducible.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn round_trip_is_byte_exact_and_lines_stay_short() {
        for blob in [noise(300_000), b"text line\n".repeat(100_000), Vec::new()] {
            let lines = run(&blob);
            assert!(lines.iter().all(|l| l.len() < 16 * 1024));
            let mut r = Reader::new(&KEY, "tag0", 2);
            let mut got = Got::default();
            let steps = read(&lines, &mut r, &mut got);
            assert!(steps.iter().all(|s| *s == Step::Frame));
            assert_eq!(got.out, blob);
            assert_eq!(got.err, b"\xff\xfe warn");
            assert_eq!(got.exit, Some(3));
            assert_eq!(got.failed.as_deref(), Some("no such container"));
            assert!(got.done && r.ended());
        }
    }

    #[test]
    fn text_is_compressed_and_nothing_is_in_clear() {
        let text = b"SECRET-MARKER 0123456789\n".repeat(40_000);
        let lines = run(&text);
        let wire: Vec<u8> = lines.concat();
        assert!(
            wire.len() < text.len() / 20,
            "{} bytes on the wire",
            wire.len()
        );
        assert!(!wire.windows(13).any(|w| w == b"SECRET-MARKER"));
    }

    #[test]
    fn a_stream_read_again_from_its_start_gives_each_byte_once() {
        let blob = noise(200_000);
        let lines = run(&blob);
        let mut r = Reader::new(&KEY, "tag0", 2);
        let mut got = Got::default();
        // First read breaks after 5 lines, the second after 9, the third is whole: the
        // two-breaks case of a reopened log stream.
        read(&lines[..5], &mut r, &mut got);
        let steps = read(&lines[..9], &mut r, &mut got);
        assert_eq!(steps[..5], [Step::Stale; 5]);
        read(&lines, &mut r, &mut got);
        assert_eq!(got.out, blob);
        assert!(got.done);
    }

    #[test]
    fn a_lost_or_reordered_frame_is_a_gap_and_nothing_after_it_is_used() {
        let blob = noise(100_000);
        let mut lines = run(&blob);
        let mut r = Reader::new(&KEY, "tag0", 2);
        let mut got = Got::default();
        lines.swap(3, 4);
        let steps = read(&lines[..4], &mut r, &mut got);
        assert_eq!(
            steps[3],
            Step::Gap {
                expected: 3,
                got: 4
            }
        );
        let before = got.out.len();
        lines.remove(3); // frame 4 is gone; frame 3 follows
        let steps = read(&lines[3..], &mut r, &mut got);
        assert_eq!(steps[0], Step::Frame);
        assert_eq!(
            steps[1],
            Step::Gap {
                expected: 4,
                got: 5
            }
        );
        assert!(!got.done);
        assert!(got.out.len() > before && blob.starts_with(&got.out));
        assert!(r.missing().contains("target 0's end"), "{}", r.missing());
    }

    #[test]
    fn altered_forged_and_foreign_lines_are_refused() {
        let lines = run(b"hello");
        let mut r = Reader::new(&KEY, "tag0", 2);
        let mut f = |_: Event<'_>| panic!("nothing may be handed over");
        let mut altered = lines[0].clone();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(r.line(&altered, &mut f).unwrap(), Step::Unauthentic);
        // The same frames under another key, or another helper's tag.
        let mut other = Reader::new(&[8; 32], "tag0", 2);
        assert_eq!(other.line(&lines[0], &mut f).unwrap(), Step::Unauthentic);
        let mut w = Writer::new(&KEY, "tag1", 1);
        let mut wire = Vec::new();
        w.done(&mut wire);
        assert_eq!(
            r.line(&wire[..wire.len() - 1], &mut f).unwrap(),
            Step::NotOurs
        );
        let forged = format!("swx2 tag0 {}", B64.encode([0u8; 40]));
        assert_eq!(
            r.line(forged.as_bytes(), &mut f).unwrap(),
            Step::Unauthentic
        );
        assert_eq!(r.line(b"plain text", &mut f).unwrap(), Step::NotOurs);
        assert_eq!(r.next_seq(), 0);
    }

    #[test]
    fn output_is_live_after_a_flush() {
        let mut w = Writer::new(&KEY, "t", 1);
        let mut wire = Vec::new();
        w.output(0, Stream::Stdout, b"prompt> ", &mut wire).unwrap();
        assert!(wire.is_empty(), "small output waits for a flush");
        w.flush(0, Stream::Stdout, &mut wire).unwrap();
        let mut r = Reader::new(&KEY, "t", 1);
        let mut got = Got::default();
        let mut lines = Vec::new();
        Lines::default().feed(&wire, |l| lines.push(l.to_vec()));
        read(&lines, &mut r, &mut got);
        assert_eq!(got.out, b"prompt> ");
    }

    #[test]
    fn timed_out_ends_the_run() {
        let mut w = Writer::new(&KEY, "t", 1);
        let mut wire = Vec::new();
        w.timed_out(true, &mut wire);
        let mut r = Reader::new(&KEY, "t", 1);
        let mut seen = None;
        let step = r
            .line(&wire[..wire.len() - 1], &mut |e| {
                if let Event::TimedOut { stopped } = e {
                    seen = Some(stopped);
                }
            })
            .unwrap();
        assert_eq!((step, seen, r.ended()), (Step::Frame, Some(true), true));
    }
}
