//! The one rule for text a client sends that the host keeps, logs or
//! repeats: names, URIs, methods, token fields, header values.
//!
//! - **Kept** (in a session, a subscription, an audit record): at most a
//!   fixed length, checked where it comes in; longer is refused, or cut
//!   where refusing would lose a call ([`kept`]).
//! - **Repeated** (in an error, a challenge header, a log line): quoted,
//!   escaped and cut to [`ECHO_BYTES`] ([`shown`]), so a 4 MiB name costs
//!   the host 200 bytes wherever it goes.
//! - **Never a metrics label** unless it names something the host serves.

use crate::printable::truncate;

/// The most of a client's text any error, header or log line repeats.
pub const ECHO_BYTES: usize = 200;

/// The longest resource URI the host reads, watches or records.
pub const MAX_URI_BYTES: usize = 2048;

/// The most of a client's self-chosen name (`clientInfo.name`) kept with
/// its session and written into each audit record.
pub const MAX_CLIENT_NAME_BYTES: usize = 128;

/// `text` as an error or log line may repeat it: quoted, with controls
/// escaped, cut to [`ECHO_BYTES`].
pub fn shown(text: &str) -> String {
    let head = &text[..floor_char_boundary(text, ECHO_BYTES + 1)];
    let mut quoted = format!("{head:?}");
    truncate(&mut quoted, ECHO_BYTES);
    quoted
}

/// `text` as the host keeps it: unprintable characters escaped, cut to
/// `max` bytes.
pub fn kept(text: &str, max: usize) -> String {
    let head = &text[..floor_char_boundary(text, max + 1)];
    let mut kept = crate::printable::escape(head).into_owned();
    truncate(&mut kept, max);
    kept
}

/// Refuses a URI longer than [`MAX_URI_BYTES`], saying so.
pub fn uri_within_limit(uri: &str) -> Result<(), String> {
    match uri.len() {
        len if len > MAX_URI_BYTES => Err(format!(
            "the URI is {len} bytes; the host accepts URIs of at most {MAX_URI_BYTES} bytes"
        )),
        _ => Ok(()),
    }
}

/// The largest index at most `index` that falls on a character boundary.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut end = index.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_quoted_escaped_and_short_whatever_came_in() {
        let huge = "é".repeat(2 << 20);
        let echoed = shown(&huge);
        assert!(
            echoed.len() <= ECHO_BYTES + '…'.len_utf8(),
            "{}",
            echoed.len()
        );
        assert!(echoed.starts_with("\"é"));
        let forged = shown("x\nERROR host: forged\u{1b}[2J");
        assert!(
            !forged.contains('\n') && !forged.contains('\u{1b}'),
            "{forged}"
        );
    }

    #[test]
    fn kept_text_is_escaped_and_cut() {
        assert_eq!(kept("claude-desktop", 128), "claude-desktop");
        let name = kept(&format!("a\nb{}", "z".repeat(1000)), 16);
        assert!(name.starts_with("a\\nb") && name.len() <= 16 + 3, "{name}");
    }

    #[test]
    fn uris_past_the_limit_are_refused() {
        assert!(uri_within_limit(&"u".repeat(MAX_URI_BYTES)).is_ok());
        assert!(uri_within_limit(&"u".repeat(MAX_URI_BYTES + 1)).is_err());
    }
}
