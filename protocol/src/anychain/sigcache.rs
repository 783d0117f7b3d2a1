//! A bounded memory of Ed25519 verifications that succeeded, so that a
//! document signed once and embedded in many others (a client declaration
//! inside every contract of the client, a user's bind token) is verified
//! once per process rather than once per request.
//!
//! The cache memoizes the pure function `verify_strict(public key, message,
//! signature)`: an entry is the exact triple that verified, compared byte
//! for byte, never a hash of it. A document can only hit an entry when its
//! signer and signature are those very bytes and its signed fold (the
//! message) is that very fold, that is when verifying it would succeed
//! anyway; anything else (another signature over the same payload, a
//! payload changed under a genuine signature) misses and is verified. Only
//! successes are stored; the least recently used entry goes first.

use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use ed25519_dalek::{Signature, VerifyingKey};
use lru::LruCache;

/// An Ed25519 public key, signature and the 64-byte message they verify.
type Triple = [u8; 32 + 64 + 64];

/// Verifications that succeeded, at most `capacity` of them.
pub struct SignatureCache {
    entries: Mutex<LruCache<Triple, ()>>,
}

impl std::fmt::Debug for SignatureCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

fn triple(public_key: &[u8; 32], signature: &[u8; 64], message: &[u8]) -> Option<Triple> {
    let message: &[u8; 64] = message.try_into().ok()?;
    let mut out = [0u8; 32 + 64 + 64];
    let (pk, rest) = out.split_at_mut(32);
    let (sig, msg) = rest.split_at_mut(64);
    pk.copy_from_slice(public_key);
    sig.copy_from_slice(signature);
    msg.copy_from_slice(message);
    Some(out)
}

impl SignatureCache {
    /// An empty cache holding at most `capacity` verifications.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Triple, ()>> {
        // The map stays consistent whatever a panicking holder did: a
        // poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Verifications held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most verifications held.
    pub fn capacity(&self) -> usize {
        self.lock().cap().get()
    }

    /// `key.verify_strict(message, signature)`, answered from the cache
    /// when this exact triple verified before; a success is remembered.
    /// Messages other than 64 bytes (never a fold) are not cached.
    pub fn verify_strict(
        &self,
        key: &VerifyingKey,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), ed25519_dalek::SignatureError> {
        let Some(entry) = triple(key.as_bytes(), &signature.to_bytes(), message) else {
            return key.verify_strict(message, signature);
        };
        if self.lock().get(&entry).is_some() {
            return Ok(());
        }
        key.verify_strict(message, signature)?;
        self.lock().put(entry, ());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn cache(n: usize) -> SignatureCache {
        SignatureCache::new(NonZeroUsize::new(n).unwrap())
    }

    #[test]
    fn remembers_successes_only() {
        let c = cache(4);
        let key = SigningKey::from_bytes(&[1; 32]);
        let message = [5u8; 64];
        let good = key.sign(&message);
        let mut bad = good.to_bytes();
        bad[0] ^= 1;
        let bad = Signature::from_bytes(&bad);
        let vk = key.verifying_key();
        assert!(c.verify_strict(&vk, &message, &bad).is_err());
        assert!(c.is_empty(), "a failure is not remembered");
        assert!(c.verify_strict(&vk, &message, &good).is_ok());
        assert_eq!(c.len(), 1);
        // The same message with a wrong signature, after the genuine one
        // was cached: still refused.
        assert!(c.verify_strict(&vk, &message, &bad).is_err());
        // The genuine signature over another message: refused.
        assert!(c.verify_strict(&vk, &[6u8; 64], &good).is_err());
        // The genuine signature and message under another key: refused.
        let other = SigningKey::from_bytes(&[2; 32]).verifying_key();
        assert!(c.verify_strict(&other, &message, &good).is_err());
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn bounded() {
        let c = cache(3);
        let key = SigningKey::from_bytes(&[3; 32]);
        let vk = key.verifying_key();
        for i in 0..10u8 {
            let message = [i; 64];
            assert!(c.verify_strict(&vk, &message, &key.sign(&message)).is_ok());
            assert!(c.len() <= 3);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.capacity(), 3);
    }
}
