//! Where a command's output goes: the [`OutputSink`] every run writes to, and the two
//! bounded keepers behind `--format json` ([`Captured`], the first bytes) and the Skopos
//! plugin ([`Tail`], the last bytes). Both count what they drop, so a result can say it was
//! cut; [`bytes_json`] puts kept bytes into JSON without losing any that are not UTF-8.

use std::collections::VecDeque;

use base64::Engine as _;
use serde_json::{Map, Value};

/// Where the command's output goes. Errors are the sink's business (e.g. a closed pipe);
/// the run carries on so the helper is still removed and the exit code still reported.
pub trait OutputSink: Send {
    fn stdout(&mut self, bytes: &[u8]);
    fn stderr(&mut self, bytes: &[u8]);
    /// A note about the run, not from the command (e.g. incomplete output).
    fn warn(&mut self, message: &str);
    /// Something the user may want to know that is not wrong (e.g. which task was chosen).
    fn note(&mut self, message: &str) {
        self.warn(message);
    }
    /// What the run is waiting on, e.g. "waiting for helper … on node3: pending"; called
    /// on every poll. Sinks may show it (on a terminal, when quiet for a while) or not.
    fn progress(&mut self, _status: &str) {}
    /// The task the command is about to run in, once found (`task-exec`), for sinks that
    /// report it (`--format json`).
    fn runs_in(&mut self, _task: &RunsIn<'_>) {}
}

/// The task a run was found to run in: see [`OutputSink::runs_in`].
#[derive(Debug, Clone, Copy)]
pub struct RunsIn<'a> {
    pub task_id: &'a str,
    pub service: &'a str,
    /// `web.2` or `web@node2`.
    pub name: &'a str,
    pub node: &'a str,
    pub node_id: &'a str,
    pub container_id: &'a str,
}

impl<S: OutputSink + ?Sized> OutputSink for &mut S {
    fn stdout(&mut self, bytes: &[u8]) {
        (**self).stdout(bytes);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        (**self).stderr(bytes);
    }
    fn warn(&mut self, message: &str) {
        (**self).warn(message);
    }
    fn note(&mut self, message: &str) {
        (**self).note(message);
    }
    fn progress(&mut self, status: &str) {
        (**self).progress(status);
    }
    fn runs_in(&mut self, task: &RunsIn<'_>) {
        (**self).runs_in(task);
    }
}

/// `--format json`'s default bound on what one task's result keeps (stdout and stderr
/// together).
pub const DEFAULT_MAX_OUTPUT: usize = 16 << 20;

/// How much of one task's kept output [`Captured`] holds in memory; the rest goes to a
/// temporary file of its own (already unlinked), so that a hundred tasks running at once
/// with large output do not each hold `--max-output` in memory.
pub const CAPTURED_IN_MEMORY: usize = 64 << 10;

/// Keeps the first `limit` bytes of a task's output (stdout and stderr together, in the
/// order they came), and counts all of it. Beyond [`CAPTURED_IN_MEMORY`] the kept bytes
/// wait in a temporary file (in memory still if none can be made); [`Captured::take`]
/// gives them back.
#[derive(Debug)]
pub struct Captured {
    /// Bytes the command wrote, kept or not.
    pub stdout_total: u64,
    pub stderr_total: u64,
    pub warnings: Vec<String>,
    limit: usize,
    kept: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Past the memory bound: the file and, in order, which stream each run of its bytes
    /// came from, and how long that run is.
    spill: Option<(std::fs::File, Vec<(bool, usize)>)>,
    /// Writing to the file failed: kept bytes are incomplete.
    spill_error: Option<String>,
}

impl Captured {
    pub fn new(limit: usize) -> Self {
        Captured {
            stdout_total: 0,
            stderr_total: 0,
            warnings: Vec::new(),
            limit,
            kept: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            spill: None,
            spill_error: None,
        }
    }

    /// Some output was not kept.
    pub fn truncated(&self) -> bool {
        self.stdout_total + self.stderr_total > self.kept as u64
    }

    /// The kept stdout and stderr, whole; the sink keeps nothing from here on.
    pub fn take(&mut self) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
        let (mut out, mut err) = (
            std::mem::take(&mut self.stdout),
            std::mem::take(&mut self.stderr),
        );
        self.limit = 0;
        if let Some(e) = self.spill_error.take() {
            return Err(std::io::Error::other(e));
        }
        if let Some((mut file, runs)) = self.spill.take() {
            use std::io::{Read, Seek};
            file.rewind()?;
            let mut file = std::io::BufReader::new(file);
            for (is_out, len) in runs {
                let to = if is_out { &mut out } else { &mut err };
                let start = to.len();
                to.resize(start + len, 0);
                file.read_exact(&mut to[start..])?;
            }
        }
        Ok((out, err))
    }

    fn keep(&mut self, is_out: bool, bytes: &[u8]) {
        let bytes = &bytes[..self.limit.saturating_sub(self.kept).min(bytes.len())];
        if bytes.is_empty() {
            return;
        }
        self.kept += bytes.len();
        if self.spill.is_none() && self.kept > CAPTURED_IN_MEMORY {
            // No file to be had (a full /tmp, no descriptor left): memory it is.
            self.spill = spill_file().ok().map(|f| (f, Vec::new()));
        }
        let Some((file, runs)) = &mut self.spill else {
            let to = if is_out {
                &mut self.stdout
            } else {
                &mut self.stderr
            };
            to.extend_from_slice(bytes);
            return;
        };
        use std::io::Write;
        if let Err(e) = file.write_all(bytes) {
            self.spill_error
                .get_or_insert_with(|| format!("keeping the output in a temporary file: {e}"));
            return;
        }
        match runs.last_mut() {
            Some((last, len)) if *last == is_out => *len += bytes.len(),
            _ => runs.push((is_out, bytes.len())),
        }
    }
}

/// A temporary file nobody else can open: unlinked as soon as it is made.
fn spill_file() -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    let mut last = None;
    for _ in 0..8 {
        let path = dir.join(format!(".swarm-exec-{}", uuid::Uuid::new_v4().simple()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => {
                std::fs::remove_file(&path)?;
                return Ok(f);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary file")))
}

impl OutputSink for Captured {
    fn stdout(&mut self, bytes: &[u8]) {
        self.stdout_total += bytes.len() as u64;
        self.keep(true, bytes);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.stderr_total += bytes.len() as u64;
        self.keep(false, bytes);
    }
    fn warn(&mut self, message: &str) {
        self.warnings.push(message.to_owned());
    }
}

/// Keeps the last `limit` bytes of what passes through (stdout and stderr as they came),
/// counts all of it, and passes it on.
pub struct Tail<S> {
    inner: S,
    kept: VecDeque<u8>,
    total: u64,
    limit: usize,
}

impl<S: OutputSink> Tail<S> {
    pub fn new(inner: S, limit: usize) -> Self {
        Tail {
            inner,
            kept: VecDeque::with_capacity(limit.min(1 << 20)),
            total: 0,
            limit,
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let bytes = &bytes[bytes.len().saturating_sub(self.limit)..];
        let over = (self.kept.len() + bytes.len()).saturating_sub(self.limit);
        self.kept.drain(..over);
        self.kept.extend(bytes);
    }

    /// The sink, the kept bytes and how many passed through in all.
    pub fn into_parts(self) -> (S, Vec<u8>, u64) {
        (self.inner, self.kept.into(), self.total)
    }
}

impl<S: OutputSink> OutputSink for Tail<S> {
    fn stdout(&mut self, bytes: &[u8]) {
        self.keep(bytes);
        self.inner.stdout(bytes);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.keep(bytes);
        self.inner.stderr(bytes);
    }
    fn warn(&mut self, message: &str) {
        self.inner.warn(message);
    }
    fn progress(&mut self, status: &str) {
        self.inner.progress(status);
    }
}

/// Which end of the output a cut kept: a character split by the cut is dropped whole, so
/// valid UTF-8 stays valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    None,
    /// The first bytes were kept: the end may split a character.
    KeptStart,
    /// The last bytes were kept: the start may split a character.
    KeptEnd,
}

/// Puts `bytes` under `key` as text. Text that is not UTF-8 is shown with U+FFFD in place
/// of the bad bytes, and the exact bytes go under `<key>_base64` (standard alphabet,
/// padded), so nothing is lost; the key is absent when the text is exact.
pub fn bytes_json(obj: &mut Map<String, Value>, key: &str, bytes: &[u8], cut: Cut) {
    let bytes = match cut {
        Cut::None => bytes,
        Cut::KeptStart => trim_split_end(bytes),
        Cut::KeptEnd => trim_split_start(bytes),
    };
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            obj.insert(key.to_owned(), Value::String(s.to_owned()));
        }
        Err(_) => {
            obj.insert(
                key.to_owned(),
                Value::String(String::from_utf8_lossy(bytes).into_owned()),
            );
            obj.insert(
                format!("{key}_base64"),
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            );
        }
    }
}

/// Without an incomplete character at the end (when that is what makes it invalid).
fn trim_split_end(bytes: &[u8]) -> &[u8] {
    match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    }
}

/// Without the continuation bytes of a character cut at the start (at most three).
fn trim_split_start(bytes: &[u8]) -> &[u8] {
    let skip = bytes
        .iter()
        .take(3)
        .take_while(|&&b| b & 0xC0 == 0x80)
        .count();
    if skip > 0 && std::str::from_utf8(&bytes[skip..]).is_ok() {
        &bytes[skip..]
    } else {
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Null;
    impl OutputSink for Null {
        fn stdout(&mut self, _: &[u8]) {}
        fn stderr(&mut self, _: &[u8]) {}
        fn warn(&mut self, _: &str) {}
    }

    #[test]
    fn captured_keeps_the_first_bytes_of_both_streams_and_counts_all() {
        let mut c = Captured::new(10);
        c.stdout(b"123456");
        c.stderr(b"abcdef");
        c.stdout(b"789");
        assert_eq!((c.stdout_total, c.stderr_total), (9, 6));
        assert!(c.truncated());
        let (out, err) = c.take().unwrap();
        assert_eq!(out, b"123456");
        assert_eq!(err, b"abcd");
        let mut c = Captured::new(10);
        c.stdout(b"0123456789");
        assert!(!c.truncated());
    }

    #[test]
    fn captured_past_its_memory_bound_gives_back_both_streams_exactly() {
        let limit = CAPTURED_IN_MEMORY * 3;
        let mut c = Captured::new(limit);
        let (mut want_out, mut want_err) = (Vec::new(), Vec::new());
        // Chunks of both streams, interleaved, of lengths that cross the bound mid-chunk.
        for i in 0..400u32 {
            let chunk: Vec<u8> = (0..(i * 7 % 1500)).map(|j| (i ^ j) as u8).collect();
            if i % 3 == 0 {
                c.stderr(&chunk);
                want_err.extend_from_slice(&chunk);
            } else {
                c.stdout(&chunk);
                want_out.extend_from_slice(&chunk);
            }
        }
        assert!(c.spill.is_some(), "past the bound, kept in a file");
        assert!(c.stdout.len() + c.stderr.len() <= CAPTURED_IN_MEMORY);
        let total = want_out.len() + want_err.len();
        assert!(total > limit, "{total}: the test must cross the limit too");
        assert!(c.truncated());
        let (out, err) = c.take().unwrap();
        assert_eq!(out.len() + err.len(), limit);
        // Kept: the first `limit` bytes in the order they came, split by stream.
        assert_eq!(&out[..], &want_out[..out.len()]);
        assert_eq!(&err[..], &want_err[..err.len()]);
        // Taken: nothing more is kept, but still counted.
        c.stdout(b"more");
        assert_eq!(c.take().unwrap(), (Vec::new(), Vec::new()));
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail::new(Null, 2048);
        t.stdout(&vec![b'a'; 2048]);
        t.stderr(b"end");
        for _ in 0..1000 {
            t.stdout(b"x");
        }
        t.stdout(&vec![b'b'; 5000]);
        t.stdout(b"!");
        let (_, tail, total) = t.into_parts();
        assert_eq!(tail.len(), 2048);
        assert_eq!(total, 2048 + 3 + 1000 + 5000 + 1);
        assert_eq!(&tail[..2047], &vec![b'b'; 2047][..]);
        assert!(tail.ends_with(b"b!"));
    }

    #[test]
    fn json_text_is_exact_or_carries_the_bytes() {
        let mut m = Map::new();
        bytes_json(&mut m, "out", "héllo\n".as_bytes(), Cut::None);
        assert_eq!(m["out"], "héllo\n");
        assert!(!m.contains_key("out_base64"));

        let mut m = Map::new();
        bytes_json(&mut m, "out", b"a\xffb", Cut::None);
        assert_eq!(m["out"], "a\u{fffd}b");
        assert_eq!(m["out_base64"], "Yf9i");

        // A cut through "é" (c3 a9) drops the half character, not the text.
        let mut m = Map::new();
        bytes_json(&mut m, "out", b"h\xc3", Cut::KeptStart);
        assert_eq!(m["out"], "h");
        assert!(!m.contains_key("out_base64"));
        let mut m = Map::new();
        bytes_json(&mut m, "out", b"\xa9llo", Cut::KeptEnd);
        assert_eq!(m["out"], "llo");
        assert!(!m.contains_key("out_base64"));
        // Without a cut the same bytes are not valid, and are kept exactly.
        let mut m = Map::new();
        bytes_json(&mut m, "out", b"\xa9llo", Cut::None);
        assert_eq!(m["out_base64"], "qWxsbw==");
    }
}
