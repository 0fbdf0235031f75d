//! Strategies the property tests of both crates share (core's parsers, the binary's Skopos
//! input): untrusted strings, task references and what is safe of them, JSON values.
#![allow(dead_code)]

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Number, Value};
use swarm_exec_core::model::duration::MAX_TIMEOUT;
use swarm_exec_core::model::target::TaskRef;

/// `cases` per property; failures are reported, not persisted to a regressions file.
pub fn config(cases: u32) -> ProptestConfig {
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
pub fn untrusted_str() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9._@:=/;'\"`$ \\t\\n\\r\\x00\\x7f,\\[\\]{}\\\\-]{0,40}",
        "[0-9.smh ]{0,12}",
        "[\\x00-\\x7f]{0,40}",
        // Huge: long enough to hit every length limit many times over.
        ("[a-z0-9.@_=/ -]{1,8}", 1usize..20_000).prop_map(|(s, n)| s.repeat(n)),
    ]
}

pub fn service_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9_-]{0,62}"
}

/// Hostnames (at most 253 bytes as generated) or node IDs.
pub fn node_name() -> impl Strategy<Value = String> {
    prop_oneof![
        vec("[A-Za-z0-9][A-Za-z0-9_-]{0,62}", 1..=3).prop_map(|l| l.join(".")),
        vec("[A-Za-z0-9][A-Za-z0-9_-]{0,15}", 1..=8).prop_map(|l| l.join(".")),
        "[0-9a-z]{25}",
    ]
}

pub fn valid_ref() -> impl Strategy<Value = TaskRef> {
    prop_oneof![
        "[0-9a-z]{1,25}".prop_map(TaskRef::Id),
        (service_name(), prop_oneof![1u64..100, 1u64..=u64::MAX])
            .prop_map(|(service, slot)| TaskRef::Slot { service, slot }),
        (service_name(), node_name()).prop_map(|(service, node)| TaskRef::OnNode { service, node }),
    ]
}

pub fn is_service_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn is_node_name(s: &str) -> bool {
    s.split('.').all(|l| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// What everything downstream (URL paths, placement constraints) relies on.
pub fn check_safe_ref(r: &TaskRef) -> Result<(), TestCaseError> {
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
pub fn json_value() -> impl Strategy<Value = Value> {
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

pub fn max_nanos() -> u128 {
    MAX_TIMEOUT.as_nanos()
}

/// One `<n><unit>` or `<int>.<frac><unit>` term: its text, its exact value in nanoseconds
/// (floored; exact while the fraction has at most 6 digits), and whether it is fractional.
pub fn term(unit: &'static str, scale: u128) -> impl Strategy<Value = (String, u128, bool)> {
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

pub fn any_term() -> impl Strategy<Value = (String, u128, bool)> {
    select(UNITS).prop_flat_map(|(unit, scale)| term(unit, scale))
}

/// A well-formed duration: a bare number of seconds alone, or one or more unit terms
/// (`5m`, `1m30s`, `250ms`, repeats allowed), maybe padded with whitespace.
pub fn duration_input() -> impl Strategy<Value = (String, u128, bool)> {
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

/// The units of `--timeout`, in nanoseconds.
pub const UNITS: &[(&str, u128)] = &[
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];
