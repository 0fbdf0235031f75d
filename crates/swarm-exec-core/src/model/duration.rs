//! The duration syntax of `--timeout`: a bare number of seconds (`30`, `1.5`), or numbers
//! with units `ms`, `s`, `m`, `h` (`30s`, `5m`, `1m30s`, `250ms`).

use std::time::Duration;

/// The longest timeout accepted: one week. Anything longer is almost surely a typo, and a
/// helper that may legitimately live for weeks would defeat garbage collection by deadline.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDuration {
    #[error("invalid duration {0:?}: expected e.g. 30, 30s, 5m, 1m30s or 250ms")]
    Syntax(String),
    #[error("duration {0:?} must be greater than zero")]
    Zero(String),
    #[error("duration {0:?} is longer than the maximum of one week")]
    TooLong(String),
}

/// Parses a positive duration of at most [`MAX_TIMEOUT`].
pub fn parse_duration(input: &str) -> Result<Duration, InvalidDuration> {
    let s = input.trim();
    let syntax = || InvalidDuration::Syntax(input.to_owned());
    if s.is_empty() {
        return Err(syntax());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
            return Err(syntax());
        }
        let value: f64 = num.parse().map_err(|_| syntax())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            // A bare number is seconds, but only as the whole input.
            "" if rest.len() == s.len() => 1.0,
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(syntax()),
        };
        total += value * scale;
        if total > MAX_TIMEOUT.as_secs_f64() {
            return Err(InvalidDuration::TooLong(input.to_owned()));
        }
        rest = next;
    }
    let d = Duration::from_secs_f64(total);
    if d.is_zero() {
        return Err(InvalidDuration::Zero(input.to_owned()));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts() {
        let cases = [
            ("30", 30_000),
            ("1.5", 1_500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
            ("250ms", 250),
            (" 2s ", 2_000),
            ("168h", 604_800_000),
        ];
        for (s, ms) in cases {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
    }

    #[test]
    fn rejects() {
        for s in [
            "", "s", "-1", "-5s", "5x", "1.s", ".5", "5 m", "1m30", "1e3", "NaN", "∞",
        ] {
            assert!(
                matches!(parse_duration(s), Err(InvalidDuration::Syntax(_))),
                "{s:?}"
            );
        }
        assert!(matches!(parse_duration("0"), Err(InvalidDuration::Zero(_))));
        assert!(matches!(
            parse_duration("0s"),
            Err(InvalidDuration::Zero(_))
        ));
        assert!(matches!(
            parse_duration("169h"),
            Err(InvalidDuration::TooLong(_))
        ));
        assert!(matches!(
            parse_duration(&"9".repeat(400)),
            Err(InvalidDuration::TooLong(_))
        ));
    }
}
