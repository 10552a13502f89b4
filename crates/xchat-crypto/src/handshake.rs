//! The PQXDH-style handshake that starts a session between two devices
//! (Signal's PQXDH, with X25519 for every Diffie-Hellman and
//! ML-KEM-768 as the KEM; `docs/protocol.md`, "Handshake").
//!
//! The initiator A fetches a [`PreKeyBundle`] of the responder's device B and
//! calls [`initiate`]; it sends the [`Initiation`] (inside a sealed envelope,
//! with its first ratchet message) and starts its ratchet from
//! [`Initiated::keys`] and [`Initiated::their_ratchet_key`]. B decodes an
//! [`UnverifiedInitiation`] and calls [`respond`] with its [`PreKeys`].
//!
//! ```text
//! DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)
//! DH4 = DH(EK_A, OPK_B)   (when the bundle had a one-time prekey)
//! (CT, SS) = ML-KEM-768.Encaps(PQPK_B)
//! transcript_hash = SHA-256(transcript)
//! okm (96) = HKDF-SHA256(salt = HANDSHAKE_SALT,
//!                        ikm  = 0xFF * 32 || DH1 || DH2 || DH3 [|| DH4] || SS,
//!                        info = HANDSHAKE_INFO || transcript_hash)
//! ```
//!
//! `IK` are the identities' certified X25519 agreement keys, `SPK_B` the
//! signed prekey, `OPK_B` the one-time prekey, `PQPK_B` the ML-KEM prekey
//! (one-time or last resort). The transcript (`docs/protocol.md`,
//! "Transcript") binds the suite, both identities and device
//! certificates and every public value the handshake used, so that the two
//! sides agree on keys only if they agree on all of them; it becomes the
//! associated data of every message of the session.
//!
//! # No downgrade
//! The ML-KEM ciphertext and prekey id are mandatory fixed-size fields of the
//! initiation: an initiation without them does not decode. Tampering with
//! them changes `SS` (ML-KEM's implicit rejection) and the transcript, so the
//! responder derives other keys and the session's first message fails to
//! decrypt; there is no classical-only path to fall back to.
//!
//! # Compute, then commit
//! [`respond`] reads [`PreKeys`] but never changes them. It hands back a
//! [`PreKeyUse`] naming the one-time prekeys it used, which the caller passes
//! to [`PreKeys::consume`] only after the first message of the session has
//! decrypted. Anyone who fetched a bundle can forge an initiation (until the
//! first message's AEAD checks, nothing proves the initiator holds the keys it
//! claims); if [`respond`] deleted the one-time prekeys, such forgeries would
//! burn them and push honest initiators onto the last-resort prekeys, and a
//! failed first message would leave the device's state changed.
//!
//! # Replay
//! A replayed initiation is detected by its one-time prekeys: once they are
//! consumed, [`respond`] fails with [`HandshakeError::UnknownPreKey`] (and
//! [`PreKeys::consume`] fails for a duplicate that got that far). An initiation
//! that used only reusable prekeys (no one-time X25519 prekey and the
//! last-resort ML-KEM prekey; see [`PreKeyUse::is_reusable_only`]) cannot be
//! detected that way: the caller keeps the [`UnverifiedInitiation::ephemeral_key`]
//! of each such initiation it accepted, as long as the signed prekey it names
//! is held, and refuses an initiation whose ephemeral key it has seen.

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::agreement;
use crate::bundle::{KemPreKeyKind, PreKeyBundle, PreKeyId, PreKeyUse, PreKeys, read_presence};
use crate::device::{
    CERTIFICATE_BYTES, DEVICE_ID_BYTES, Device, DeviceCertificate, DeviceError, DeviceId,
    UnverifiedDeviceCertificate,
};
use crate::encoding::{DecodeError, Reader, Writer};
use crate::identity::{
    Identity, IdentityError, PUBLIC_IDENTITY_BYTES, PublicIdentity, UnverifiedPublicIdentity,
};
use crate::kdf;
use crate::kem;
use crate::signature::VerifyingKey;
use crate::suite::CipherSuite;

/// Most bytes of an encoded [`Initiation`] (one naming a one-time prekey).
pub const MAX_INITIATION_BYTES: usize = 1
    + PUBLIC_IDENTITY_BYTES
    + CERTIFICATE_BYTES
    + DEVICE_ID_BYTES
    + agreement::KEY_BYTES
    + 4
    + 1
    + 4
    + 4
    + kem::CIPHERTEXT_BYTES;
/// Bytes of HKDF output the handshake derives: root key and two header keys.
const OKM_BYTES: usize = 96;

/// What the handshake hands to the Double Ratchet: the first root key, the
/// two header keys of header encryption, and the hash of the handshake
/// transcript that every message of the session authenticates.
///
/// The initiator sends its first messages under `initiator_header_key`; the
/// responder's first reply uses `responder_header_key` (the "next header key"
/// of the Double Ratchet specification, section 4).
///
/// Two sets of keys compare in constant time ([`ConstantTimeEq`]).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SessionKeys {
    pub(crate) root_key: Zeroizing<[u8; 32]>,
    pub(crate) initiator_header_key: Zeroizing<[u8; 32]>,
    pub(crate) responder_header_key: Zeroizing<[u8; 32]>,
    pub(crate) associated_data: [u8; 32],
}

impl SessionKeys {
    /// Splits 96 bytes of handshake output into the three keys, and binds the
    /// transcript hash.
    pub(crate) fn from_okm(okm: &[u8; 96], associated_data: [u8; 32]) -> Self {
        let mut keys = Self {
            root_key: Zeroizing::new([0u8; 32]),
            initiator_header_key: Zeroizing::new([0u8; 32]),
            responder_header_key: Zeroizing::new([0u8; 32]),
            associated_data,
        };
        keys.root_key.copy_from_slice(&okm[..32]);
        keys.initiator_header_key.copy_from_slice(&okm[32..64]);
        keys.responder_header_key.copy_from_slice(&okm[64..]);
        keys
    }
}

impl ConstantTimeEq for SessionKeys {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.root_key.ct_eq(&*other.root_key)
            & self.initiator_header_key.ct_eq(&*other.initiator_header_key)
            & self.responder_header_key.ct_eq(&*other.responder_header_key)
            & self.associated_data.ct_eq(&other.associated_data)
    }
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

/// What the responder needs to derive the initiator's keys. Made by
/// [`initiate`]; the responder decodes it as an [`UnverifiedInitiation`].
///
/// Layout (`docs/protocol.md`, "Initiation"):
///
/// | bytes | field |
/// |---|---|
/// | 1 | cipher suite (`1`) |
/// | 129 | initiator's public identity ([`PublicIdentity::to_bytes`]) |
/// | 185 | initiator's device certificate ([`DeviceCertificate::to_bytes`]) |
/// | 16 | responder's device id |
/// | 32 | initiator's ephemeral X25519 key `EK_A` |
/// | 4 | signed prekey id |
/// | 1 | one-time prekey present: `0` or `1` |
/// | 0 or 4 | one-time prekey id |
/// | 4 | ML-KEM prekey id |
/// | 1088 | ML-KEM-768 ciphertext |
///
/// The responder's device id is not in Signal's PQXDH: prekey ids are small
/// counters, so the same id names prekeys on every device of a user, and an
/// initiation routed to the wrong device is refused
/// ([`HandshakeError::WrongRecipient`]) rather than yielding unrelated keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initiation {
    initiator: PublicIdentity,
    initiator_device: DeviceCertificate,
    recipient_device: DeviceId,
    ephemeral_key: agreement::PublicKey,
    signed_prekey_id: PreKeyId,
    one_time_prekey_id: Option<PreKeyId>,
    kem_prekey_id: PreKeyId,
    kem_ciphertext: kem::Ciphertext,
}

impl Initiation {
    /// The initiator's identity.
    pub fn initiator(&self) -> &PublicIdentity {
        &self.initiator
    }

    /// The initiator's device certificate.
    pub fn initiator_device(&self) -> &DeviceCertificate {
        &self.initiator_device
    }

    /// The responder's device.
    pub fn recipient_device(&self) -> DeviceId {
        self.recipient_device
    }

    /// The initiator's ephemeral key: unique to this initiation.
    pub fn ephemeral_key(&self) -> &agreement::PublicKey {
        &self.ephemeral_key
    }

    /// The signed prekey used.
    pub fn signed_prekey_id(&self) -> PreKeyId {
        self.signed_prekey_id
    }

    /// The one-time X25519 prekey used, if any.
    pub fn one_time_prekey_id(&self) -> Option<PreKeyId> {
        self.one_time_prekey_id
    }

    /// The ML-KEM prekey used.
    pub fn kem_prekey_id(&self) -> PreKeyId {
        self.kem_prekey_id
    }

    /// Encodes the initiation (layout above).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(MAX_INITIATION_BYTES);
        w.u8(CipherSuite::V1.to_byte());
        self.initiator.write(&mut w);
        self.initiator_device.write(&mut w);
        w.fixed(self.recipient_device.as_bytes())
            .fixed(self.ephemeral_key.as_bytes())
            .u32(self.signed_prekey_id.get());
        match self.one_time_prekey_id {
            None => w.u8(0),
            Some(id) => w.u8(1).u32(id.get()),
        };
        w.u32(self.kem_prekey_id.get()).fixed(self.kem_ciphertext.as_bytes());
        w.into_bytes()
    }
}

/// A decoded initiation whose initiator has not been verified yet; only
/// [`respond`] verifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedInitiation {
    initiator: UnverifiedPublicIdentity,
    initiator_device: UnverifiedDeviceCertificate,
    recipient_device: DeviceId,
    ephemeral_key: agreement::PublicKey,
    signed_prekey_id: PreKeyId,
    one_time_prekey_id: Option<PreKeyId>,
    kem_prekey_id: PreKeyId,
    kem_ciphertext: kem::Ciphertext,
}

impl UnverifiedInitiation {
    /// Decodes the layout of [`Initiation::to_bytes`], refusing input longer
    /// than [`MAX_INITIATION_BYTES`] before reading it. The ML-KEM fields are
    /// mandatory: an initiation without them does not decode.
    ///
    /// # Errors
    /// [`DecodeError`] for a malformed initiation or an unknown suite.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_INITIATION_BYTES {
            return Err(DecodeError::TooLarge { len: bytes.len(), max: MAX_INITIATION_BYTES });
        }
        let mut r = Reader::new(bytes);
        CipherSuite::from_byte(r.u8()?)?;
        let initiator = PublicIdentity::read(&mut r)?;
        let initiator_device = UnverifiedDeviceCertificate::read(&mut r)?;
        let recipient_device = DeviceId::from_bytes(r.array()?);
        let ephemeral_key = agreement::PublicKey::from_bytes(r.array()?);
        let signed_prekey_id = PreKeyId::new(r.u32()?);
        let one_time_prekey_id =
            if read_presence(&mut r)? { Some(PreKeyId::new(r.u32()?)) } else { None };
        let kem_prekey_id = PreKeyId::new(r.u32()?);
        let kem_ciphertext = kem::Ciphertext::from_bytes(&r.array()?);
        r.finish()?;
        Ok(Self {
            initiator,
            initiator_device,
            recipient_device,
            ephemeral_key,
            signed_prekey_id,
            one_time_prekey_id,
            kem_prekey_id,
            kem_ciphertext,
        })
    }

    /// The initiator's ephemeral key: a responder that keeps the keys of the
    /// initiations it accepted refuses a replay of one that used only
    /// reusable prekeys (module documentation, "Replay").
    pub fn ephemeral_key(&self) -> &agreement::PublicKey {
        &self.ephemeral_key
    }

    /// The device the initiation is for.
    pub fn recipient_device(&self) -> DeviceId {
        self.recipient_device
    }

    /// The signed prekey it names.
    pub fn signed_prekey_id(&self) -> PreKeyId {
        self.signed_prekey_id
    }

    /// The one-time X25519 prekey it names, if any.
    pub fn one_time_prekey_id(&self) -> Option<PreKeyId> {
        self.one_time_prekey_id
    }

    /// The ML-KEM prekey it names.
    pub fn kem_prekey_id(&self) -> PreKeyId {
        self.kem_prekey_id
    }
}

/// The initiator's result.
pub struct Initiated {
    /// The keys to start the ratchet with (`ratchet::Session::new_initiator`).
    pub keys: SessionKeys,
    /// The responder's first ratchet key: the bundle's signed prekey.
    pub their_ratchet_key: agreement::PublicKey,
    /// What to send to the responder.
    pub initiation: Initiation,
}

impl std::fmt::Debug for Initiated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiated")
            .field("keys", &self.keys)
            .field("their_ratchet_key", &self.their_ratchet_key)
            .field("initiation", &self.initiation)
            .finish()
    }
}

/// The responder's result.
pub struct Responded {
    /// The keys to start the ratchet with (`ratchet::Session::new_responder`).
    pub keys: SessionKeys,
    /// Our first ratchet key pair: a copy of the signed prekey the initiator
    /// used.
    pub our_ratchet_key: agreement::KeyPair,
    /// The initiator's identity, verified.
    pub their_identity: PublicIdentity,
    /// The initiator's device certificate, verified against their identity.
    /// Whether the device is revoked is the caller's to check.
    pub their_device: DeviceCertificate,
    /// The one-time prekeys to pass to [`PreKeys::consume`] once the first
    /// message of the session has decrypted.
    pub prekey_use: PreKeyUse,
}

impl std::fmt::Debug for Responded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responded")
            .field("keys", &self.keys)
            .field("our_ratchet_key", &self.our_ratchet_key.public())
            .field("their_identity", &self.their_identity)
            .field("their_device", &self.their_device.device_id())
            .field("prekey_use", &self.prekey_use)
            .finish()
    }
}

/// Every public value of one handshake, in the order they are hashed.
struct Transcript<'a> {
    initiator: &'a PublicIdentity,
    responder: &'a PublicIdentity,
    initiator_device: &'a DeviceCertificate,
    responder_device: &'a DeviceCertificate,
    ephemeral_key: &'a agreement::PublicKey,
    signed_prekey: (PreKeyId, &'a agreement::PublicKey),
    one_time_prekey: Option<(PreKeyId, &'a agreement::PublicKey)>,
    kem_prekey: (PreKeyId, KemPreKeyKind, &'a kem::PublicKey),
    kem_ciphertext: &'a kem::Ciphertext,
}

/// Bytes of the longest transcript encoding.
const MAX_TRANSCRIPT_BYTES: usize = 1
    + 2 * PUBLIC_IDENTITY_BYTES
    + 2 * CERTIFICATE_BYTES
    + agreement::KEY_BYTES
    + (4 + agreement::KEY_BYTES)
    + (1 + 4 + agreement::KEY_BYTES)
    + (1 + 4 + kem::PUBLIC_KEY_BYTES)
    + kem::CIPHERTEXT_BYTES;

impl Transcript<'_> {
    /// `SHA-256(HANDSHAKE_TRANSCRIPT || encoding)`, the encoding being
    /// (every field fixed-size, so the concatenation is unambiguous):
    ///
    /// | bytes | field |
    /// |---|---|
    /// | 1 | cipher suite (`1`) |
    /// | 129 | initiator's public identity |
    /// | 129 | responder's public identity |
    /// | 185 | initiator's device certificate |
    /// | 185 | responder's device certificate |
    /// | 32 | `EK_A` |
    /// | 4 + 32 | signed prekey id, `SPK_B` |
    /// | 1 | `0`: no one-time prekey, or `1`: |
    /// | 0 or 4 + 32 | one-time prekey id, `OPK_B` |
    /// | 1 + 4 + 1184 | ML-KEM prekey kind (`3` one-time, `4` last resort), id, key |
    /// | 1088 | ML-KEM ciphertext |
    fn hash(&self) -> [u8; 32] {
        let mut w = Writer::with_capacity(MAX_TRANSCRIPT_BYTES);
        w.u8(CipherSuite::V1.to_byte());
        self.initiator.write(&mut w);
        self.responder.write(&mut w);
        self.initiator_device.write(&mut w);
        self.responder_device.write(&mut w);
        w.fixed(self.ephemeral_key.as_bytes())
            .u32(self.signed_prekey.0.get())
            .fixed(self.signed_prekey.1.as_bytes());
        match self.one_time_prekey {
            None => w.u8(0),
            Some((id, key)) => w.u8(1).u32(id.get()).fixed(key.as_bytes()),
        };
        let (kem_id, kem_kind, kem_key) = self.kem_prekey;
        w.u8(kem_kind.to_byte())
            .u32(kem_id.get())
            .fixed(kem_key.as_bytes())
            .fixed(self.kem_ciphertext.as_bytes());
        kdf::sha256(&[kdf::HANDSHAKE_TRANSCRIPT, &w.into_bytes()])
    }
}

fn diffie_hellman(
    ours: &agreement::SecretKey,
    theirs: &agreement::PublicKey,
) -> Result<agreement::SharedSecret, HandshakeError> {
    ours.diffie_hellman(theirs)
        .map_err(|agreement::AgreementError::WeakKey| HandshakeError::WeakKey)
}

/// `okm = HKDF-SHA256(HANDSHAKE_SALT, 0xFF * 32 || DH1 || DH2 || DH3 [|| DH4]
/// || SS, HANDSHAKE_INFO || transcript_hash)`, split into [`SessionKeys`].
fn derive_session_keys(
    dh: &[&agreement::SharedSecret],
    kem_secret: &kem::SharedSecret,
    transcript_hash: [u8; 32],
) -> SessionKeys {
    // Exact capacity: the buffer never grows, so no copy of the secrets is
    // left in a freed allocation.
    let mut ikm = Zeroizing::new(Vec::with_capacity(
        kdf::HANDSHAKE_IKM_PREFIX.len()
            + dh.len() * agreement::KEY_BYTES
            + kem::SHARED_SECRET_BYTES,
    ));
    ikm.extend_from_slice(&kdf::HANDSHAKE_IKM_PREFIX);
    for secret in dh {
        ikm.extend_from_slice(secret.as_bytes());
    }
    ikm.extend_from_slice(kem_secret.as_bytes());
    let mut okm = Zeroizing::new([0u8; OKM_BYTES]);
    // 96 bytes is far below HKDF-SHA256's 8160-byte limit.
    #[allow(clippy::expect_used)]
    kdf::hkdf_sha256(
        kdf::HANDSHAKE_SALT,
        &ikm,
        &[kdf::HANDSHAKE_INFO, &transcript_hash],
        okm.as_mut(),
    )
    .expect("96 bytes is a valid HKDF output length");
    SessionKeys::from_okm(&okm, transcript_hash)
}

fn check_device_of(identity: &Identity, device: &Device) -> Result<(), HandshakeError> {
    if *device.certificate().identity() != identity.signing_key().verifying_key() {
        return Err(HandshakeError::Internal("device of another identity"));
    }
    Ok(())
}

/// Starts a session with the device of `their` bundle (verified by
/// [`crate::bundle::UnverifiedPreKeyBundle::verify`]).
///
/// # Errors
/// [`HandshakeError::WeakKey`] when a key of the bundle is a low-order
/// point; [`HandshakeError::Internal`] when `our_device` is not certified by
/// `our_identity`.
pub fn initiate(
    our_identity: &Identity,
    our_device: &Device,
    their: &PreKeyBundle,
    rng: &mut impl CryptoRng,
) -> Result<Initiated, HandshakeError> {
    check_device_of(our_identity, our_device)?;
    let ephemeral = agreement::KeyPair::generate(rng);
    let signed_prekey = their.signed_prekey();
    let dh1 = diffie_hellman(our_identity.agreement().secret(), signed_prekey.key())?;
    let dh2 = diffie_hellman(ephemeral.secret(), their.identity().agreement_key())?;
    let dh3 = diffie_hellman(ephemeral.secret(), signed_prekey.key())?;
    let dh4 = their
        .one_time_prekey()
        .map(|prekey| diffie_hellman(ephemeral.secret(), prekey.key()))
        .transpose()?;
    let kem_prekey = their.kem_prekey();
    let (kem_ciphertext, kem_secret) = kem_prekey.key().encapsulate(rng);

    let our_public = our_identity.public();
    let transcript_hash = Transcript {
        initiator: &our_public,
        responder: their.identity(),
        initiator_device: our_device.certificate(),
        responder_device: their.device(),
        ephemeral_key: ephemeral.public(),
        signed_prekey: (signed_prekey.id(), signed_prekey.key()),
        one_time_prekey: their.one_time_prekey().map(|prekey| (prekey.id(), prekey.key())),
        kem_prekey: (kem_prekey.id(), kem_prekey.kind(), kem_prekey.key()),
        kem_ciphertext: &kem_ciphertext,
    }
    .hash();
    let mut dh = vec![&dh1, &dh2, &dh3];
    dh.extend(dh4.as_ref());
    let keys = derive_session_keys(&dh, &kem_secret, transcript_hash);

    Ok(Initiated {
        keys,
        their_ratchet_key: *signed_prekey.key(),
        initiation: Initiation {
            initiator: our_public,
            initiator_device: *our_device.certificate(),
            recipient_device: their.device().device_id(),
            ephemeral_key: *ephemeral.public(),
            signed_prekey_id: signed_prekey.id(),
            one_time_prekey_id: their.one_time_prekey().map(|prekey| prekey.id()),
            kem_prekey_id: kem_prekey.id(),
            kem_ciphertext,
        },
    })
}

/// Answers an initiation: verifies the initiator, finds the prekeys it names
/// and derives the initiator's keys. `prekeys` is not changed (module
/// documentation, "Compute, then commit"): pass [`Responded::prekey_use`] to
/// [`PreKeys::consume`] once the session's first message has decrypted.
///
/// `expected_initiator` is the identity the caller already knows for this
/// contact, if any.
///
/// # Errors
/// [`HandshakeError::WrongRecipient`] for an initiation to another device;
/// [`HandshakeError::InvalidIdentity`] and
/// [`HandshakeError::InvalidDeviceCertificate`] for an initiator that does
/// not verify; [`HandshakeError::ChangedIdentity`] for a verified initiator
/// other than `expected_initiator`; [`HandshakeError::UnknownPreKey`] for a
/// prekey not held (never made, consumed, or retired past its grace period);
/// [`HandshakeError::WeakKey`] for a low-order key; [`HandshakeError::Internal`]
/// when `our_device` or `prekeys` are not `our_identity`'s.
pub fn respond(
    our_identity: &Identity,
    our_device: &Device,
    prekeys: &PreKeys,
    initiation: UnverifiedInitiation,
    expected_initiator: Option<&VerifyingKey>,
) -> Result<Responded, HandshakeError> {
    check_device_of(our_identity, our_device)?;
    if prekeys.device_id() != our_device.id() {
        return Err(HandshakeError::Internal("prekeys of another device"));
    }
    if initiation.recipient_device != our_device.id() {
        return Err(HandshakeError::WrongRecipient);
    }
    let their_identity = initiation.initiator.verify().map_err(HandshakeError::InvalidIdentity)?;
    let their_device = initiation
        .initiator_device
        .verify(their_identity.signing_key())
        .map_err(HandshakeError::InvalidDeviceCertificate)?;
    if expected_initiator.is_some_and(|expected| expected != their_identity.signing_key()) {
        return Err(HandshakeError::ChangedIdentity);
    }

    let signed_prekey =
        prekeys.find_signed(initiation.signed_prekey_id).ok_or(HandshakeError::UnknownPreKey)?;
    let one_time_prekey = initiation
        .one_time_prekey_id
        .map(|id| prekeys.find_one_time(id).ok_or(HandshakeError::UnknownPreKey))
        .transpose()?;
    let (kem_prekey, kem_kind) =
        prekeys.find_kem(initiation.kem_prekey_id).ok_or(HandshakeError::UnknownPreKey)?;

    let ephemeral_key = &initiation.ephemeral_key;
    let dh1 = diffie_hellman(signed_prekey.secret(), their_identity.agreement_key())?;
    let dh2 = diffie_hellman(our_identity.agreement().secret(), ephemeral_key)?;
    let dh3 = diffie_hellman(signed_prekey.secret(), ephemeral_key)?;
    let dh4 =
        one_time_prekey.map(|prekey| diffie_hellman(prekey.secret(), ephemeral_key)).transpose()?;
    let kem_secret = kem_prekey.secret().decapsulate(&initiation.kem_ciphertext);

    let our_public = our_identity.public();
    let transcript_hash = Transcript {
        initiator: &their_identity,
        responder: &our_public,
        initiator_device: &their_device,
        responder_device: our_device.certificate(),
        ephemeral_key,
        signed_prekey: (initiation.signed_prekey_id, signed_prekey.public()),
        one_time_prekey: initiation
            .one_time_prekey_id
            .zip(one_time_prekey.map(agreement::KeyPair::public)),
        kem_prekey: (initiation.kem_prekey_id, kem_kind, kem_prekey.public()),
        kem_ciphertext: &initiation.kem_ciphertext,
    }
    .hash();
    let mut dh = vec![&dh1, &dh2, &dh3];
    dh.extend(dh4.as_ref());
    let keys = derive_session_keys(&dh, &kem_secret, transcript_hash);

    let our_ratchet_key = agreement::KeyPair::from_secret(agreement::SecretKey::from_bytes(
        &signed_prekey.secret().to_bytes(),
    ));
    let prekey_use = PreKeyUse::new(
        our_device.id(),
        initiation.one_time_prekey_id,
        (kem_kind == KemPreKeyKind::OneTime).then_some(initiation.kem_prekey_id),
    );
    Ok(Responded { keys, our_ratchet_key, their_identity, their_device, prekey_use })
}

/// Why a handshake failed. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A malformed initiation.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The initiator's identity key is invalid or its agreement-key
    /// certificate does not verify.
    #[error("invalid initiator identity")]
    InvalidIdentity(#[source] IdentityError),
    /// The initiator's device certificate is not its identity's.
    #[error("invalid initiator device certificate")]
    InvalidDeviceCertificate(#[source] DeviceError),
    /// A verified initiator other than the identity the caller knows for
    /// this contact: their key changed, which the user must see.
    #[error("the contact's identity key changed")]
    ChangedIdentity,
    /// The initiation is for another device.
    #[error("initiation for another device")]
    WrongRecipient,
    /// A prekey the initiation names is not held: never made, already
    /// consumed (a replay), or retired past its grace period.
    #[error("unknown prekey")]
    UnknownPreKey,
    /// A low-order X25519 key: the agreement would contribute nothing.
    #[error("weak x25519 key")]
    WeakKey,
    /// The caller passed keys that do not belong together.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::UnverifiedPreKeyBundle;
    use crate::phrase::Seed;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const NOW: u64 = 1_700_000_000_000;

    struct Party {
        identity: Identity,
        device: Device,
        prekeys: PreKeys,
    }

    fn party(seed: u8, rng: &mut ChaCha20Rng) -> Party {
        let identity = Identity::from_seed(&Seed::from_bytes(&[seed; 64]).unwrap()).unwrap();
        let device = Device::new(&identity, NOW, rng);
        let mut prekeys = PreKeys::new(&device, NOW, rng);
        prekeys.generate_one_time_prekeys(&device, 2, rng).unwrap();
        Party { identity, device, prekeys }
    }

    fn full_bundle(party: &Party) -> PreKeyBundle {
        let bytes = party
            .prekeys
            .publication(&party.identity.public(), &party.device)
            .unwrap()
            .take_bundle()
            .to_bytes();
        UnverifiedPreKeyBundle::from_bytes(&bytes).unwrap().verify(None).unwrap()
    }

    fn same(a: &SessionKeys, b: &SessionKeys) -> bool {
        bool::from(a.ct_eq(b))
    }

    #[test]
    fn both_sides_derive_the_same_keys_and_ratchet_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let alice = party(1, &mut rng);
        let bob = party(2, &mut rng);
        let bundle = full_bundle(&bob);
        let initiated = initiate(&alice.identity, &alice.device, &bundle, &mut rng).unwrap();
        let initiation =
            UnverifiedInitiation::from_bytes(&initiated.initiation.to_bytes()).unwrap();
        let responded =
            respond(&bob.identity, &bob.device, &bob.prekeys, initiation, None).unwrap();
        assert!(same(&initiated.keys, &responded.keys));
        assert_eq!(&initiated.their_ratchet_key, responded.our_ratchet_key.public());
        assert_eq!(&initiated.their_ratchet_key, bundle.signed_prekey().key());
        assert_eq!(responded.their_identity, alice.identity.public());
        assert_eq!(&responded.their_device, alice.device.certificate());
        // The three keys are distinct, and none is the transcript hash.
        let keys = &responded.keys;
        assert_ne!(*keys.root_key, *keys.initiator_header_key);
        assert_ne!(*keys.root_key, *keys.responder_header_key);
        assert_ne!(*keys.initiator_header_key, *keys.responder_header_key);
        assert_ne!(*keys.root_key, keys.associated_data);
    }

    #[test]
    fn respond_does_not_change_prekeys() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let alice = party(1, &mut rng);
        let bob = party(2, &mut rng);
        let before = bob.prekeys.to_record();
        let initiated =
            initiate(&alice.identity, &alice.device, &full_bundle(&bob), &mut rng).unwrap();
        let bytes = initiated.initiation.to_bytes();
        let responded = respond(
            &bob.identity,
            &bob.device,
            &bob.prekeys,
            UnverifiedInitiation::from_bytes(&bytes).unwrap(),
            None,
        )
        .unwrap();
        assert!(!responded.prekey_use.is_reusable_only());
        assert_eq!(bob.prekeys.to_record(), before);
    }

    #[test]
    fn the_transcript_hash_is_the_sessions_associated_data() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let alice = party(1, &mut rng);
        let bob = party(2, &mut rng);
        let a = initiate(&alice.identity, &alice.device, &full_bundle(&bob), &mut rng).unwrap();
        let b = initiate(&alice.identity, &alice.device, &full_bundle(&bob), &mut rng).unwrap();
        // Each handshake has its own transcript (fresh EK_A and ciphertext).
        assert_ne!(a.keys.associated_data, b.keys.associated_data);
        assert!(!same(&a.keys, &b.keys));
    }

    /// Recomputes the responder's keys from the documented derivation
    /// (`docs/protocol.md`, "Handshake"), with the labels spelled out, so that
    /// leaving out any input (the ML-KEM secret above all, which the
    /// transcript alone would not reveal) or changing a label fails here.
    #[test]
    fn keys_follow_the_documented_derivation() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let alice = party(1, &mut rng);
        let bob = party(2, &mut rng);
        let initiated =
            initiate(&alice.identity, &alice.device, &full_bundle(&bob), &mut rng).unwrap();
        let init = &initiated.initiation;
        let spk = bob.prekeys.find_signed(init.signed_prekey_id).unwrap();
        let opk_id = init.one_time_prekey_id.unwrap();
        let opk = bob.prekeys.find_one_time(opk_id).unwrap();
        let (pqpk, kind) = bob.prekeys.find_kem(init.kem_prekey_id).unwrap();
        assert_eq!(kind, KemPreKeyKind::OneTime);
        let ek = init.ephemeral_key;
        let alice_public = alice.identity.public();

        let mut transcript = b"xchat/v1/handshake/transcript".to_vec();
        transcript.push(1);
        transcript.extend_from_slice(&alice_public.to_bytes());
        transcript.extend_from_slice(&bob.identity.public().to_bytes());
        transcript.extend_from_slice(&alice.device.certificate().to_bytes());
        transcript.extend_from_slice(&bob.device.certificate().to_bytes());
        transcript.extend_from_slice(ek.as_bytes());
        transcript.extend_from_slice(&init.signed_prekey_id.get().to_be_bytes());
        transcript.extend_from_slice(spk.public().as_bytes());
        transcript.push(1);
        transcript.extend_from_slice(&opk_id.get().to_be_bytes());
        transcript.extend_from_slice(opk.public().as_bytes());
        transcript.push(3);
        transcript.extend_from_slice(&init.kem_prekey_id.get().to_be_bytes());
        transcript.extend_from_slice(pqpk.public().as_bytes());
        transcript.extend_from_slice(init.kem_ciphertext.as_bytes());
        assert_eq!(transcript.len(), b"xchat/v1/handshake/transcript".len() + MAX_TRANSCRIPT_BYTES);
        let transcript_hash = kdf::sha256(&[&transcript]);

        let mut ikm = vec![0xFF; 32];
        for dh in [
            spk.secret().diffie_hellman(alice_public.agreement_key()),
            bob.identity.agreement().secret().diffie_hellman(&ek),
            spk.secret().diffie_hellman(&ek),
            opk.secret().diffie_hellman(&ek),
        ] {
            ikm.extend_from_slice(dh.unwrap().as_bytes());
        }
        ikm.extend_from_slice(pqpk.secret().decapsulate(&init.kem_ciphertext).as_bytes());
        let mut okm = [0u8; 96];
        kdf::hkdf_sha256(
            b"xchat/v1/handshake/salt",
            &ikm,
            &[b"xchat/v1/handshake", &transcript_hash],
            &mut okm,
        )
        .unwrap();

        let keys = &initiated.keys;
        assert_eq!(keys.associated_data, transcript_hash);
        assert_eq!(*keys.root_key, okm[..32]);
        assert_eq!(*keys.initiator_header_key, okm[32..64]);
        assert_eq!(*keys.responder_header_key, okm[64..]);
    }

    #[test]
    fn kdf_sha256_matches_the_fips_180_vector() {
        // FIPS 180-2, appendix B.1: SHA-256("abc"), here fed in two parts.
        assert_eq!(
            hex::encode(kdf::sha256(&[b"a", b"bc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn debug_of_handshake_results_is_redacted() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let alice = party(1, &mut rng);
        let bob = party(2, &mut rng);
        let initiated =
            initiate(&alice.identity, &alice.device, &full_bundle(&bob), &mut rng).unwrap();
        let responded = respond(
            &bob.identity,
            &bob.device,
            &bob.prekeys,
            UnverifiedInitiation::from_bytes(&initiated.initiation.to_bytes()).unwrap(),
            None,
        )
        .unwrap();
        insta::assert_snapshot!(
            format!("{responded:?}"),
            @"Responded { keys: SessionKeys(<redacted>), our_ratchet_key: agreement::PublicKey(9594dc61), their_identity: PublicIdentity(a755e222), their_device: DeviceId(07462f8d), prekey_use: PreKeyUse { device: DeviceId(5c02bd8e), one_time: Some(PreKeyId(3)), kem_one_time: Some(PreKeyId(4)) } }"
        );
        let initiated = format!("{initiated:?}");
        assert!(initiated.starts_with("Initiated { keys: SessionKeys(<redacted>)"));
    }
}
