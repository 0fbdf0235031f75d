//! The Skopos plugin's `inst_exec` action: its input and its result object (running it
//! over several tasks at once is core's `multi`). No I/O here: `cmd/plugin.rs` reads,
//! prints and exits.
//!
//! Input is one JSON object. `inst` lists the instances (Swarm tasks; `id` is the task ID);
//! the step's arguments sit at the top level: `command` (required), `timeout`, `image`,
//! `max_output`, `selector`. On success the input is echoed back with one key added, [`RESULT_KEY`].

use std::time::Duration;

use serde_json::{json, Map, Value};
use swarm_exec_core::model::duration::{parse_duration, MAX_TIMEOUT};
use swarm_exec_core::model::options::HelperSource;
use swarm_exec_core::model::outcome::{Interrupt, Outcome};
use swarm_exec_core::model::target::TaskRef;
// In the plugin's words an instance is a task.
pub use swarm_exec_core::multi::{
    multi_exec as run_inst_exec, MultiExec as InstExec, TaskResult as InstResult,
};
use swarm_exec_core::sink::{bytes_json, Cut};

/// The key added to the echoed input: one entry per instance, in input order, each with
/// `id`, `exit_code` (null when the command did not finish), `duration_s`, `output_tail`
/// (with `output_tail_base64` when it is not UTF-8), `output_bytes` and `output_truncated`.
pub const RESULT_KEY: &str = "swarm_exec";

/// Bytes of each instance's output (stdout and stderr, as they came) kept in the result
/// unless `max_output` says otherwise: the last ones.
pub const TAIL_BYTES: usize = 2048;

/// The most `max_output` may ask for: every instance's tail is held in memory until the
/// result is written.
pub const MAX_TAIL_BYTES: usize = 64 << 20;

/// The reference plugin's default, kept.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Why the action failed; the message is the one line printed on stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("failed to parse input data for plugin swarm-exec: {0}")]
    Json(String),
    #[error("input data for plugin swarm-exec must be a JSON object")]
    NotObject,
    #[error("invalid argument {key}: {reason}")]
    Argument { key: &'static str, reason: String },
    #[error("inst_exec failed: {0}")]
    Failed(String),
    #[error("inst_exec interrupted; helpers removed")]
    Interrupted(Interrupt),
}

fn arg(key: &'static str, reason: impl Into<String>) -> PluginError {
    PluginError::Argument {
        key,
        reason: reason.into(),
    }
}

/// Parses the plugin's input; empty (or blank) input is `{}`.
pub fn parse_input(src: &str) -> Result<Map<String, Value>, PluginError> {
    if src.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(src) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(PluginError::NotObject),
        Err(e) => Err(PluginError::Json(e.to_string())),
    }
}

/// Reads and checks `inst_exec`'s arguments; nothing is created on the swarm before this.
pub fn inst_exec_args(
    input: &Map<String, Value>,
    default_helper: &HelperSource,
) -> Result<InstExec, PluginError> {
    let insts = match input.get("inst") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(arg("inst", "must be a list of instances")),
        None => return Err(arg("inst", "missing: no instances given")),
    };
    let tasks = insts
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            let id = inst
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| arg("inst", format!("instance {i} has no string \"id\"")))?;
            TaskRef::parse(id).map_err(|e| arg("inst", format!("instance {i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let command = match input.get("command") {
        Some(Value::String(s)) => split_command(s)?,
        Some(Value::Array(a)) => string_list(a)?,
        Some(_) => return Err(arg("command", "must be a string or a list of strings")),
        None => {
            return Err(arg(
                "command",
                "missing: the command to execute is required",
            ))
        }
    };
    let timeout = match input.get("timeout") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT,
        Some(v) => parse_timeout(v)?,
    };
    let helper = match input.get("image") {
        None | Some(Value::Null) => default_helper.clone(),
        Some(Value::String(s)) if valid_image(s) => HelperSource::Image(s.clone()),
        Some(v) => return Err(arg("image", format!("invalid image reference {v}"))),
    };
    let max_output = match input.get("max_output") {
        None | Some(Value::Null) => TAIL_BYTES,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_TAIL_BYTES as u64).contains(&n) => n as usize,
            _ => {
                return Err(arg(
                    "max_output",
                    format!("{v} must be a number of bytes from 1 to {MAX_TAIL_BYTES}"),
                ))
            }
        },
    };
    Ok(InstExec {
        tasks,
        command,
        timeout,
        helper,
        max_output,
    })
}

/// A command string is split by shell-word rules (quotes, backslashes) but never run by a
/// shell; a string that starts with `[` is a JSON array of strings, taken verbatim.
pub fn split_command(s: &str) -> Result<Vec<String>, PluginError> {
    let words = if s.trim_start().starts_with('[') {
        match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(a)) => string_list(&a)?,
            _ => {
                return Err(arg(
                    "command",
                    "starts with '[' but is not a JSON array of strings",
                ))
            }
        }
    } else {
        shell_words::split(s).map_err(|e| arg("command", format!("{e} in {s:?}")))?
    };
    if words.is_empty() || words[0].is_empty() {
        return Err(arg("command", "is empty"));
    }
    if words.iter().any(|w| w.contains('\0')) {
        return Err(arg("command", "contains a NUL byte"));
    }
    Ok(words)
}

fn string_list(a: &[Value]) -> Result<Vec<String>, PluginError> {
    let words = a
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| arg("command", "a command list must hold only strings"))?;
    if words.is_empty() || words[0].is_empty() || words.iter().any(|w| w.contains('\0')) {
        return Err(arg("command", "is empty or contains a NUL byte"));
    }
    Ok(words)
}

/// `timeout`: seconds as a number (`30`, `1.5`) or a string (`"30"`, `"30s"`, `"5m"`).
pub fn parse_timeout(v: &Value) -> Result<Duration, PluginError> {
    match v {
        Value::Number(n) => {
            let secs = n.as_f64().unwrap_or(f64::NAN);
            if secs.is_nan() || secs <= 0.0 {
                Err(arg(
                    "timeout",
                    format!("{n} must be a positive number of seconds"),
                ))
            } else if secs > MAX_TIMEOUT.as_secs_f64() {
                Err(arg(
                    "timeout",
                    format!("{n} is longer than the maximum of one week"),
                ))
            } else {
                // Below a nanosecond, a positive number is still a zero Duration.
                let d = Duration::from_secs_f64(secs);
                if d.is_zero() {
                    Err(arg(
                        "timeout",
                        format!("{n} must be a positive number of seconds"),
                    ))
                } else {
                    Ok(d)
                }
            }
        }
        Value::String(s) => parse_duration(s).map_err(|e| arg("timeout", e.to_string())),
        other => Err(arg(
            "timeout",
            format!("{other} is neither a number nor a duration string"),
        )),
    }
}

fn valid_image(s: &str) -> bool {
    swarm_exec_core::model::target::is_image_ref(s)
}

/// The input echoed with [`RESULT_KEY`] added; or why the step failed.
pub fn finish(
    mut input: Map<String, Value>,
    args: &InstExec,
    results: &[InstResult],
) -> Result<Map<String, Value>, PluginError> {
    if let Some(i) = results
        .iter()
        .find_map(|r| r.outcome.as_ref().ok()?.interrupt())
    {
        return Err(PluginError::Interrupted(i));
    }
    let failures: Vec<String> = results
        .iter()
        .filter_map(|r| failure(r, args.timeout))
        .collect();
    if !failures.is_empty() {
        return Err(PluginError::Failed(failures.join("; ")));
    }
    let entries: Vec<Value> = results
        .iter()
        .map(|r| {
            let truncated = r.total > r.tail.len() as u64;
            let Value::Object(mut entry) = json!({
                "id": r.task,
                "exit_code": match r.outcome { Ok(Outcome::Exited(c)) => Some(c), _ => None },
                "duration_s": swarm_exec_core::model::outcome::seconds(r.duration),
            }) else {
                unreachable!("a JSON object literal")
            };
            let cut = if truncated { Cut::KeptEnd } else { Cut::None };
            bytes_json(&mut entry, "output_tail", &r.tail, cut);
            entry.insert("output_bytes".to_owned(), r.total.into());
            entry.insert("output_truncated".to_owned(), truncated.into());
            Value::Object(entry)
        })
        .collect();
    input.insert(RESULT_KEY.to_owned(), Value::Array(entries));
    Ok(input)
}

/// Why one task made the step fail, if it did.
fn failure(r: &InstResult, timeout: Duration) -> Option<String> {
    match &r.outcome {
        Ok(Outcome::Exited(0)) => None,
        Ok(Outcome::Exited(code)) => Some(format!("task {} exited with {code}", r.task)),
        Ok(Outcome::TimedOut) => Some(format!("task {} timed out after {timeout:?}", r.task)),
        Ok(Outcome::Interrupted(_)) => Some(format!("task {} was interrupted", r.task)),
        Err(e) => Some(format!("task {}: {e}", r.task)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn input_forms() {
        assert_eq!(parse_input("").unwrap(), Map::new());
        assert_eq!(parse_input("  \n").unwrap(), Map::new());
        assert!(matches!(parse_input("{"), Err(PluginError::Json(_))));
        assert!(matches!(parse_input("[1]"), Err(PluginError::NotObject)));
        assert!(matches!(parse_input("\"x\""), Err(PluginError::NotObject)));
    }

    #[test]
    fn commands_split_by_shell_words_never_by_spaces() {
        assert_eq!(split_command("sleep 3").unwrap(), ["sleep", "3"]);
        assert_eq!(
            split_command(r#"sh -c 'echo "a  b"; exit 3'"#).unwrap(),
            ["sh", "-c", r#"echo "a  b"; exit 3"#]
        );
        assert_eq!(split_command(r"printf a\ b").unwrap(), ["printf", "a b"]);
        assert_eq!(
            split_command(r#"["echo", "it's", "$HOME"]"#).unwrap(),
            ["echo", "it's", "$HOME"]
        );
        for bad in [
            "",
            "   ",
            "'unterminated",
            "[1, 2]",
            "[\"\"]",
            "[not json",
            "\"\"",
        ] {
            assert!(split_command(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout(&json!(30)).unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_timeout(&json!(1.5)).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_timeout(&json!("30")).unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            parse_timeout(&json!("5m")).unwrap(),
            Duration::from_secs(300)
        );
        for bad in [
            json!(0),
            json!(-1),
            json!(1e12),
            json!("soon"),
            json!(true),
            json!([30]),
        ] {
            assert!(parse_timeout(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arguments() {
        let ok = obj(
            json!({"inst": [{"id": "abc", "ipaddr": "10.0.0.2"}], "command": "true", "selector": "new"}),
        );
        let default = HelperSource::Image("img:1".into());
        let a = inst_exec_args(&ok, &default).unwrap();
        assert_eq!(a.tasks, [TaskRef::Id("abc".into())]);
        assert_eq!(a.timeout, DEFAULT_TIMEOUT);
        assert_eq!(a.helper, default);
        let own = obj(json!({"inst": [{"id": "abc"}], "command": "true", "image": "own:2"}));
        assert_eq!(
            inst_exec_args(&own, &default).unwrap().helper,
            HelperSource::Image("own:2".into())
        );
        assert_eq!(a.max_output, TAIL_BYTES);
        let big = obj(json!({"inst": [{"id": "abc"}], "command": "true", "max_output": 1048576}));
        assert_eq!(inst_exec_args(&big, &default).unwrap().max_output, 1 << 20);
        let cases = [
            (json!({"command": "true"}), "inst"),
            (json!({"inst": {}, "command": "true"}), "inst"),
            (
                json!({"inst": [{"ipaddr": "x"}], "command": "true"}),
                "inst",
            ),
            (
                json!({"inst": [{"id": "web.1; ls"}], "command": "true"}),
                "inst",
            ),
            (json!({"inst": [{"id": "abc"}]}), "command"),
            (json!({"inst": [{"id": "abc"}], "command": 5}), "command"),
            (
                json!({"inst": [{"id": "abc"}], "command": "true", "timeout": "x"}),
                "timeout",
            ),
            (
                json!({"inst": [{"id": "abc"}], "command": "true", "image": "a b"}),
                "image",
            ),
            (
                json!({"inst": [{"id": "abc"}], "command": "true", "image": ""}),
                "image",
            ),
            (
                json!({"inst": [{"id": "abc"}], "command": "true", "max_output": 0}),
                "max_output",
            ),
            (
                json!({"inst": [{"id": "abc"}], "command": "true", "max_output": "1k"}),
                "max_output",
            ),
            (
                json!({"inst": [{"id": "abc"}], "command": "true", "max_output": 1e12}),
                "max_output",
            ),
        ];
        for (input, key) in cases {
            match inst_exec_args(&obj(input.clone()), &HelperSource::Image("img".into())) {
                Err(PluginError::Argument { key: k, .. }) => assert_eq!(k, key, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn result_object_and_failure_message() {
        let input =
            obj(json!({"inst": [{"id": "a"}, {"id": "b"}], "command": "true", "project": "p"}));
        let args = inst_exec_args(&input, &HelperSource::Image("img".into())).unwrap();
        let r = |task: &str, outcome| InstResult {
            task: task.into(),
            outcome,
            duration: Duration::from_millis(1234),
            tail: b"hi\n".to_vec(),
            total: 3,
        };
        let ok = finish(
            input.clone(),
            &args,
            &[
                r("a", Ok(Outcome::Exited(0))),
                r("b", Ok(Outcome::Exited(0))),
            ],
        )
        .unwrap();
        let keys: Vec<&String> = ok.keys().collect();
        assert_eq!(keys, ["inst", "command", "project", RESULT_KEY]);
        assert_eq!(
            ok[RESULT_KEY][1],
            json!({"id": "b", "exit_code": 0, "duration_s": 1.234, "output_tail": "hi\n",
                   "output_bytes": 3, "output_truncated": false})
        );
        let err = finish(
            input,
            &args,
            &[
                r("a", Ok(Outcome::Exited(3))),
                r("b", Err("no task matches b".into())),
            ],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "inst_exec failed: task a exited with 3; task b: no task matches b"
        );
    }
}

#[cfg(test)]
#[path = "inst_exec_props.rs"]
mod props;
