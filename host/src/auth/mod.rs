//! Who is calling, over HTTP: the auth modes, and the principal each
//! request runs as. (stdio is local and unauthenticated: its principal is
//! the local user.)
//!
//! - `none` (the default): no credentials, so loopback only.
//! - `public`: anonymous; read-only tools, resources and prompts only.
//! - `gateway`: a trusted front passes the user id, HMAC-signed ([`gateway`]).
//! - `direct`: clients bring bearer tokens, verified here ([`jwt`]); the
//!   host is an OAuth 2.1 resource server with RFC 9728 metadata.

pub mod gateway;
pub mod jwt;
pub mod rate;

use crate::principal::{ANONYMOUS, LOCAL, Principal, valid_principal};
use crate::shared_state::SharedState;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use serde::Deserialize;
use std::collections::BTreeSet;

/// The `[auth]` table of the host config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub mode: Mode,
    /// This endpoint's URL as clients reach it (behind a proxy, the public
    /// one): the audience tokens must name, and the `resource` of the
    /// protected-resource metadata.
    pub resource: Option<String>,
    /// Authorization servers clients get tokens from (direct mode).
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// The `iss` tokens must carry (direct mode).
    pub issuer: Option<String>,
    /// The environment variable holding the HS256 secret (direct mode).
    pub hs256_secret_env: Option<String>,
    /// Ed25519 public keys tokens may be signed with, base64 (direct mode).
    #[serde(default)]
    pub ed25519_public_keys: Vec<String>,
    /// Clock skew allowed on token times, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_s: u64,
    /// The scope a token needs to use this host at all (direct mode).
    #[serde(default = "default_read_scope")]
    pub required_scope: String,
    /// The scope a principal needs for tools that are not read-only.
    #[serde(default = "default_write_scope")]
    pub write_scope: String,
    /// The environment variable holding the gateway's shared secret.
    pub gateway_secret_env: Option<String>,
    /// How far a gateway signature's time may be from now, in seconds.
    #[serde(default = "default_skew")]
    pub max_skew_s: u64,
    /// Request and tool-call budgets.
    #[serde(default)]
    pub rate_limit: rate::RateConfig,
}

fn default_leeway() -> u64 {
    60
}
fn default_read_scope() -> String {
    "mcp:read".into()
}
fn default_write_scope() -> String {
    "mcp:write".into()
}
fn default_skew() -> u64 {
    300
}

/// How HTTP clients are authenticated.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    None,
    Public,
    Gateway,
    Direct,
}

/// Why credentials were refused: the reason is a short, fixed word (it
/// labels metrics), the detail is for the log and the client.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected {
    pub reason: &'static str,
    pub detail: String,
}

/// A request the host refuses to serve, and how to say so.
#[derive(Debug)]
pub struct Refusal {
    /// 401, 403 or 429.
    pub status: u16,
    /// A fixed word for metrics and the audit log.
    pub reason: &'static str,
    /// For the client.
    pub detail: String,
    /// For 429: seconds until the budget allows another request.
    pub retry_after: Option<u64>,
}

impl Refusal {
    pub(crate) fn unauthenticated(rejected: Rejected) -> Refusal {
        Refusal {
            status: 401,
            reason: rejected.reason,
            detail: rejected.detail,
            retry_after: None,
        }
    }
}

/// The configured auth mode, with its keys loaded.
pub struct Authenticator {
    pub mode: Mode,
    pub resource: Option<String>,
    pub authorization_servers: Vec<String>,
    pub required_scope: String,
    pub write_scope: String,
    verifier: Option<jwt::Verifier>,
    gateway: Option<gateway::Gateway>,
}

/// What a request shows of itself.
pub struct Credentials<'a> {
    pub authorization: Option<&'a str>,
    pub gateway: gateway::Signed<'a>,
}

impl Authenticator {
    /// Loads the keys `config` names, reading secrets from the environment
    /// through `env`. Errors say what is missing.
    pub fn new(
        config: &AuthConfig,
        env: impl Fn(&str) -> Option<String>,
        state: &SharedState,
    ) -> Result<Self, String> {
        let secret = |name: &Option<String>, key: &str| -> Result<Option<Vec<u8>>, String> {
            let Some(name) = name else { return Ok(None) };
            match env(name) {
                Some(value) if value.len() >= 32 => Ok(Some(value.into_bytes())),
                Some(_) => Err(format!("[auth] {key}: ${name} must hold at least 32 bytes")),
                None => Err(format!("[auth] {key}: ${name} is not set")),
            }
        };
        let mut verifier = None;
        let mut gateway = None;
        match config.mode {
            Mode::None | Mode::Public => {}
            Mode::Direct => {
                let hs256 = secret(&config.hs256_secret_env, "hs256_secret_env")?
                    .map(|s| hmac::Key::new(hmac::HMAC_SHA256, &s));
                let ed25519 = config
                    .ed25519_public_keys
                    .iter()
                    .map(|key| match STANDARD.decode(key.trim()) {
                        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
                        _ => Err(format!(
                            "[auth] ed25519_public_keys: {key:?} is not a base64 Ed25519 public key \
                             (host keygen makes one)"
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if hs256.is_none() && ed25519.is_empty() {
                    return Err("[auth] mode = \"direct\" needs hs256_secret_env or \
                                ed25519_public_keys"
                        .into());
                }
                let required = |value: &Option<String>, key: &str| {
                    value
                        .clone()
                        .ok_or_else(|| format!("[auth] mode = \"direct\" needs {key}"))
                };
                verifier = Some(jwt::Verifier {
                    hs256,
                    ed25519,
                    issuer: required(&config.issuer, "issuer")?,
                    audience: required(&config.resource, "resource (the token audience)")?,
                    leeway: config.leeway_s,
                });
            }
            Mode::Gateway => {
                let key = secret(&config.gateway_secret_env, "gateway_secret_env")?
                    .ok_or("[auth] mode = \"gateway\" needs gateway_secret_env")?;
                gateway = Some(gateway::Gateway::new(
                    hmac::Key::new(hmac::HMAC_SHA256, &key),
                    config.max_skew_s,
                    state.replays(),
                ));
            }
        }
        Ok(Authenticator {
            mode: config.mode,
            resource: config.resource.clone(),
            authorization_servers: config.authorization_servers.clone(),
            required_scope: config.required_scope.clone(),
            write_scope: config.write_scope.clone(),
            verifier,
            gateway,
        })
    }

    /// The principal a request with `credentials` runs as, at time `now`.
    pub fn authenticate(&self, credentials: &Credentials, now: u64) -> Result<Principal, Refusal> {
        match self.mode {
            Mode::None => Ok(Principal::local()),
            Mode::Public => Ok(Principal::anonymous()),
            Mode::Gateway => {
                let gateway = self.gateway.as_ref().expect("gateway mode has a gateway");
                let id = gateway
                    .verify(&credentials.gateway, now)
                    .map_err(Refusal::unauthenticated)?;
                self.principal(id, BTreeSet::new(), true)
            }
            Mode::Direct => {
                let verifier = self.verifier.as_ref().expect("direct mode has a verifier");
                let token = credentials
                    .authorization
                    .and_then(|value| value.strip_prefix("Bearer "))
                    .ok_or_else(|| {
                        Refusal::unauthenticated(Rejected {
                            reason: "missing",
                            detail: "send Authorization: Bearer <token>".into(),
                        })
                    })?;
                let bearer = verifier
                    .verify(token.trim(), now)
                    .map_err(Refusal::unauthenticated)?;
                if !bearer.scopes.contains(&self.required_scope) {
                    return Err(Refusal {
                        status: 403,
                        reason: "insufficient-scope",
                        detail: format!("the token lacks the scope {}", self.required_scope),
                        retry_after: None,
                    });
                }
                let may_write = bearer.scopes.contains(&self.write_scope);
                self.principal(bearer.subject, bearer.scopes, may_write)
            }
        }
    }

    fn principal(
        &self,
        id: String,
        scopes: BTreeSet<String>,
        may_write: bool,
    ) -> Result<Principal, Refusal> {
        if !valid_principal(&id) {
            return Err(Refusal::unauthenticated(Rejected {
                reason: "principal",
                detail: "the user id must be 1-128 of letters, digits and . _ - @".into(),
            }));
        }
        // Reserved, in any case: a user called `local` would share the
        // operator's folders (on a case-insensitive filesystem, `LOCAL`
        // too), and either would read as the operator or the public in
        // the audit log.
        if id.eq_ignore_ascii_case(LOCAL) || id.eq_ignore_ascii_case(ANONYMOUS) {
            return Err(Refusal::unauthenticated(Rejected {
                reason: "principal",
                detail: format!("the user id {} is reserved", crate::client_text::shown(&id)),
            }));
        }
        Ok(Principal {
            id,
            scopes,
            may_write,
            local: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_ids_cannot_reach_other_folders() {
        for good in ["alice", "bob.smith", "a@example.com", "user_1-2"] {
            assert!(valid_principal(good), "{good}");
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "../alice",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(!valid_principal(bad), "{bad}");
        }
    }

    #[test]
    fn modes_need_their_keys() {
        let config = |mode| AuthConfig {
            mode,
            ..AuthConfig::default()
        };
        let no_env = |_: &str| None;
        assert!(
            Authenticator::new(&config(Mode::Direct), no_env, &SharedState::in_memory()).is_err()
        );
        assert!(
            Authenticator::new(&config(Mode::Gateway), no_env, &SharedState::in_memory()).is_err()
        );
        let short = AuthConfig {
            gateway_secret_env: Some("S".into()),
            ..config(Mode::Gateway)
        };
        let error = Authenticator::new(&short, |_| Some("short".into()), &SharedState::in_memory())
            .err()
            .unwrap();
        assert!(error.contains("32 bytes"), "{error}");
        assert!(
            Authenticator::new(&config(Mode::Public), no_env, &SharedState::in_memory()).is_ok()
        );
    }
}
