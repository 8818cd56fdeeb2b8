//! `host token issue` and `host keygen`: tokens and keys for direct mode,
//! for local use and tests (production tokens come from the authorization
//! server).

use crate::auth::jwt::{self, SigningKey};
use crate::cli::{KeygenArgs, TokenArgs};
use crate::config::ConfigFile;
use anyhow::{Context, anyhow};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::time::{SystemTime, UNIX_EPOCH};

/// Prints a signed token for `args`.
pub fn issue(args: &TokenArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read config {}", args.config.display()))?;
    let config: ConfigFile =
        toml::from_str(&text).map_err(|e| anyhow!("config {}: {}", args.config.display(), e))?;
    let auth = config.auth;
    let issuer = auth.issuer.ok_or_else(|| anyhow!("[auth] has no issuer"))?;
    let audience = auth
        .resource
        .ok_or_else(|| anyhow!("[auth] has no resource (the audience)"))?;
    let key = match &args.key {
        Some(path) => SigningKey::Ed25519(read_key(path)?),
        None => {
            let name = auth.hs256_secret_env.ok_or_else(|| {
                anyhow!("[auth] has no hs256_secret_env: pass --key with an Ed25519 key")
            })?;
            let secret = std::env::var(&name).map_err(|_| anyhow!("${name} is not set"))?;
            SigningKey::Hs256(ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                secret.as_bytes(),
            ))
        }
    };
    let scopes = if args.scopes.is_empty() {
        vec![auth.required_scope, auth.write_scope]
    } else {
        args.scopes.clone()
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = serde_json::json!({
        "sub": args.sub,
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + args.ttl.as_secs(),
        "scope": scopes.join(" "),
    });
    println!("{}", jwt::sign(&claims, &key));
    Ok(())
}

/// Writes a new Ed25519 private key to `args.out` (readable by its owner
/// only) and prints the public key.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow!("cannot make a key"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| anyhow!("bad key"))?;
    write_private(&args.out, STANDARD.encode(pkcs8.as_ref()).as_bytes())?;
    println!("{}", STANDARD.encode(pair.public_key().as_ref()));
    eprintln!(
        "private key written to {}; put the public key above in [auth] ed25519_public_keys",
        args.out.display()
    );
    Ok(())
}

fn read_key(path: &std::path::Path) -> anyhow::Result<Ed25519KeyPair> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key {}", path.display()))?;
    let der = STANDARD
        .decode(text.trim())
        .map_err(|_| anyhow!("{} is not a key from host keygen", path.display()))?;
    Ed25519KeyPair::from_pkcs8(&der)
        .map_err(|_| anyhow!("{} is not an Ed25519 key", path.display()))
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}
