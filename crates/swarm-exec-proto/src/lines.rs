//! Lines out of a log stream that arrives in arbitrary pieces.

/// Reassembles lines from arbitrarily split chunks.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Feeds a chunk; calls `f` with every line it completes (without its newline).
    pub fn feed(&mut self, chunk: &[u8], mut f: impl FnMut(&[u8])) {
        // What was pending holds no newline: only the new bytes need scanning.
        let mut scan = self.pending.len();
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(pos) = self.pending[scan..].iter().position(|&b| b == b'\n') {
            let end = scan + pos;
            f(&self.pending[start..end]);
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
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_survive_any_split() {
        let text = b"one\ntwo\n\nthree";
        for split in 1..text.len() {
            let mut l = Lines::default();
            let mut got = Vec::new();
            for piece in text.chunks(split) {
                l.feed(piece, |line| got.push(line.to_vec()));
            }
            got.extend(l.finish());
            assert_eq!(got, [&b"one"[..], b"two", b"", b"three"], "split {split}");
        }
    }
}
