//! A bounded cache of tokens that passed [`TokenService::verify_as`], so a token seen before
//! skips the signature and JSON work on later requests.
//!
//! Keyed by the token's exact bytes (a different byte anywhere is a different key, so a forged
//! token can never find another token's entry). An entry records the key-set generation it
//! was verified under and hits only while that is still [`TokenService::key_generation`]: a
//! key reload bumps the generation, so a key it removed can never vouch for a cached token. An
//! entry hits only before its token's `exp` (without the leeway, which the full check applies).
//! Everything that can change after verification — revocation, staleness, CSRF, freshness,
//! roles — is checked by the caller on every request, hit or miss.
//!
//! Bounded by bytes (the token plus a fixed estimate for its claims), evicted by
//! `quick_cache`'s S3-FIFO policy: a flood of one-off tokens cannot push out the ones in use.
//!
//! [`TokenService::verify_as`]: super::tokens::TokenService::verify_as
//! [`TokenService::key_generation`]: super::tokens::TokenService::key_generation

use std::fmt;
use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use super::identity::SharedHeaderValues;
use super::tokens::Verified;

/// Default cache size in bytes: about 7,000 typical tokens (~400 bytes plus claims).
pub const DEFAULT_CAPACITY_BYTES: u64 = 8 << 20;

/// What an entry costs beyond its token's bytes, for the bound: the decoded claims' strings,
/// the `Arc`, the map slot and the identity headers' values once worked out (an estimate,
/// generous for our tokens' claims).
const ENTRY_OVERHEAD: u64 = 768;

#[derive(Clone)]
struct Entry {
    /// [`TokenService::key_generation`](super::tokens::TokenService::key_generation) when the
    /// token was verified.
    generation: u64,
    verified: Arc<Verified>,
    /// The token's identity-header values, worked out by the first request that needs them.
    header_values: SharedHeaderValues,
}

/// Weighs an entry by its token's length plus the claims estimate.
#[derive(Clone, Copy)]
struct TokenBytes;

impl Weighter<Box<str>, Entry> for TokenBytes {
    fn weight(&self, token: &Box<str>, _: &Entry) -> u64 {
        token.len() as u64 + ENTRY_OVERHEAD
    }
}

/// Verified tokens by their bytes; share one per authenticator.
pub struct VerifiedCache {
    entries: Cache<Box<str>, Entry, TokenBytes>,
}

impl fmt::Debug for VerifiedCache {
    // The keys are bearer tokens: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("entries", &self.entries.len())
            .field("bytes", &self.entries.weight())
            .finish()
    }
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY_BYTES)
    }
}

impl VerifiedCache {
    /// An empty cache holding at most `capacity_bytes` (see the module docs for how an entry
    /// is weighed).
    pub fn new(capacity_bytes: u64) -> Self {
        let estimated = usize::try_from(capacity_bytes / (400 + ENTRY_OVERHEAD)).unwrap_or(1);
        Self {
            entries: Cache::with_weighter(estimated.max(1), capacity_bytes, TokenBytes),
        }
    }

    /// The verified claims of `token`, with its identity-header slot, when it was verified
    /// under key-set `generation` and its `exp` is after `now` (epoch seconds); an entry that
    /// fails either is dropped.
    pub fn get(
        &self,
        token: &str,
        generation: u64,
        now: u64,
    ) -> Option<(Arc<Verified>, SharedHeaderValues)> {
        let entry = self.entries.get(token)?;
        if entry.generation == generation && now < entry.verified.claims.exp {
            return Some((entry.verified, entry.header_values));
        }
        self.entries.remove(token);
        None
    }

    /// Records that `token` verified as `verified` under key-set `generation`; returns the
    /// entry's identity-header slot.
    pub fn insert(
        &self,
        token: &str,
        generation: u64,
        verified: Arc<Verified>,
    ) -> SharedHeaderValues {
        let header_values = SharedHeaderValues::new_slot();
        self.entries.insert(
            token.into(),
            Entry {
                generation,
                verified,
                header_values: header_values.clone(),
            },
        );
        header_values
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held now, as weighed for the bound.
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::auth::claims::{Claims, TokenType};

    fn verified(exp: u64) -> Arc<Verified> {
        Arc::new(Verified {
            claims: Claims {
                iss: "authgate".into(),
                aud: None,
                sub: "42".into(),
                username: Some("alice".into()),
                roles: Some(vec![]),
                r#type: TokenType::Access,
                jti: "jti-1".into(),
                sid: "sid-1".into(),
                iat: exp - 900,
                nbf: exp - 900,
                exp,
                auth_time: exp - 900,
                fresh: Some(true),
                csrf: None,
            },
            user_id: 42,
            key_generation: 0,
        })
    }

    #[test]
    fn a_token_hits_under_its_generation_until_its_exp() {
        let cache = VerifiedCache::default();
        cache.insert("a.b.c", 0, verified(1_000));
        assert_eq!(cache.get("a.b.c", 0, 999).unwrap().0.user_id, 42);
        // At `exp` the entry no longer counts, and it is dropped.
        assert!(cache.get("a.b.c", 0, 1_000).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn another_key_generation_never_hits_and_drops_the_entry() {
        let cache = VerifiedCache::default();
        cache.insert("a.b.c", 3, verified(1_000));
        assert!(cache.get("a.b.c", 4, 1).is_none());
        assert!(
            cache.get("a.b.c", 3, 1).is_none(),
            "dropped, not kept for later"
        );
        cache.insert("a.b.c", 4, verified(1_000));
        assert!(cache.get("a.b.c", 4, 1).is_some());
    }

    #[test]
    fn only_the_exact_bytes_hit() {
        let cache = VerifiedCache::default();
        cache.insert("aaa.bbb.ccc", 0, verified(1_000));
        for other in [
            "aaa.bbb.cc",
            "aaa.bbb.ccd",
            "aaa.bbb.ccc.",
            "Aaa.bbb.ccc",
            "",
        ] {
            assert!(cache.get(other, 0, 1).is_none(), "{other:?}");
        }
        assert!(cache.get("aaa.bbb.ccc", 0, 1).is_some());
    }

    #[test]
    fn the_cache_stays_within_its_byte_bound() {
        let capacity = 64 * 1024;
        let cache = VerifiedCache::new(capacity);
        let v = verified(1_000);
        for i in 0..10_000 {
            cache.insert(&format!("{i:0>400}"), 0, v.clone());
            assert!(cache.weight() <= capacity);
        }
        assert!(cache.len() < 10_000);
        assert!(cache.len() >= (capacity / (400 + ENTRY_OVERHEAD)) as usize / 2);
    }

    #[test]
    fn debug_output_shows_no_token() {
        let cache = VerifiedCache::default();
        cache.insert("secret-token-bytes", 0, verified(1_000));
        let shown = format!("{cache:?}");
        assert!(!shown.contains("secret-token-bytes"), "{shown}");
    }
}
