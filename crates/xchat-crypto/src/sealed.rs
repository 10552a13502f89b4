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
//!
//! # The warm path: [`Opener`] and [`Sealer`]
//!
//! [`open`] costs two X25519 agreements and two BIP340 verifications. Of
//! these, only `X25519(r, E)` depends on the envelope; the rest is a function
//! of our device key and layer 1's plaintext, the sender's
//! `PublicIdentity || DeviceCertificate`, which is the same for every
//! envelope of one sender device. An [`Opener`] remembers, for up to
//! [`MAX_CACHED_SENDERS`] senders, what [`open`] computed from exactly those
//! bytes: the verified identity and certificate, and the static secret
//! `X25519(r, S)`. Its key is `SHA-256(R (32) || layer-1 plaintext (314))`.
//!
//! Why a hit returns exactly what [`open`] returns:
//! - An entry is made only when [`open`] succeeded on those bytes, so
//!   decoding, the static agreement and both verifications succeeded, and on
//!   the same bytes they give the same values again: they are deterministic
//!   and use nothing else. A hit skips them and uses their outputs.
//! - Everything that depends on the rest of the envelope is still done:
//!   layer 1 opens under this envelope's `X25519(r, E)`, and layer 2 must
//!   authenticate under the key derived from the cached static secret, this
//!   envelope's chain key and this envelope's layer-1 ciphertext. Only layer
//!   2 can fail on a hit, with [`UnsealError::Decryption`], as it does on
//!   the cold path. The authentication argument is unchanged: the payload
//!   decrypts only if its sender holds `s` of the certificate the entry
//!   verified.
//! - The key covers every byte of the identity and the certificate: a
//!   certificate that differs in one byte (a new device, a re-certified one,
//!   a forgery) is a miss and goes through all of [`open`]. Even a SHA-256
//!   collision would not let a forger pass as a cached sender: layer 2 would
//!   still have to authenticate under that sender's static secret.
//! - A failed open changes nothing (not even recency), and only successes
//!   are cached: a forged envelope never enters the cache.
//! - Revocations are not this module's business on either path: the caller
//!   checks [`Opened::sender_device`] against them, on hits as on misses.
//!   [`Opener::forget_device`] drops a revoked device's entry so its secret
//!   does not linger.
//!
//! Cost under attack: a miss is [`open`] plus one SHA-256 and an O(log n)
//! insertion, so a flood of distinct valid senders costs what it costs
//! without the cache. The cache is a segmented LRU (`cache.rs`): senders
//! seen once each cannot evict the senders seen at least twice, so such a
//! flood leaves the conversations in progress warm. When layer 2 fails on a
//! hit, the opener still computes the static agreement the cold path would
//! have, so a failed open takes as long whether or not the sender it names
//! is cached, and timing a forged envelope does not tell who wrote lately.
//!
//! A [`Sealer`] keeps `X25519(s, R)` per pair of our device key and the
//! recipient device key, for up to [`MAX_CACHED_RECIPIENTS`] recipients. Its
//! envelopes are byte for byte those of [`seal`] with the same randomness.
//!
//! Neither cache has a record: they hold nothing that cannot be recomputed
//! (one cold operation per sender or recipient), and what they hold is
//! secret, so there is no reason for a store to keep it. Secrets are wiped
//! when an entry leaves the cache and when the cache is dropped.

mod cache;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use self::cache::Cache;
use crate::aead;
use crate::agreement;
use crate::device::{
    self, Device, DeviceCertificate, DeviceError, DeviceId, UnverifiedDeviceCertificate,
};
use crate::encoding::{DecodeError, Reader};
use crate::identity::{self, IdentityError, PublicIdentity, UnverifiedPublicIdentity};
use crate::kdf;
use crate::signature::VerifyingKey;
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
/// Largest number of sender devices an [`Opener`] remembers (about 0.5 KiB
/// each). A conversation's sender is almost always one seen a moment ago.
pub const MAX_CACHED_SENDERS: usize = 1024;
/// Largest number of recipient devices a [`Sealer`] remembers (about 0.2 KiB each).
pub const MAX_CACHED_RECIPIENTS: usize = 1024;

/// Every key of this module encrypts one message only (see the module doc).
const ZERO_NONCE: [u8; aead::NONCE_BYTES] = [0u8; aead::NONCE_BYTES];

/// The length of the envelope of a `payload_len`-byte payload.
pub const fn envelope_len(payload_len: usize) -> usize {
    ENVELOPE_OVERHEAD_BYTES + payload_len
}

/// Seals `payload` from `sender_device` of `sender_identity` to the device
/// whose agreement key is `recipient_device_key`: the cold path, with no
/// cache ([`Sealer::seal`] is the warm one).
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
    check_seal(sender_identity, sender_device, payload)?;
    let sender = sender_bytes(sender_identity, sender_device.certificate());
    let (mut envelope, chain_key) = seal_layer1(&sender, recipient_device_key, payload.len(), rng)?;
    let shared = static_agreement(sender_device, recipient_device_key)?;
    seal_layer2(&mut envelope, &chain_key, &shared, payload);
    Ok(envelope)
}

/// The checks of [`seal`] that come before any work.
fn check_seal(
    sender_identity: &PublicIdentity,
    sender_device: &Device,
    payload: &[u8],
) -> Result<(), SealError> {
    if payload.len() > MAX_SEALED_PAYLOAD_BYTES {
        return Err(SealError::PayloadTooLarge {
            len: payload.len(),
            max: MAX_SEALED_PAYLOAD_BYTES,
        });
    }
    if sender_device.certificate().identity() != sender_identity.signing_key() {
        return Err(SealError::ForeignDevice);
    }
    Ok(())
}

/// `X25519(s, R)`: the static-static secret under layer 2.
fn static_agreement(
    sender_device: &Device,
    recipient: &agreement::PublicKey,
) -> Result<agreement::SharedSecret, SealError> {
    sender_device
        .agreement()
        .secret()
        .diffie_hellman(recipient)
        .map_err(|agreement::AgreementError::WeakKey| SealError::WeakRecipientKey)
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

/// Appends layer 2 (the payload) to an envelope that holds header and layer
/// 1, under the static secret `X25519(s, R)`.
fn seal_layer2(
    envelope: &mut Vec<u8>,
    chain_key: &[u8; kdf::KEY_BYTES],
    shared: &agreement::SharedSecret,
    payload: &[u8],
) {
    let prefix_len = envelope.len();
    let key = layer2_key(shared, chain_key, &envelope[HEADER_BYTES..]);
    envelope.extend_from_slice(payload);
    let (prefix, body) = envelope.split_at_mut(prefix_len);
    let tag = key.seal_detached(&ZERO_NONCE, prefix, body);
    envelope.extend_from_slice(&tag);
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
/// verifies the sender's certificates. The cold path, with no cache:
/// [`Opener::open`] is the warm one and returns the same results.
///
/// # Errors
/// [`UnsealError::Decode`] for an envelope of impossible length (checked
/// before any work) or an unknown suite; [`UnsealError::Decryption`] when
/// either layer does not decrypt (wrong recipient, tampering, a sender that
/// does not hold its device key); [`UnsealError::InvalidIdentity`] and
/// [`UnsealError::InvalidDeviceCertificate`] for certificates that do not
/// verify.
pub fn open(our_device: &Device, envelope: &[u8]) -> Result<Opened, UnsealError> {
    let ours = our_device.agreement();
    let layer1 = open_layer1(ours, envelope)?;
    open_cold(ours, &layer1).map(|(opened, _)| opened)
}

/// An envelope whose layer 1 decrypted: the sender's bytes, and what layer 2
/// needs.
struct Layer1<'a> {
    /// `suite || E || layer-1 ciphertext`: layer 2's associated data.
    prefix: &'a [u8],
    sender_ciphertext: &'a [u8],
    payload_ciphertext: &'a [u8],
    chain_key: Zeroizing<[u8; kdf::KEY_BYTES]>,
    /// Layer 1's plaintext, not yet decoded: anybody can make a layer 1.
    sender: Vec<u8>,
}

/// Checks the envelope's length and suite, then opens layer 1 with
/// `X25519(r, E)`.
fn open_layer1<'a>(
    ours: &agreement::KeyPair,
    envelope: &'a [u8],
) -> Result<Layer1<'a>, UnsealError> {
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

    let shared = ours.secret().diffie_hellman(&ephemeral).map_err(|_| UnsealError::Decryption)?;
    let (chain_key, key) = layer1_keys(&shared, &ephemeral, ours.public());
    let mut sender = sender_ciphertext.to_vec();
    let sender_len = key
        .open(&ZERO_NONCE, header, &mut sender)
        .map_err(|aead::OpenError| UnsealError::Decryption)?
        .len();
    sender.truncate(sender_len);
    Ok(Layer1 { prefix, sender_ciphertext, payload_ciphertext, chain_key, sender })
}

/// Opens layer 2 under the static secret `X25519(r, S)`.
fn open_layer2(
    layer1: &Layer1<'_>,
    shared: &agreement::SharedSecret,
) -> Result<Zeroizing<Vec<u8>>, UnsealError> {
    let key = layer2_key(shared, &layer1.chain_key, layer1.sender_ciphertext);
    let mut payload = Zeroizing::new(layer1.payload_ciphertext.to_vec());
    let payload_len = key
        .open(&ZERO_NONCE, layer1.prefix, &mut payload)
        .map_err(|aead::OpenError| UnsealError::Decryption)?
        .len();
    payload.truncate(payload_len);
    Ok(payload)
}

/// Everything of [`open`] after layer 1: decode the sender, the static
/// agreement, layer 2, then both verifications. Returns the static secret
/// with the result, for a cache.
fn open_cold(
    ours: &agreement::KeyPair,
    layer1: &Layer1<'_>,
) -> Result<(Opened, agreement::SharedSecret), UnsealError> {
    // Until layer 2 authenticates, a malformed layer 1 is as meaningless as
    // one that does not decrypt.
    let (identity, certificate) = decode_sender(&layer1.sender)?;
    let shared = ours
        .secret()
        .diffie_hellman(&certificate.claimed_agreement_key())
        .map_err(|_| UnsealError::Decryption)?;
    let payload = open_layer2(layer1, &shared)?;
    let sender = identity.verify().map_err(UnsealError::InvalidIdentity)?;
    let sender_device =
        certificate.verify(sender.signing_key()).map_err(UnsealError::InvalidDeviceCertificate)?;
    Ok((Opened { sender, sender_device, payload }, shared))
}

/// Decodes layer 1's plaintext; any failure is [`UnsealError::Decryption`].
fn decode_sender(
    sender: &[u8],
) -> Result<(UnverifiedPublicIdentity, UnverifiedDeviceCertificate), UnsealError> {
    let mut r = Reader::new(sender);
    let identity = PublicIdentity::read(&mut r).map_err(|_| UnsealError::Decryption)?;
    let certificate =
        UnverifiedDeviceCertificate::read(&mut r).map_err(|_| UnsealError::Decryption)?;
    r.finish().map_err(|_| UnsealError::Decryption)?;
    Ok((identity, certificate))
}

/// How often a cache served an operation, for metrics. Failed operations
/// count in neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Operations that succeeded with a cached entry.
    pub hits: u64,
    /// Operations that succeeded through the cold path, whose result was
    /// then cached.
    pub misses: u64,
}

/// The cache key of a sender: `SHA-256(R (32) || layer-1 plaintext (314))`,
/// `R` our device's agreement key.
type SenderKey = [u8; 32];

/// What [`open`] computed from one sender's layer-1 plaintext.
struct VerifiedSender {
    identity: PublicIdentity,
    device: DeviceCertificate,
    /// `X25519(r, S)`, wiped on drop.
    shared: agreement::SharedSecret,
}

/// Opens envelopes like [`open`], remembering the verified senders: an
/// envelope from a sender seen lately costs one X25519 agreement instead of
/// two, and no signature verification. Same results and errors as [`open`];
/// the module doc gives the argument.
///
/// Holds secrets (static agreement secrets): wiped when an entry is evicted
/// and when the opener is dropped; `Debug` shows only counts.
pub struct Opener {
    senders: Cache<SenderKey, VerifiedSender>,
    stats: CacheStats,
}

impl Opener {
    /// An empty opener that remembers up to [`MAX_CACHED_SENDERS`] senders.
    pub fn new() -> Self {
        Self::with_capacity(MAX_CACHED_SENDERS)
    }

    fn with_capacity(capacity: usize) -> Self {
        Self { senders: Cache::new(capacity), stats: CacheStats::default() }
    }

    /// Opens an envelope sent to `our_device`. One opener may serve several
    /// of our devices: entries are per device key.
    ///
    /// # Errors
    /// As [`open`]: the same error for the same envelope, cached or not.
    pub fn open(&mut self, our_device: &Device, envelope: &[u8]) -> Result<Opened, UnsealError> {
        let ours = our_device.agreement();
        let layer1 = open_layer1(ours, envelope)?;
        let key = kdf::sha256(&[ours.public().as_bytes(), &layer1.sender]);
        if let Some(cached) = self.senders.get(&key) {
            let payload = match open_layer2(&layer1, &cached.shared) {
                Ok(payload) => payload,
                Err(error) => {
                    // The agreement the cold path would have made: a failed
                    // open costs the same whether or not the sender it names
                    // is cached (see the module doc). Its result is unused.
                    let _ = ours.secret().diffie_hellman(cached.device.agreement_key());
                    return Err(error);
                }
            };
            let opened = Opened { sender: cached.identity, sender_device: cached.device, payload };
            self.senders.touch(&key);
            self.stats.hits = self.stats.hits.saturating_add(1);
            return Ok(opened);
        }
        let (opened, shared) = open_cold(ours, &layer1)?;
        self.senders.insert(
            key,
            VerifiedSender { identity: opened.sender, device: opened.sender_device, shared },
        );
        self.stats.misses = self.stats.misses.saturating_add(1);
        Ok(opened)
    }

    /// Drops (and wipes) every entry of the device `device_id` of `identity`,
    /// as when it is revoked. Correctness does not depend on it: the caller
    /// checks revocations on [`Opened::sender_device`], cached or not. O(n):
    /// for revocations, not per envelope.
    pub fn forget_device(&mut self, identity: &VerifyingKey, device_id: DeviceId) {
        self.senders.retain(|sender| {
            sender.device.identity() != identity || sender.device.device_id() != device_id
        });
    }

    /// Drops (and wipes) every entry.
    pub fn clear(&mut self) {
        self.senders.clear();
    }

    /// Number of senders remembered.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Whether no sender is remembered.
    pub fn is_empty(&self) -> bool {
        self.senders.len() == 0
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }
}

impl Default for Opener {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("senders", &self.senders.len())
            .field("capacity", &self.senders.capacity())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The cache key of a recipient: our device's agreement key, theirs.
type RecipientKey = ([u8; agreement::KEY_BYTES], [u8; agreement::KEY_BYTES]);

/// Seals envelopes like [`seal`], remembering `X25519(s, R)` per recipient
/// device: a warm seal costs one X25519 agreement (and the ephemeral key's
/// generation) instead of two. Its envelopes are byte for byte those of
/// [`seal`] with the same randomness.
///
/// Holds secrets: wiped when an entry is evicted and when the sealer is
/// dropped; `Debug` shows only counts.
pub struct Sealer {
    recipients: Cache<RecipientKey, agreement::SharedSecret>,
    stats: CacheStats,
}

impl Sealer {
    /// An empty sealer that remembers up to [`MAX_CACHED_RECIPIENTS`] recipient devices.
    pub fn new() -> Self {
        Self::with_capacity(MAX_CACHED_RECIPIENTS)
    }

    fn with_capacity(capacity: usize) -> Self {
        Self { recipients: Cache::new(capacity), stats: CacheStats::default() }
    }

    /// Seals `payload` from `sender_device` of `sender_identity` to the
    /// device whose agreement key is `recipient_device_key`. One sealer may
    /// serve several of our devices: entries are per device key.
    ///
    /// # Errors
    /// As [`seal`].
    pub fn seal(
        &mut self,
        sender_identity: &PublicIdentity,
        sender_device: &Device,
        recipient_device_key: &agreement::PublicKey,
        payload: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>, SealError> {
        check_seal(sender_identity, sender_device, payload)?;
        let sender = sender_bytes(sender_identity, sender_device.certificate());
        let (mut envelope, chain_key) =
            seal_layer1(&sender, recipient_device_key, payload.len(), rng)?;
        let key =
            (*sender_device.agreement().public().as_bytes(), *recipient_device_key.as_bytes());
        if let Some(shared) = self.recipients.get(&key) {
            seal_layer2(&mut envelope, &chain_key, shared, payload);
            self.recipients.touch(&key);
            self.stats.hits = self.stats.hits.saturating_add(1);
        } else {
            let shared = static_agreement(sender_device, recipient_device_key)?;
            seal_layer2(&mut envelope, &chain_key, &shared, payload);
            self.recipients.insert(key, shared);
            self.stats.misses = self.stats.misses.saturating_add(1);
        }
        Ok(envelope)
    }

    /// Drops (and wipes) every entry.
    pub fn clear(&mut self) {
        self.recipients.clear();
    }

    /// Number of recipient devices remembered.
    pub fn len(&self) -> usize {
        self.recipients.len()
    }

    /// Whether no recipient device is remembered.
    pub fn is_empty(&self) -> bool {
        self.recipients.len() == 0
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }
}

impl Default for Sealer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("recipients", &self.recipients.len())
            .field("capacity", &self.recipients.capacity())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
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
        let shared = static_agreement(signer, recipient).unwrap();
        seal_layer2(&mut envelope, &chain_key, &shared, payload);
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

    // --- The warm path -------------------------------------------------------

    /// Panics unless both paths opened with the same result or refused with
    /// the same error.
    fn assert_same(warm: &Result<Opened, UnsealError>, cold: &Result<Opened, UnsealError>) {
        match (warm, cold) {
            (Ok(warm), Ok(cold)) => {
                assert_eq!(warm.sender(), cold.sender());
                assert_eq!(warm.sender_device(), cold.sender_device());
                assert_eq!(warm.payload(), cold.payload());
            }
            (Err(warm), Err(cold)) => assert_eq!(warm, cold),
            _ => panic!("the paths disagree: warm {warm:?}, cold {cold:?}"),
        }
    }

    /// `device` with the same keys under a new certificate made at
    /// `created_at_ms`, signed by `identity`: another certificate of the
    /// same device key.
    fn recertified(
        identity: &Identity,
        device: &Device,
        created_at_ms: u64,
        rng: &mut ChaCha20Rng,
    ) -> Device {
        // Device record: version (1) || two secrets (64) || certificate.
        let mut record = device.to_record().to_vec();
        let body = 1 + 64..1 + 64 + device::CERTIFICATE_BYTES - 64;
        record[body.end - 8..body.end].copy_from_slice(&created_at_ms.to_be_bytes());
        let signature =
            identity.signing_key().sign(kdf::SIG_DEVICE_CERT, &record[body.clone()], rng);
        record[body.end..].copy_from_slice(signature.as_bytes());
        Device::from_record(&record, &identity.signing_key().verifying_key()).unwrap()
    }

    #[test]
    fn opener_hits_and_misses_return_what_open_returns() {
        let mut rng = ChaCha20Rng::seed_from_u64(20);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let carol = user(3, &mut rng);
        let mut opener = Opener::new();
        for round in 0..3u8 {
            for from in [&alice, &carol] {
                let envelope = seal_from(from, &bob, &[round; 100], &mut rng);
                let warm = opener.open(&bob.device, &envelope);
                assert!(warm.is_ok());
                assert_same(&warm, &open(&bob.device, &envelope));
            }
        }
        assert_eq!(opener.stats(), CacheStats { hits: 4, misses: 2 });
        assert_eq!(opener.len(), 2);
        opener.senders.check_invariants();
    }

    #[test]
    fn opener_refuses_every_tampered_envelope_of_a_cached_sender_as_open_does() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let mut opener = Opener::new();
        opener.open(&bob.device, &seal_from(&alice, &bob, b"warm", &mut rng)).unwrap();
        let order = opener.senders.order();
        let envelope = seal_from(&alice, &bob, &[7u8; 40], &mut rng);

        let mut layer2_tampered = envelope.clone();
        layer2_tampered[PREFIX_BYTES + 3] ^= 1;
        assert_eq!(
            opener.open(&bob.device, &layer2_tampered).unwrap_err(),
            UnsealError::Decryption
        );

        for i in 0..envelope.len() {
            for bit in [0x01, 0x80] {
                let mut flipped = envelope.clone();
                flipped[i] ^= bit;
                let warm = opener.open(&bob.device, &flipped);
                assert!(warm.is_err(), "flipping bit {bit:#x} of byte {i} went unnoticed");
                assert_same(&warm, &open(&bob.device, &flipped));
            }
        }
        for len in 0..envelope.len() {
            let warm = opener.open(&bob.device, &envelope[..len]);
            assert!(warm.is_err(), "truncation to {len} bytes went unnoticed");
            assert_same(&warm, &open(&bob.device, &envelope[..len]));
        }
        let mut extended = envelope.clone();
        extended.push(0);
        assert_eq!(opener.open(&bob.device, &extended).unwrap_err(), UnsealError::Decryption);
        // Refusals changed nothing, recency included.
        assert_eq!(opener.senders.order(), order);
        assert_eq!(opener.stats(), CacheStats { hits: 0, misses: 1 });
        assert_eq!(opener.open(&bob.device, &envelope).unwrap().payload(), [7u8; 40]);
    }

    #[test]
    fn opener_refuses_a_cached_senders_certificate_without_their_device_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let mallory = user(3, &mut rng);
        let mut opener = Opener::new();
        opener.open(&bob.device, &seal_from(&alice, &bob, b"warm", &mut rng)).unwrap();
        // Mallory names Alice's genuine, cached certificates: the layer-1
        // plaintext is the cached one, so this is a hit, and layer 2 fails.
        let claim = sender_bytes(&alice.identity.public(), alice.device.certificate());
        let envelope = forge(&claim, &mallory.device, &bob, b"it's alice", &mut rng);
        assert_eq!(opener.open(&bob.device, &envelope).unwrap_err(), UnsealError::Decryption);
        assert_eq!(open(&bob.device, &envelope).unwrap_err(), UnsealError::Decryption);
        assert_eq!(opener.stats(), CacheStats { hits: 0, misses: 1 });
    }

    #[test]
    fn opener_verifies_a_sender_whose_certificates_differ_by_one_byte() {
        let mut rng = ChaCha20Rng::seed_from_u64(23);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let mut opener = Opener::new();
        opener.open(&bob.device, &seal_from(&alice, &bob, b"warm", &mut rng)).unwrap();
        let genuine = sender_bytes(&alice.identity.public(), alice.device.certificate());
        let certificate = identity::PUBLIC_IDENTITY_BYTES;
        let created_at_last_byte = certificate + 1 + 32 + 16 + 32 + 32 + 7;
        for (offset, expected) in [
            // The device certificate's signature, and its creation time.
            (
                certificate + device::CERTIFICATE_BYTES - 1,
                UnsealError::InvalidDeviceCertificate(DeviceError::InvalidSignature),
            ),
            (
                created_at_last_byte,
                UnsealError::InvalidDeviceCertificate(DeviceError::InvalidSignature),
            ),
            // The identity's certificate of its agreement key.
            (certificate - 1, UnsealError::InvalidIdentity(IdentityError::InvalidCertificate)),
        ] {
            let mut claim = genuine.clone();
            claim[offset] ^= 1;
            // Layer 2 under Alice's real device key, which the claim still
            // names: only the verifications can catch the changed byte.
            let envelope = forge(&claim, &alice.device, &bob, b"one byte off", &mut rng);
            assert_eq!(opener.open(&bob.device, &envelope).unwrap_err(), expected);
            assert_eq!(open(&bob.device, &envelope).unwrap_err(), expected);
        }
        assert_eq!(opener.len(), 1);
        assert_eq!(opener.stats(), CacheStats { hits: 0, misses: 1 });
    }

    #[test]
    fn opener_verifies_a_recertified_device_key_as_a_new_sender() {
        let mut rng = ChaCha20Rng::seed_from_u64(24);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let mut opener = Opener::new();
        opener.open(&bob.device, &seal_from(&alice, &bob, b"warm", &mut rng)).unwrap();
        let renewed = User {
            identity: Identity::from_seed(&Seed::from_bytes(&[1; 64]).unwrap()).unwrap(),
            device: recertified(&alice.identity, &alice.device, 1_800_000_000_000, &mut rng),
        };
        // Same device key, hence the same static secret; other certificate bytes.
        assert_eq!(renewed.device.agreement().public(), alice.device.agreement().public());
        assert_ne!(renewed.device.certificate(), alice.device.certificate());
        let envelope = seal_from(&renewed, &bob, b"renewed", &mut rng);
        let opened = opener.open(&bob.device, &envelope).unwrap();
        assert_eq!(opened.sender_device(), renewed.device.certificate());
        assert_eq!(opener.stats(), CacheStats { hits: 0, misses: 2 });
        // Each certificate is served from its own entry.
        let old = opener.open(&bob.device, &seal_from(&alice, &bob, b"old", &mut rng)).unwrap();
        assert_eq!(old.sender_device(), alice.device.certificate());
        let new = opener.open(&bob.device, &seal_from(&renewed, &bob, b"new", &mut rng)).unwrap();
        assert_eq!(new.sender_device(), renewed.device.certificate());
        assert_eq!(opener.stats(), CacheStats { hits: 2, misses: 2 });
    }

    #[test]
    fn opener_forgets_a_revoked_device_and_names_it_on_hits_as_on_misses() {
        let mut rng = ChaCha20Rng::seed_from_u64(25);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let carol = user(3, &mut rng);
        let mut opener = Opener::new();
        opener.open(&bob.device, &seal_from(&carol, &bob, b"carol", &mut rng)).unwrap();
        opener.open(&bob.device, &seal_from(&alice, &bob, b"cold", &mut rng)).unwrap();
        let hit = opener.open(&bob.device, &seal_from(&alice, &bob, b"warm", &mut rng)).unwrap();
        assert_eq!(opener.stats(), CacheStats { hits: 1, misses: 2 });
        // The caller's revocation check sees the revoked device on a hit.
        let revocation = Device::revoke(&alice.identity, alice.device.id(), 1, &mut rng);
        assert_eq!(hit.sender_device().device_id(), revocation.device_id());
        assert_eq!(hit.sender_device().identity(), revocation.identity());

        opener.forget_device(revocation.identity(), revocation.device_id());
        assert_eq!(opener.len(), 1);
        opener.senders.check_invariants();
        // Alice's next envelope goes through the cold path again; Carol's stays warm.
        opener.open(&bob.device, &seal_from(&alice, &bob, b"again", &mut rng)).unwrap();
        opener.open(&bob.device, &seal_from(&carol, &bob, b"carol", &mut rng)).unwrap();
        assert_eq!(opener.stats(), CacheStats { hits: 2, misses: 3 });
        opener.clear();
        assert!(opener.is_empty());
    }

    #[test]
    fn opener_evicts_at_capacity_but_keeps_senders_seen_twice_through_a_flood() {
        let mut rng = ChaCha20Rng::seed_from_u64(26);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let mallory = user(3, &mut rng);
        let mut opener = Opener::new();
        opener.open(&bob.device, &seal_from(&alice, &bob, b"one", &mut rng)).unwrap();
        opener.open(&bob.device, &seal_from(&alice, &bob, b"two", &mut rng)).unwrap();
        // A flood of valid senders, each seen once: Mallory's throwaway devices.
        let flooder = mallory.identity.public();
        let mut first = None;
        for i in 0..MAX_CACHED_SENDERS {
            let device = Device::new(&mallory.identity, i as u64, &mut rng);
            let envelope =
                seal(&flooder, &device, bob.device.agreement().public(), b"spam", &mut rng)
                    .unwrap();
            opener.open(&bob.device, &envelope).unwrap();
            first.get_or_insert(envelope);
        }
        assert_eq!(opener.len(), MAX_CACHED_SENDERS);
        opener.senders.check_invariants();
        let misses = 1 + MAX_CACHED_SENDERS as u64;
        assert_eq!(opener.stats(), CacheStats { hits: 1, misses });
        // Alice stayed warm; the first flooder was evicted and is verified again.
        opener.open(&bob.device, &seal_from(&alice, &bob, b"three", &mut rng)).unwrap();
        assert_eq!(opener.stats(), CacheStats { hits: 2, misses });
        let first = first.unwrap();
        let again = opener.open(&bob.device, &first);
        assert_same(&again, &open(&bob.device, &first));
        assert_eq!(opener.stats(), CacheStats { hits: 2, misses: misses + 1 });
        assert_eq!(opener.len(), MAX_CACHED_SENDERS);
    }

    #[test]
    fn opener_keeps_entries_per_device_of_ours() {
        let mut rng = ChaCha20Rng::seed_from_u64(27);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let bob_laptop = User {
            identity: Identity::from_seed(&Seed::from_bytes(&[2; 64]).unwrap()).unwrap(),
            device: Device::new(&bob.identity, 5, &mut rng),
        };
        let mut opener = Opener::new();
        let to_phone = seal_from(&alice, &bob, b"phone", &mut rng);
        let to_laptop = seal_from(&alice, &bob_laptop, b"laptop", &mut rng);
        assert_eq!(opener.open(&bob.device, &to_phone).unwrap().payload(), b"phone");
        assert_eq!(opener.open(&bob_laptop.device, &to_laptop).unwrap().payload(), b"laptop");
        assert_eq!(opener.stats(), CacheStats { hits: 0, misses: 2 });
        assert_eq!(
            opener.open(&bob_laptop.device, &to_phone).unwrap_err(),
            UnsealError::Decryption
        );
        assert_eq!(opener.open(&bob.device, &to_laptop).unwrap_err(), UnsealError::Decryption);
        assert_eq!(opener.open(&bob.device, &to_phone).unwrap().payload(), b"phone");
        assert_eq!(opener.stats(), CacheStats { hits: 1, misses: 2 });
    }

    #[test]
    fn sealer_warm_and_cold_make_identical_envelopes() {
        let mut rng = ChaCha20Rng::seed_from_u64(28);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let carol = user(3, &mut rng);
        let mut warm_rng = ChaCha20Rng::seed_from_u64(29);
        let mut cold_rng = ChaCha20Rng::seed_from_u64(29);
        let mut sealer = Sealer::new();
        let sender = alice.identity.public();
        for (i, to) in [&bob, &carol, &bob, &carol, &bob].into_iter().enumerate() {
            let recipient = to.device.agreement().public();
            let payload = vec![i as u8; 10 * i];
            let warm =
                sealer.seal(&sender, &alice.device, recipient, &payload, &mut warm_rng).unwrap();
            let cold = seal(&sender, &alice.device, recipient, &payload, &mut cold_rng).unwrap();
            assert_eq!(warm, cold);
            assert_eq!(open(&to.device, &warm).unwrap().payload(), payload);
        }
        assert_eq!(sealer.stats(), CacheStats { hits: 3, misses: 2 });
        assert_eq!(sealer.len(), 2);
        sealer.recipients.check_invariants();
        sealer.clear();
        assert!(sealer.is_empty());
    }

    #[test]
    fn sealer_refuses_what_seal_refuses_and_caches_nothing() {
        let mut rng = ChaCha20Rng::seed_from_u64(30);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let sender = alice.identity.public();
        let recipient = bob.device.agreement().public();
        let weak = agreement::PublicKey::from_bytes([0u8; 32]);
        let oversized = vec![0u8; MAX_SEALED_PAYLOAD_BYTES + 1];
        let mut sealer = Sealer::new();
        for (device, recipient, payload) in [
            (&alice.device, recipient, &oversized[..]),
            (&bob.device, recipient, b"x"),
            (&alice.device, &weak, b"x"),
        ] {
            assert_eq!(
                sealer.seal(&sender, device, recipient, payload, &mut rng).unwrap_err(),
                seal(&sender, device, recipient, payload, &mut rng).unwrap_err()
            );
        }
        assert!(sealer.is_empty());
        assert_eq!(sealer.stats(), CacheStats::default());
    }

    #[test]
    fn sealer_keeps_entries_per_device_of_ours() {
        let mut rng = ChaCha20Rng::seed_from_u64(31);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let alice_laptop = Device::new(&alice.identity, 7, &mut rng);
        let sender = alice.identity.public();
        let recipient = bob.device.agreement().public();
        let mut sealer = Sealer::new();
        let mut opener = Opener::new();
        for _ in 0..2 {
            for device in [&alice.device, &alice_laptop] {
                let envelope = sealer.seal(&sender, device, recipient, b"hi", &mut rng).unwrap();
                let opened = opener.open(&bob.device, &envelope).unwrap();
                assert_eq!(opened.sender_device(), device.certificate());
            }
        }
        assert_eq!(sealer.stats(), CacheStats { hits: 2, misses: 2 });
        assert_eq!(opener.stats(), CacheStats { hits: 2, misses: 2 });
    }

    #[test]
    fn opener_and_sealer_debug_show_only_counts() {
        let mut rng = ChaCha20Rng::seed_from_u64(32);
        let alice = user(1, &mut rng);
        let bob = user(2, &mut rng);
        let mut sealer = Sealer::new();
        let mut opener = Opener::new();
        let envelope = sealer
            .seal(
                &alice.identity.public(),
                &alice.device,
                bob.device.agreement().public(),
                b"x",
                &mut rng,
            )
            .unwrap();
        opener.open(&bob.device, &envelope).unwrap();
        insta::assert_snapshot!(
            format!("{opener:?}"),
            @"Opener { senders: 1, capacity: 1024, stats: CacheStats { hits: 0, misses: 1 }, .. }"
        );
        insta::assert_snapshot!(
            format!("{sealer:?}"),
            @"Sealer { recipients: 1, capacity: 1024, stats: CacheStats { hits: 0, misses: 1 }, .. }"
        );
    }
}
