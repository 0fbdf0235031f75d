//! Property tests of the parsers that face untrusted input: `TASK` and `--timeout` from the
//! command line and the Skopos plugin's JSON. (The helper's frames read back from service
//! logs have theirs in swarm-exec-proto.) Each must never panic, must accept only what is safe to pass on, and must
//! give back exactly what a well-formed input says.

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{json, Map, Number, Value};
use swarm_exec_core::model::duration::{parse_duration, InvalidDuration, MAX_TIMEOUT};
use swarm_exec_core::model::target::TaskRef;
use swarm_exec_core::plugin::{
    inst_exec_args, parse_input, parse_timeout, split_command, PluginError,
};
use swarm_exec_core::HelperSource;

/// `cases` per property; failures are reported, not persisted to a regressions file.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Shared strategies
// ---------------------------------------------------------------------------------------

/// Strings an attacker or a typo could produce: arbitrary Unicode, near-misses built from
/// the grammars' own characters plus separators and control characters, and huge inputs.
fn untrusted_str() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9._@:=/;'\"`$ \\t\\n\\r\\x00\\x7f,\\[\\]{}\\\\-]{0,40}",
        "[0-9.smh ]{0,12}",
        "[\\x00-\\x7f]{0,40}",
        // Huge: long enough to hit every length limit many times over.
        ("[a-z0-9.@_=/ -]{1,8}", 1usize..20_000).prop_map(|(s, n)| s.repeat(n)),
    ]
}

fn service_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9_-]{0,62}"
}

/// Hostnames (at most 253 bytes as generated) or node IDs.
fn node_name() -> impl Strategy<Value = String> {
    prop_oneof![
        vec("[A-Za-z0-9][A-Za-z0-9_-]{0,62}", 1..=3).prop_map(|l| l.join(".")),
        vec("[A-Za-z0-9][A-Za-z0-9_-]{0,15}", 1..=8).prop_map(|l| l.join(".")),
        "[0-9a-z]{25}",
    ]
}

fn valid_ref() -> impl Strategy<Value = TaskRef> {
    prop_oneof![
        "[0-9a-z]{1,25}".prop_map(TaskRef::Id),
        (service_name(), prop_oneof![1u64..100, 1u64..=u64::MAX])
            .prop_map(|(service, slot)| TaskRef::Slot { service, slot }),
        (service_name(), node_name()).prop_map(|(service, node)| TaskRef::OnNode { service, node }),
    ]
}

fn is_service_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_node_name(s: &str) -> bool {
    s.split('.').all(|l| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// What everything downstream (URL paths, placement constraints) relies on.
fn check_safe_ref(r: &TaskRef) -> Result<(), TestCaseError> {
    match r {
        TaskRef::Id(id) => prop_assert!(
            (1..=25).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
            "unsafe id {id:?}"
        ),
        TaskRef::Slot { service, slot } => {
            prop_assert!(is_service_name(service), "unsafe service {service:?}");
            prop_assert!(*slot > 0);
        }
        TaskRef::OnNode { service, node } => {
            prop_assert!(is_service_name(service), "unsafe service {service:?}");
            prop_assert!(is_node_name(node), "unsafe node {node:?}");
        }
        TaskRef::Service(service) => {
            prop_assert!(is_service_name(service), "unsafe service {service:?}")
        }
    }
    // Canonical form: what is displayed parses back to the same reference.
    prop_assert_eq!(TaskRef::parse(&r.to_string()), Ok(r.clone()));
    Ok(())
}

/// Bounded-depth arbitrary JSON, with tiny floats too (sub-nanosecond timeouts once slipped
/// through as zero: `sub_nanosecond_timeout_numbers_are_refused`).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        (1e-15f64..1e-6).prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        Just(json!(1e300)),
        untrusted_str().prop_map(Value::String),
        valid_ref().prop_map(|r| Value::String(r.to_string())),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec(
                (prop_oneof!["[a-z]{0,6}", Just("id".to_owned())], inner),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

// ---------------------------------------------------------------------------------------
// target::TaskRef::parse
// ---------------------------------------------------------------------------------------

/// Inserted anywhere into a valid reference, each of these must get it refused.
const FORBIDDEN: &[&str] = &[
    " ", "\t", "\n", "\r", "\0", "\x7f", "=", "==", "/", "../", ";", "..", "'", "\"", "`", "$",
    ",", ":", "é", "\u{200b}",
];

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn task_ref_accepts_only_safe_strings(s in untrusted_str()) {
        if let Ok(r) = TaskRef::parse(&s) {
            check_safe_ref(&r)?;
            prop_assert!(s.is_ascii(), "accepted non-ASCII {s:?}");
            for bad in [" ", "\t", "\n", "\0", "=", "/", ";", "..", "'", "\"", "\\"] {
                prop_assert!(!s.contains(bad), "accepted {s:?} containing {bad:?}");
            }
            prop_assert!(!s.chars().any(char::is_control), "accepted control char in {s:?}");
        }
    }

    #[test]
    fn task_ref_round_trips(r in valid_ref()) {
        prop_assert_eq!(TaskRef::parse(&r.to_string()), Ok(r.clone()));
        check_safe_ref(&r)?;
    }

    #[test]
    fn task_ref_refuses_injected_separators(
        r in valid_ref(),
        at in any::<Index>(),
        bad in select(FORBIDDEN),
    ) {
        let s = r.to_string(); // ASCII, so every index is a char boundary
        let at = at.index(s.len() + 1);
        let t = format!("{}{bad}{}", &s[..at], &s[at..]);
        prop_assert!(TaskRef::parse(&t).is_err(), "{t:?} was accepted");
    }
}

// ---------------------------------------------------------------------------------------
// duration::parse_duration
// ---------------------------------------------------------------------------------------

const UNITS: &[(&str, u128)] = &[
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

fn max_nanos() -> u128 {
    MAX_TIMEOUT.as_nanos()
}

/// One `<n><unit>` or `<int>.<frac><unit>` term: its text, its exact value in nanoseconds
/// (floored; exact while the fraction has at most 6 digits), and whether it is fractional.
fn term(unit: &'static str, scale: u128) -> impl Strategy<Value = (String, u128, bool)> {
    let at_max = (max_nanos() / scale) as u64;
    let int = prop_oneof![
        4 => 0u64..1000,
        2 => 0u64..=at_max + at_max / 10,
        1 => at_max.saturating_sub(2)..=at_max + 2,
        1 => any::<u64>(),
    ];
    prop_oneof![
        3 => ("0{0,2}", int.clone()).prop_map(move |(zeros, n)| {
            (format!("{zeros}{n}{unit}"), u128::from(n) * scale, false)
        }),
        1 => (int, "[0-9]{1,6}").prop_map(move |(n, frac)| {
            let f: u128 = frac.parse().unwrap();
            let nanos = u128::from(n) * scale + f * scale / 10u128.pow(frac.len() as u32);
            (format!("{n}.{frac}{unit}"), nanos, true)
        }),
    ]
}

fn any_term() -> impl Strategy<Value = (String, u128, bool)> {
    select(UNITS).prop_flat_map(|(unit, scale)| term(unit, scale))
}

/// A well-formed duration: a bare number of seconds alone, or one or more unit terms
/// (`5m`, `1m30s`, `250ms`, repeats allowed), maybe padded with whitespace.
fn duration_input() -> impl Strategy<Value = (String, u128, bool)> {
    let body = prop_oneof![
        1 => term("", 1_000_000_000),
        4 => vec(any_term(), 1..=4).prop_map(|terms| {
            let text = terms.iter().map(|t| t.0.as_str()).collect();
            let nanos = terms.iter().map(|t| t.1).sum();
            (text, nanos, terms.iter().any(|t| t.2))
        }),
    ];
    ("[ \\t\\n]{0,2}", body, "[ \\t\\n]{0,2}")
        .prop_map(|(pre, (text, nanos, frac), post)| (format!("{pre}{text}{post}"), nanos, frac))
}

fn check_duration_bounds(r: &Result<Duration, InvalidDuration>) -> Result<(), TestCaseError> {
    if let Ok(d) = r {
        prop_assert!(!d.is_zero() && *d <= MAX_TIMEOUT, "out of range: {d:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn duration_never_panics_and_stays_in_range(s in untrusted_str()) {
        check_duration_bounds(&parse_duration(&s))?;
    }

    #[test]
    fn duration_value_is_exact((s, nanos, fractional) in duration_input()) {
        let got = parse_duration(&s);
        check_duration_bounds(&got)?;
        // Float arithmetic makes fractional input exact only to within a millisecond, so
        // near zero or near the maximum either verdict is fine.
        let slack = if fractional { 1_000_000 } else { 0 };
        if nanos == 0 {
            prop_assert_eq!(got, Err(InvalidDuration::Zero(s.clone())));
        } else if nanos > max_nanos() + slack {
            prop_assert_eq!(got, Err(InvalidDuration::TooLong(s.clone())));
        } else if nanos + slack <= max_nanos() && nanos > slack {
            let d = got.map_err(|e| TestCaseError::fail(format!("{s:?}: {e}")))?;
            prop_assert!(d.as_nanos().abs_diff(nanos) <= slack, "{s:?}: {d:?} vs {nanos} ns");
        } else {
            match got {
                Ok(d) => prop_assert!(d.as_nanos().abs_diff(nanos) <= slack),
                Err(InvalidDuration::Zero(_)) => prop_assert!(nanos <= slack),
                Err(InvalidDuration::TooLong(_)) => prop_assert!(nanos + slack > max_nanos()),
                Err(e) => prop_assert!(false, "{s:?}: {e}"),
            }
        }
    }

    #[test]
    fn duration_bare_number_only_as_whole_input(
        terms in vec(any_term(), 1..=3),
        n in 0u64..1000,
    ) {
        // `1m30` is a typo for something; a bare number is seconds only on its own. Terms
        // are read left to right, so ones already over the maximum may say so first.
        let s: String = terms.iter().map(|t| t.0.as_str()).collect::<String>() + &n.to_string();
        let over = terms.iter().map(|t| t.1).sum::<u128>() > max_nanos();
        let got = parse_duration(&s);
        prop_assert!(
            matches!(got, Err(InvalidDuration::Syntax(_)))
                || over && matches!(got, Err(InvalidDuration::TooLong(_))),
            "{s:?} -> {got:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// plugin::{parse_input, split_command, parse_timeout, inst_exec_args}
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
