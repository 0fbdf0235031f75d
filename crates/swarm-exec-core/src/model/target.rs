//! What the user names, parsed and validated before anything reaches the Docker API.
//!
//! Everything that ends up in a URL path or a placement constraint passes through here, so
//! strings such as `web.1; ls`, `x==y` or `../` are rejected rather than interpolated.

use std::fmt;

/// A reference to one service task, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRef {
    /// A full task ID or a unique prefix of one.
    Id(String),
    /// `service.slot`, e.g. `web.2` (replicated services).
    Slot { service: String, slot: u64 },
    /// `service@node`, node by hostname or ID (global services, or any service).
    OnNode { service: String, node: String },
    /// A service by name alone: one of its running tasks. (A name that could also be a
    /// task ID prefix parses as [`TaskRef::Id`]; resolving tries it as a service too.)
    Service(String),
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskRef::Id(id) => f.write_str(id),
            TaskRef::Slot { service, slot } => write!(f, "{service}.{slot}"),
            TaskRef::OnNode { service, node } => write!(f, "{service}@{node}"),
            TaskRef::Service(service) => f.write_str(service),
        }
    }
}

/// Why a user-supplied name or ID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRef {
    #[error("empty task reference")]
    Empty,
    #[error(
        "invalid task reference {0:?}: expected a task ID (or unique prefix), \
         SERVICE.SLOT (e.g. web.2), SERVICE@NODE or SERVICE"
    )]
    Syntax(String),
    #[error("invalid service name {0:?}: letters, digits, '-' and '_' only, at most 63")]
    Service(String),
    #[error("invalid slot {0:?}: expected a positive number")]
    Slot(String),
    #[error("invalid node name {0:?}: expected a hostname or node ID")]
    Node(String),
}

impl TaskRef {
    /// Parses `TASK`: `service@node`, `service.slot`, or a task ID (prefix).
    pub fn parse(s: &str) -> Result<TaskRef, InvalidRef> {
        if s.is_empty() {
            return Err(InvalidRef::Empty);
        }
        if let Some((service, node)) = s.split_once('@') {
            check_service_name(service)?;
            if !is_hostname(node) {
                return Err(InvalidRef::Node(node.to_owned()));
            }
            return Ok(TaskRef::OnNode {
                service: service.to_owned(),
                node: node.to_owned(),
            });
        }
        // Service names cannot hold dots, so the last dot separates the slot.
        if let Some((service, slot)) = s.rsplit_once('.') {
            check_service_name(service)?;
            return match slot.parse::<u64>() {
                Ok(n) if n > 0 && slot.bytes().all(|b| b.is_ascii_digit()) => Ok(TaskRef::Slot {
                    service: service.to_owned(),
                    slot: n,
                }),
                _ => Err(InvalidRef::Slot(slot.to_owned())),
            };
        }
        if is_id_prefix(s) {
            return Ok(TaskRef::Id(s.to_owned()));
        }
        if check_service_name(s).is_ok() {
            return Ok(TaskRef::Service(s.to_owned()));
        }
        Err(InvalidRef::Syntax(s.to_owned()))
    }
}

/// Swarm object IDs (tasks, nodes, services) are 25 characters of `[0-9a-z]`.
pub const SWARM_ID_LEN: usize = 25;

/// A full swarm object ID.
pub fn is_swarm_id(s: &str) -> bool {
    s.len() == SWARM_ID_LEN && is_id_prefix(s)
}

/// A non-empty prefix of a swarm object ID.
pub fn is_id_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= SWARM_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// A full container ID: 64 lowercase hex digits.
pub use swarm_exec_proto::is_container_id;

/// Swarm service names: `[A-Za-z0-9]`, then also `-` and `_`, at most 63 characters.
pub fn check_service_name(s: &str) -> Result<(), InvalidRef> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(InvalidRef::Service(s.to_owned()))
    }
}

/// An image reference as it may appear in a URL path: `name[:tag][@digest]`, registry and
/// repository parts included; no spaces, no `..`, nothing a URL would read as a query.
pub fn is_image_ref(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 512
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && !s.contains("..")
        && !s.contains("//")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b))
}

/// A node as the user may name it: hostname or ID (prefix).
pub fn is_node_name(s: &str) -> bool {
    is_hostname(s)
}

/// Node hostnames as Docker reports them: DNS-like labels separated by dots.
fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.as_bytes()[0].is_ascii_alphanumeric()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The target and the helper working on it, as failures name them.
#[derive(Debug, Clone)]
pub struct HelperRef {
    pub target: String,
    pub helper: String,
    pub node: String,
}

impl std::fmt::Display for HelperRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on node {} (helper {})",
            self.target, self.node, self.helper
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            TaskRef::parse("web.2"),
            Ok(TaskRef::Slot {
                service: "web".into(),
                slot: 2
            })
        );
        assert_eq!(
            TaskRef::parse("my_stack_web@node01.dev.lan"),
            Ok(TaskRef::OnNode {
                service: "my_stack_web".into(),
                node: "node01.dev.lan".into()
            })
        );
        assert_eq!(
            TaskRef::parse("q1mh1syk49e0"),
            Ok(TaskRef::Id("q1mh1syk49e0".into()))
        );
        // Not an ID prefix (upper case, '-', longer than an ID): a service by name.
        for name in ["my-stack_web", "Web", "a0123456789012345678901234567"] {
            assert_eq!(TaskRef::parse(name), Ok(TaskRef::Service(name.into())));
        }
    }

    #[test]
    fn rejects_injection_and_junk() {
        for bad in [
            "",
            "web.1; ls",
            "x==y",
            "node.id==abc",
            "../etc",
            "web.0",
            "web.-1",
            "web.+1",
            "web.",
            ".1",
            "web@",
            "web@no de",
            "web@a..b",
            "web 1",
            "a/b",
            "web.1\0",
            "-web",
            "a".repeat(64).as_str(),
        ] {
            assert!(TaskRef::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn image_refs() {
        for ok in [
            "swarm-exec:0.1.0",
            "reg:5000/ops/swarm-exec:1",
            "busybox@sha256:abc",
            "sha256:0123",
        ] {
            assert!(is_image_ref(ok), "{ok}");
        }
        for bad in [
            "", "a b", "../x", "x/../y", "x?y", "x#y", "/abs", "a//b", "-x",
        ] {
            assert!(!is_image_ref(bad), "{bad}");
        }
    }

    #[test]
    fn ids() {
        assert!(is_swarm_id("q1mh1syk49e0abcdefghijklm"));
        assert!(!is_swarm_id("q1mh1syk49e0"));
        assert!(is_container_id(&"a".repeat(64)));
        assert!(!is_container_id(&"g".repeat(64)));
        assert!(!is_container_id("abc"));
    }
}
