//! The run envelope: what a helper needs to know about its run beyond where to run, in the
//! bytes of one swarm secret.
//!
//! A swarm secret is encrypted in the managers' raft store, never shown by `docker service
//! inspect` or `docker secret inspect`, and mounted into the helper's container only (on a
//! tmpfs). So the command, its `-e` values, its stdin and the run's key never appear in a
//! service spec, a container's config, a process's argv or a log.
//!
//! Layout: the line `swx-envelope-1`, a JSON header of a length given in 4 big-endian bytes,
//! then the stdin bytes, raw, to the end.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8] = b"swx-envelope-1\n";

/// A swarm secret's data must be smaller than this (500 KiB; the engine refuses more).
pub const MAX_SECRET: usize = 500 * 1024;

/// What is run in each of a helper's target containers (all on its node).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// Full container IDs. They are also the helper's arguments (so its spec says what it
    /// works on); the helper takes them from there.
    #[serde(skip)]
    pub containers: Vec<String>,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub privileged: bool,
    /// `debug`: instead of an exec in the target, a container of this image beside it,
    /// in its PID and network namespaces (and IPC, when the target shares it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug: Option<String>,
}

/// One run's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub exec: ExecSpec,
    /// The commands' stdin; `None`: they get none (no stdin attached).
    pub stdin: Option<Vec<u8>>,
    /// Unix milliseconds (the manager side's clock) after which the command must not be
    /// started, and by which it must have ended: the run's deadline.
    pub not_after_ms: u64,
    /// The run's key: every frame a helper writes is sealed with a key derived from it.
    pub key: [u8; 32],
    /// A live session (see [`crate::session`]) instead of frames on the log.
    pub session: Option<SessionSpec>,
}

/// How a helper reaches its client in a live session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// `host:port` of the relay on the session's overlay network.
    pub relay: String,
    /// The command gets a TTY (output is then one stream).
    pub tty: bool,
    /// The command's stdin is attached and streamed from the client.
    pub stdin: bool,
    /// `cp` instead of a command: the target's archive API, for this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopySpec>,
    /// `port-forward` instead of a command: a forwarder in the target's network namespace
    /// that connects to these ports of its localhost (and no others), its stdin and stdout
    /// the streams of [`crate::forward`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Vec<u16>>,
    /// `--persist`'s standing helper instead of a command: it runs what the session's
    /// input asks for (see [`crate::serve`]), in any container on its node, until that
    /// input ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub serve: bool,
}

/// A `cp` through a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopySpec {
    /// Out of the container (its archive of `path` is sent), or into it.
    pub out: bool,
    pub path: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    #[serde(flatten)]
    exec: ExecSpec,
    stdin: bool,
    not_after_ms: u64,
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<SessionSpec>,
}

/// Why envelope bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a swarm-exec envelope (version 1)")]
    NotAnEnvelope,
    #[error("the envelope's header is cut short")]
    Truncated,
    #[error("the envelope's header is not valid: {0}")]
    Header(#[source] serde_json::Error),
    #[error("the envelope's key is not 32 bytes of base64")]
    Key,
    #[error("the envelope's stdin flag and data disagree")]
    Stdin,
}

impl Envelope {
    /// A fresh random key from the operating system.
    pub fn new_key() -> std::io::Result<[u8; 32]> {
        let mut key = [0; 32];
        getrandom::getrandom(&mut key).map_err(std::io::Error::other)?;
        Ok(key)
    }

    pub fn encode(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&Header {
            exec: self.exec.clone(),
            stdin: self.stdin.is_some(),
            not_after_ms: self.not_after_ms,
            key: B64.encode(self.key),
            session: self.session.clone(),
        })
        .expect("a header of strings and numbers serializes");
        let stdin = self.stdin.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + stdin.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(stdin);
        out
    }

    /// How many bytes of stdin fit in one secret beside the rest of this envelope.
    pub fn stdin_room(&self) -> usize {
        let without = Envelope {
            stdin: Some(Vec::new()),
            ..self.clone()
        };
        (MAX_SECRET - 1).saturating_sub(without.encode().len())
    }

    /// `containers` come from the helper's arguments.
    pub fn decode(bytes: &[u8], containers: Vec<String>) -> Result<Envelope, EnvelopeError> {
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or(EnvelopeError::NotAnEnvelope)?;
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(EnvelopeError::Truncated)?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(EnvelopeError::Truncated);
        }
        let (header, stdin) = rest.split_at(len);
        let h: Header = serde_json::from_slice(header).map_err(EnvelopeError::Header)?;
        let key = B64
            .decode(&h.key)
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or(EnvelopeError::Key)?;
        if !h.stdin && !stdin.is_empty() {
            return Err(EnvelopeError::Stdin);
        }
        Ok(Envelope {
            exec: ExecSpec {
                containers,
                ..h.exec
            },
            stdin: h.stdin.then(|| stdin.to_vec()),
            not_after_ms: h.not_after_ms,
            key,
            session: h.session,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(stdin: Option<Vec<u8>>) -> Envelope {
        Envelope {
            exec: ExecSpec {
                containers: vec!["c".repeat(64)],
                command: vec!["sh".into(), "-c".into(), "echo 'a b'".into()],
                env: vec!["PASSWORD=hunter2".into(), "KEEP".into()],
                workdir: Some("/srv".into()),
                user: Some("1000:1000".into()),
                privileged: true,
                debug: None,
            },
            stdin,
            not_after_ms: 1_800_000_000_123,
            key: [9; 32],
            session: None,
        }
    }

    #[test]
    fn round_trips_with_and_without_stdin() {
        for stdin in [None, Some(Vec::new()), Some(b"\x00\xffbinary\n".to_vec())] {
            let mut e = sample(stdin.clone());
            e.exec.debug = Some("busybox:1.36".into());
            let back = Envelope::decode(&e.encode(), e.exec.containers.clone()).unwrap();
            assert_eq!(back, e);
            let e = sample(stdin);
            let back = Envelope::decode(&e.encode(), e.exec.containers.clone()).unwrap();
            assert_eq!(back, e);
            let e = Envelope {
                session: Some(SessionSpec {
                    relay: "swarm-exec-relay-0123456789ab:7373".into(),
                    tty: true,
                    stdin: true,
                    copy: Some(CopySpec {
                        out: false,
                        path: "/srv/".into(),
                    }),
                    forward: Some(vec![80, 5432]),
                    serve: true,
                }),
                ..e
            };
            let back = Envelope::decode(&e.encode(), e.exec.containers.clone()).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn refuses_what_is_not_an_envelope() {
        let bytes = sample(None).encode();
        let c = Vec::new;
        assert!(matches!(
            Envelope::decode(b"hello", c()),
            Err(EnvelopeError::NotAnEnvelope)
        ));
        assert!(matches!(
            Envelope::decode(&bytes[..MAGIC.len() + 10], c()),
            Err(EnvelopeError::Truncated)
        ));
        let mut extra = bytes.clone();
        extra.push(b'x');
        assert!(matches!(
            Envelope::decode(&extra, c()),
            Err(EnvelopeError::Stdin)
        ));
    }

    #[test]
    fn stdin_room_fills_a_secret_exactly() {
        let mut e = sample(None);
        let room = e.stdin_room();
        e.stdin = Some(vec![0; room]);
        assert_eq!(e.encode().len(), MAX_SECRET - 1);
    }
}
