//! SHA-256 digests (ring): content identity for components and policies.

use ring::digest::{SHA256, digest};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// The SHA-256 digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}
