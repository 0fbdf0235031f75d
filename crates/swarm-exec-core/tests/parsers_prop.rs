//! Property tests of the parsers that face untrusted input: `TASK` and `--timeout` from the
//! command line (the Skopos plugin's JSON has its own, beside it in the binary). (The helper's frames read back from service
//! logs have theirs in swarm-exec-proto.) Each must never panic, must accept only what is safe to pass on, and must
//! give back exactly what a well-formed input says.

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use swarm_exec_core::model::duration::{parse_duration, InvalidDuration, MAX_TIMEOUT};
use swarm_exec_core::model::target::TaskRef;

mod strategies;
use strategies::*;

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
