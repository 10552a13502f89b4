//! Sealed-sender envelopes: the outer layer that relays and mailbox nodes see.
//!
//! An envelope hides who sent it: only the recipient device learns the sender
//! and checks that the sender holds the device key its identity certified.
//! The construction is Signal's sealed sender v1, in xchat's primitives
//! (X25519, HKDF-SHA256, AES-256-GCM):
//!
//! 1. The sender draws an ephemeral X25519 key `e` (public `E`). Layer 1's
//!    keys come from `X25519(e, R)`, `R` the recipient device's agreement key:
//!    a chain key and the key that encrypts the sender's certificates (its
//!    [`PublicIdentity`] and [`DeviceCertificate`]). Anybody can make a valid
//!    layer 1; it only hides the sender.
//! 2. Layer 2's key comes from `X25519(s, R)`, `s` the sender device's
//!    agreement key, with layer 1's chain key and ciphertext as salt. It
//!    encrypts the payload. That the payload decrypts proves the sender holds
//!    the key of the certificate layer 1 named (only the sender and the
//!    recipient can compute `X25519(s, R)`: like Signal's, the envelope is
//!    deniable, not a signature). Chaining makes layer 2 worthless with any
//!    other layer 1: a sender certificate swapped in by re-encrypting layer 1
//!    under a new `E` changes layer 2's key.
//!
//! [`open`] decrypts both layers, then verifies the certificates: the
//! identity's certificate of its own agreement key, and the identity's
//! signature of the device certificate. Every decryption failure is the one
//! [`UnsealError::Decryption`]; certificate failures are told apart, as they
//! come after the payload authenticated and no relay ever sees them.
//!
//! # Layout (suite 1)
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 1 | cipher suite (`1`) |
//! | 1 | 32 | `E`, the ephemeral X25519 public key |
//! | 33 | 330 | layer 1: AES-256-GCM of `PublicIdentity (129) \|\| DeviceCertificate (185)`, tag (16) |
//! | 363 | n + 16 | layer 2: AES-256-GCM of the payload (n bytes), tag (16) |
//!
//! An envelope is [`ENVELOPE_OVERHEAD_BYTES`] (379) bytes longer than its
//! payload, and the payload is at most [`MAX_SEALED_PAYLOAD_BYTES`]. This
//! module does not pad: the payload is a ratchet message whose plaintext was
//! padded to a size bucket, so equal buckets give equal envelope lengths.
//!
//! # Key schedule
//!
//! | step | HKDF-SHA256 salt | ikm | info | output |
//! |---|---|---|---|---|
//! | layer 1 | `E (32) \|\| R (32)` | `X25519(e, R)` | [`kdf::SEALED_SENDER_LAYER1_INFO`] | chain key (32) \|\| layer-1 key (32) |
//! | layer 2 | chain key (32) \|\| layer-1 ciphertext (330) | `X25519(s, R)` | [`kdf::SEALED_SENDER_LAYER2_INFO`] | layer-2 key (32) |
//!
//! Both AEADs use the all-zero nonce: each key encrypts exactly one message
//! (`e` is fresh per envelope, and layer 2's key depends on it through the
//! chain key). Layer 1's associated data is the header `suite || E`; layer
//! 2's is everything before it, `suite || E || layer-1 ciphertext`.
//! `docs/protocol.md` (sealed sender) gives the same tables.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::aead;
use crate::agreement;
use crate::device::{self, Device, DeviceCertificate, DeviceError, UnverifiedDeviceCertificate};
use crate::encoding::{DecodeError, Reader};
use crate::identity::{self, IdentityError, PublicIdentity};
use crate::kdf;
use crate::suite::CipherSuite;

/// Largest payload an envelope carries, in bytes (256 KiB). Messages are
/// small; files travel separately, encrypted by [`crate::file`].
pub const MAX_SEALED_PAYLOAD_BYTES: usize = 256 * 1024;
/// Bytes of the header: suite and ephemeral key.
const HEADER_BYTES: usize = 1 + agreement::KEY_BYTES;
/// Bytes of layer 1's plaintext: the sender's public identity and device certificate.
pub const SENDER_BYTES: usize = identity::PUBLIC_IDENTITY_BYTES + device::CERTIFICATE_BYTES;
/// Bytes of layer 1's ciphertext.
const SENDER_CIPHERTEXT_BYTES: usize = SENDER_BYTES + aead::TAG_BYTES;
/// Bytes of everything before layer 2: header and layer 1.
const PREFIX_BYTES: usize = HEADER_BYTES + SENDER_CIPHERTEXT_BYTES;
/// Bytes an envelope adds to its payload.
pub const ENVELOPE_OVERHEAD_BYTES: usize = PREFIX_BYTES + aead::TAG_BYTES;
/// Largest envelope [`open`] accepts, in bytes.
pub const MAX_ENVELOPE_BYTES: usize = ENVELOPE_OVERHEAD_BYTES + MAX_SEALED_PAYLOAD_BYTES;

/// Every key of this module encrypts one message only (see the module doc).
const ZERO_NONCE: [u8; aead::NONCE_BYTES] = [0u8; aead::NONCE_BYTES];

/// The length of the envelope of a `payload_len`-byte payload.
pub const fn envelope_len(payload_len: usize) -> usize {
    ENVELOPE_OVERHEAD_BYTES + payload_len
}

/// Seals `payload` from `sender_device` of `sender_identity` to the device
/// whose agreement key is `recipient_device_key`.
///
/// # Errors
/// [`SealError::PayloadTooLarge`] over [`MAX_SEALED_PAYLOAD_BYTES`] (checked
/// first), [`SealError::ForeignDevice`] when the device's certificate is not
/// of `sender_identity`, [`SealError::WeakRecipientKey`] for a low-order
/// recipient key.
pub fn seal(
    sender_identity: &PublicIdentity,
    sender_device: &Device,
    recipient_device_key: &agreement::PublicKey,
    payload: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, SealError> {
    if payload.len() > MAX_SEALED_PAYLOAD_BYTES {
        return Err(SealError::PayloadTooLarge {
            len: payload.len(),
            max: MAX_SEALED_PAYLOAD_BYTES,
        });
    }
    if sender_device.certificate().identity() != sender_identity.signing_key() {
        return Err(SealError::ForeignDevice);
    }
    let sender = sender_bytes(sender_identity, sender_device.certificate());
    let (mut envelope, chain_key) = seal_layer1(&sender, recipient_device_key, payload.len(), rng)?;
    seal_layer2(
        &mut envelope,
        &chain_key,
        sender_device.agreement().secret(),
        recipient_device_key,
        payload,
    )?;
    Ok(envelope)
}

/// Layer 1's plaintext: `PublicIdentity (129) || DeviceCertificate (185)`.
fn sender_bytes(identity: &PublicIdentity, certificate: &DeviceCertificate) -> Vec<u8> {
    let mut sender = Vec::with_capacity(SENDER_BYTES);
    sender.extend_from_slice(&identity.to_bytes());
    sender.extend_from_slice(&certificate.to_bytes());
    sender
}

/// Starts an envelope: header and layer 1, with room for a payload of
/// `payload_len` bytes. Returns the envelope so far and layer 1's chain key.
fn seal_layer1(
    sender: &[u8],
    recipient: &agreement::PublicKey,
    payload_len: usize,
    rng: &mut impl CryptoRng,
) -> Result<(Vec<u8>, Zeroizing<[u8; kdf::KEY_BYTES]>), SealError> {
    let ephemeral = agreement::KeyPair::generate(rng);
    let shared = ephemeral
        .secret()
        .diffie_hellman(recipient)
        .map_err(|agreement::AgreementError::WeakKey| SealError::WeakRecipientKey)?;
    let (chain_key, key) = layer1_keys(&shared, ephemeral.public(), recipient);

    let mut envelope = Vec::with_capacity(envelope_len(payload_len));
    envelope.push(CipherSuite::V1.to_byte());
    envelope.extend_from_slice(ephemeral.public().as_bytes());
    envelope.extend_from_slice(sender);
    let (header, sender) = envelope.split_at_mut(HEADER_BYTES);
    let tag = key.seal_detached(&ZERO_NONCE, header, sender);
    envelope.extend_from_slice(&tag);
    Ok((envelope, chain_key))
}

/// Appends layer 2 (the payload) to an envelope that holds header and layer 1.
fn seal_layer2(
    envelope: &mut Vec<u8>,
    chain_key: &[u8; kdf::KEY_BYTES],
    sender_secret: &agreement::SecretKey,
    recipient: &agreement::PublicKey,
    payload: &[u8],
) -> Result<(), SealError> {
    let shared = sender_secret
        .diffie_hellman(recipient)
        .map_err(|agreement::AgreementError::WeakKey| SealError::WeakRecipientKey)?;
    let prefix_len = envelope.len();
    let key = layer2_key(&shared, chain_key, &envelope[HEADER_BYTES..]);
    envelope.extend_from_slice(payload);
    let (prefix, body) = envelope.split_at_mut(prefix_len);
    let tag = key.seal_detached(&ZERO_NONCE, prefix, body);
    envelope.extend_from_slice(&tag);
    Ok(())
}

/// Layer 1's chain key and AEAD key (see the key schedule in the module doc).
fn layer1_keys(
    shared: &agreement::SharedSecret,
    ephemeral: &agreement::PublicKey,
    recipient: &agreement::PublicKey,
) -> (Zeroizing<[u8; kdf::KEY_BYTES]>, aead::Key) {
    let mut salt = [0u8; 2 * agreement::KEY_BYTES];
    salt[..agreement::KEY_BYTES].copy_from_slice(ephemeral.as_bytes());
    salt[agreement::KEY_BYTES..].copy_from_slice(recipient.as_bytes());
    let mut okm = Zeroizing::new([0u8; 2 * kdf::KEY_BYTES]);
    // 64 bytes is far below HKDF-SHA256's 8160-byte limit.
    #[allow(clippy::expect_used)]
    kdf::hkdf_sha256(&salt, shared.as_bytes(), &[kdf::SEALED_SENDER_LAYER1_INFO], okm.as_mut())
        .expect("64 bytes is a valid HKDF output length");
    let mut chain_key = Zeroizing::new([0u8; kdf::KEY_BYTES]);
    chain_key.copy_from_slice(&okm[..kdf::KEY_BYTES]);
    let mut key = Zeroizing::new([0u8; aead::KEY_BYTES]);
    key.copy_from_slice(&okm[kdf::KEY_BYTES..]);
    (chain_key, aead::Key::new(&key))
}

/// Layer 2's AEAD key: the static-static secret, salted with layer 1's chain
/// key and ciphertext.
fn layer2_key(
    shared: &agreement::SharedSecret,
    chain_key: &[u8; kdf::KEY_BYTES],
    sender_ciphertext: &[u8],
) -> aead::Key {
    let mut salt = Zeroizing::new(Vec::with_capacity(kdf::KEY_BYTES + sender_ciphertext.len()));
    salt.extend_from_slice(chain_key);
    salt.extend_from_slice(sender_ciphertext);
    let key = kdf::derive_key(&salt, shared.as_bytes(), &[kdf::SEALED_SENDER_LAYER2_INFO]);
    aead::Key::new(&key)
}

/// Opens an envelope sent to `our_device`: decrypts both layers, then
/// verifies the sender's certificates.
///
/// # Errors
/// [`UnsealError::Decode`] for an envelope of impossible length (checked
/// before any work) or an unknown suite; [`UnsealError::Decryption`] when
/// either layer does not decrypt (wrong recipient, tampering, a sender that
/// does not hold its device key); [`UnsealError::InvalidIdentity`] and
/// [`UnsealError::InvalidDeviceCertificate`] for certificates that do not
/// verify.
pub fn open(our_device: &Device, envelope: &[u8]) -> Result<Opened, UnsealError> {
    if envelope.len() > MAX_ENVELOPE_BYTES {
        return Err(DecodeError::TooLarge { len: envelope.len(), max: MAX_ENVELOPE_BYTES }.into());
    }
    if envelope.len() < ENVELOPE_OVERHEAD_BYTES {
        return Err(DecodeError::Truncated.into());
    }
    let mut r = Reader::new(envelope);
    let prefix = r.fixed(PREFIX_BYTES)?;
    let payload_ciphertext = r.rest();
    let mut prefix_reader = Reader::new(prefix);
    let header = prefix_reader.fixed(HEADER_BYTES)?;
    let sender_ciphertext = prefix_reader.rest();
    let mut header_reader = Reader::new(header);
    CipherSuite::from_byte(header_reader.u8()?)?;
    let ephemeral = agreement::PublicKey::from_bytes(header_reader.array()?);

    let ours = our_device.agreement();
    let shared = ours.secret().diffie_hellman(&ephemeral).map_err(|_| UnsealError::Decryption)?;
    let (chain_key, key) = layer1_keys(&shared, &ephemeral, ours.public());
    let mut sender = sender_ciphertext.to_vec();
    let sender = key
        .open(&ZERO_NONCE, header, &mut sender)
        .map_err(|aead::OpenError| UnsealError::Decryption)?;
    // Anybody can make a layer 1 that decrypts; until layer 2 authenticates,
    // a malformed one is as meaningless as one that does not decrypt.
    let mut sender_reader = Reader::new(sender);
    let identity = PublicIdentity::read(&mut sender_reader).map_err(|_| UnsealError::Decryption)?;
    let certificate = UnverifiedDeviceCertificate::read(&mut sender_reader)
        .map_err(|_| UnsealError::Decryption)?;
    sender_reader.finish().map_err(|_| UnsealError::Decryption)?;

    let shared = ours
        .secret()
        .diffie_hellman(&certificate.claimed_agreement_key())
        .map_err(|_| UnsealError::Decryption)?;
    let key = layer2_key(&shared, &chain_key, sender_ciphertext);
    let mut payload = Zeroizing::new(payload_ciphertext.to_vec());
    let payload_len = key
        .open(&ZERO_NONCE, prefix, &mut payload)
        .map_err(|aead::OpenError| UnsealError::Decryption)?
        .len();
    payload.truncate(payload_len);

    let sender = identity.verify().map_err(UnsealError::InvalidIdentity)?;
    let sender_device =
        certificate.verify(sender.signing_key()).map_err(UnsealError::InvalidDeviceCertificate)?;
    Ok(Opened { sender, sender_device, payload })
}

/// An opened envelope: the verified sender and the payload.
pub struct Opened {
    sender: PublicIdentity,
    sender_device: DeviceCertificate,
    payload: Zeroizing<Vec<u8>>,
}

impl Opened {
    /// The sender's identity, its agreement-key certificate verified.
    pub fn sender(&self) -> &PublicIdentity {
        &self.sender
    }

    /// The sending device's certificate, verified as signed by [`Opened::sender`];
    /// the sender proved it holds the certificate's agreement key.
    pub fn sender_device(&self) -> &DeviceCertificate {
        &self.sender_device
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the payload, wiped when dropped.
    pub fn into_payload(self) -> Zeroizing<Vec<u8>> {
        self.payload
    }
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("sender", &self.sender)
            .field("sender_device", &self.sender_device.device_id())
            .field("payload", &format_args!("<{} bytes>", self.payload.len()))
            .finish()
    }
}

/// Why an envelope could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The payload exceeds [`MAX_SEALED_PAYLOAD_BYTES`].
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The sending device is certified by another identity than the sender's.
    #[error("sending device belongs to another identity")]
    ForeignDevice,
    /// The recipient's key is of low order: no secret can be agreed with it.
    #[error("weak recipient device key")]
    WeakRecipientKey,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnsealError {
    /// An envelope of impossible length or unknown suite (what any relay sees too).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A layer did not decrypt. Deliberately says no more.
    #[error("envelope decryption failed")]
    Decryption,
    /// The sender's identity certificate does not verify.
    #[error("invalid sender identity")]
    InvalidIdentity(#[source] IdentityError),
    /// The sender's device certificate is not signed by the sender's identity.
    #[error("invalid sender device certificate")]
    InvalidDeviceCertificate(#[source] DeviceError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::phrase::Seed;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    struct User {
        identity: Identity,
        device: Device,
    }

    fn user(byte: u8, rng: &mut ChaCha20Rng) -> User {
        let identity = Identity::from_seed(&Seed::from_bytes(&[byte; 64]).unwrap()).unwrap();
        let device = Device::new(&identity, 1_700_000_000_000, rng);
        User { identity, device }
    }

    fn seal_from(from: &User, to: &User, payload: &[u8], rng: &mut ChaCha20Rng) -> Vec<u8> {
        seal(&from.identity.public(), &from.device, to.device.agreement().public(), payload, rng)
            .unwrap()
    }

    #[test]
    fn open_returns_the_verified_sender_and_payload() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let envelope = seal_from(&alice, &bob, b"hello bob", &mut rng);
        assert_eq!(envelope.len(), envelope_len(9));
        let opened = open(&bob.device, &envelope).unwrap();
        assert_eq!(opened.sender(), &alice.identity.public());
        assert_eq!(opened.sender_device(), alice.device.certificate());
        assert_eq!(opened.payload(), b"hello bob");
        assert_eq!(opened.into_payload().as_slice(), b"hello bob");
    }

    #[test]
    fn open_accepts_empty_and_largest_payloads() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        for payload in [vec![], vec![0x5a; MAX_SEALED_PAYLOAD_BYTES]] {
            let envelope = seal_from(&alice, &bob, &payload, &mut rng);
            assert_eq!(envelope.len(), envelope_len(payload.len()));
            assert_eq!(open(&bob.device, &envelope).unwrap().payload(), payload);
        }
    }

    #[test]
    fn envelope_hides_sender_and_payload_from_relays() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let payload = b"a recognisable payload".to_vec();
        let envelope = seal_from(&alice, &bob, &payload, &mut rng);
        let contains = |needle: &[u8]| envelope.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(&alice.identity.public().signing_key().to_bytes()));
        assert!(!contains(alice.device.agreement().public().as_bytes()));
        assert!(!contains(alice.device.id().as_bytes()));
        assert!(!contains(&payload));
    }

    #[test]
    fn open_by_another_device_fails_opaquely() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let carol = user(3, &mut rng);
        let bob_laptop = Device::new(&bob.identity, 5, &mut rng);
        let envelope = seal_from(&alice, &bob, b"for bob's phone", &mut rng);
        for device in [&carol.device, &bob_laptop, &alice.device] {
            assert_eq!(open(device, &envelope).unwrap_err(), UnsealError::Decryption);
        }
    }

    #[test]
    fn open_refuses_every_flipped_truncated_or_extended_envelope() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let envelope = seal_from(&alice, &bob, &[7u8; 40], &mut rng);
        for i in 0..envelope.len() {
            for bit in [0x01, 0x80] {
                let mut flipped = envelope.clone();
                flipped[i] ^= bit;
                assert!(
                    open(&bob.device, &flipped).is_err(),
                    "flipping bit {bit:#x} of byte {i} went unnoticed"
                );
            }
        }
        for len in 0..envelope.len() {
            assert!(
                open(&bob.device, &envelope[..len]).is_err(),
                "truncation to {len} bytes went unnoticed"
            );
        }
        for extra in [&[0u8][..], &[0u8; 16][..]] {
            let mut extended = envelope.clone();
            extended.extend_from_slice(extra);
            assert_eq!(open(&bob.device, &extended).unwrap_err(), UnsealError::Decryption);
        }
    }

    #[test]
    fn open_refuses_wrong_lengths_and_suites_before_any_work() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let bob = user(2, &mut rng);
        assert_eq!(
            open(&bob.device, &[1u8; ENVELOPE_OVERHEAD_BYTES - 1]).unwrap_err(),
            UnsealError::Decode(DecodeError::Truncated)
        );
        assert_eq!(
            open(&bob.device, &vec![1u8; MAX_ENVELOPE_BYTES + 1]).unwrap_err(),
            UnsealError::Decode(DecodeError::TooLarge {
                len: MAX_ENVELOPE_BYTES + 1,
                max: MAX_ENVELOPE_BYTES
            })
        );
        assert_eq!(
            open(&bob.device, &[9u8; ENVELOPE_OVERHEAD_BYTES]).unwrap_err(),
            UnsealError::Decode(DecodeError::UnknownVersion(9))
        );
    }

    #[test]
    fn seal_refuses_oversized_payload_foreign_device_and_weak_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let recipient = bob.device.agreement().public();
        assert_eq!(
            seal(
                &alice.identity.public(),
                &alice.device,
                recipient,
                &vec![0u8; MAX_SEALED_PAYLOAD_BYTES + 1],
                &mut rng
            ),
            Err(SealError::PayloadTooLarge {
                len: MAX_SEALED_PAYLOAD_BYTES + 1,
                max: MAX_SEALED_PAYLOAD_BYTES
            })
        );
        assert_eq!(
            seal(&alice.identity.public(), &bob.device, recipient, b"x", &mut rng),
            Err(SealError::ForeignDevice)
        );
        assert_eq!(
            seal(
                &alice.identity.public(),
                &alice.device,
                &agreement::PublicKey::from_bytes([0u8; 32]),
                b"x",
                &mut rng
            ),
            Err(SealError::WeakRecipientKey)
        );
    }

    /// What an attacker with their own device key can build: any layer-1
    /// plaintext, then layer 2 under their own key.
    fn forge(
        sender: &[u8],
        signer: &Device,
        to: &User,
        payload: &[u8],
        rng: &mut ChaCha20Rng,
    ) -> Vec<u8> {
        let recipient = to.device.agreement().public();
        let (mut envelope, chain_key) = seal_layer1(sender, recipient, payload.len(), rng).unwrap();
        seal_layer2(&mut envelope, &chain_key, signer.agreement().secret(), recipient, payload)
            .unwrap();
        envelope
    }

    #[test]
    fn open_refuses_device_certificate_not_signed_by_claimed_identity() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let mallory = user(3, &mut rng);
        // Mallory claims to be Alice, with her own device's certificate.
        let claim = sender_bytes(&alice.identity.public(), mallory.device.certificate());
        let envelope = forge(&claim, &mallory.device, &bob, b"it's alice", &mut rng);
        assert_eq!(
            open(&bob.device, &envelope).unwrap_err(),
            UnsealError::InvalidDeviceCertificate(DeviceError::WrongIdentity)
        );
        // Same, with the certificate rewritten to name Alice: the signature is Mallory's.
        let mut claim = claim;
        let identity_field = identity::PUBLIC_IDENTITY_BYTES + 1;
        claim[identity_field..identity_field + 32]
            .copy_from_slice(&alice.identity.public().signing_key().to_bytes());
        let envelope = forge(&claim, &mallory.device, &bob, b"it's alice", &mut rng);
        assert_eq!(
            open(&bob.device, &envelope).unwrap_err(),
            UnsealError::InvalidDeviceCertificate(DeviceError::InvalidSignature)
        );
    }

    #[test]
    fn open_refuses_identity_whose_agreement_certificate_fails() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let mut claim = sender_bytes(&alice.identity.public(), alice.device.certificate());
        // The identity's agreement key, swapped for Bob's.
        claim[33..65].copy_from_slice(bob.identity.public().agreement_key().as_bytes());
        let envelope = forge(&claim, &alice.device, &bob, b"hi", &mut rng);
        assert_eq!(
            open(&bob.device, &envelope).unwrap_err(),
            UnsealError::InvalidIdentity(IdentityError::InvalidCertificate)
        );
    }

    #[test]
    fn open_refuses_another_users_certificate_without_their_device_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let mallory = user(3, &mut rng);
        // Mallory names Alice and her genuine device, but can only run layer 2
        // with her own device key.
        let claim = sender_bytes(&alice.identity.public(), alice.device.certificate());
        let envelope = forge(&claim, &mallory.device, &bob, b"it's alice", &mut rng);
        assert_eq!(open(&bob.device, &envelope).unwrap_err(), UnsealError::Decryption);
    }

    #[test]
    fn open_refuses_layer2_moved_under_a_new_layer1() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let mallory = user(3, &mut rng);
        let genuine = seal_from(&alice, &bob, b"from alice", &mut rng);
        // Mallory re-encrypts a layer 1 that names her, and keeps Alice's layer 2.
        let claim = sender_bytes(&mallory.identity.public(), mallory.device.certificate());
        let (mut swapped, _) =
            seal_layer1(&claim, bob.device.agreement().public(), 0, &mut rng).unwrap();
        swapped.extend_from_slice(&genuine[PREFIX_BYTES..]);
        assert_eq!(swapped.len(), genuine.len());
        assert_eq!(open(&bob.device, &swapped).unwrap_err(), UnsealError::Decryption);
        // Certificates are public: anybody can re-encrypt a layer 1 naming
        // Alice under a new E. Alice's layer 2 is bound to her E and does not
        // follow.
        let claim = sender_bytes(&alice.identity.public(), alice.device.certificate());
        let (mut rewrapped, _) =
            seal_layer1(&claim, bob.device.agreement().public(), 0, &mut rng).unwrap();
        rewrapped.extend_from_slice(&genuine[PREFIX_BYTES..]);
        assert_eq!(open(&bob.device, &rewrapped).unwrap_err(), UnsealError::Decryption);
        // Nor does Alice's layer 1 with another envelope's layer 2.
        let other = seal_from(&alice, &bob, b"from alice", &mut rng);
        let mut spliced = genuine[..PREFIX_BYTES].to_vec();
        spliced.extend_from_slice(&other[PREFIX_BYTES..]);
        assert_eq!(open(&bob.device, &spliced).unwrap_err(), UnsealError::Decryption);
    }

    #[test]
    fn envelopes_of_equal_length_payloads_have_equal_lengths() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let carol = user(3, &mut rng);
        let a = seal_from(&alice, &bob, &[0u8; 512], &mut rng);
        let b = seal_from(&carol, &bob, &[0xffu8; 512], &mut rng);
        let c = seal_from(&bob, &alice, &[1u8; 512], &mut rng);
        assert_eq!(a.len(), b.len());
        assert_eq!(a.len(), c.len());
        assert_eq!(a.len(), envelope_len(512));
        // Two seals of the same payload share nothing but the suite byte's position.
        let d = seal_from(&alice, &bob, &[0u8; 512], &mut rng);
        assert_ne!(a[1..33], d[1..33]);
        assert_ne!(a[PREFIX_BYTES..], d[PREFIX_BYTES..]);
    }

    #[test]
    fn layout_constants_match_the_documented_table() {
        assert_eq!(HEADER_BYTES, 33);
        assert_eq!(SENDER_BYTES, 129 + 185);
        assert_eq!(SENDER_CIPHERTEXT_BYTES, 330);
        assert_eq!(PREFIX_BYTES, 363);
        assert_eq!(ENVELOPE_OVERHEAD_BYTES, 379);
    }

    #[test]
    fn opened_debug_hides_the_payload() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let envelope = seal_from(&alice, &bob, b"secret words", &mut rng);
        let opened = open(&bob.device, &envelope).unwrap();
        let debug = format!("{opened:?}");
        assert!(!debug.contains("secret"));
        insta::assert_snapshot!(
            debug.replace(&crate::fingerprint(&alice.identity.public().signing_key().to_bytes()), "<fp>")
                .replace(&format!("{:?}", alice.device.id()), "<id>"),
            @"Opened { sender: PublicIdentity(<fp>), sender_device: <id>, payload: <12 bytes> }"
        );
    }
}
