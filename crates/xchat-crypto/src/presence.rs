//! Presence records: where a device can be reached today, readable only by
//! whoever knows its address.
//!
//! A device publishes in the DHT, once per epoch of [`EPOCH_MS`] (a day)
//! and again whenever it changes, which transport peer id and network
//! addresses it has now. The network sees neither its identity nor what it
//! says:
//!
//! ```text
//! t_e  = SHA-256( PRESENCE_KEY_TWEAK || identity key (32) || device id (16) || epoch (u64 BE) )
//! Q_e  = P + t_e·G                  (the presence key: the record's DHT key is a hash of it)
//! q_e  = d + t_e                    (its secret: signs the record)
//! k_e  = HKDF-SHA256( salt = "", ikm = identity key || device id || epoch (u64 BE),
//!                     info = PRESENCE_CIPHER_INFO )     (encrypts what the record says)
//! ```
//!
//! Storing nodes check the signature under `Q_e`, which the record carries,
//! and that the record sits under `Q_e`'s DHT key, so no one but the device
//! can publish or replace it; they cannot read it, nor link it to an
//! identity or to another day's record, without the address. A contact
//! computes `Q_e` and `k_e` from the address and device id alone.
//!
//! Whoever knows an address can read the presence of its devices: an
//! address is what a user hands to the people they want to hear from, so
//! this is "contacts", as for mailbox keys (`mailbox.rs`). A peer id and
//! network addresses are what a contact needs to connect directly; they are
//! not the identity.
//!
//! # Layout (version 1)
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, `1` |
//! | 32 | presence key `Q_e`, x-only |
//! | 8 | epoch, u64 BE |
//! | 8 | publication time, ms since the Unix epoch, u64 BE |
//! | 12 | AES-256-GCM nonce, random |
//! | 4 + n | ciphertext and tag, u32 BE length; `n` ≤ [`MAX_PAYLOAD_BYTES`] + 16 |
//! | 64 | BIP340 signature by `q_e` over [`SIG_PRESENCE`](crate::kdf::SIG_PRESENCE) `\|\|` every byte before it |
//!
//! The AEAD's associated data is every byte before the ciphertext's length,
//! so the key, epoch and time are bound to what they carry.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::aead;
use crate::device::DeviceId;
use crate::encoding::{DecodeError, Reader, Writer};
use crate::identity::Identity;
use crate::kdf;
use crate::mailbox::epoch_tweak;
pub use crate::mailbox::{EPOCH_MS, epoch_of};
use crate::signature::{
    KeyError, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Signature, SigningKey, VerifyingKey,
};

/// Version byte of a presence record.
pub const VERSION: u8 = 1;
/// Most bytes of what a record says (its plaintext): a peer id and a few
/// addresses fit in far less.
pub const MAX_PAYLOAD_BYTES: usize = 1024;
/// Bytes before the ciphertext: version, key, epoch, time, nonce.
const HEADER_BYTES: usize = 1 + PUBLIC_KEY_BYTES + 8 + 8 + aead::NONCE_BYTES;
/// Most bytes of a whole record.
pub const MAX_RECORD_BYTES: usize =
    HEADER_BYTES + 4 + MAX_PAYLOAD_BYTES + aead::TAG_BYTES + SIGNATURE_BYTES;

/// The presence key of `device` of `identity` for `epoch`, as a contact
/// computes it.
///
/// # Errors
/// [`KeyError::InvalidTweak`] with probability about 2^-128.
pub fn presence_key(
    identity: &VerifyingKey,
    device: DeviceId,
    epoch: u64,
) -> Result<VerifyingKey, KeyError> {
    identity.tweaked(&epoch_tweak(kdf::PRESENCE_KEY_TWEAK, identity, device, epoch))
}

fn presence_signing_key(
    identity: &Identity,
    device: DeviceId,
    epoch: u64,
) -> Result<SigningKey, KeyError> {
    let signing = identity.signing_key();
    let tweak = epoch_tweak(kdf::PRESENCE_KEY_TWEAK, &signing.verifying_key(), device, epoch);
    signing.tweaked(&tweak)
}

fn cipher_key(identity: &VerifyingKey, device: DeviceId, epoch: u64) -> aead::Key {
    let ikm = [&identity.to_bytes()[..], device.as_bytes(), &epoch.to_be_bytes()].concat();
    let key = kdf::derive_key(&[], &ikm, &[kdf::PRESENCE_CIPHER_INFO]);
    aead::Key::new(&key)
}

/// Why a presence record was not made or not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    /// The payload is over [`MAX_PAYLOAD_BYTES`].
    #[error("presence payload of {len} bytes over {max}")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The most accepted.
        max: usize,
    },
    /// The record does not decode.
    #[error("malformed presence record")]
    Malformed(#[from] DecodeError),
    /// The record's key is not a valid key.
    #[error("invalid presence key")]
    InvalidKey,
    /// The signature does not verify under the record's key.
    #[error("presence record signature does not verify")]
    BadSignature,
    /// The record is not the one of the device and epoch asked for, or its
    /// ciphertext does not authenticate.
    #[error("presence record is not the expected device's")]
    NotTheDevice,
    /// The key could not be derived (probability about 2^-128).
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A presence record whose signature verified, as every storing node checks
/// it; what it says stays sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct PresenceRecord {
    key: VerifyingKey,
    epoch: u64,
    published_at_ms: u64,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for PresenceRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceRecord")
            .field("epoch", &self.epoch)
            .field("published_at_ms", &self.published_at_ms)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl PresenceRecord {
    /// Seals `payload` as the presence of `device` of `identity` for the
    /// epoch of `now_ms`.
    ///
    /// # Errors
    /// [`PresenceError::TooLarge`], or [`PresenceError::Key`] with
    /// probability about 2^-128.
    pub fn seal(
        identity: &Identity,
        device: DeviceId,
        now_ms: u64,
        payload: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Self, PresenceError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(PresenceError::TooLarge { len: payload.len(), max: MAX_PAYLOAD_BYTES });
        }
        let epoch = epoch_of(now_ms);
        let signing = presence_signing_key(identity, device, epoch)?;
        let key = signing.verifying_key();
        let mut nonce = [0u8; aead::NONCE_BYTES];
        rng.fill_bytes(&mut nonce);
        let mut header = Writer::with_capacity(HEADER_BYTES);
        header.u8(VERSION).fixed(&key.to_bytes()).u64(epoch).u64(now_ms).fixed(&nonce);
        let header = header.into_bytes();
        let mut sealed = Zeroizing::new(payload.to_vec());
        cipher_key(&identity.signing_key().verifying_key(), device, epoch).seal(
            &nonce,
            &header,
            &mut sealed,
        );
        let mut bytes = Writer::with_capacity(MAX_RECORD_BYTES);
        bytes.fixed(&header).var(&sealed);
        let mut bytes = bytes.into_bytes();
        let signature = signing.sign(kdf::SIG_PRESENCE, &bytes, rng);
        bytes.extend_from_slice(signature.as_bytes());
        Ok(Self { key, epoch, published_at_ms: now_ms, bytes })
    }

    /// Decodes `bytes` and verifies its signature under the key it carries.
    /// Who the device is stays unknown: that takes [`Self::open`].
    ///
    /// # Errors
    /// [`PresenceError`].
    pub fn decode(bytes: &[u8]) -> Result<Self, PresenceError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(DecodeError::TooLarge { len: bytes.len(), max: MAX_RECORD_BYTES }.into());
        }
        let signed_len = bytes.len().checked_sub(SIGNATURE_BYTES).ok_or(DecodeError::Truncated)?;
        let (signed, signature) = bytes.split_at(signed_len);
        let mut reader = Reader::new(signed);
        let version = reader.u8()?;
        if version != VERSION {
            return Err(DecodeError::UnknownVersion(version).into());
        }
        let key =
            VerifyingKey::from_bytes(&reader.array()?).map_err(|_| PresenceError::InvalidKey)?;
        let epoch = reader.u64()?;
        let published_at_ms = reader.u64()?;
        let _nonce: [u8; aead::NONCE_BYTES] = reader.array()?;
        reader.var(MAX_PAYLOAD_BYTES + aead::TAG_BYTES)?;
        reader.finish()?;
        let signature: [u8; SIGNATURE_BYTES] =
            signature.try_into().map_err(|_| DecodeError::Truncated)?;
        key.verify(kdf::SIG_PRESENCE, signed, &Signature::from_bytes(signature))
            .map_err(|_| PresenceError::BadSignature)?;
        Ok(Self { key, epoch, published_at_ms, bytes: bytes.to_vec() })
    }

    /// The presence key the record is signed by: its DHT key is a hash of it.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The epoch the record is for.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// When the device published it (its clock), ms since the Unix epoch.
    pub fn published_at_ms(&self) -> u64 {
        self.published_at_ms
    }

    /// The record's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// What the record says, if it is the presence of `device` of `identity`
    /// for `epoch`.
    ///
    /// # Errors
    /// [`PresenceError::NotTheDevice`] for another device, identity or
    /// epoch, or a ciphertext that does not authenticate.
    pub fn open(
        &self,
        identity: &VerifyingKey,
        device: DeviceId,
        epoch: u64,
    ) -> Result<Vec<u8>, PresenceError> {
        if self.epoch != epoch || presence_key(identity, device, epoch)? != self.key {
            return Err(PresenceError::NotTheDevice);
        }
        let (header, rest) = self.bytes.split_at(HEADER_BYTES.min(self.bytes.len()));
        let mut reader = Reader::new(rest);
        let mut sealed = reader.var(MAX_PAYLOAD_BYTES + aead::TAG_BYTES)?.to_vec();
        let nonce: [u8; aead::NONCE_BYTES] = header
            .get(HEADER_BYTES - aead::NONCE_BYTES..)
            .and_then(|n| n.try_into().ok())
            .ok_or(DecodeError::Truncated)?;
        let plaintext = cipher_key(identity, device, epoch)
            .open(&nonce, header, &mut sealed)
            .map_err(|_| PresenceError::NotTheDevice)?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::phrase::Seed;

    fn identity(byte: u8) -> Identity {
        Identity::from_seed(&Seed::from_bytes(&[byte; 64]).unwrap()).unwrap()
    }

    const DAY_3: u64 = 3 * EPOCH_MS + 1000;

    fn sealed(payload: &[u8]) -> (Identity, DeviceId, PresenceRecord) {
        let alice = identity(1);
        let device = DeviceId::from_bytes([7; 16]);
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let record = PresenceRecord::seal(&alice, device, DAY_3, payload, &mut rng).unwrap();
        (alice, device, record)
    }

    #[test]
    fn a_contact_opens_what_the_device_sealed() {
        let (alice, device, record) = sealed(b"peer and addresses");
        let decoded = PresenceRecord::decode(record.as_bytes()).unwrap();
        assert_eq!(decoded, record);
        assert_eq!(decoded.epoch(), 3);
        assert_eq!(decoded.published_at_ms(), DAY_3);
        let public = alice.signing_key().verifying_key();
        assert_eq!(decoded.key(), &presence_key(&public, device, 3).unwrap());
        assert_eq!(decoded.open(&public, device, 3).unwrap(), b"peer and addresses");
    }

    #[test]
    fn the_record_is_not_another_device_identity_or_day() {
        let (alice, device, record) = sealed(b"here");
        let public = alice.signing_key().verifying_key();
        let bob = identity(2).signing_key().verifying_key();
        let other = DeviceId::from_bytes([8; 16]);
        for (who, device, epoch) in [(bob, device, 3), (public, other, 3), (public, device, 4)] {
            assert_eq!(record.open(&who, device, epoch), Err(PresenceError::NotTheDevice));
        }
    }

    #[test]
    fn the_presence_key_is_neither_the_identity_nor_the_mailbox_key() {
        let (alice, device, record) = sealed(b"here");
        let public = alice.signing_key().verifying_key();
        assert_ne!(record.key(), &public);
        assert_ne!(record.key(), &crate::mailbox::mailbox_key(&public, device, 3).unwrap());
    }

    #[test]
    fn the_plaintext_is_not_in_the_record() {
        let (_, _, record) = sealed(b"/ip4/192.0.2.7/tcp/4001");
        let needle = b"192.0.2.7";
        assert!(!record.as_bytes().windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let (alice, device, record) = sealed(b"here");
        let public = alice.signing_key().verifying_key();
        for i in 0..record.as_bytes().len() {
            let mut bytes = record.as_bytes().to_vec();
            bytes[i] ^= 0x40;
            let opened = PresenceRecord::decode(&bytes).and_then(|r| r.open(&public, device, 3));
            assert!(opened.is_err(), "byte {i}");
        }
    }

    #[test]
    fn truncated_extended_and_oversized_records_are_refused() {
        let (_, _, record) = sealed(b"here");
        let bytes = record.as_bytes();
        for len in 0..bytes.len() {
            assert!(PresenceRecord::decode(&bytes[..len]).is_err(), "length {len}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(PresenceRecord::decode(&longer).is_err());
        let huge = vec![0u8; MAX_RECORD_BYTES + 1];
        assert!(matches!(
            PresenceRecord::decode(&huge),
            Err(PresenceError::Malformed(DecodeError::TooLarge { .. }))
        ));
    }

    #[test]
    fn a_payload_over_the_limit_is_not_sealed() {
        let alice = identity(1);
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let payload = vec![0u8; MAX_PAYLOAD_BYTES + 1];
        let sealed =
            PresenceRecord::seal(&alice, DeviceId::from_bytes([7; 16]), 0, &payload, &mut rng);
        assert!(matches!(sealed, Err(PresenceError::TooLarge { .. })));
        let full = vec![0u8; MAX_PAYLOAD_BYTES];
        let record =
            PresenceRecord::seal(&alice, DeviceId::from_bytes([7; 16]), 0, &full, &mut rng)
                .unwrap();
        assert_eq!(record.as_bytes().len(), MAX_RECORD_BYTES);
        assert!(PresenceRecord::decode(record.as_bytes()).is_ok());
    }
}
