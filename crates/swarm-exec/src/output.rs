//! Where commands' output goes: this process's stdout and stderr, live; with a per-task
//! prefix when several tasks share them (`--format json` captures with
//! `swarm_exec_core::sink::Captured`).

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swarm_exec_core::OutputSink;

/// The first error writing the commands' output, other than a closed pipe: a run that
/// could not write all of its output must not exit as if it had (see `exit.rs`).
static WRITE_ERROR: Mutex<Option<io::Error>> = Mutex::new(None);

/// Notes the outcome of a write of output; `false` when it failed.
pub fn note(written: io::Result<()>) -> bool {
    match written {
        Ok(()) => true,
        // `| head` closing the pipe is the reader's choice, as with any Unix tool.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => false,
        Err(e) => {
            let mut first = WRITE_ERROR.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert(e);
            false
        }
    }
}

/// The first error that lost output (disk full, I/O error), if any.
pub fn write_error() -> Option<String> {
    let first = WRITE_ERROR.lock().unwrap_or_else(|p| p.into_inner());
    first.as_ref().map(ToString::to_string)
}

/// Writes and flushes each chunk. A stream that fails (e.g. `| head` closed the pipe) is
/// dropped: the run continues so the helper is removed, and a failure other than a closed
/// pipe makes the run fail (125) instead of exiting with the command's code.
///
/// On a terminal, when nothing was printed for a second, it shows what the run waits on
/// in one status line on stderr, cleared as soon as output comes.
pub struct StdSink {
    stdout_broken: bool,
    stderr_broken: bool,
    show_progress: bool,
    quiet_since: Instant,
    status_shown: bool,
    /// The last byte written ended a line (or nothing was written): a status line would
    /// not wipe part of the command's output.
    at_line_start: bool,
}

/// How long output must pause before a status line appears.
const STATUS_AFTER: Duration = Duration::from_secs(1);

impl StdSink {
    /// `quiet`: never show a status line (`-q`); it is never shown off a terminal either.
    pub fn new(quiet: bool) -> Self {
        StdSink {
            stdout_broken: false,
            stderr_broken: false,
            show_progress: !quiet && io::stderr().is_terminal(),
            quiet_since: Instant::now(),
            status_shown: false,
            at_line_start: true,
        }
    }

    fn wrote(&mut self, bytes: &[u8]) {
        if let Some(&last) = bytes.last() {
            self.at_line_start = last == b'\n';
        }
    }

    pub fn clear_status(&mut self) {
        if self.status_shown {
            let mut e = io::stderr().lock();
            let _ = e.write_all(b"\r\x1b[K").and_then(|()| e.flush());
            self.status_shown = false;
        }
        self.quiet_since = Instant::now();
    }
}

impl Drop for StdSink {
    fn drop(&mut self) {
        self.clear_status();
    }
}

fn write(w: &mut impl Write, bytes: &[u8], broken: &mut bool) {
    if !*broken && !note(w.write_all(bytes).and_then(|()| w.flush())) {
        *broken = true;
    }
}

impl OutputSink for StdSink {
    fn stdout(&mut self, bytes: &[u8]) {
        self.clear_status();
        write(&mut io::stdout().lock(), bytes, &mut self.stdout_broken);
        self.wrote(bytes);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.clear_status();
        write(&mut io::stderr().lock(), bytes, &mut self.stderr_broken);
        self.wrote(bytes);
    }
    fn warn(&mut self, message: &str) {
        self.clear_status();
        eprintln!("swarm-exec: warning: {message}");
    }
    fn note(&mut self, message: &str) {
        self.clear_status();
        eprintln!("swarm-exec: {message}");
    }
    fn progress(&mut self, status: &str) {
        if !self.show_progress || !self.at_line_start || self.quiet_since.elapsed() < STATUS_AFTER {
            return;
        }
        let width = 100;
        let line: String = status.chars().take(width).collect();
        let mut e = io::stderr().lock();
        let _ = write!(e, "\r\x1b[K{line}").and_then(|()| e.flush());
        self.status_shown = true;
    }
}

/// An output stream shared by several tasks' sinks (and perhaps by both of a sink's streams).
pub type Stream = Arc<Mutex<Box<dyn Write + Send>>>;

pub fn stream(w: impl Write + Send + 'static) -> Stream {
    Arc::new(Mutex::new(Box::new(w)))
}

/// Writes `text` and a newline to `stream`, ignoring errors (diagnostics only).
pub fn line(stream: &Stream, text: &str) {
    let mut w = stream.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(w, "{text}").and_then(|()| w.flush());
}

/// A partial line longer than this is shown as it is, prefixed.
const MAX_PENDING: usize = 16 * 1024;

/// One task's output onto shared streams, whole lines at a time with the task's prefix
/// (as `docker service logs` shows them), or passed straight through without a prefix.
pub struct PrefixedSink {
    out: Stream,
    err: Stream,
    prefix: Option<String>,
    pending_out: Vec<u8>,
    pending_err: Vec<u8>,
}

impl PrefixedSink {
    pub fn new(out: Stream, err: Stream, prefix: Option<String>) -> Self {
        PrefixedSink {
            out,
            err,
            prefix,
            pending_out: Vec::new(),
            pending_err: Vec::new(),
        }
    }

    fn emit(stream: &Stream, prefix: Option<&str>, pending: &mut Vec<u8>, bytes: &[u8]) {
        let mut w = stream.lock().unwrap_or_else(|e| e.into_inner());
        let Some(prefix) = prefix else {
            note(w.write_all(bytes).and_then(|()| w.flush()));
            return;
        };
        pending.extend_from_slice(bytes);
        let mut start = 0;
        let mut shown = Vec::new();
        while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            shown.clear();
            shown.extend_from_slice(prefix.as_bytes());
            escape_line(&pending[start..end], &mut shown);
            shown.push(b'\n');
            note(w.write_all(&shown));
            start = end + 1;
        }
        pending.drain(..start);
        // Output without newlines (binary data) is not held back for ever.
        if pending.len() >= MAX_PENDING {
            Self::finish_locked(&mut **w, prefix, pending);
        }
        note(w.flush());
    }

    fn finish(stream: &Stream, prefix: Option<&str>, pending: &mut Vec<u8>) {
        if let (Some(prefix), false) = (prefix, pending.is_empty()) {
            let mut w = stream.lock().unwrap_or_else(|e| e.into_inner());
            Self::finish_locked(&mut **w, prefix, pending);
            note(w.flush());
        }
    }

    /// What is pending as a line of its own.
    fn finish_locked(w: &mut dyn Write, prefix: &str, pending: &mut Vec<u8>) {
        let mut shown = prefix.as_bytes().to_vec();
        escape_line(pending, &mut shown);
        shown.push(b'\n');
        note(w.write_all(&shown));
        pending.clear();
    }
}

/// Appends one line of a task's output (without its newline) to `out`, its control
/// characters but the tab written as `\xNN` (`\u{NN}` for C1 controls in UTF-8): in a
/// prefixed line a task's `\r` or escape sequence could otherwise overwrite the prefix or
/// pass for another task's line. Other bytes, backslashes included, are kept as they are;
/// `--no-prefix` and `--format json` give the bytes exactly.
fn escape_line(line: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        } else if b == 0xc2 && matches!(line.get(i + 1), Some(0x80..=0x9f)) {
            out.extend_from_slice(format!("\\u{{{:x}}}", line[i + 1]).as_bytes());
            i += 1;
        } else {
            out.push(b);
        }
        i += 1;
    }
}

impl PrefixedSink {
    /// A last line without its newline is shown now, completed.
    pub fn finish_lines(&mut self) {
        Self::finish(&self.out, self.prefix.as_deref(), &mut self.pending_out);
        Self::finish(&self.err, self.prefix.as_deref(), &mut self.pending_err);
    }
}

impl Drop for PrefixedSink {
    fn drop(&mut self) {
        self.finish_lines();
    }
}

impl OutputSink for PrefixedSink {
    fn stdout(&mut self, bytes: &[u8]) {
        Self::emit(
            &self.out,
            self.prefix.as_deref(),
            &mut self.pending_out,
            bytes,
        );
    }
    fn stderr(&mut self, bytes: &[u8]) {
        Self::emit(
            &self.err,
            self.prefix.as_deref(),
            &mut self.pending_err,
            bytes,
        );
    }
    fn warn(&mut self, message: &str) {
        let p = self.prefix.as_deref().unwrap_or("");
        line(&self.err, &format!("{p}swarm-exec: warning: {message}"));
    }
    /// About the whole run, not this task: no prefix.
    fn note(&mut self, message: &str) {
        line(&self.err, &format!("swarm-exec: {message}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn prefixes_whole_lines_and_completes_the_last_one() {
        let (o, e) = (Shared::default(), Shared::default());
        {
            let mut a =
                PrefixedSink::new(stream(o.clone()), stream(e.clone()), Some("a | ".into()));
            let mut b =
                PrefixedSink::new(stream(o.clone()), stream(e.clone()), Some("b | ".into()));
            a.stdout(b"one\ntw");
            b.stdout(b"x\n");
            a.stdout(b"o\nthree");
            a.stderr(b"err\n");
        }
        assert_eq!(
            &*o.0.lock().unwrap(),
            b"a | one\nb | x\na | two\na | three\n"
        );
        assert_eq!(&*e.0.lock().unwrap(), b"a | err\n");
    }

    #[test]
    fn a_prefixed_line_cannot_forge_another_or_drive_the_terminal() {
        let o = Shared::default();
        {
            let mut a =
                PrefixedSink::new(stream(o.clone()), stream(o.clone()), Some("a | ".into()));
            a.stdout(b"ok\rb | forged\n\x1b]0;title\x07tab\there \\ \xc2\x9b2J \xff\n");
            a.stdout(b"last\r");
        }
        assert_eq!(
            String::from_utf8_lossy(&o.0.lock().unwrap()),
            "a | ok\\x0db | forged\na | \\x1b]0;title\\x07tab\there \\ \\u{9b}2J \u{fffd}\n\
             a | last\\x0d\n"
        );
    }

    #[test]
    fn without_a_prefix_bytes_pass_through() {
        let o = Shared::default();
        {
            let mut a = PrefixedSink::new(stream(o.clone()), stream(o.clone()), None);
            a.stdout(b"no newline \xff");
        }
        assert_eq!(&*o.0.lock().unwrap(), b"no newline \xff");
    }
}
