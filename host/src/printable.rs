//! Text that came from a plugin or a client, made safe to print: one log
//! event is one line, and nothing reaches a terminal that it would act on.
//!
//! Two places print such text: the host's log (stderr) and the reports of
//! `host check` and `host policy explain` (stdout). Both go through
//! [`escape`]: line breaks, the other C0 and C1 controls (ESC starts a
//! terminal sequence), DEL and the Unicode bidirectional controls (which
//! reorder what a reader sees) are written as visible escapes. The log does
//! it for every event as it is written ([`OneLine`]), whatever a log site
//! formatted into it, so no site can forget.

use std::borrow::Cow;
use std::io;

/// Whether `c` would break a line, drive a terminal or reorder text.
pub fn is_unprintable(c: char) -> bool {
    (c.is_control() && c != '\t') || is_bidi_control(c)
}

/// The Unicode bidirectional formatting characters.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unprintable character written as an escape (`\n`,
/// `\r`, `\u{1b}`, `\u{202e}`); unchanged (and not copied) when it has none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unprintable) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if is_unprintable(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` without unprintable characters, except line breaks and tabs: for
/// descriptions served to clients, where a line break is part of the text.
pub fn strip_controls(text: &str) -> Cow<'_, str> {
    let unwanted = |c: char| is_unprintable(c) && c != '\n';
    if !text.chars().any(unwanted) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.replace("\r\n", "\n")
            .chars()
            .filter(|&c| !unwanted(c))
            .collect(),
    )
}

/// A report of many lines (`host check`, `host policy explain`) with every
/// unprintable character escaped within its lines. Text that may hold a
/// line break of its own (a description) is escaped with [`escape`] before
/// it goes into the report.
pub fn report(text: &str) -> String {
    text.split('\n').map(escape).collect::<Vec<_>>().join("\n")
}

/// A writer for the host's log that keeps each event on one line: the
/// formatter hands it a whole event at a time, ending in a newline, and it
/// escapes everything unprintable before that newline.
pub struct OneLine<W>(pub W);

impl<W: io::Write> io::Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (text.as_ref(), ""),
        };
        // One write per event, so events from other threads never land
        // inside it.
        let line = escape(body).into_owned() + newline;
        self.0.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The host's log writer: stderr, one line per event.
pub fn stderr_one_line() -> OneLine<io::Stderr> {
    OneLine(io::stderr())
}

/// Cuts `text` to at most `max` bytes, on a character boundary, marking the
/// cut with `…`.
pub fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn unprintable_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape("plain café\ttab"), "plain café\ttab");
        assert_eq!(escape("a\nERROR host: forged"), "a\\nERROR host: forged");
        assert_eq!(escape("\x1b[2J\r"), "\\u{1b}[2J\\r");
        assert_eq!(escape("gpj.\u{202e}exe"), "gpj.\\u{202e}exe");
        assert_eq!(escape("\u{85}\u{7f}\u{2066}"), "\\u{85}\\u{7f}\\u{2066}");
    }

    #[test]
    fn descriptions_keep_line_breaks_and_lose_the_rest() {
        assert_eq!(
            strip_controls("one\r\ntwo\n\x1b[31mred\u{202e}"),
            "one\ntwo\n[31mred"
        );
        assert!(matches!(strip_controls("fine\ntext"), Cow::Borrowed(_)));
    }

    #[test]
    fn reports_keep_their_own_lines_only() {
        assert_eq!(report("a\x1b[1m\nb\u{202e}\n"), "a\\u{1b}[1m\nb\\u{202e}\n");
    }

    #[test]
    fn an_event_is_one_line_whatever_it_holds() {
        let mut out = OneLine(Vec::new());
        out.write_all(b"INFO denied attempt=/m/x\nERROR host: forged\n")
            .unwrap();
        out.write_all(b"WARN stderr tail \x1b]0;title\x07\n")
            .unwrap();
        let written = String::from_utf8(out.0).unwrap();
        assert_eq!(
            written,
            "INFO denied attempt=/m/x\\nERROR host: forged\nWARN stderr tail \\u{1b}]0;title\\u{7}\n"
        );
        assert_eq!(written.lines().count(), 2);
    }
}
