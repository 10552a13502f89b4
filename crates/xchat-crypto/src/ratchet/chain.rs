//! The key derivations of the Double Ratchet: the root chain (KDF_RK, one
//! step per DH ratchet) and the sending and receiving chains (KDF_CK, one
//! step per message).
//!
//! ```text
//! KDF_RK(rk, dh)  = HKDF-SHA256(salt = rk, ikm = dh, info = kdf::RATCHET_ROOT_INFO, L = 96)
//!                 = rk' (0..32) || ck (32..64) || nhk (64..96)
//! KDF_CK(ck)      = mk  = HMAC-SHA256(ck, kdf::RATCHET_MESSAGE_KEY = 0x01),
//!                   ck' = HMAC-SHA256(ck, kdf::RATCHET_CHAIN_KEY   = 0x02)
//! ```
//!
//! Computing and committing are separate: [`ChainKey::advance`] returns the
//! keys of a step without touching the chain, and the session assigns them
//! only once the message they open has authenticated.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::header::HeaderKey;
use crate::agreement::SharedSecret;
use crate::kdf;

/// Length of every key of the ratchet.
pub(crate) const KEY_BYTES: usize = kdf::KEY_BYTES;

/// The root key: one KDF_RK step per DH ratchet.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct RootKey(Box<[u8; KEY_BYTES]>);

/// What one KDF_RK step yields.
pub(crate) struct RootStep {
    pub(crate) root_key: RootKey,
    pub(crate) chain_key: ChainKey,
    pub(crate) next_header_key: HeaderKey,
}

impl RootKey {
    pub(crate) fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Self {
        Self(Box::new(*bytes))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// KDF_RK: the next root key, a new chain key and the next header key.
    pub(crate) fn step(&self, dh: &SharedSecret) -> RootStep {
        let mut okm = Zeroizing::new([0u8; 3 * KEY_BYTES]);
        // 96 bytes is far below HKDF-SHA256's 8160-byte limit.
        #[allow(clippy::expect_used)]
        kdf::hkdf_sha256(self.0.as_ref(), dh.as_bytes(), &[kdf::RATCHET_ROOT_INFO], okm.as_mut())
            .expect("96 bytes is a valid HKDF output length");
        let (root, rest) = okm.split_at(KEY_BYTES);
        let (chain, header) = rest.split_at(KEY_BYTES);
        RootStep {
            root_key: Self(Box::new(to_key(root))),
            chain_key: ChainKey(Box::new(to_key(chain))),
            next_header_key: HeaderKey::from_bytes(&to_key(header)),
        }
    }
}

/// A 32-byte slice of a buffer whose length is a multiple of 32.
fn to_key(bytes: &[u8]) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    key.copy_from_slice(bytes);
    key
}

/// A sending or receiving chain key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct ChainKey(Box<[u8; KEY_BYTES]>);

/// A message key, kept while its message has not arrived.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct MessageKey(Box<[u8; KEY_BYTES]>);

impl MessageKey {
    pub(crate) fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Self {
        Self(Box::new(*bytes))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }
}

/// The keys that take a chain from message `from` to just after message
/// `to`, computed but not committed.
pub(crate) struct Advance {
    /// The keys of messages `from..to`, to keep for when they arrive.
    pub(crate) skipped: Vec<(u32, MessageKey)>,
    /// The key of message `to`.
    pub(crate) message_key: Zeroizing<[u8; KEY_BYTES]>,
    /// The chain key after message `to`.
    pub(crate) next_chain_key: Zeroizing<[u8; KEY_BYTES]>,
}

impl ChainKey {
    pub(crate) fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Self {
        Self(Box::new(*bytes))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// KDF_CK: the message key of this step and the next chain key.
    pub(crate) fn step(&self) -> (Zeroizing<[u8; KEY_BYTES]>, Zeroizing<[u8; KEY_BYTES]>) {
        step(&self.0)
    }

    /// Derives the keys from message `from` (this chain key's message) to
    /// message `to`. The caller bounds `to - from` (`MAX_SKIP`); `to < from`
    /// is treated as `to == from`.
    pub(crate) fn advance(&self, from: u32, to: u32) -> Advance {
        let mut skipped = Vec::with_capacity(to.saturating_sub(from) as usize);
        let (mut message_key, mut next_chain_key) = step(&self.0);
        for n in from..to {
            skipped.push((n, MessageKey::from_bytes(&message_key)));
            (message_key, next_chain_key) = step(&next_chain_key);
        }
        Advance { skipped, message_key, next_chain_key }
    }

    /// Only the keys of messages `from..to`: the rest of a receiving chain
    /// that a DH ratchet step leaves behind.
    pub(crate) fn skipped(&self, from: u32, to: u32) -> Vec<(u32, MessageKey)> {
        let mut skipped = Vec::with_capacity(to.saturating_sub(from) as usize);
        let mut chain_key = Zeroizing::new(*self.0);
        for n in from..to {
            let (message_key, next) = step(&chain_key);
            skipped.push((n, MessageKey::from_bytes(&message_key)));
            chain_key = next;
        }
        skipped
    }

    /// Commits a step computed by [`ChainKey::step`] or
    /// [`ChainKey::advance`], in place: no allocation per message.
    pub(crate) fn set(&mut self, next: &[u8; KEY_BYTES]) {
        self.0.copy_from_slice(next);
    }
}

fn step(chain_key: &[u8; KEY_BYTES]) -> (Zeroizing<[u8; KEY_BYTES]>, Zeroizing<[u8; KEY_BYTES]>) {
    kdf::hmac_sha256_pair(chain_key, kdf::RATCHET_MESSAGE_KEY, kdf::RATCHET_CHAIN_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_step_is_hmac_with_labels_one_and_two() {
        let chain = ChainKey::from_bytes(&[7u8; 32]);
        let (message_key, next) = chain.step();
        assert_eq!(*message_key, *kdf::hmac_sha256(&[7u8; 32], &[0x01]));
        assert_eq!(*next, *kdf::hmac_sha256(&[7u8; 32], &[0x02]));
    }

    #[test]
    fn advance_matches_repeated_steps() {
        let chain = ChainKey::from_bytes(&[9u8; 32]);
        let advance = chain.advance(5, 8);
        let mut walk = ChainKey::from_bytes(&[9u8; 32]);
        for (expected_n, (n, key)) in (5..8).zip(&advance.skipped) {
            assert_eq!(*n, expected_n);
            let (message_key, next) = walk.step();
            assert_eq!(key.as_bytes(), &*message_key);
            walk.set(&next);
        }
        let (message_key, next) = walk.step();
        assert_eq!(*advance.message_key, *message_key);
        assert_eq!(*advance.next_chain_key, *next);
        let skipped = chain.skipped(5, 8);
        assert_eq!(skipped.len(), 3);
        for ((a, ka), (b, kb)) in skipped.iter().zip(&advance.skipped) {
            assert_eq!(a, b);
            assert_eq!(ka.as_bytes(), kb.as_bytes());
        }
        // The chain itself did not move.
        assert_eq!(chain.as_bytes(), &[9u8; 32]);
    }

    #[test]
    fn root_step_splits_hkdf_output_in_three() {
        use crate::agreement::KeyPair;
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng;
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let a = KeyPair::generate(&mut rng);
        let b = KeyPair::generate(&mut rng);
        let dh = a.secret().diffie_hellman(b.public()).unwrap();
        let root = RootKey::from_bytes(&[1u8; 32]);
        let step = root.step(&dh);
        let mut okm = [0u8; 96];
        kdf::hkdf_sha256(&[1u8; 32], dh.as_bytes(), &[kdf::RATCHET_ROOT_INFO], &mut okm).unwrap();
        assert_eq!(step.root_key.as_bytes()[..], okm[..32]);
        assert_eq!(step.chain_key.as_bytes()[..], okm[32..64]);
        assert_eq!(step.next_header_key.as_bytes()[..], okm[64..]);
    }
}
