//! Text that comes from outside (certificate subjects, API messages, category strings, file
//! names in a folder someone else can write) made safe to print on a terminal (SPEC 2).
//!
//! Owns: one rule, used by every printer and by the text log format: control characters (C0,
//! DEL, C1) and the Unicode bidirectional overrides are shown escaped (`\n`, `\u{1b}`), so a
//! hostile subject can neither forge a log line nor drive the terminal. It must not change
//! anything else: ordinary text, including non-ASCII letters, prints as it is. Also how an
//! error is printed with its sources ([`error_chain`]).

use std::borrow::Cow;
use std::fmt;

/// Whether `c` must not reach a terminal raw.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every unsafe character escaped; borrowed when nothing needed escaping.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    push_escaped(&mut out, s);
    Cow::Owned(out)
}

/// Appends `s` to `out`, escaped.
pub fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
}

/// Displays the wrapped text escaped: `format!("{}", Untrusted(subject))`.
#[derive(Clone, Copy, Debug)]
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0))
    }
}

/// A `fmt::Write` that escapes everything written through it (for log fields).
pub struct EscapingWriter<W>(pub W);

impl<W: fmt::Write> fmt::Write for EscapingWriter<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_str(&escape(s))
    }
}

/// An error and its sources, joined by ": ".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(escape("CN=Ünïcode CA, O=x"), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_and_bidi_overrides_are_escaped() {
        assert_eq!(escape("a\nb"), "a\\nb");
        assert_eq!(escape("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape("x\u{7f}\u{85}"), "x\\u{7f}\\u{85}");
        assert_eq!(escape("abc\u{202e}def"), "abc\\u{202e}def");
        assert_eq!(Untrusted("t\tab").to_string(), "t\\tab");
    }

    #[test]
    fn the_escaping_writer_escapes_every_piece() {
        use std::fmt::Write;
        let mut w = EscapingWriter(String::new());
        w.write_str("ok|").unwrap();
        w.write_str("bad\r\n").unwrap();
        assert_eq!(w.0, "ok|bad\\r\\n");
    }
}
