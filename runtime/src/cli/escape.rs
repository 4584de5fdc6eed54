//! Text that came from a guest or a submitter, made safe to print on a terminal.
//!
//! A guest writes its log, its progress and (through its exit message) its failure reason;
//! a submitter names its job. Printed raw, an ESC could recolour or clear the user's screen,
//! set its title or move the cursor, a CR could overwrite a line and a bidirectional override
//! reorder what it shows. Every command that prints such text in human form (`info`, `list`,
//! `status`, the summary of `run` and `submit --wait`) passes it through [`printable`]. JSON
//! output needs nothing: JSON escapes control characters itself. `output --format raw` prints
//! results as the tasks wrote them, on purpose.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character escaped: C0 (newline, tab and CR included), DEL, C1 and
/// the Unicode bidirectional overrides and isolates, as `\n`, `\t`, `\r` or `\u{…}`. A backslash
/// stays as it is: the output is for reading, not for parsing back.
///
/// A multi-line block, such as a log, is split into lines first and each line escaped, so its
/// newlines stay line breaks and nothing else passes.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn controls_are_escaped_and_the_rest_kept() {
        let cases = [
            ("plain text, ünïcode ✓", "plain text, ünïcode ✓"),
            ("\x1b[2J\x1b]0;pwned\x07", "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}"),
            ("done\rfake", "done\\rfake"),
            ("a\nb\tc", "a\\nb\\tc"),
            ("\u{9b}31m C1 CSI", "\\u{9b}31m C1 CSI"),
            ("\u{7f}", "\\u{7f}"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            ("back\\slash", "back\\slash"),
        ];
        for (text, shown) in cases {
            assert_eq!(printable(text), shown, "{text:?}");
        }
    }
}
