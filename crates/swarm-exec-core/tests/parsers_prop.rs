//! Property tests of the parsers that face untrusted input: `TASK` and `--timeout` from the
//! command line, the helper's record stream read back from service logs, and the Skopos
//! plugin's JSON. Each must never panic, must accept only what is safe to pass on, and must
//! give back exactly what a well-formed input says.

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{json, Map, Number, Value};
use swarm_exec_core::duration::{parse_duration, InvalidDuration, MAX_TIMEOUT};
use swarm_exec_core::frame::{Decoder, Encoder, Line, Record, CHUNK};
use swarm_exec_core::plugin::{
    inst_exec_args, parse_input, parse_timeout, split_command, PluginError,
};
use swarm_exec_core::target::TaskRef;

/// Docker's log drivers split longer lines, which would break records apart.
const LOG_LINE_LIMIT: usize = 16 * 1024;

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
// frame::{Encoder, Decoder}
// ---------------------------------------------------------------------------------------

fn nonce() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{1,32}"
}

fn index() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0usize..4, 1 => any::<usize>()]
}

fn output_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..64),
        // The bytes a line protocol could trip over.
        2 => vec(select(vec![b'\n', b'\r', 0, 0xff, b' ', b'=', b'a']), 0..64),
        // Longer than one CHUNK, and than a log line.
        1 => vec(any::<u8>(), 16 * 1024..3 * CHUNK + 100),
    ]
}

/// Failure messages up to 8000 bytes (2000 chars of at most 4 bytes each), which round-trip
/// whole; longer ones are cut to `frame::MAX_REASON` (`long_failure_messages_fit_one_log_line`).
fn failure_message() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00\\n\\r \u{fffd}é😀a]{0,40}",
        "(?s:.){0,2000}",
    ]
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        4 => (index(), output_bytes()).prop_map(|(i, b)| Record::Stdout(i, b)),
        3 => (index(), output_bytes()).prop_map(|(i, b)| Record::Stderr(i, b)),
        2 => (index(), any::<i64>()).prop_map(|(i, c)| Record::Exit(i, c)),
        2 => (index(), failure_message()).prop_map(|(i, m)| Record::Failed(i, m)),
        1 => Just(Record::Done),
        1 => Just(Record::TimedOut),
    ]
}

/// Feeds `wire` to `dec` cut at the given points, as log chunks arrive, then finishes.
fn decode_split(dec: &mut Decoder, wire: &[u8], cuts: &[Index]) -> Vec<Line> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
    at.push(0);
    at.push(wire.len());
    at.sort_unstable();
    let mut lines = Vec::new();
    for w in at.windows(2) {
        dec.feed(&wire[w[0]..w[1]], |l| lines.push(l));
    }
    lines.extend(dec.finish());
    lines
}

/// Output records may be re-chunked on the wire (and empty ones vanish): merge adjacent
/// output of the same stream and target so only content and order are compared.
fn normalize(records: impl IntoIterator<Item = Record>) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    for r in records {
        if matches!(&r, Record::Stdout(_, b) | Record::Stderr(_, b) if b.is_empty()) {
            continue;
        }
        match (out.last_mut(), &r) {
            (Some(Record::Stdout(i, acc)), Record::Stdout(j, b))
            | (Some(Record::Stderr(i, acc)), Record::Stderr(j, b))
                if *i == *j =>
            {
                acc.extend_from_slice(b)
            }
            _ => out.push(r),
        }
    }
    out
}

fn encode_all(nonce: &str, records: &[Record]) -> Vec<u8> {
    let enc = Encoder::new(nonce);
    let mut wire = Vec::new();
    for r in records {
        enc.encode(r, &mut wire);
    }
    wire
}

/// Garbage that now and then holds the real prefix and record-like fragments, so the
/// decoder's error paths (bad index, bad base64, bad exit code, trailing junk) are reached.
fn garbage(prefix: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let fragments: Vec<&'static [u8]> = vec![
        b"o ",
        b"e ",
        b"x ",
        b"f ",
        b"d",
        b"t",
        b"0 ",
        b"7",
        b"-1",
        b"+1 ",
        b"18446744073709551616 ",
        b"QUJD",
        b"QUJ",
        b"/w==",
        b"=",
        b" ",
        b"\n",
        b"\r\n",
        b"\xff",
        b"\0",
        b"swx1 ",
    ];
    let piece = prop_oneof![
        3 => vec(any::<u8>(), 0..24),
        2 => Just(prefix),
        4 => select(fragments).prop_map(<[u8]>::to_vec),
    ];
    vec(piece, 0..32).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn frames_round_trip_however_split(
        nonce in nonce(),
        records in vec(record(), 0..8),
        cuts in vec(any::<Index>(), 0..12),
    ) {
        let wire = encode_all(&nonce, &records);
        for line in wire.split(|&b| b == b'\n') {
            prop_assert!(line.len() < LOG_LINE_LIMIT, "line of {} bytes", line.len());
        }
        let lines = decode_split(&mut Decoder::new(&nonce), &wire, &cuts);
        let mut decoded = Vec::new();
        for l in lines {
            match l {
                Line::Record(r) => decoded.push(r),
                Line::Other(b) => prop_assert!(false, "undecoded line {:?}", String::from_utf8_lossy(&b)),
            }
        }
        for r in &decoded {
            if let Record::Stdout(_, b) | Record::Stderr(_, b) = r {
                prop_assert!(!b.is_empty() && b.len() <= CHUNK, "chunk of {} bytes", b.len());
            }
        }
        prop_assert_eq!(normalize(decoded), normalize(records));
    }

    #[test]
    fn frames_of_another_nonce_are_not_records(
        (ours, theirs) in (nonce(), nonce()).prop_filter("distinct", |(a, b)| a != b),
        records in vec(record(), 0..6),
        cuts in vec(any::<Index>(), 0..6),
    ) {
        let wire = encode_all(&theirs, &records);
        let lines = decode_split(&mut Decoder::new(&ours), &wire, &cuts);
        prop_assert_eq!(lines.len(), wire.iter().filter(|&&b| b == b'\n').count());
        prop_assert!(lines.iter().all(|l| matches!(l, Line::Other(_))));
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn garbage_never_forges_records(
        (nonce, junk) in nonce().prop_flat_map(|n| {
            let prefix = format!("swx1 {n} ").into_bytes();
            (Just(n), garbage(prefix))
        }),
        cuts in vec(any::<Index>(), 0..8),
    ) {
        let prefix = format!("swx1 {nonce} ").into_bytes();
        let whole = decode_split(&mut Decoder::new(&nonce), &junk, &[]);
        let split = decode_split(&mut Decoder::new(&nonce), &junk, &cuts);
        prop_assert_eq!(&whole, &split);
        // One Line per newline-terminated line, plus the unterminated rest if any.
        let mut raw: Vec<&[u8]> = junk.split(|&b| b == b'\n').collect();
        if raw.last().is_some_and(|l| l.is_empty()) {
            raw.pop();
        }
        prop_assert_eq!(whole.len(), raw.len());
        for (line, raw) in whole.iter().zip(raw) {
            match line {
                Line::Other(b) => prop_assert_eq!(b.as_slice(), raw),
                Line::Record(r) => prop_assert!(raw.starts_with(&prefix), "{r:?} forged from {raw:?}"),
            }
        }
    }
}

/// A failure reason (Docker error text, which may quote the user's command) of any length
/// stays on one line below 16 KiB, which no log driver splits: it is cut, not lost.
#[test]
fn long_failure_messages_fit_one_log_line() {
    for msg in ["a".repeat(12_280), "é".repeat(40_000)] {
        let mut wire = Vec::new();
        Encoder::new(&"n".repeat(32)).encode(&Record::Failed(0, msg.clone()), &mut wire);
        let longest = wire.split(|&b| b == b'\n').map(<[u8]>::len).max();
        assert!(longest < Some(LOG_LINE_LIMIT), "line of {longest:?} bytes");
        let mut d = Decoder::new(&"n".repeat(32));
        let mut got = None;
        d.feed(&wire, |l| got = Some(l));
        match got {
            Some(Line::Record(Record::Failed(0, cut))) => {
                assert!(msg.starts_with(&cut) && cut.len() > 4000)
            }
            other => panic!("{other:?}"),
        }
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
        if let Ok(a) = inst_exec_args(&input, "img:1") {
            let insts = input["inst"].as_array().expect("inst accepted as a list");
            prop_assert_eq!(a.tasks.len(), insts.len());
            for t in &a.tasks {
                check_safe_ref(t)?;
            }
            check_command(&a.command)?;
            prop_assert!(!a.timeout.is_zero() && a.timeout <= MAX_TIMEOUT, "timeout {:?}", a.timeout);
            prop_assert!(!a.image.is_empty(), "empty image");
            prop_assert!(swarm_exec_core::target::is_image_ref(&a.image), "image {:?}", a.image);
            prop_assert!(
                !a.image.chars().any(|c| c.is_whitespace() || c.is_control()),
                "image {:?}", a.image
            );
        }
    }

    #[test]
    fn inst_exec_args_of_arbitrary_json_never_panics(v in json_value()) {
        if let Value::Object(m) = v {
            let _ = inst_exec_args(&m, "img:1");
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
        let a = inst_exec_args(input.as_object().unwrap(), "img:1")
            .map_err(|e| TestCaseError::fail(format!("{input}: {e}")))?;
        prop_assert_eq!(a.tasks, tasks);
        prop_assert_eq!(a.command, words);
        prop_assert_eq!(a.timeout, Duration::from_secs(secs));
        prop_assert_eq!(a.image, image);
    }
}

/// A positive number of seconds below 1 ns is a zero `Duration`: refused, as
/// `parse_duration` refuses the same given as a string.
#[test]
fn sub_nanosecond_timeout_numbers_are_refused() {
    let got = parse_timeout(&json!(1e-10));
    assert!(got.is_err(), "1e-10 -> {got:?}");
}
