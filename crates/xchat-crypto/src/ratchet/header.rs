//! Message headers and their encryption (Double Ratchet specification,
//! section 4): a relay sees neither the sender's ratchet key nor its
//! counters.
//!
//! A header is 40 bytes:
//!
//! | offset | bytes | field                                             |
//! |--------|-------|---------------------------------------------------|
//! | 0      | 32    | the sender's current X25519 ratchet public key    |
//! | 32     | 4     | previous sending chain length `PN` (u32, big-endian) |
//! | 36     | 4     | message number `N` in the current chain (u32, big-endian) |
//!
//! It travels as AES-256-GCM under a header key, with a random 96-bit nonce
//! (a header key seals every header of a chain, so the nonce cannot be a
//! counter the relay would see, nor derived from the key alone).

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::chain::KEY_BYTES;
use crate::aead;
use crate::agreement::PublicKey;

/// Length of a header in clear.
pub(crate) const HEADER_BYTES: usize = 32 + 4 + 4;
/// Length of an encrypted header: the header and its GCM tag.
pub(crate) const ENCRYPTED_HEADER_BYTES: usize = HEADER_BYTES + aead::TAG_BYTES;

/// A decrypted header. Its fields are authenticated by the header key but
/// still chosen by the peer: the session bounds them before using them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) ratchet_key: PublicKey,
    pub(crate) previous_chain_length: u32,
    pub(crate) message_number: u32,
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        let (key, rest) = out.split_at_mut(32);
        let (previous, number) = rest.split_at_mut(4);
        key.copy_from_slice(self.ratchet_key.as_bytes());
        previous.copy_from_slice(&self.previous_chain_length.to_be_bytes());
        number.copy_from_slice(&self.message_number.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8; HEADER_BYTES]) -> Self {
        let mut key = [0u8; 32];
        let mut previous = [0u8; 4];
        let mut number = [0u8; 4];
        let (k, rest) = bytes.split_at(32);
        let (p, n) = rest.split_at(4);
        key.copy_from_slice(k);
        previous.copy_from_slice(p);
        number.copy_from_slice(n);
        Self {
            ratchet_key: PublicKey::from_bytes(key),
            previous_chain_length: u32::from_be_bytes(previous),
            message_number: u32::from_be_bytes(number),
        }
    }
}

/// A header key, with its AES-256-GCM key schedule expanded once: the same
/// key seals or opens every header of a chain, so expanding it per message
/// would be wasted work.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct HeaderKey {
    bytes: Box<[u8; KEY_BYTES]>,
    // aws-lc wipes its key schedule when the key is dropped.
    #[zeroize(skip)]
    key: aead::Key,
}

impl HeaderKey {
    pub(crate) fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Self {
        Self { bytes: Box::new(*bytes), key: aead::Key::new(bytes) }
    }

    pub(crate) fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.bytes
    }

    /// A copy with its own key schedule (a receiving chain's key kept for
    /// its skipped messages after the chain moved on).
    pub(crate) fn duplicate(&self) -> Self {
        Self::from_bytes(&self.bytes)
    }

    /// Whether two header keys are the same key, in constant time.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        self.bytes.ct_eq(&*other.bytes).into()
    }

    /// Encrypts `header` under `nonce`, binding `aad`.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; aead::NONCE_BYTES],
        aad: &[u8],
        header: &Header,
    ) -> [u8; ENCRYPTED_HEADER_BYTES] {
        let mut out = [0u8; ENCRYPTED_HEADER_BYTES];
        let (body, tag) = out.split_at_mut(HEADER_BYTES);
        body.copy_from_slice(&header.encode());
        tag.copy_from_slice(&self.key.seal_detached(nonce, aad, body));
        out
    }

    /// Decrypts a header, or `None` when it was not sealed under this key
    /// (trial decryption: not an error until every candidate key failed).
    pub(crate) fn open(
        &self,
        nonce: &[u8; aead::NONCE_BYTES],
        aad: &[u8],
        encrypted: &[u8; ENCRYPTED_HEADER_BYTES],
    ) -> Option<Header> {
        let mut buf = *encrypted;
        let plain = self.key.open(nonce, aad, &mut buf).ok()?;
        let plain: &[u8; HEADER_BYTES] = (&*plain).try_into().ok()?;
        Some(Header::decode(plain))
    }
}

impl std::fmt::Debug for HeaderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            ratchet_key: PublicKey::from_bytes([5u8; 32]),
            previous_chain_length: 0x0102_0304,
            message_number: 0xa0b0_c0d0,
        }
    }

    #[test]
    fn header_encoding_is_key_then_big_endian_counters() {
        let bytes = header().encode();
        assert_eq!(&bytes[..32], &[5u8; 32]);
        assert_eq!(&bytes[32..], &[1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0]);
        assert_eq!(Header::decode(&bytes), header());
    }

    #[test]
    fn header_opens_only_under_its_key_nonce_and_aad() {
        let key = HeaderKey::from_bytes(&[1u8; 32]);
        let other = HeaderKey::from_bytes(&[2u8; 32]);
        let nonce = [3u8; 12];
        let sealed = key.seal(&nonce, b"aad", &header());
        assert_eq!(key.open(&nonce, b"aad", &sealed), Some(header()));
        assert_eq!(other.open(&nonce, b"aad", &sealed), None);
        assert_eq!(key.open(&[4u8; 12], b"aad", &sealed), None);
        assert_eq!(key.open(&nonce, b"aae", &sealed), None);
        // Nothing of the header shows through.
        assert!(!sealed.windows(4).any(|w| w == [1, 2, 3, 4]));
    }

    #[test]
    fn same_as_compares_key_bytes() {
        let a = HeaderKey::from_bytes(&[1u8; 32]);
        assert!(a.same_as(&a.duplicate()));
        assert!(!a.same_as(&HeaderKey::from_bytes(&[2u8; 32])));
    }

    #[test]
    fn header_key_debug_is_redacted() {
        insta::assert_snapshot!(format!("{:?}", HeaderKey::from_bytes(&[1u8; 32])), @"HeaderKey(<redacted>)");
    }
}
