//! Property tests of the Skopos plugin's input, which faces untrusted JSON: each parser must
//! never panic, must accept only what is safe to pass on, and must give back exactly what a
//! well-formed input says.

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};
use swarm_exec_core::model::duration::MAX_TIMEOUT;
use swarm_exec_core::HelperSource;

use super::{inst_exec_args, parse_input, parse_timeout, split_command, PluginError};

// The strategies core's property tests use too, from the one place they are written.
#[path = "../../../swarm-exec-core/tests/strategies/mod.rs"]
mod strategies;
use strategies::*;

// ---------------------------------------------------------------------------------------
// parse_input, split_command, parse_timeout, inst_exec_args
// ---------------------------------------------------------------------------------------

/// Non-empty command words without NUL; shell and JSON metacharacters well represented.
fn words() -> impl Strategy<Value = Vec<String>> {
    let word = prop_oneof![
        "[^\\x00]{1,12}",
        "['\"\\\\$#;&|*?~`\\[\\]{}() \\t\\na-z]{1,12}",
    ];
    vec(word, 1..6)
}

/// POSIX single quoting: `'`, with each embedded `'` written as `'\''`.
fn shell_quote(w: &str) -> String {
    format!("'{}'", w.replace('\'', r"'\''"))
}

fn shell_line() -> impl Strategy<Value = (String, Vec<String>)> {
    (words(), select(vec![" ", "  ", "\t", "\n", " \t "])).prop_map(|(w, sep)| {
        let line = w
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(sep);
        (line, w)
    })
}

/// `inst_exec` inputs that are often valid and often subtly not, field by field.
fn plugin_input() -> impl Strategy<Value = Map<String, Value>> {
    let id = prop_oneof![
        8 => valid_ref().prop_map(|r| Value::String(r.to_string())),
        1 => untrusted_str().prop_map(Value::String),
        1 => json_value(),
    ];
    let inst = prop_oneof![
        6 => vec(prop_oneof![9 => id.prop_map(|id| json!({ "id": id, "ipaddr": "10.0.0.2" })),
                             1 => json_value()], 0..4).prop_map(Value::Array),
        1 => json_value(),
    ];
    let command = prop_oneof![
        3 => shell_line().prop_map(|(line, _)| Value::String(line)),
        2 => words().prop_map(|w| Value::String(serde_json::to_string(&w).unwrap())),
        2 => words().prop_map(|w| json!(w)),
        1 => untrusted_str().prop_map(Value::String),
        1 => json_value(),
    ];
    let timeout = prop_oneof![
        2 => (1u64..=604_800).prop_map(Value::from),
        2 => (0.001f64..700_000.0).prop_map(|f| json!(f)),
        2 => duration_input().prop_map(|(s, _, _)| Value::String(s)),
        1 => untrusted_str().prop_map(Value::String),
        1 => json_value(),
    ];
    let image = prop_oneof![
        4 => "[a-z0-9./:@_-]{1,60}".prop_map(Value::String),
        1 => untrusted_str().prop_map(Value::String),
        1 => json_value(),
    ];
    (
        proptest::option::weighted(0.9, inst),
        proptest::option::weighted(0.9, command),
        proptest::option::weighted(0.7, timeout),
        proptest::option::weighted(0.7, image),
        vec(("[a-z_]{1,8}", json_value()), 0..3),
    )
        .prop_map(|(inst, command, timeout, image, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            for (k, v) in [
                ("inst", inst),
                ("command", command),
                ("timeout", timeout),
                ("image", image),
            ] {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            }
            m
        })
}

fn check_command(words: &[String]) -> Result<(), TestCaseError> {
    prop_assert!(
        !words.is_empty() && !words[0].is_empty(),
        "empty command {words:?}"
    );
    prop_assert!(!words.iter().any(|w| w.contains('\0')), "NUL in {words:?}");
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn parse_input_never_panics(s in prop_oneof![
        untrusted_str(),
        json_value().prop_map(|v| v.to_string()),
    ]) {
        match parse_input(&s) {
            // Blank input is `{}`.
            Ok(m) => prop_assert!(!s.trim().is_empty() || m.is_empty()),
            Err(PluginError::Json(_) | PluginError::NotObject) => {}
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }

    #[test]
    fn parse_input_takes_any_json_object(v in json_value()) {
        match (&v, parse_input(&v.to_string())) {
            (Value::Object(o), Ok(m)) => {
                prop_assert_eq!(o.keys().collect::<Vec<_>>(), m.keys().collect::<Vec<_>>());
            }
            (Value::Object(_), Err(e)) => prop_assert!(false, "object refused: {e}"),
            (_, r) => prop_assert!(matches!(r, Err(PluginError::NotObject)), "{r:?}"),
        }
    }

    #[test]
    fn split_command_never_panics(s in prop_oneof![
        untrusted_str(),
        json_value().prop_map(|v| v.to_string()),
    ]) {
        if let Ok(words) = split_command(&s) {
            check_command(&words)?;
        }
    }

    #[test]
    fn split_command_undoes_shell_quoting((line, words) in shell_line()) {
        prop_assert_eq!(split_command(&line).map_err(|e| e.to_string()), Ok(words));
    }

    #[test]
    fn split_command_takes_json_arrays_verbatim(words in words(), pad in "[ \\t\\n]{0,2}") {
        let s = format!("{pad}{}", serde_json::to_string(&words).unwrap());
        prop_assert_eq!(split_command(&s).map_err(|e| e.to_string()), Ok(words));
    }

    #[test]
    fn parse_timeout_never_panics_and_stays_in_range(v in json_value()) {
        if let Ok(d) = parse_timeout(&v) {
            prop_assert!(!d.is_zero() && d <= MAX_TIMEOUT, "{v} -> {d:?}");
        }
    }

    #[test]
    fn parse_timeout_numbers_are_seconds(secs in prop_oneof![
        (1u64..=700_000).prop_map(|n| n as f64),
        1e-6f64..700_000.0,
    ]) {
        let got = parse_timeout(&json!(secs));
        if secs <= MAX_TIMEOUT.as_secs_f64() {
            let d = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!((d.as_secs_f64() - secs).abs() < 1e-6, "{secs} -> {d:?}");
        } else {
            prop_assert!(got.is_err(), "{secs} -> {got:?}");
        }
    }

    #[test]
    fn inst_exec_args_accepts_only_what_is_safe(input in plugin_input()) {
        if let Ok(a) = inst_exec_args(&input, &img1()) {
            let insts = input["inst"].as_array().expect("inst accepted as a list");
            prop_assert_eq!(a.tasks.len(), insts.len());
            for t in &a.tasks {
                check_safe_ref(t)?;
            }
            check_command(&a.command)?;
            prop_assert!(!a.timeout.is_zero() && a.timeout <= MAX_TIMEOUT, "timeout {:?}", a.timeout);
            let HelperSource::Image(image) = &a.helper else {
                return Err(TestCaseError::fail("an image was given"));
            };
            prop_assert!(!image.is_empty(), "empty image");
            prop_assert!(swarm_exec_core::model::target::is_image_ref(image), "image {:?}", image);
            prop_assert!(
                !image.chars().any(|c| c.is_whitespace() || c.is_control()),
                "image {:?}", image
            );
        }
    }

    #[test]
    fn inst_exec_args_of_arbitrary_json_never_panics(v in json_value()) {
        if let Value::Object(m) = v {
            let _ = inst_exec_args(&m, &img1());
        }
    }

    #[test]
    fn inst_exec_args_of_valid_input_is_exact(
        tasks in vec(valid_ref(), 0..4),
        (line, words) in shell_line(),
        secs in 1u64..=604_800,
        image in "[a-z0-9][a-z0-9_-]{0,20}(/[a-z0-9][a-z0-9_-]{0,20}){0,2}(:[a-z0-9_-]{1,10})?",
    ) {
        let ids: Vec<Value> = tasks.iter().map(|t| json!({ "id": t.to_string() })).collect();
        let input = json!({
            "inst": ids, "command": line, "timeout": secs, "image": image, "selector": "new",
        });
        let a = inst_exec_args(input.as_object().unwrap(), &img1())
            .map_err(|e| TestCaseError::fail(format!("{input}: {e}")))?;
        prop_assert_eq!(a.tasks, tasks);
        prop_assert_eq!(a.command, words);
        prop_assert_eq!(a.timeout, Duration::from_secs(secs));
        prop_assert_eq!(a.helper, HelperSource::Image(image));
    }
}

fn img1() -> HelperSource {
    HelperSource::Image("img:1".into())
}

/// A positive number of seconds below 1 ns is a zero `Duration`: refused, as
/// `parse_duration` refuses the same given as a string.
#[test]
fn sub_nanosecond_timeout_numbers_are_refused() {
    let got = parse_timeout(&json!(1e-10));
    assert!(got.is_err(), "1e-10 -> {got:?}");
}
