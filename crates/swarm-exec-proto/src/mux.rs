//! The framing that port-forward's streams (`crate::forward`) and `--persist`'s runs
//! (`crate::serve`) share: kind (1 byte), stream or run id (4, big-endian), payload
//! length (4), payload. Each module gives its kinds meaning and its limits.

const HEADER: usize = 9;

/// One frame's bytes; a payload longer than `max` is cut to it.
pub(crate) fn encode(kind: u8, id: u32, payload: &[u8], max: usize) -> Vec<u8> {
    let payload = &payload[..payload.len().min(max)];
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(kind);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A whole frame, unparsed: kind, id, payload.
pub(crate) type Raw = (u8, u32, Vec<u8>);

/// A frame whose declared payload is longer than its kind allows: kind and length.
pub(crate) struct TooLong {
    pub(crate) kind: u8,
    pub(crate) len: usize,
}

/// Frames out of bytes as they come, in pieces of any size, unparsed.
#[derive(Debug, Default)]
pub(crate) struct Splitter {
    buf: Vec<u8>,
}

impl Splitter {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame as (kind, id, payload), if one is in; `max` says how long a
    /// kind's payload may be.
    pub(crate) fn next(
        &mut self,
        max: impl Fn(u8) -> usize,
    ) -> Option<Result<Raw, TooLong>> {
        if self.buf.len() < HEADER {
            return None;
        }
        let kind = self.buf[0];
        let id = u32::from_be_bytes(self.buf[1..5].try_into().expect("4 bytes"));
        let len = u32::from_be_bytes(self.buf[5..9].try_into().expect("4 bytes")) as usize;
        if len > max(kind) {
            return Some(Err(TooLong { kind, len }));
        }
        if self.buf.len() < HEADER + len {
            return None;
        }
        let payload: Vec<u8> = self.buf.drain(..HEADER + len).skip(HEADER).collect();
        Some(Ok((kind, id, payload)))
    }
}
