//! Text that comes from the swarm — names in a container's archive, node hostnames, task
//! output in a prefixed line — shown on a terminal with its control characters escaped, so
//! that it cannot move the cursor, recolour, retitle or forge a line of its own.

use std::borrow::Cow;

/// `s` with every control character (C0, DEL, C1) written as `\xNN` (or `\u{NN}` for C1),
/// and `\` as `\\` when anything was escaped (so the escapes read one way). Text without
/// control characters is returned as it is.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A path from a container, for a message: not UTF-8 as `�`, control characters escaped.
pub fn path(p: &std::path::Path) -> String {
    escape_control(&p.to_string_lossy()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_kept() {
        assert!(matches!(
            escape_control("web.1 node2 café"),
            Cow::Borrowed(_)
        ));
        assert_eq!(escape_control("a\\b"), "a\\b", "no control: kept as is");
        assert_eq!(escape_control("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
        assert_eq!(escape_control("a\rb\nc\td\x7f"), "a\\x0db\\x0ac\\x09d\\x7f");
        assert_eq!(escape_control("\u{9b}2J\\"), "\\u{9b}2J\\\\");
        // Nothing escaped is left raw.
        let shown = escape_control("\x00\x07\x08\x1b\u{85}");
        assert!(!shown.chars().any(char::is_control), "{shown}");
    }
}
