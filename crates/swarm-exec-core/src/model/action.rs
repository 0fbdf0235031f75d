//! Named actions: commands a service declares in its labels, run by name (`swarm-exec
//! action`). The label `swarm-exec.action.NAME` holds the command as a JSON array of
//! strings, so a stack file says what may be run and nothing has to be quoted for a shell.
//! An element that is exactly `...` is where extra arguments go; an action without one
//! takes none. (Not `$@`: a stack file interpolates `$`, so it would have to be `$$@`.)

use std::fmt;

/// The prefix of an action's service label; the rest of the key is its name.
pub const ACTION_LABEL_PREFIX: &str = "swarm-exec.action.";

/// The element of an action's argv that stands for the extra arguments.
pub const EXTRA_ARGS: &str = "...";

/// The longest action name taken (a label key, not a document).
const NAME_MAX: usize = 64;

/// One declared action: its name and its argv, or why the label holds no usable argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub name: String,
    pub argv: Result<Vec<String>, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("invalid action name {0:?}: letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit")]
    BadName(String),
    #[error("service {service} declares no action {name:?} (declared: {})", list(.declared))]
    Undeclared {
        service: String,
        name: String,
        declared: Vec<String>,
    },
    #[error("action {name:?} of service {service} is not usable: its label {label} {why}")]
    Unusable {
        service: String,
        name: String,
        label: String,
        why: String,
    },
    #[error(
        "action {name:?} takes no arguments (its command has no \"...\" element), {given} given"
    )]
    NoArguments { name: String, given: usize },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Whether `name` can name an action: it ends a label key and is typed on command lines.
pub fn is_action_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= NAME_MAX
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The actions a service's labels declare, by name. A label with a name that cannot be
/// one, or a value that is not a usable argv, is still listed, with why it cannot run.
pub fn declared(labels: &[(String, String)]) -> Vec<Action> {
    let mut actions: Vec<Action> = labels
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(ACTION_LABEL_PREFIX)?;
            let argv = if is_action_name(name) {
                parse_argv(v)
            } else {
                Err("has a name that cannot be typed as an action's".to_owned())
            };
            Some(Action {
                name: name.to_owned(),
                argv,
            })
        })
        .collect();
    actions.sort_by(|a, b| a.name.cmp(&b.name));
    actions
}

/// A label value as an argv: a non-empty JSON array of strings without NUL, its first
/// element a command (not `...`), and at most one `...`.
fn parse_argv(value: &str) -> Result<Vec<String>, String> {
    let argv: Vec<String> =
        serde_json::from_str(value).map_err(|_| "is not a JSON array of strings".to_owned())?;
    match argv.first() {
        None => Err("is an empty array".to_owned()),
        Some(first) if first.is_empty() || first == EXTRA_ARGS => {
            Err("does not start with a command".to_owned())
        }
        Some(_) if argv.iter().any(|a| a.contains('\0')) => Err("holds a NUL character".to_owned()),
        Some(_) if argv.iter().filter(|a| *a == EXTRA_ARGS).count() > 1 => {
            Err("has more than one \"...\"".to_owned())
        }
        Some(_) => Ok(argv),
    }
}

/// The command to run for action `name` of `service` (whose labels are `labels`), with
/// `extra` arguments in place of its `...`. An undeclared or unusable action, or arguments
/// it does not take, are errors: nothing is to be run then.
pub fn command(
    service: &str,
    labels: &[(String, String)],
    name: &str,
    extra: &[String],
) -> Result<Vec<String>, ActionError> {
    if !is_action_name(name) {
        return Err(ActionError::BadName(name.to_owned()));
    }
    let actions = declared(labels);
    let Some(action) = actions.iter().find(|a| a.name == name) else {
        return Err(ActionError::Undeclared {
            service: service.to_owned(),
            name: name.to_owned(),
            declared: actions.into_iter().map(|a| a.name).collect(),
        });
    };
    let argv = action.argv.as_ref().map_err(|why| ActionError::Unusable {
        service: service.to_owned(),
        name: name.to_owned(),
        label: format!("{ACTION_LABEL_PREFIX}{name}"),
        why: why.clone(),
    })?;
    if !argv.iter().any(|a| a == EXTRA_ARGS) {
        if !extra.is_empty() {
            return Err(ActionError::NoArguments {
                name: name.to_owned(),
                given: extra.len(),
            });
        }
        return Ok(argv.clone());
    }
    let mut out = Vec::with_capacity(argv.len() + extra.len());
    for a in argv {
        if a == EXTRA_ARGS {
            out.extend(extra.iter().cloned());
        } else {
            out.push(a.clone());
        }
    }
    Ok(out)
}

impl fmt::Display for Action {
    /// `NAME  ["argv", ...]`, or the reason it cannot run.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.argv {
            Ok(argv) => write!(
                f,
                "{}",
                serde_json::to_string(argv).unwrap_or_else(|_| "?".to_owned())
            ),
            Err(why) => write!(f, "(not usable: its label {why})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn declared_actions_are_read_from_labels_and_bad_ones_say_why() {
        let l = labels(&[
            ("com.docker.stack.namespace", "shop"),
            ("swarm-exec.action.migrate", r#"["./manage", "migrate"]"#),
            ("swarm-exec.action.empty", "[]"),
            ("swarm-exec.action.shell", "./manage migrate"),
            ("swarm-exec.action.nums", "[1, 2]"),
            ("swarm-exec.action.dots", r#"["...", "x"]"#),
            ("swarm-exec.action.two", r#"["echo", "...", "..."]"#),
            ("swarm-exec.action.-x", r#"["true"]"#),
        ]);
        let got: Vec<(String, Result<Vec<String>, String>)> =
            declared(&l).into_iter().map(|a| (a.name, a.argv)).collect();
        let err = |s: &str| Err(s.to_owned());
        assert_eq!(
            got,
            [
                (
                    "-x".into(),
                    err("has a name that cannot be typed as an action's")
                ),
                ("dots".into(), err("does not start with a command")),
                ("empty".into(), err("is an empty array")),
                (
                    "migrate".into(),
                    Ok(vec!["./manage".into(), "migrate".into()])
                ),
                ("nums".into(), err("is not a JSON array of strings")),
                ("shell".into(), err("is not a JSON array of strings")),
                ("two".into(), err("has more than one \"...\"")),
            ]
        );
    }

    #[test]
    fn the_command_takes_extra_arguments_only_where_the_argv_says() {
        let l = labels(&[
            ("swarm-exec.action.migrate", r#"["./manage", "migrate"]"#),
            ("swarm-exec.action.greet", r#"["echo", "hi", "...", "!"]"#),
            ("swarm-exec.action.broken", "nope"),
        ]);
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            command("web", &l, "migrate", &[]),
            Ok(s(&["./manage", "migrate"]))
        );
        assert_eq!(
            command("web", &l, "migrate", &s(&["--fake"])),
            Err(ActionError::NoArguments {
                name: "migrate".into(),
                given: 1
            })
        );
        assert_eq!(
            command("web", &l, "greet", &s(&["a b", "..."])),
            Ok(s(&["echo", "hi", "a b", "...", "!"]))
        );
        assert_eq!(
            command("web", &l, "greet", &[]),
            Ok(s(&["echo", "hi", "!"]))
        );
        let undeclared = command("web", &l, "drop-db", &[]).unwrap_err();
        assert_eq!(
            undeclared.to_string(),
            "service web declares no action \"drop-db\" (declared: broken, greet, migrate)"
        );
        assert!(matches!(
            command("web", &l, "broken", &[]),
            Err(ActionError::Unusable { .. })
        ));
        assert_eq!(
            command("web", &l, "../x", &[]),
            Err(ActionError::BadName("../x".into()))
        );
        assert!(!is_action_name(&"a".repeat(65)));
        assert!(is_action_name("db.migrate_v2-x"));
    }
}
