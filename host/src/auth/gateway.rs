//! Gateway mode: a trusted front authenticates the user and passes the user
//! id, signed. The host believes the id only with a valid HMAC-SHA256, made
//! with the shared secret, over everything that decides what the request
//! does: its method, path and query, MCP session, the user, the time, a
//! nonce and a digest of the body. So a signature cannot be moved to
//! another request, user, session or body; it is accepted once (a replay
//! cache spans the clock-skew window), and only within that window, with
//! no more than a few seconds' allowance for a gateway clock ahead of ours.
//!
//! The gateway sends the body's digest in a header too, so the signature
//! is checked before any byte of the body is read: a request with a wrong
//! signature costs the host its headers only. The body is then read and
//! must match the digest that was signed.

use super::Rejected;
use crate::shared_state::{ReplayRefused, Replays};
use ring::{digest, hmac};
use std::sync::Arc;

/// The header carrying the user id.
pub const USER: &str = "x-mcp-user";
/// The header carrying the signing time, in seconds since the epoch.
pub const TIMESTAMP: &str = "x-mcp-timestamp";
/// The header carrying a value the gateway never reuses (16 to 128
/// characters), so two identical requests in one second sign differently.
pub const NONCE: &str = "x-mcp-nonce";
/// The header carrying the signature: 64 lower-case hex digits of the
/// HMAC-SHA256 of [`signing_input`].
pub const SIGNATURE: &str = "x-mcp-signature";
/// The header carrying the body's SHA-256, 64 lower-case hex digits: what
/// the signature covers in the body's place.
pub const BODY_SHA256: &str = "x-mcp-body-sha256";

/// How far ahead of the host's clock a gateway's may run, in seconds.
const FUTURE_LEEWAY: u64 = 5;

/// Checks gateway signatures.
pub struct Gateway {
    pub key: hmac::Key,
    /// How old a signature may be, in seconds.
    pub max_skew: u64,
    /// Signatures accepted and still inside the window.
    seen: Arc<dyn Replays>,
}

/// The signed parts of one request, as they arrived.
pub struct Signed<'a> {
    pub method: &'a str,
    /// The path and query, as sent.
    pub target: &'a str,
    pub session: Option<&'a str>,
    pub user: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body_sha256: Option<&'a str>,
}

impl Gateway {
    /// Checks signatures made with `key`, at most `max_skew` seconds old,
    /// each accepted once (`seen` remembers them).
    pub fn new(key: hmac::Key, max_skew: u64, seen: Arc<dyn Replays>) -> Gateway {
        Gateway {
            key,
            max_skew,
            seen,
        }
    }

    /// The user id of a request whose signed parts (the body's digest
    /// among them) are `signed`, at time `now`: checked before the body is
    /// read; [`body_matches`] checks the body once it has been.
    pub fn verify(&self, signed: &Signed, now: u64) -> Result<String, Rejected> {
        let (user, tag, at) = self.headers(signed, now)?;
        let message = signing_input(signed);
        hmac::verify(&self.key, &message, &tag).map_err(|_| Rejected {
            reason: "signature",
            detail: "the gateway signature does not verify".into(),
        })?;
        self.remember(tag, at + self.max_skew, now)?;
        Ok(user.to_owned())
    }

    /// The user, the signature and its time, if the headers are sound.
    fn headers<'a>(
        &self,
        signed: &Signed<'a>,
        now: u64,
    ) -> Result<(&'a str, [u8; 32], u64), Rejected> {
        let missing = |what: &str| Rejected {
            reason: "missing",
            detail: format!("the gateway did not send {what}"),
        };
        let malformed = |detail: String| Rejected {
            reason: "malformed",
            detail,
        };
        let user = signed.user.ok_or_else(|| missing(USER))?;
        let timestamp = signed.timestamp.ok_or_else(|| missing(TIMESTAMP))?;
        let nonce = signed.nonce.ok_or_else(|| missing(NONCE))?;
        let signature = signed.signature.ok_or_else(|| missing(SIGNATURE))?;
        let body_sha256 = signed.body_sha256.ok_or_else(|| missing(BODY_SHA256))?;
        // One spelling of each: a second spelling of the same signature
        // would be a second entry in the replay cache.
        let tag = decode_hex(signature)
            .ok_or_else(|| malformed(format!("{SIGNATURE} is not 64 lower-case hex digits")))?;
        decode_hex(body_sha256)
            .ok_or_else(|| malformed(format!("{BODY_SHA256} is not 64 lower-case hex digits")))?;
        let at = parse_seconds(timestamp).ok_or_else(|| {
            malformed(format!(
                "{TIMESTAMP} is not seconds since the epoch in plain digits"
            ))
        })?;
        if !(16..=128).contains(&nonce.len()) {
            return Err(malformed(format!("{NONCE} must be 16 to 128 characters")));
        }
        if at > now + FUTURE_LEEWAY {
            return Err(Rejected {
                reason: "stale",
                detail: format!(
                    "the gateway signature is dated {} s in the future (at most {FUTURE_LEEWAY} s allowed)",
                    at - now
                ),
            });
        }
        if now.saturating_sub(at) > self.max_skew {
            return Err(Rejected {
                reason: "stale",
                detail: format!(
                    "the gateway signature is {} s old (at most {} s allowed)",
                    now - at,
                    self.max_skew
                ),
            });
        }
        Ok((user, tag, at))
    }

    /// Records an accepted signature until `expires`; refuses one seen
    /// before.
    fn remember(&self, tag: [u8; 32], expires: u64, now: u64) -> Result<(), Rejected> {
        self.seen
            .first_use(tag, expires, now)
            .map_err(|refused| match refused {
                ReplayRefused::Full => Rejected {
                    reason: "replay-cache-full",
                    detail: "too many signed requests inside the skew window; lower max_skew_s"
                        .into(),
                },
                ReplayRefused::Replayed => Rejected {
                    reason: "replayed",
                    detail: "this gateway signature was already used".into(),
                },
            })
    }
}

/// What the gateway signs, each part on its own line:
///
/// ```text
/// mcp-gateway-v2
/// METHOD
/// /path?query
/// session id (empty when there is none)
/// user
/// timestamp
/// nonce
/// hex SHA-256 of the body (as sent in x-mcp-body-sha256)
/// ```
pub fn signing_input(signed: &Signed) -> Vec<u8> {
    [
        "mcp-gateway-v2",
        signed.method,
        signed.target,
        signed.session.unwrap_or(""),
        signed.user.unwrap_or(""),
        signed.timestamp.unwrap_or(""),
        signed.nonce.unwrap_or(""),
        signed.body_sha256.unwrap_or(""),
    ]
    .join("\n")
    .into_bytes()
}

/// Whether `body` is the body whose digest `signed` names (checked by
/// [`Gateway::verify`] to be 64 lower-case hex digits).
pub fn body_matches(signed: &Signed, body: &[u8]) -> Result<(), Rejected> {
    let digest = hex::encode(digest::digest(&digest::SHA256, body));
    if signed.body_sha256 == Some(digest.as_str()) {
        return Ok(());
    }
    Err(Rejected {
        reason: "body-digest",
        detail: format!("the body does not match the signed {BODY_SHA256}"),
    })
}

/// Exactly 64 lower-case hex digits.
fn decode_hex(text: &str) -> Option<[u8; 32]> {
    // `hex` also takes upper case: the header's one spelling is lower.
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut tag = [0; 32];
    hex::decode_to_slice(text, &mut tag).ok()?;
    Some(tag)
}

/// Plain decimal digits, no sign, no leading zero.
fn parse_seconds(text: &str) -> Option<u64> {
    let plain = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    plain.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const NONCE: &str = "0123456789abcdef";
    /// The SHA-256 of `{}`.
    const BRACES_SHA256: &str = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn gateway() -> Gateway {
        Gateway::new(
            hmac::Key::new(hmac::HMAC_SHA256, b"shared"),
            300,
            crate::shared_state::SharedState::in_memory().replays(),
        )
    }

    /// A POST to /mcp in session `s1`, by `user` at `timestamp`, signed.
    fn request<'a>(user: &'a str, timestamp: &'a str) -> Signed<'a> {
        Signed {
            method: "POST",
            target: "/mcp",
            session: Some("s1"),
            user: Some(user),
            timestamp: Some(timestamp),
            nonce: Some(NONCE),
            signature: None,
            body_sha256: Some(BRACES_SHA256),
        }
    }

    fn sign(signed: &Signed) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"shared");
        hex::encode(hmac::sign(&key, &signing_input(signed)))
    }

    fn signed<'a>(mut request: Signed<'a>, signature: &'a mut String) -> Signed<'a> {
        *signature = sign(&request);
        request.signature = Some(signature.as_str());
        request
    }

    #[test]
    fn a_signed_request_names_its_user_once() {
        let gateway = gateway();
        let at = NOW.to_string();
        let mut tag = String::new();
        let good = signed(request("alice", &at), &mut tag);
        assert_eq!(gateway.verify(&good, NOW).unwrap(), "alice");
        assert_eq!(
            gateway.verify(&good, NOW + 1).unwrap_err().reason,
            "replayed"
        );
        // The same request with a fresh nonce is a new request.
        let mut other = String::new();
        let again = signed(
            Signed {
                nonce: Some("fedcba9876543210"),
                ..request("alice", &at)
            },
            &mut other,
        );
        assert_eq!(gateway.verify(&again, NOW).unwrap(), "alice");
    }

    #[test]
    fn a_signature_does_not_move_to_another_method_path_session_user_or_body() {
        let at = NOW.to_string();
        let mut tag = String::new();
        let good = signed(request("alice", &at), &mut tag);
        let moved = [
            Signed {
                method: "DELETE",
                ..good
            },
            Signed {
                target: "/mcp?x",
                ..good
            },
            Signed {
                session: Some("s2"),
                ..good
            },
            Signed {
                session: None,
                ..good
            },
            Signed {
                user: Some("bob"),
                ..good
            },
            Signed {
                nonce: Some("0123456789abcdeF"),
                ..good
            },
        ];
        for request in &moved {
            assert_eq!(
                gateway().verify(request, NOW).unwrap_err().reason,
                "signature"
            );
        }
        // The body is held to the digest that was signed.
        assert!(body_matches(&good, b"{}").is_ok());
        assert_eq!(
            body_matches(&good, b"{ }").unwrap_err().reason,
            "body-digest"
        );
        let other_digest = "0".repeat(64);
        assert_eq!(
            gateway()
                .verify(
                    &Signed {
                        body_sha256: Some(&other_digest),
                        ..good
                    },
                    NOW
                )
                .unwrap_err()
                .reason,
            "signature"
        );
    }

    #[test]
    fn old_future_and_oddly_spelled_signatures_are_refused() {
        let old = (NOW - 301).to_string();
        let mut tag = String::new();
        let stale = signed(request("alice", &old), &mut tag);
        assert_eq!(gateway().verify(&stale, NOW).unwrap_err().reason, "stale");
        let ahead = (NOW + 6).to_string();
        let mut tag = String::new();
        let future = signed(request("alice", &ahead), &mut tag);
        assert_eq!(gateway().verify(&future, NOW).unwrap_err().reason, "stale");
        let near = (NOW + 5).to_string();
        let mut tag = String::new();
        let near = signed(request("alice", &near), &mut tag);
        assert!(gateway().verify(&near, NOW).is_ok());

        let at = NOW.to_string();
        let mut tag = String::new();
        let good = signed(request("alice", &at), &mut tag);
        let upper = good.signature.unwrap().to_uppercase();
        let padded = format!("0{at}");
        let plus = format!("+{at}");
        for (request, reason) in [
            (
                Signed {
                    signature: Some(&upper),
                    ..good
                },
                "malformed",
            ),
            (
                Signed {
                    timestamp: Some(&padded),
                    ..good
                },
                "malformed",
            ),
            (
                Signed {
                    timestamp: Some(&plus),
                    ..good
                },
                "malformed",
            ),
            (
                Signed {
                    nonce: Some("short"),
                    ..good
                },
                "malformed",
            ),
            (
                Signed {
                    nonce: None,
                    ..good
                },
                "missing",
            ),
            (
                Signed {
                    signature: None,
                    ..good
                },
                "missing",
            ),
            (
                Signed {
                    body_sha256: None,
                    ..good
                },
                "missing",
            ),
            (
                Signed {
                    body_sha256: Some(&upper),
                    ..good
                },
                "malformed",
            ),
        ] {
            assert_eq!(gateway().verify(&request, NOW).unwrap_err().reason, reason);
        }
    }
}
