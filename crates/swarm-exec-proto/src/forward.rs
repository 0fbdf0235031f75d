//! `port-forward`'s connections, many at once inside one live session: the client opens a
//! stream for each connection it accepts, the forwarder (in the target's network
//! namespace, on its node) connects it to the port asked for, and bytes go both ways as
//! frames of that stream. Its bytes ride the session as the forwarder's stdin and stdout,
//! sealed like any command's.
//!
//! Each direction of each stream has a window: a sender sends no more than the receiver
//! has granted (at first [`WINDOW`]), and the receiver grants again what it has written
//! to its socket. So a connection whose reader is slow holds up only itself — never the
//! session, which carries every other connection too. Half-closes go through (`Eof`);
//! `Close` ends a stream both ways (a reset, or both halves done).
//!
//! Frame: kind (1 byte), stream id (4, big-endian), payload length (4), payload.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

/// What a receiver grants each new stream at first, each way.
pub const WINDOW: usize = 256 * 1024;
/// A receiver grants again once it has written this much (less would be a frame per read).
const GRANT_EVERY: usize = 64 * 1024;
/// The most one data frame carries.
const CHUNK: usize = 32 * 1024;
/// The most a frame's payload may be: a data frame, or a reason.
const MAX_PAYLOAD: usize = 64 * 1024;

const OPEN: u8 = 1;
const OPENED: u8 = 2;
const REFUSED: u8 = 3;
const DATA: u8 = 4;
const EOF: u8 = 5;
const CLOSE: u8 = 6;
const GRANT: u8 = 7;

/// One frame of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client → forwarder: connect stream `id` to `port`.
    Open {
        id: u32,
        port: u16,
    },
    /// Forwarder → client: connected.
    Opened {
        id: u32,
    },
    /// Forwarder → client: not connected, and why.
    Refused {
        id: u32,
        reason: String,
    },
    Data {
        id: u32,
        bytes: Vec<u8>,
    },
    /// The sender will send no more on this stream (its reader saw end of file).
    Eof {
        id: u32,
    },
    /// The stream is over both ways.
    Close {
        id: u32,
    },
    /// The receiver has room for `bytes` more.
    Grant {
        id: u32,
        bytes: u32,
    },
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let (kind, id, payload): (u8, u32, &[u8]) = match self {
            Frame::Open { id, port } => (OPEN, *id, &port.to_be_bytes()),
            Frame::Opened { id } => (OPENED, *id, &[]),
            Frame::Refused { id, reason } => (REFUSED, *id, reason.as_bytes()),
            Frame::Data { id, bytes } => (DATA, *id, bytes),
            Frame::Eof { id } => (EOF, *id, &[]),
            Frame::Close { id } => (CLOSE, *id, &[]),
            Frame::Grant { id, bytes } => (GRANT, *id, &bytes.to_be_bytes()),
        };
        // A reason is cut to fit; data frames are never made larger than CHUNK.
        crate::mux::encode(kind, id, payload, MAX_PAYLOAD)
    }
}

/// Why bytes were not frames.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("unknown forward frame kind {0}")]
    Kind(u8),
    #[error("forward frame of {0} bytes, more than allowed")]
    TooLong(usize),
    #[error("forward frame of kind {kind} with a payload of {len} bytes")]
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
        let (kind, id, payload) = match self.frames.next(|_| MAX_PAYLOAD)? {
            Ok(frame) => frame,
            Err(e) => return Some(Err(FrameError::TooLong(e.len))),
        };
        let len = payload.len();
        let bad = || FrameError::Malformed { kind, len };
        Some(match kind {
            OPEN => <[u8; 2]>::try_from(payload.as_slice())
                .map(|p| Frame::Open {
                    id,
                    port: u16::from_be_bytes(p),
                })
                .map_err(|_| bad()),
            OPENED => Ok(Frame::Opened { id }),
            REFUSED => Ok(Frame::Refused {
                id,
                reason: String::from_utf8_lossy(&payload).into_owned(),
            }),
            DATA => Ok(Frame::Data { id, bytes: payload }),
            EOF => Ok(Frame::Eof { id }),
            CLOSE => Ok(Frame::Close { id }),
            GRANT => <[u8; 4]>::try_from(payload.as_slice())
                .map(|p| Frame::Grant {
                    id,
                    bytes: u32::from_be_bytes(p),
                })
                .map_err(|_| bad()),
            other => Err(FrameError::Kind(other)),
        })
    }
}

/// What [`Mux::feed`] leaves to its owner.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// (Forwarder) the client asks for a connection to `port`.
    Open { id: u32, port: u16 },
    /// (Client) a connection was refused; its local socket is closed.
    Refused { id: u32, port: u16, reason: String },
}

/// What reaches a stream's socket writer.
enum Incoming {
    Data(Vec<u8>),
    Eof,
    Close,
}

/// One open stream, as the dispatcher sees it.
struct Handle {
    incoming: mpsc::UnboundedSender<Incoming>,
    /// What the peer has granted and this end not yet sent.
    granted: Arc<Semaphore>,
}

/// A stream's side of its [`Handle`]: what comes for its socket, and its grant.
type Ends = (mpsc::UnboundedReceiver<Incoming>, Arc<Semaphore>);

fn new_handle() -> (Handle, Ends) {
    let (tx, rx) = mpsc::unbounded_channel();
    let granted = Arc::new(Semaphore::new(WINDOW));
    let handle = Handle {
        incoming: tx,
        granted: granted.clone(),
    };
    (handle, (rx, granted))
}

#[derive(Default)]
struct Inner {
    decoder: Decoder,
    streams: HashMap<u32, Handle>,
    /// (Client) accepted connections waiting for the forwarder's answer, and their port.
    pending: HashMap<u32, (TcpStream, u16)>,
    next_id: u32,
}

/// Either end's streams. Frames for the peer go to `out` (the session's input on the
/// client, the forwarder's stdout on the node); frames from the peer come to
/// [`Mux::feed`].
#[derive(Clone)]
pub struct Mux {
    inner: Arc<Mutex<Inner>>,
    out: mpsc::Sender<Vec<u8>>,
}

impl Mux {
    pub fn new(out: mpsc::Sender<Vec<u8>>) -> Mux {
        Mux {
            inner: Arc::default(),
            out,
        }
    }

    /// (Client) asks the forwarder to connect `conn` to `port`; the stream starts when it
    /// answers.
    pub async fn open(&self, conn: TcpStream, port: u16) {
        let id = {
            let mut inner = self.inner.lock().expect("not poisoned");
            inner.next_id = inner.next_id.wrapping_add(1);
            let id = inner.next_id;
            inner.pending.insert(id, (conn, port));
            id
        };
        let _ = self.out.send(Frame::Open { id, port }.encode()).await;
    }

    /// (Forwarder) `conn` is connected for stream `id`: the client is told, and bytes flow.
    pub async fn opened(&self, id: u32, conn: TcpStream) {
        let handle = self.register(id);
        // Told before any of its data can be sent: the stream's pumps start after.
        if self.out.send(Frame::Opened { id }.encode()).await.is_ok() {
            self.spawn(id, conn, handle);
        }
    }

    /// (Forwarder) stream `id` could not be connected.
    pub async fn refuse(&self, id: u32, reason: String) {
        let _ = self.out.send(Frame::Refused { id, reason }.encode()).await;
    }

    /// Frames from the peer: data, grants and ends reach their streams; what needs the
    /// owner comes back as events.
    pub fn feed(&self, bytes: &[u8]) -> Result<Vec<Event>, FrameError> {
        let mut inner = self.inner.lock().expect("not poisoned");
        inner.decoder.feed(bytes);
        let mut events = Vec::new();
        while let Some(frame) = inner.decoder.next_frame() {
            let stream = |inner: &Inner, id: u32| {
                inner
                    .streams
                    .get(&id)
                    .map(|h| (h.incoming.clone(), h.granted.clone()))
            };
            // Frames of a stream that is gone here are dropped: it was closed meanwhile.
            match frame? {
                Frame::Open { id, port } => events.push(Event::Open { id, port }),
                Frame::Opened { id } => {
                    // Registered before the next frame, which may be its first data.
                    if let Some((conn, _)) = inner.pending.remove(&id) {
                        let (handle, ends) = new_handle();
                        inner.streams.insert(id, handle);
                        self.spawn(id, conn, ends);
                    }
                }
                Frame::Refused { id, reason } => {
                    if let Some((_, port)) = inner.pending.remove(&id) {
                        events.push(Event::Refused { id, port, reason });
                    }
                }
                Frame::Data { id, bytes } => {
                    if let Some((tx, _)) = stream(&inner, id) {
                        let _ = tx.send(Incoming::Data(bytes));
                    }
                }
                Frame::Eof { id } => {
                    if let Some((tx, _)) = stream(&inner, id) {
                        let _ = tx.send(Incoming::Eof);
                    }
                }
                Frame::Close { id } => {
                    inner.pending.remove(&id);
                    if let Some(h) = inner.streams.remove(&id) {
                        let _ = h.incoming.send(Incoming::Close);
                    }
                }
                Frame::Grant { id, bytes } => {
                    if let Some((_, granted)) = stream(&inner, id) {
                        granted.add_permits(bytes as usize);
                    }
                }
            }
        }
        Ok(events)
    }

    /// How many streams are open or waiting to be.
    pub fn open_streams(&self) -> usize {
        let inner = self.inner.lock().expect("not poisoned");
        inner.streams.len() + inner.pending.len()
    }

    /// Ends every stream: their sockets are closed.
    pub fn close_all(&self) {
        let mut inner = self.inner.lock().expect("not poisoned");
        inner.pending.clear();
        for (_, h) in inner.streams.drain() {
            let _ = h.incoming.send(Incoming::Close);
        }
    }

    fn register(&self, id: u32) -> Ends {
        let (handle, ends) = new_handle();
        self.inner
            .lock()
            .expect("not poisoned")
            .streams
            .insert(id, handle);
        ends
    }

    fn spawn(&self, id: u32, conn: TcpStream, (incoming, granted): Ends) {
        let mux = self.clone();
        tokio::spawn(async move {
            pump(id, conn, incoming, &granted, &mux.out).await;
            // Whatever way it ended, the peer forgets it too.
            let _ = mux.out.send(Frame::Close { id }.encode()).await;
            mux.inner.lock().expect("not poisoned").streams.remove(&id);
        });
    }
}

/// One stream's bytes both ways until both halves are done, or either fails or is closed.
async fn pump(
    id: u32,
    conn: TcpStream,
    mut incoming: mpsc::UnboundedReceiver<Incoming>,
    granted: &Semaphore,
    out: &mpsc::Sender<Vec<u8>>,
) {
    let _ = conn.set_nodelay(true);
    let (mut rx, mut tx) = conn.into_split();
    // Socket → peer, never more than granted. `true`: it ended at end of file.
    let up = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let allowed = take_grant(granted).await;
            match rx.read(&mut buf[..allowed]).await {
                Ok(0) => {
                    return out.send(Frame::Eof { id }.encode()).await.is_ok();
                }
                Ok(n) => {
                    granted.add_permits(allowed - n);
                    let data = Frame::Data {
                        id,
                        bytes: buf[..n].to_vec(),
                    };
                    if out.send(data.encode()).await.is_err() {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    };
    // Peer → socket, granting again what was written. `true`: the peer's end of file.
    let down = async {
        let mut written = 0usize;
        while let Some(m) = incoming.recv().await {
            match m {
                Incoming::Data(bytes) => {
                    if tx.write_all(&bytes).await.is_err() {
                        return false;
                    }
                    written += bytes.len();
                    if written >= GRANT_EVERY {
                        let grant = Frame::Grant {
                            id,
                            bytes: written as u32,
                        };
                        written = 0;
                        if out.send(grant.encode()).await.is_err() {
                            return false;
                        }
                    }
                }
                Incoming::Eof => {
                    let _ = tx.shutdown().await;
                    return true;
                }
                Incoming::Close => return false,
            }
        }
        false
    };
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            ok = &mut up, if !up_done => {
                if !ok {
                    return;
                }
                up_done = true;
            }
            ok = &mut down, if !down_done => {
                if !ok {
                    return;
                }
                down_done = true;
            }
        }
    }
}

/// Waits for at least one byte of grant and takes up to [`CHUNK`].
async fn take_grant(granted: &Semaphore) -> usize {
    match granted.acquire().await {
        Ok(p) => p.forget(),
        // Never closed; were it, nothing more could be sent.
        Err(_) => return std::future::pending().await,
    }
    let more = granted.available_permits().min(CHUNK - 1);
    match u32::try_from(more)
        .ok()
        .and_then(|m| granted.try_acquire_many(m).ok())
    {
        Some(p) if more > 0 => {
            p.forget();
            1 + more
        }
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let frames = vec![
            Frame::Open { id: 1, port: 5432 },
            Frame::Opened { id: 1 },
            Frame::Refused {
                id: 2,
                reason: "connection refused".into(),
            },
            Frame::Data {
                id: 1,
                bytes: (0..=255).collect(),
            },
            Frame::Eof { id: 1 },
            Frame::Close { id: u32::MAX },
            Frame::Grant {
                id: 1,
                bytes: 65536,
            },
        ];
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        for piece in [1, 7, 1000] {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for chunk in wire.chunks(piece) {
                d.feed(chunk);
                while let Some(f) = d.next_frame() {
                    got.push(f.unwrap());
                }
            }
            assert_eq!(got, frames, "in pieces of {piece}");
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        let mut d = Decoder::default();
        d.feed(&[99, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Some(Err(FrameError::Kind(99))));
        let mut d = Decoder::default();
        d.feed(&[DATA, 0, 0, 0, 1, 0x10, 0, 0, 0]);
        assert!(matches!(d.next_frame(), Some(Err(FrameError::TooLong(_)))));
        let mut d = Decoder::default();
        d.feed(&[OPEN, 0, 0, 0, 1, 0, 0, 0, 1, 7]);
        assert!(matches!(
            d.next_frame(),
            Some(Err(FrameError::Malformed { .. }))
        ));
    }

    /// Two muxes joined back to back (as the session joins them), a server behind one and
    /// clients in front of the other: a slow reader on one connection holds up no other,
    /// and every byte arrives.
    #[tokio::test]
    async fn streams_flow_apart_and_a_slow_one_stalls_only_itself() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        // The server sends 64 MB on the first connection (the stalled one), counting what
        // the socket takes, and 4 MB on each other; then reads until the client is done.
        let stalled_sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = stalled_sent.clone();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let (mut c, _) = server.accept().await.unwrap();
                let (size, counted) = match std::mem::take(&mut first) {
                    true => (64 << 20, Some(counted.clone())),
                    false => (4 << 20, None),
                };
                tokio::spawn(async move {
                    let chunk = vec![7u8; 64 << 10];
                    for _ in 0..size / chunk.len() {
                        if c.write_all(&chunk).await.is_err() {
                            return;
                        }
                        if let Some(n) = &counted {
                            n.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    let _ = c.shutdown().await;
                    let mut sink = Vec::new();
                    let _ = c.read_to_end(&mut sink).await;
                });
            }
        });
        let (to_node, mut node_in) = mpsc::channel::<Vec<u8>>(16);
        let (to_client, mut client_in) = mpsc::channel::<Vec<u8>>(16);
        let client = Mux::new(to_node);
        let node = Mux::new(to_client);
        let n2 = node.clone();
        tokio::spawn(async move {
            while let Some(b) = node_in.recv().await {
                for e in n2.feed(&b).unwrap() {
                    if let Event::Open { id, port } = e {
                        let c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                        n2.opened(id, c).await;
                    }
                }
            }
        });
        let c2 = client.clone();
        tokio::spawn(async move {
            while let Some(b) = client_in.recv().await {
                assert!(c2.feed(&b).unwrap().is_empty());
            }
        });
        let local = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local_port = local.local_addr().unwrap().port();
        let c3 = client.clone();
        tokio::spawn(async move {
            loop {
                let (c, _) = local.accept().await.unwrap();
                c3.open(c, port).await;
            }
        });
        // A connection nobody reads: the server's bytes stay with it, beyond the window.
        let _stalled = TcpStream::connect(("127.0.0.1", local_port)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut readers = Vec::new();
        for _ in 0..5 {
            readers.push(tokio::spawn(async move {
                let mut c = TcpStream::connect(("127.0.0.1", local_port)).await.unwrap();
                let mut got = Vec::new();
                c.read_to_end(&mut got).await.unwrap();
                got
            }));
        }
        for r in readers {
            let got = tokio::time::timeout(std::time::Duration::from_secs(20), r)
                .await
                .expect("not held up by the stalled connection")
                .unwrap();
            assert_eq!(got.len(), 4 << 20);
            assert!(got.iter().all(|&b| b == 7));
        }
        // What the stalled connection's server got rid of: the window and what the sockets
        // on the way buffer, far from its 64 MB (nothing held it back without windows).
        let sent = stalled_sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            sent < 24 << 20,
            "{sent} bytes taken from a connection nobody reads"
        );
    }
}
