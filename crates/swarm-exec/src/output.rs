//! The command's output, onto this process's stdout and stderr as it arrives.

use std::io::{self, Write};

use swarm_exec_core::OutputSink;

/// Writes and flushes each chunk. A stream that fails (e.g. `| head` closed the pipe) is
/// dropped, not fatal: the run continues so the helper is removed and the code reported.
#[derive(Default)]
pub struct StdSink {
    stdout_broken: bool,
    stderr_broken: bool,
}

fn write(w: &mut impl Write, bytes: &[u8], broken: &mut bool) {
    if !*broken && w.write_all(bytes).and_then(|()| w.flush()).is_err() {
        *broken = true;
    }
}

impl OutputSink for StdSink {
    fn stdout(&mut self, bytes: &[u8]) {
        write(&mut io::stdout().lock(), bytes, &mut self.stdout_broken);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        write(&mut io::stderr().lock(), bytes, &mut self.stderr_broken);
    }
    fn warn(&mut self, message: &str) {
        eprintln!("swarm-exec: warning: {message}");
    }
}
