//! swarm-exec's own messages on stderr (errors, usage errors), kept to a sane size.

/// Messages quote what the user gave; a huge argument must not make a huge message.
pub fn clip(msg: &str) -> String {
    const LINE: usize = 400;
    msg.lines()
        .map(|l| match l.char_indices().nth(LINE) {
            Some((cut, _)) => format!("{}… ({} bytes)", &l[..cut], l.len()),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
