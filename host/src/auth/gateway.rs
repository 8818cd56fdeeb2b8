//! Gateway mode: a trusted front authenticates the user and passes the user
//! id, signed. The host believes the id only with a valid HMAC-SHA256,
//! made with the shared secret, over the user id, a timestamp and the
//! request body, and only inside the clock-skew window, so a signature can
//! be neither moved to another user or body nor replayed later.

use super::Rejected;
use ring::hmac;

/// The header carrying the user id.
pub const USER: &str = "x-mcp-user";
/// The header carrying the signing time, in seconds since the epoch.
pub const TIMESTAMP: &str = "x-mcp-timestamp";
/// The header carrying the signature: lower-case hex HMAC-SHA256 of
/// `user \n timestamp \n body`.
pub const SIGNATURE: &str = "x-mcp-signature";

/// Checks gateway signatures.
pub struct Gateway {
    pub key: hmac::Key,
    /// How far the timestamp may be from now, either way, in seconds.
    pub max_skew: u64,
}

/// The signed headers of one request, as they arrived.
pub struct Signed<'a> {
    pub user: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

impl Gateway {
    /// The user id of a request whose headers are `signed` and whose body is
    /// `body`, at time `now`.
    pub fn verify(&self, signed: &Signed, body: &[u8], now: u64) -> Result<String, Rejected> {
        let missing = |what: &str| Rejected {
            reason: "missing",
            detail: format!("the gateway did not send {what}"),
        };
        let user = signed.user.ok_or_else(|| missing(USER))?;
        let timestamp = signed.timestamp.ok_or_else(|| missing(TIMESTAMP))?;
        let signature = signed.signature.ok_or_else(|| missing(SIGNATURE))?;
        let tag = decode_hex(signature).ok_or_else(|| Rejected {
            reason: "malformed",
            detail: format!("{SIGNATURE} is not hex"),
        })?;
        let message = signing_input(user, timestamp, body);
        hmac::verify(&self.key, &message, &tag).map_err(|_| Rejected {
            reason: "signature",
            detail: "the gateway signature does not verify".into(),
        })?;
        let at: u64 = timestamp.parse().map_err(|_| Rejected {
            reason: "malformed",
            detail: format!("{TIMESTAMP} is not seconds since the epoch"),
        })?;
        if now.abs_diff(at) > self.max_skew {
            return Err(Rejected {
                reason: "stale",
                detail: format!(
                    "the gateway signature is {} s from now (at most {} s allowed)",
                    now.abs_diff(at),
                    self.max_skew
                ),
            });
        }
        Ok(user.to_owned())
    }
}

/// What the gateway signs.
pub fn signing_input(user: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(user.len() + timestamp.len() + body.len() + 2);
    message.extend_from_slice(user.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(body);
    message
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn gateway() -> Gateway {
        Gateway {
            key: hmac::Key::new(hmac::HMAC_SHA256, b"shared"),
            max_skew: 300,
        }
    }

    fn sign(user: &str, timestamp: &str, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"shared");
        let tag = hmac::sign(&key, &signing_input(user, timestamp, body));
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn check(
        user: &str,
        timestamp: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<String, Rejected> {
        let signed = Signed {
            user: Some(user),
            timestamp: Some(timestamp),
            signature: Some(signature),
        };
        gateway().verify(&signed, body, NOW)
    }

    #[test]
    fn a_signed_request_names_its_user() {
        let at = NOW.to_string();
        assert_eq!(
            check("alice", &at, &sign("alice", &at, b"{}"), b"{}").unwrap(),
            "alice"
        );
    }

    #[test]
    fn altered_moved_stale_and_unsigned_requests_are_refused() {
        let at = NOW.to_string();
        let good = sign("alice", &at, b"{}");
        assert_eq!(
            check("alice", &at, &good, b"{ }").unwrap_err().reason,
            "signature"
        );
        assert_eq!(
            check("bob", &at, &good, b"{}").unwrap_err().reason,
            "signature"
        );
        let old = (NOW - 301).to_string();
        assert_eq!(
            check("alice", &old, &sign("alice", &old, b"{}"), b"{}")
                .unwrap_err()
                .reason,
            "stale"
        );
        assert_eq!(
            check("alice", &at, "zz", b"{}").unwrap_err().reason,
            "malformed"
        );
        let unsigned = Signed {
            user: Some("alice"),
            timestamp: Some(&at),
            signature: None,
        };
        assert_eq!(
            gateway().verify(&unsigned, b"{}", NOW).unwrap_err().reason,
            "missing"
        );
    }
}
