//! The local terminal of a `-t` session: raw mode for its length, restored on every path
//! (a normal end, an error, a signal, a panic — which aborts, so no destructor would run),
//! and its size, now and whenever it changes.

use std::io::IsTerminal;
use std::sync::Mutex;

use futures_util::Stream;
use tokio::signal::unix::{signal, SignalKind};

/// The settings raw mode replaced, for whoever restores them first.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Raw mode on stdin until dropped: keys go to the remote command as typed (Ctrl-C too,
/// as a byte), nothing is echoed or edited locally.
pub struct RawMode(());

impl RawMode {
    pub fn enable() -> std::io::Result<RawMode> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
            let previous_hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous_hook(info);
            }));
            let mut raw = t;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(0, libc::TCSANOW, &raw) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(RawMode(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back as it was, once.
pub fn restore() {
    if let Some(t) = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take() {
        // SAFETY: the settings read by `RawMode::enable`, back on fd 0.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &t);
        }
    }
}

/// The terminal's size (rows, columns), from stdout or else stdin.
pub fn size() -> Option<(u16, u16)> {
    for fd in [1, 0] {
        // SAFETY: TIOCGWINSZ fills a winsize we own.
        let mut w: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut w) } == 0 && w.ws_row > 0 {
            return Some((w.ws_row, w.ws_col));
        }
    }
    None
}

/// What is typed (or piped), chunk by chunk, read on a thread of its own that the process
/// may leave blocked in a read when it ends; the channel closes at end of input, or after
/// a failed read, which [`read_error`] then tells.
pub fn stdin_chunks() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    stdin_chunks_after(Vec::new())
}

/// [`stdin_chunks`], `first` (what was read of stdin already) before the rest.
pub fn stdin_chunks_after(first: Vec<u8>) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let read = first.len() as u64;
    chunks_of(std::io::stdin(), first, read, &READ_ERROR)
}

/// The rest of stdin, chunk by chunk, after the first `read` bytes (sent on their own).
pub fn stdin_rest(read: u64) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    chunks_of(std::io::stdin(), Vec::new(), read, &READ_ERROR)
}

/// The read of stdin that failed, if one did: the command then saw its input end early.
static READ_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Why stdin could not be streamed to its end, if it could not: the command's exit code is
/// then no answer to the input it was given.
pub fn read_error() -> Option<String> {
    READ_ERROR.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `first`, then what `input` gives; `read` counts stdin's bytes read so far, `first`'s
/// included, for the message should a read fail.
fn chunks_of(
    mut input: impl std::io::Read + Send + 'static,
    first: Vec<u8>,
    mut read: u64,
    failed: &'static Mutex<Option<String>>,
) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        if !first.is_empty() && tx.blocking_send(first).is_err() {
            return;
        }
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match input.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    read += n as u64;
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Noted before `tx` drops: whoever sees the input end can see why.
                    *failed.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(format!("reading stdin failed after {read} bytes: {e}"));
                    return;
                }
            }
        }
    });
    rx
}

/// The size now, then again on every SIGWINCH.
pub fn sizes() -> std::io::Result<impl Stream<Item = (u16, u16)> + Unpin> {
    let winch = signal(SignalKind::window_change())?;
    let first = size();
    Ok(Box::pin(futures_util::stream::unfold(
        (winch, first, true),
        |(mut winch, first, at_start)| async move {
            if at_start {
                if let Some(s) = first {
                    return Some((s, (winch, None, false)));
                }
            }
            loop {
                winch.recv().await?;
                if let Some(s) = size() {
                    return Some((s, (winch, None, false)));
                }
            }
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives its bytes, then fails.
    struct Breaks(std::io::Cursor<Vec<u8>>);

    impl std::io::Read for Breaks {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
                n => Ok(n),
            }
        }
    }

    async fn drain(mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Vec<u8> {
        let mut got = Vec::new();
        while let Some(c) = rx.recv().await {
            got.extend(c);
        }
        got
    }

    #[tokio::test]
    async fn a_failed_read_ends_the_input_and_is_noted_with_what_came_before() {
        static FAILED: Mutex<Option<String>> = Mutex::new(None);
        let input = Breaks(std::io::Cursor::new(vec![7u8; 70_000]));
        // `first` and the 1000 bytes sent before it on their own: all counted.
        let got = drain(chunks_of(input, b"ab".to_vec(), 1_002, &FAILED)).await;
        assert_eq!(got.len(), 70_002);
        let why = FAILED
            .lock()
            .unwrap()
            .clone()
            .expect("the failed read is noted");
        assert!(
            why.starts_with("reading stdin failed after 71002 bytes: "),
            "{why}"
        );
    }

    #[tokio::test]
    async fn input_read_to_its_end_notes_nothing() {
        static FAILED: Mutex<Option<String>> = Mutex::new(None);
        let input = std::io::Cursor::new(vec![1u8; 100_000]);
        assert_eq!(
            drain(chunks_of(input, Vec::new(), 0, &FAILED)).await,
            vec![1u8; 100_000]
        );
        assert_eq!(*FAILED.lock().unwrap(), None);
    }
}
