//! Message keys kept for messages that have not arrived yet (lost or
//! reordered), bounded per chain and in total.
//!
//! Keys are grouped by the header key of the receiving chain they belong to,
//! so trying an incoming header against the skipped keys costs one header
//! decryption per chain ([`MAX_SKIPPED_CHAINS`] at most), not one per key.
//! Chains are kept oldest first and, inside a chain, keys in increasing
//! message number: both are the order in which keys are skipped, so evicting
//! the oldest key is popping the front.

use std::collections::VecDeque;

use super::chain::MessageKey;
use super::header::{ENCRYPTED_HEADER_BYTES, Header, HeaderKey};
use crate::aead;

/// The most message keys a session keeps for messages not yet received;
/// beyond it the oldest are forgotten (and their messages can no longer be
/// read). Twice [`super::MAX_SKIP`], so that one message that skips the most
/// allowed in both the old and the new chain of a DH ratchet step keeps all
/// its keys.
pub const MAX_SKIPPED_KEYS: usize = 2 * super::MAX_SKIP as usize;
/// The most receiving chains whose skipped keys a session keeps; the oldest
/// chain is forgotten beyond it. Bounds header trial decryption to
/// `2 + MAX_SKIPPED_CHAINS` keys per message (current, next, skipped).
pub const MAX_SKIPPED_CHAINS: usize = 5;

/// The skipped keys of one receiving chain.
pub(crate) struct SkippedChain {
    pub(crate) header_key: HeaderKey,
    /// In strictly increasing message number.
    pub(crate) keys: VecDeque<(u32, MessageKey)>,
}

/// Every skipped key of a session.
#[derive(Default)]
pub(crate) struct SkippedKeys {
    /// Oldest first.
    chains: VecDeque<SkippedChain>,
    /// The number of keys over all chains.
    len: usize,
}

/// Where a skipped key is, found by [`SkippedKeys::find`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    chain: usize,
    index: usize,
}

impl SkippedKeys {
    /// The number of keys kept.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn chains(&self) -> impl Iterator<Item = &SkippedChain> {
        self.chains.iter()
    }

    /// Rebuilds the store from a record's chains, which the caller checked
    /// against the limits and for order.
    pub(crate) fn from_chains(chains: VecDeque<SkippedChain>) -> Self {
        let len = chains.iter().map(|chain| chain.keys.len()).sum();
        Self { chains, len }
    }

    /// Trial-decrypts a header under each chain's header key, newest chain
    /// first (the likeliest), and finds the key of the message it names.
    /// `None` when no chain's key opens the header, or when the chain holds
    /// no key for that message (it arrived already, or was evicted).
    pub(crate) fn find(
        &self,
        nonce: &[u8; aead::NONCE_BYTES],
        aad: &[u8],
        encrypted: &[u8; ENCRYPTED_HEADER_BYTES],
    ) -> Option<Slot> {
        self.chains
            .iter()
            .enumerate()
            .rev()
            .find_map(|(chain, skipped)| {
                let header = skipped.header_key.open(nonce, aad, encrypted)?;
                Some((chain, header))
            })
            .and_then(|(chain, header)| self.position(chain, &header))
    }

    /// The slot of `header`'s message in the chain of `header_key`, for a
    /// header that opened under a current receiving chain's key.
    pub(crate) fn find_in_chain(&self, header_key: &HeaderKey, header: &Header) -> Option<Slot> {
        let chain = self.chains.iter().rposition(|chain| chain.header_key.same_as(header_key))?;
        self.position(chain, header)
    }

    fn position(&self, chain: usize, header: &Header) -> Option<Slot> {
        let keys = &self.chains.get(chain)?.keys;
        let index = keys.binary_search_by_key(&header.message_number, |(n, _)| *n).ok()?;
        Some(Slot { chain, index })
    }

    pub(crate) fn key(&self, slot: Slot) -> Option<&MessageKey> {
        let (_, key) = self.chains.get(slot.chain)?.keys.get(slot.index)?;
        Some(key)
    }

    /// Forgets the key in `slot`: its message has been read.
    pub(crate) fn remove(&mut self, slot: Slot) {
        let Some(chain) = self.chains.get_mut(slot.chain) else {
            return;
        };
        if chain.keys.remove(slot.index).is_some() {
            self.len -= 1;
        }
        if chain.keys.is_empty() {
            self.chains.remove(slot.chain);
        }
    }

    /// Keeps `keys` (in increasing message number, above any kept for this
    /// chain) for the receiving chain of `header_key`, then forgets the
    /// oldest keys and chains beyond [`MAX_SKIPPED_KEYS`] and
    /// [`MAX_SKIPPED_CHAINS`].
    pub(crate) fn insert(&mut self, header_key: &HeaderKey, keys: Vec<(u32, MessageKey)>) {
        if keys.is_empty() {
            return;
        }
        self.len += keys.len();
        // Only the current receiving chain gains keys, and it is the newest.
        match self.chains.back_mut() {
            Some(chain) if chain.header_key.same_as(header_key) => chain.keys.extend(keys),
            _ => self
                .chains
                .push_back(SkippedChain { header_key: header_key.duplicate(), keys: keys.into() }),
        }
        while self.len > MAX_SKIPPED_KEYS {
            let Some(oldest) = self.chains.front_mut() else {
                break;
            };
            if oldest.keys.pop_front().is_some() {
                self.len -= 1;
            }
            if oldest.keys.is_empty() {
                self.chains.pop_front();
            }
        }
        while self.chains.len() > MAX_SKIPPED_CHAINS {
            if let Some(oldest) = self.chains.pop_front() {
                self.len -= oldest.keys.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agreement::PublicKey;

    fn keys(range: std::ops::Range<u32>) -> Vec<(u32, MessageKey)> {
        range.map(|n| (n, MessageKey::from_bytes(&[n as u8; 32]))).collect()
    }

    fn header(n: u32) -> Header {
        Header {
            ratchet_key: PublicKey::from_bytes([0u8; 32]),
            previous_chain_length: 0,
            message_number: n,
        }
    }

    #[test]
    fn find_opens_the_header_and_finds_the_key() {
        let hk = HeaderKey::from_bytes(&[1u8; 32]);
        let mut skipped = SkippedKeys::default();
        skipped.insert(&hk, keys(3..6));
        let nonce = [0u8; 12];
        let sealed = hk.seal(&nonce, b"", &header(4));
        let slot = skipped.find(&nonce, b"", &sealed).unwrap();
        assert_eq!(skipped.key(slot).unwrap().as_bytes(), &[4u8; 32]);
        skipped.remove(slot);
        assert_eq!(skipped.len(), 2);
        assert_eq!(skipped.find(&nonce, b"", &sealed), None);
        let other = HeaderKey::from_bytes(&[2u8; 32]).seal(&nonce, b"", &header(3));
        assert_eq!(skipped.find(&nonce, b"", &other), None);
    }

    #[test]
    fn insert_appends_to_the_current_chain() {
        let hk = HeaderKey::from_bytes(&[1u8; 32]);
        let mut skipped = SkippedKeys::default();
        skipped.insert(&hk, keys(0..2));
        skipped.insert(&hk, keys(5..7));
        assert_eq!(skipped.chains().count(), 1);
        assert_eq!(skipped.len(), 4);
        assert!(skipped.find_in_chain(&hk, &header(6)).is_some());
        assert!(skipped.find_in_chain(&hk, &header(2)).is_none());
    }

    #[test]
    fn insert_evicts_the_oldest_keys_beyond_the_limit() {
        let old = HeaderKey::from_bytes(&[1u8; 32]);
        let new = HeaderKey::from_bytes(&[2u8; 32]);
        let mut skipped = SkippedKeys::default();
        skipped.insert(&old, keys(0..10));
        skipped.insert(&new, keys(0..MAX_SKIPPED_KEYS as u32 - 5));
        assert_eq!(skipped.len(), MAX_SKIPPED_KEYS);
        assert!(skipped.find_in_chain(&old, &header(4)).is_none());
        assert!(skipped.find_in_chain(&old, &header(5)).is_some());
        // The rest of the old chain goes, then the new chain's oldest.
        let top = MAX_SKIPPED_KEYS as u32;
        skipped.insert(&new, keys(top..top + 6));
        assert_eq!(skipped.len(), MAX_SKIPPED_KEYS);
        assert_eq!(skipped.chains().count(), 1);
        assert!(skipped.find_in_chain(&new, &header(0)).is_none());
        assert!(skipped.find_in_chain(&new, &header(1)).is_some());
    }

    #[test]
    fn insert_evicts_the_oldest_chain_beyond_the_limit() {
        let mut skipped = SkippedKeys::default();
        for i in 0..=MAX_SKIPPED_CHAINS as u8 {
            skipped.insert(&HeaderKey::from_bytes(&[i; 32]), keys(0..2));
        }
        assert_eq!(skipped.chains().count(), MAX_SKIPPED_CHAINS);
        assert_eq!(skipped.len(), 2 * MAX_SKIPPED_CHAINS);
        assert!(skipped.find_in_chain(&HeaderKey::from_bytes(&[0; 32]), &header(0)).is_none());
        assert!(skipped.find_in_chain(&HeaderKey::from_bytes(&[1; 32]), &header(0)).is_some());
    }
}
