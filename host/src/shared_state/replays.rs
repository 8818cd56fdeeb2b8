//! Gateway signatures already accepted, in memory: each remembered until
//! it leaves the skew window.

use super::{ReplayRefused, Replays};
use std::collections::HashMap;
use std::sync::Mutex;

/// Signatures remembered at once; past it (after forgetting expired ones)
/// signed requests are refused rather than checked without the cache.
const MAX_REMEMBERED: usize = 1_000_000;

/// Accepted signatures, with the time each leaves the window.
#[derive(Default)]
pub struct MemoryReplays {
    seen: Mutex<HashMap<[u8; 32], u64>>,
}

impl Replays for MemoryReplays {
    fn first_use(&self, tag: [u8; 32], expires: u64, now: u64) -> Result<(), ReplayRefused> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, expiry| *expiry >= now);
        }
        if seen.len() >= MAX_REMEMBERED {
            return Err(ReplayRefused::Full);
        }
        match seen.insert(tag, expires) {
            Some(_) => Err(ReplayRefused::Replayed),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_accepted_once() {
        let replays = MemoryReplays::default();
        assert_eq!(replays.first_use([1; 32], 100, 10), Ok(()));
        assert_eq!(
            replays.first_use([1; 32], 100, 20),
            Err(ReplayRefused::Replayed)
        );
        assert_eq!(replays.first_use([2; 32], 100, 20), Ok(()));
    }
}
