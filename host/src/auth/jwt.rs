//! Bearer tokens: compact JWS (JWT) verified with ring, HS256 with a shared
//! secret or EdDSA (Ed25519) with configured public keys.
//!
//! The algorithm is taken from the key, never from the token: a token's
//! `alg` must name the algorithm of a key the host holds, so `none`, unknown
//! algorithms and algorithm confusion (an HS256 token "signed" with an
//! Ed25519 public key as its HMAC secret) are all refused.

use super::Rejected;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{hmac, signature};
use serde::Deserialize;
use std::collections::BTreeSet;

/// The keys tokens may be signed with, and what their claims must say.
pub struct Verifier {
    /// HS256 secret, when HS256 tokens are accepted.
    pub hs256: Option<hmac::Key>,
    /// Ed25519 public keys (32 bytes each), when EdDSA tokens are accepted.
    pub ed25519: Vec<Vec<u8>>,
    /// The required `iss`.
    pub issuer: String,
    /// The required `aud` (one of the token's audiences).
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway: u64,
}

fn rejected(reason: &'static str, detail: impl Into<String>) -> Rejected {
    Rejected {
        reason,
        detail: detail.into(),
    }
}

/// What a verified token says about its bearer.
#[derive(Debug, PartialEq, Eq)]
pub struct Bearer {
    pub subject: String,
    pub scopes: BTreeSet<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    /// Extensions the token says a verifier must understand (RFC 7515
    /// §4.1.11). The host understands none, so a token naming any is
    /// refused rather than read as if they were not there.
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    iss: Option<String>,
    #[serde(default)]
    aud: Audience,
    exp: Option<u64>,
    nbf: Option<u64>,
    #[serde(default)]
    scope: String,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::None => false,
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

impl Verifier {
    /// Verifies `token` at time `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: u64) -> Result<Bearer, Rejected> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(rejected(
                "malformed",
                "a bearer token is three base64url parts",
            ));
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| rejected("malformed", "the token is not base64url"))
        };
        let header: Header = serde_json::from_slice(&decode(header)?)
            .map_err(|_| rejected("malformed", "the token header is not JSON with an alg"))?;
        if header.crit.is_some() {
            return Err(rejected(
                "critical",
                "the token names critical header extensions (crit), which are not supported",
            ));
        }
        let signed = &token[..token.len() - signature.len() - 1];
        let signature = decode(signature)?;
        match header.alg.as_str() {
            "HS256" => {
                let key = self
                    .hs256
                    .as_ref()
                    .ok_or_else(|| rejected("algorithm", "HS256 tokens are not accepted"))?;
                hmac::verify(key, signed.as_bytes(), &signature)
                    .map_err(|_| rejected("signature", "the signature does not verify"))?;
            }
            "EdDSA" => {
                let verifies = self.ed25519.iter().any(|key| {
                    signature::UnparsedPublicKey::new(&signature::ED25519, key)
                        .verify(signed.as_bytes(), &signature)
                        .is_ok()
                });
                if !verifies {
                    return Err(rejected("signature", "the signature does not verify"));
                }
            }
            other => {
                return Err(rejected(
                    "algorithm",
                    format!(
                        "algorithm {} is not accepted (HS256 or EdDSA)",
                        crate::client_text::shown(other)
                    ),
                ));
            }
        }
        let claims: Claims = serde_json::from_slice(&decode(payload)?)
            .map_err(|_| rejected("malformed", "the token claims are not valid JSON claims"))?;
        self.check(claims, now)
    }

    fn check(&self, claims: Claims, now: u64) -> Result<Bearer, Rejected> {
        let exp = claims
            .exp
            .ok_or_else(|| rejected("expired", "the token has no exp"))?;
        if now > exp.saturating_add(self.leeway) {
            return Err(rejected("expired", "the token has expired"));
        }
        if claims
            .nbf
            .is_some_and(|nbf| now.saturating_add(self.leeway) < nbf)
        {
            return Err(rejected("not-yet-valid", "the token is not valid yet"));
        }
        if claims.iss.as_deref() != Some(self.issuer.as_str()) {
            return Err(rejected("issuer", "the token is from another issuer"));
        }
        if !claims.aud.contains(&self.audience) {
            return Err(rejected("audience", "the token is for another audience"));
        }
        let subject = claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(|| rejected("malformed", "the token has no sub"))?;
        Ok(Bearer {
            subject,
            scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
        })
    }
}

/// Signs `claims` as a compact JWS: HS256 with `secret`, or EdDSA with an
/// Ed25519 key pair.
pub fn sign(claims: &serde_json::Value, key: &SigningKey) -> String {
    let alg = match key {
        SigningKey::Hs256(_) => "HS256",
        SigningKey::Ed25519(_) => "EdDSA",
    };
    let header = serde_json::json!({ "alg": alg, "typ": "JWT" });
    let encode = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let signed = format!("{}.{}", encode(&header), encode(claims));
    let signature = match key {
        SigningKey::Hs256(secret) => hmac::sign(secret, signed.as_bytes()).as_ref().to_vec(),
        SigningKey::Ed25519(pair) => pair.sign(signed.as_bytes()).as_ref().to_vec(),
    };
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A key to sign tokens with.
pub enum SigningKey {
    Hs256(hmac::Key),
    Ed25519(signature::Ed25519KeyPair),
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn ed25519_pair() -> signature::Ed25519KeyPair {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn verifier(pair: &signature::Ed25519KeyPair) -> Verifier {
        Verifier {
            hs256: Some(hmac::Key::new(hmac::HMAC_SHA256, b"secret")),
            ed25519: vec![pair.public_key().as_ref().to_vec()],
            issuer: "https://auth.example".into(),
            audience: "https://mcp.example/mcp".into(),
            leeway: 30,
        }
    }

    fn claims() -> serde_json::Value {
        json!({"sub": "alice", "iss": "https://auth.example", "aud": "https://mcp.example/mcp",
               "exp": NOW + 60, "nbf": NOW - 60, "scope": "mcp:read mcp:write"})
    }

    fn with(change: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
        let mut claims = claims();
        change(&mut claims);
        claims
    }

    #[test]
    fn good_tokens_of_both_algorithms_verify() {
        let pair = ed25519_pair();
        let v = verifier(&pair);
        let hs = sign(
            &claims(),
            &SigningKey::Hs256(hmac::Key::new(hmac::HMAC_SHA256, b"secret")),
        );
        let bearer = v.verify(&hs, NOW).unwrap();
        assert_eq!(bearer.subject, "alice");
        assert!(bearer.scopes.contains("mcp:write"));
        let ed = sign(&claims(), &SigningKey::Ed25519(pair));
        assert_eq!(v.verify(&ed, NOW).unwrap().subject, "alice");
    }

    #[test]
    fn bad_claims_are_refused_for_their_reason() {
        let pair = ed25519_pair();
        let v = verifier(&pair);
        let key = SigningKey::Ed25519(pair);
        let cases = [
            (with(|c| c["exp"] = json!(NOW - 31)), "expired"),
            (with(|c| c["nbf"] = json!(NOW + 31)), "not-yet-valid"),
            (with(|c| c["iss"] = json!("https://evil.example")), "issuer"),
            (
                with(|c| c["aud"] = json!(["https://other.example"])),
                "audience",
            ),
            (
                with(|c| c.as_object_mut().unwrap().remove("exp").map(drop).unwrap()),
                "expired",
            ),
            (with(|c| c["sub"] = json!("")), "malformed"),
        ];
        for (claims, reason) in cases {
            assert_eq!(
                v.verify(&sign(&claims, &key), NOW).unwrap_err().reason,
                reason,
                "{claims}"
            );
        }
    }

    #[test]
    fn none_unknown_algorithms_and_confusion_are_refused() {
        let pair = ed25519_pair();
        let public = pair.public_key().as_ref().to_vec();
        let v = verifier(&pair);
        let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(v.verify(&none, NOW).unwrap_err().reason, "algorithm");
        let rs = format!(
            "{}.{payload}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#)
        );
        assert_eq!(v.verify(&rs, NOW).unwrap_err().reason, "algorithm");
        // HS256 with the Ed25519 public key as the HMAC secret.
        let confused = sign(
            &claims(),
            &SigningKey::Hs256(hmac::Key::new(hmac::HMAC_SHA256, &public)),
        );
        assert_eq!(v.verify(&confused, NOW).unwrap_err().reason, "signature");
        let wrong = sign(
            &claims(),
            &SigningKey::Hs256(hmac::Key::new(hmac::HMAC_SHA256, b"guess")),
        );
        assert_eq!(v.verify(&wrong, NOW).unwrap_err().reason, "signature");
    }

    #[test]
    fn tokens_naming_critical_extensions_are_refused_even_when_signed() {
        let pair = ed25519_pair();
        let v = verifier(&pair);
        let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
        for crit in [json!(["b64"]), json!(["exp"]), json!([]), json!("b64")] {
            let header = json!({"alg": "EdDSA", "b64": false, "crit": crit});
            let signed = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header.to_string()));
            let signature = URL_SAFE_NO_PAD.encode(pair.sign(signed.as_bytes()));
            let token = format!("{signed}.{signature}");
            assert_eq!(
                v.verify(&token, NOW).unwrap_err().reason,
                "critical",
                "{crit}"
            );
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let v = verifier(&ed25519_pair());
        for token in ["", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.e30"] {
            let reason = v.verify(token, NOW).unwrap_err().reason;
            assert!(
                ["malformed", "algorithm"].contains(&reason),
                "{token}: {reason}"
            );
        }
    }
}
