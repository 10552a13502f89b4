//! Prekeys and prekey bundles: what a device publishes so that others can
//! start a session with it while it is offline ([`crate::handshake`]).
//!
//! Trust runs in a chain: the identity signs the device certificate
//! ([`DeviceCertificate`]), the certificate holds the device's BIP340 key, and
//! the device key signs every prekey. So every prekey is, through its device,
//! signed by the identity, yet a phone can make prekeys without the identity
//! key being online.
//!
//! A device holds ([`PreKeys`]):
//! - a signed X25519 prekey, rotated every [`SIGNED_PREKEY_ROTATION_PERIOD_MS`],
//!   and the one it replaced, kept [`SIGNED_PREKEY_GRACE_PERIOD_MS`] so that
//!   initiations made from an older bundle still complete;
//! - a last-resort ML-KEM-768 prekey, rotated with the signed prekey, for when
//!   the one-time ML-KEM prekeys run out;
//! - up to [`MAX_ONE_TIME_PREKEYS`] one-time X25519 prekeys and as many
//!   one-time ML-KEM-768 prekeys, each used by one handshake only.
//!
//! Each signature is BIP340 by the device key over
//! `context || device id (16) || prekey id (4) || kind (1) || public key`, the
//! context being [`kdf::SIG_SIGNED_PREKEY`], [`kdf::SIG_ONE_TIME_PREKEY`] or
//! [`kdf::SIG_KEM_PREKEY`] and the kind byte telling a one-time ML-KEM prekey
//! from a last-resort one. Prekeys are signed one by one so that a node
//! handing them out ([`PreKeyPublication::take_bundle`]) can put any of them
//! in a bundle without being able to forge one.
//!
//! Prekey ids are drawn from one counter per device and never reused, so an
//! id names one key of one kind for the device's whole life.
//!
//! Byte layouts: `docs/protocol.md`, section "Prekey bundles".

use rand_core::CryptoRng;

use crate::agreement;
use crate::device::{
    CERTIFICATE_BYTES, DEVICE_ID_BYTES, Device, DeviceCertificate, DeviceError, DeviceId,
    UnverifiedDeviceCertificate,
};
use crate::encoding::{DecodeError, Reader, Writer};
use crate::identity::{
    IdentityError, PUBLIC_IDENTITY_BYTES, PublicIdentity, UnverifiedPublicIdentity,
};
use crate::kdf;
use crate::kem;
use crate::signature::{SIGNATURE_BYTES, Signature, VerifyingKey};
use crate::suite::CipherSuite;

mod prekeys;

pub use prekeys::{
    MAX_PREKEYS_RECORD_BYTES, ONE_TIME_PREKEY_REPLENISH_BELOW, PreKeyError, PreKeyUse, PreKeys,
    SIGNED_PREKEY_GRACE_PERIOD_MS, SIGNED_PREKEY_ROTATION_PERIOD_MS,
};

/// Most one-time prekeys of each kind (X25519, ML-KEM-768) a device holds and
/// publishes, in keys.
pub const MAX_ONE_TIME_PREKEYS: usize = 100;
/// Bytes of an encoded X25519 prekey: id (4), key (32), signature (64).
pub const X25519_PREKEY_BYTES: usize = 4 + agreement::KEY_BYTES + SIGNATURE_BYTES;
/// Bytes of an encoded ML-KEM prekey: kind (1), id (4), key (1184), signature (64).
pub const KEM_PREKEY_BYTES: usize = 1 + 4 + kem::PUBLIC_KEY_BYTES + SIGNATURE_BYTES;
/// Most bytes of an encoded [`PreKeyBundle`] (one with a one-time prekey).
pub const MAX_BUNDLE_BYTES: usize = 1
    + PUBLIC_IDENTITY_BYTES
    + CERTIFICATE_BYTES
    + X25519_PREKEY_BYTES
    + 1
    + X25519_PREKEY_BYTES
    + KEM_PREKEY_BYTES;
/// Most bytes of an encoded [`PreKeyPublication`] (one with
/// [`MAX_ONE_TIME_PREKEYS`] prekeys of each kind).
pub const MAX_PUBLICATION_BYTES: usize = 1
    + PUBLIC_IDENTITY_BYTES
    + CERTIFICATE_BYTES
    + X25519_PREKEY_BYTES
    + KEM_PREKEY_BYTES
    + 4
    + MAX_ONE_TIME_PREKEYS * X25519_PREKEY_BYTES
    + 4
    + MAX_ONE_TIME_PREKEYS * KEM_PREKEY_BYTES;

/// The id of one prekey of one device. Ids are never reused by a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PreKeyId(u32);

impl PreKeyId {
    /// Wraps an id.
    pub const fn new(id: u32) -> Self {
        Self(id)
    }

    /// The id as an integer.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// What a prekey is for: the byte each prekey signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreKeyKind {
    Signed,
    OneTime,
    Kem(KemPreKeyKind),
}

impl PreKeyKind {
    const fn to_byte(self) -> u8 {
        match self {
            Self::Signed => 1,
            Self::OneTime => 2,
            Self::Kem(kind) => kind.to_byte(),
        }
    }

    const fn context(self) -> &'static [u8] {
        match self {
            Self::Signed => kdf::SIG_SIGNED_PREKEY,
            Self::OneTime => kdf::SIG_ONE_TIME_PREKEY,
            Self::Kem(_) => kdf::SIG_KEM_PREKEY,
        }
    }
}

/// Whether an ML-KEM prekey is used once or is the reusable last resort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KemPreKeyKind {
    /// Used by one handshake, then deleted.
    OneTime,
    /// Used when no one-time ML-KEM prekey is left; replaced at rotation.
    LastResort,
}

impl KemPreKeyKind {
    /// The kind's byte in encodings and signatures.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::OneTime => 3,
            Self::LastResort => 4,
        }
    }

    const fn from_byte(byte: u8) -> Result<Self, DecodeError> {
        match byte {
            3 => Ok(Self::OneTime),
            4 => Ok(Self::LastResort),
            _ => Err(DecodeError::Invalid("kem prekey kind")),
        }
    }
}

/// The bytes a device signs for one prekey:
/// `device id (16) || prekey id (4) || kind (1) || public key`.
fn prekey_message(device: DeviceId, id: PreKeyId, kind: PreKeyKind, key: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(DEVICE_ID_BYTES + 4 + 1 + key.len());
    w.fixed(device.as_bytes()).u32(id.0).u8(kind.to_byte()).fixed(key);
    w.into_bytes()
}

fn sign_prekey(
    device: &Device,
    id: PreKeyId,
    kind: PreKeyKind,
    key: &[u8],
    rng: &mut impl CryptoRng,
) -> Signature {
    device.signing_key().sign(kind.context(), &prekey_message(device.id(), id, kind, key), rng)
}

fn verify_prekey(
    device: &DeviceCertificate,
    id: PreKeyId,
    kind: PreKeyKind,
    key: &[u8],
    signature: &Signature,
) -> Result<(), BundleError> {
    device
        .signing_key()
        .verify(kind.context(), &prekey_message(device.device_id(), id, kind, key), signature)
        .map_err(|_| BundleError::InvalidPreKeySignature { id: id.0 })
}

/// Reads the presence byte of an optional field: `0` absent, `1` present.
pub(crate) fn read_presence(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Invalid("presence flag")),
    }
}

/// A public X25519 prekey (signed or one-time) with its device signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct X25519PreKey {
    id: PreKeyId,
    key: agreement::PublicKey,
    signature: Signature,
}

impl X25519PreKey {
    /// The prekey's id.
    pub fn id(&self) -> PreKeyId {
        self.id
    }

    /// The public key.
    pub fn key(&self) -> &agreement::PublicKey {
        &self.key
    }

    /// `id (4) || key (32) || signature (64)`.
    fn write(&self, w: &mut Writer) {
        w.u32(self.id.0).fixed(self.key.as_bytes()).fixed(self.signature.as_bytes());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UnverifiedX25519PreKey {
    id: u32,
    key: [u8; agreement::KEY_BYTES],
    signature: [u8; SIGNATURE_BYTES],
}

impl UnverifiedX25519PreKey {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self { id: r.u32()?, key: r.array()?, signature: r.array()? })
    }

    fn verify(
        self,
        device: &DeviceCertificate,
        kind: PreKeyKind,
    ) -> Result<X25519PreKey, BundleError> {
        let prekey = X25519PreKey {
            id: PreKeyId(self.id),
            key: agreement::PublicKey::from_bytes(self.key),
            signature: Signature::from_bytes(self.signature),
        };
        verify_prekey(device, prekey.id, kind, &self.key, &prekey.signature)?;
        Ok(prekey)
    }
}

/// A public ML-KEM-768 prekey with its kind and device signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KemPreKey {
    id: PreKeyId,
    kind: KemPreKeyKind,
    key: kem::PublicKey,
    signature: Signature,
}

impl KemPreKey {
    /// The prekey's id.
    pub fn id(&self) -> PreKeyId {
        self.id
    }

    /// One-time or last resort.
    pub fn kind(&self) -> KemPreKeyKind {
        self.kind
    }

    /// The encapsulation key (its encoding checked).
    pub fn key(&self) -> &kem::PublicKey {
        &self.key
    }

    /// `kind (1) || id (4) || key (1184) || signature (64)`.
    fn write(&self, w: &mut Writer) {
        w.u8(self.kind.to_byte())
            .u32(self.id.0)
            .fixed(self.key.as_bytes())
            .fixed(self.signature.as_bytes());
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct UnverifiedKemPreKey {
    kind: KemPreKeyKind,
    id: u32,
    key: Box<[u8; kem::PUBLIC_KEY_BYTES]>,
    signature: [u8; SIGNATURE_BYTES],
}

impl UnverifiedKemPreKey {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            kind: KemPreKeyKind::from_byte(r.u8()?)?,
            id: r.u32()?,
            key: Box::new(r.array()?),
            signature: r.array()?,
        })
    }

    /// Reads a prekey that must be of `kind`.
    fn read_kind(r: &mut Reader<'_>, kind: KemPreKeyKind) -> Result<Self, DecodeError> {
        let prekey = Self::read(r)?;
        if prekey.kind != kind {
            return Err(DecodeError::Invalid("kem prekey kind"));
        }
        Ok(prekey)
    }

    fn verify(self, device: &DeviceCertificate) -> Result<KemPreKey, BundleError> {
        let id = PreKeyId(self.id);
        let signature = Signature::from_bytes(self.signature);
        // The signature first: a key the device did not sign is refused as
        // such, whatever its encoding.
        verify_prekey(device, id, PreKeyKind::Kem(self.kind), self.key.as_ref(), &signature)?;
        let key = kem::PublicKey::from_bytes(&self.key).map_err(|_| BundleError::InvalidKemKey)?;
        Ok(KemPreKey { id, kind: self.kind, key, signature })
    }
}

/// Checks the identity's agreement-key certificate and the device
/// certificate against it.
fn verify_owner(
    identity: UnverifiedPublicIdentity,
    device: UnverifiedDeviceCertificate,
) -> Result<(PublicIdentity, DeviceCertificate), BundleError> {
    let identity = identity.verify().map_err(BundleError::InvalidIdentity)?;
    let device =
        device.verify(identity.signing_key()).map_err(BundleError::InvalidDeviceCertificate)?;
    Ok((identity, device))
}

/// Refuses a verified identity other than the one the caller knows.
fn check_expected(
    identity: &PublicIdentity,
    expected: Option<&VerifyingKey>,
) -> Result<(), BundleError> {
    match expected {
        Some(expected) if expected != identity.signing_key() => Err(BundleError::ChangedIdentity),
        _ => Ok(()),
    }
}

/// What an initiator needs to start a session with one device: verified.
///
/// Layout (`docs/protocol.md`, "Prekey bundles"):
///
/// | bytes | field |
/// |---|---|
/// | 1 | cipher suite (`1`) |
/// | 129 | public identity ([`PublicIdentity::to_bytes`]) |
/// | 185 | device certificate ([`DeviceCertificate::to_bytes`]) |
/// | 100 | signed prekey: id (4), X25519 key (32), signature (64) |
/// | 1 | one-time prekey present: `0` or `1` |
/// | 0 or 100 | one-time prekey: id (4), X25519 key (32), signature (64) |
/// | 1253 | ML-KEM prekey: kind (1: `3` one-time, `4` last resort), id (4), key (1184), signature (64) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeyBundle {
    identity: PublicIdentity,
    device: DeviceCertificate,
    signed_prekey: X25519PreKey,
    one_time_prekey: Option<X25519PreKey>,
    kem_prekey: KemPreKey,
}

impl PreKeyBundle {
    /// The device's identity.
    pub fn identity(&self) -> &PublicIdentity {
        &self.identity
    }

    /// The identity's certificate of the device.
    pub fn device(&self) -> &DeviceCertificate {
        &self.device
    }

    /// The signed prekey: the responder's first ratchet key too.
    pub fn signed_prekey(&self) -> &X25519PreKey {
        &self.signed_prekey
    }

    /// The one-time X25519 prekey, if one was left.
    pub fn one_time_prekey(&self) -> Option<&X25519PreKey> {
        self.one_time_prekey.as_ref()
    }

    /// The ML-KEM-768 prekey, one-time or last resort.
    pub fn kem_prekey(&self) -> &KemPreKey {
        &self.kem_prekey
    }

    /// Encodes the bundle (layout above).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(MAX_BUNDLE_BYTES);
        w.u8(CipherSuite::V1.to_byte());
        self.identity.write(&mut w);
        self.device.write(&mut w);
        self.signed_prekey.write(&mut w);
        match &self.one_time_prekey {
            None => {
                w.u8(0);
            }
            Some(prekey) => {
                w.u8(1);
                prekey.write(&mut w);
            }
        }
        self.kem_prekey.write(&mut w);
        w.into_bytes()
    }
}

/// A decoded prekey bundle whose signatures have not been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedPreKeyBundle {
    identity: UnverifiedPublicIdentity,
    device: UnverifiedDeviceCertificate,
    signed_prekey: UnverifiedX25519PreKey,
    one_time_prekey: Option<UnverifiedX25519PreKey>,
    kem_prekey: UnverifiedKemPreKey,
}

impl UnverifiedPreKeyBundle {
    /// Decodes the layout of [`PreKeyBundle::to_bytes`], refusing input longer
    /// than [`MAX_BUNDLE_BYTES`] before reading it.
    ///
    /// # Errors
    /// [`DecodeError`] for a malformed bundle or an unknown suite.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(DecodeError::TooLarge { len: bytes.len(), max: MAX_BUNDLE_BYTES });
        }
        let mut r = Reader::new(bytes);
        CipherSuite::from_byte(r.u8()?)?;
        let identity = PublicIdentity::read(&mut r)?;
        let device = UnverifiedDeviceCertificate::read(&mut r)?;
        let signed_prekey = UnverifiedX25519PreKey::read(&mut r)?;
        let one_time_prekey =
            if read_presence(&mut r)? { Some(UnverifiedX25519PreKey::read(&mut r)?) } else { None };
        let kem_prekey = UnverifiedKemPreKey::read(&mut r)?;
        r.finish()?;
        Ok(Self { identity, device, signed_prekey, one_time_prekey, kem_prekey })
    }

    /// Checks the whole chain: the identity's certificate of its agreement
    /// key, the device certificate against the identity, each prekey's
    /// signature against the device key, the ML-KEM key's encoding. Then,
    /// if the caller already knows this contact, that the identity is the
    /// one it knows.
    ///
    /// The identity is compared last, so [`BundleError::ChangedIdentity`]
    /// always means "a valid bundle of another identity": what the user must
    /// be shown, never silently accepted.
    ///
    /// # Errors
    /// [`BundleError`] naming the first check that failed.
    pub fn verify(
        self,
        expected_identity: Option<&VerifyingKey>,
    ) -> Result<PreKeyBundle, BundleError> {
        let (identity, device) = verify_owner(self.identity, self.device)?;
        let signed_prekey = self.signed_prekey.verify(&device, PreKeyKind::Signed)?;
        let one_time_prekey = self
            .one_time_prekey
            .map(|prekey| prekey.verify(&device, PreKeyKind::OneTime))
            .transpose()?;
        let kem_prekey = self.kem_prekey.verify(&device)?;
        check_expected(&identity, expected_identity)?;
        Ok(PreKeyBundle { identity, device, signed_prekey, one_time_prekey, kem_prekey })
    }
}

/// All of a device's public prekeys, signed: what a device hands to the nodes
/// that give out its bundles, so that each initiator gets its own one-time
/// prekeys while the device is offline. Verified.
///
/// Layout (`docs/protocol.md`, "Prekey publication"):
///
/// | bytes | field |
/// |---|---|
/// | 1 | cipher suite (`1`) |
/// | 129 | public identity |
/// | 185 | device certificate |
/// | 100 | signed prekey |
/// | 1253 | last-resort ML-KEM prekey (kind `4`) |
/// | 4 | number of one-time X25519 prekeys, at most [`MAX_ONE_TIME_PREKEYS`] |
/// | 100 each | one-time X25519 prekeys, ids increasing |
/// | 4 | number of one-time ML-KEM prekeys, at most [`MAX_ONE_TIME_PREKEYS`] |
/// | 1253 each | one-time ML-KEM prekeys (kind `3`), ids increasing |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeyPublication {
    identity: PublicIdentity,
    device: DeviceCertificate,
    signed_prekey: X25519PreKey,
    last_resort: KemPreKey,
    one_time: Vec<X25519PreKey>,
    kem_one_time: Vec<KemPreKey>,
}

impl PreKeyPublication {
    /// The device's identity.
    pub fn identity(&self) -> &PublicIdentity {
        &self.identity
    }

    /// The identity's certificate of the device.
    pub fn device(&self) -> &DeviceCertificate {
        &self.device
    }

    /// One-time X25519 prekeys not handed out yet.
    pub fn one_time_prekey_count(&self) -> usize {
        self.one_time.len()
    }

    /// One-time ML-KEM prekeys not handed out yet.
    pub fn kem_one_time_prekey_count(&self) -> usize {
        self.kem_one_time.len()
    }

    /// A bundle for one initiator: the next one-time prekey of each kind,
    /// removed so that no one else gets it, or none and the last-resort
    /// ML-KEM prekey when they have run out.
    pub fn take_bundle(&mut self) -> PreKeyBundle {
        let one_time_prekey = (!self.one_time.is_empty()).then(|| self.one_time.remove(0));
        let kem_prekey = if self.kem_one_time.is_empty() {
            self.last_resort.clone()
        } else {
            self.kem_one_time.remove(0)
        };
        PreKeyBundle {
            identity: self.identity,
            device: self.device,
            signed_prekey: self.signed_prekey,
            one_time_prekey,
            kem_prekey,
        }
    }

    /// A bundle with no one-time prekey and the last-resort ML-KEM prekey:
    /// the one that may be cached and given to many initiators (a DHT record).
    pub fn last_resort_bundle(&self) -> PreKeyBundle {
        PreKeyBundle {
            identity: self.identity,
            device: self.device,
            signed_prekey: self.signed_prekey,
            one_time_prekey: None,
            kem_prekey: self.last_resort.clone(),
        }
    }

    /// Encodes the publication (layout above).
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = 1
            + PUBLIC_IDENTITY_BYTES
            + CERTIFICATE_BYTES
            + X25519_PREKEY_BYTES
            + KEM_PREKEY_BYTES
            + 4
            + self.one_time.len() * X25519_PREKEY_BYTES
            + 4
            + self.kem_one_time.len() * KEM_PREKEY_BYTES;
        let mut w = Writer::with_capacity(len);
        w.u8(CipherSuite::V1.to_byte());
        self.identity.write(&mut w);
        self.device.write(&mut w);
        self.signed_prekey.write(&mut w);
        self.last_resort.write(&mut w);
        // Both lists are bounded by MAX_ONE_TIME_PREKEYS (100).
        #[allow(clippy::cast_possible_truncation)]
        w.u32(self.one_time.len() as u32);
        for prekey in &self.one_time {
            prekey.write(&mut w);
        }
        #[allow(clippy::cast_possible_truncation)]
        w.u32(self.kem_one_time.len() as u32);
        for prekey in &self.kem_one_time {
            prekey.write(&mut w);
        }
        w.into_bytes()
    }
}

/// A decoded prekey publication whose signatures have not been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedPreKeyPublication {
    identity: UnverifiedPublicIdentity,
    device: UnverifiedDeviceCertificate,
    signed_prekey: UnverifiedX25519PreKey,
    last_resort: UnverifiedKemPreKey,
    one_time: Vec<UnverifiedX25519PreKey>,
    kem_one_time: Vec<UnverifiedKemPreKey>,
}

/// Reads a `u32` count, refusing more than [`MAX_ONE_TIME_PREKEYS`] before
/// anything is allocated for them.
fn read_count(r: &mut Reader<'_>) -> Result<usize, DecodeError> {
    let count = r.u32()? as usize;
    if count > MAX_ONE_TIME_PREKEYS {
        return Err(DecodeError::TooLarge { len: count, max: MAX_ONE_TIME_PREKEYS });
    }
    Ok(count)
}

/// Refuses ids that are not strictly increasing, so that a list has one
/// encoding and no id twice.
fn check_increasing(ids: impl Iterator<Item = u32>) -> Result<(), DecodeError> {
    let mut last = None;
    for id in ids {
        if last.is_some_and(|last| id <= last) {
            return Err(DecodeError::Invalid("prekey ids not increasing"));
        }
        last = Some(id);
    }
    Ok(())
}

impl UnverifiedPreKeyPublication {
    /// Decodes the layout of [`PreKeyPublication::to_bytes`], refusing input
    /// longer than [`MAX_PUBLICATION_BYTES`] before reading it.
    ///
    /// # Errors
    /// [`DecodeError`] for a malformed publication or an unknown suite.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_PUBLICATION_BYTES {
            return Err(DecodeError::TooLarge { len: bytes.len(), max: MAX_PUBLICATION_BYTES });
        }
        let mut r = Reader::new(bytes);
        CipherSuite::from_byte(r.u8()?)?;
        let identity = PublicIdentity::read(&mut r)?;
        let device = UnverifiedDeviceCertificate::read(&mut r)?;
        let signed_prekey = UnverifiedX25519PreKey::read(&mut r)?;
        let last_resort = UnverifiedKemPreKey::read_kind(&mut r, KemPreKeyKind::LastResort)?;
        let count = read_count(&mut r)?;
        if r.remaining() < count * X25519_PREKEY_BYTES {
            return Err(DecodeError::Truncated);
        }
        let one_time = (0..count)
            .map(|_| UnverifiedX25519PreKey::read(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        check_increasing(one_time.iter().map(|prekey| prekey.id))?;
        let count = read_count(&mut r)?;
        if r.remaining() < count * KEM_PREKEY_BYTES {
            return Err(DecodeError::Truncated);
        }
        let kem_one_time = (0..count)
            .map(|_| UnverifiedKemPreKey::read_kind(&mut r, KemPreKeyKind::OneTime))
            .collect::<Result<Vec<_>, _>>()?;
        check_increasing(kem_one_time.iter().map(|prekey| prekey.id))?;
        r.finish()?;
        Ok(Self { identity, device, signed_prekey, last_resort, one_time, kem_one_time })
    }

    /// Checks every certificate and signature as
    /// [`UnverifiedPreKeyBundle::verify`] does, for every prekey.
    ///
    /// # Errors
    /// [`BundleError`] naming the first check that failed.
    pub fn verify(
        self,
        expected_identity: Option<&VerifyingKey>,
    ) -> Result<PreKeyPublication, BundleError> {
        let (identity, device) = verify_owner(self.identity, self.device)?;
        let signed_prekey = self.signed_prekey.verify(&device, PreKeyKind::Signed)?;
        let last_resort = self.last_resort.verify(&device)?;
        let one_time = self
            .one_time
            .into_iter()
            .map(|prekey| prekey.verify(&device, PreKeyKind::OneTime))
            .collect::<Result<Vec<_>, _>>()?;
        let kem_one_time = self
            .kem_one_time
            .into_iter()
            .map(|prekey| prekey.verify(&device))
            .collect::<Result<Vec<_>, _>>()?;
        check_expected(&identity, expected_identity)?;
        Ok(PreKeyPublication {
            identity,
            device,
            signed_prekey,
            last_resort,
            one_time,
            kem_one_time,
        })
    }
}

/// Why a bundle or publication was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Malformed bytes.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The identity key is not a valid key, or its certificate of its
    /// agreement key does not verify.
    #[error("invalid identity")]
    InvalidIdentity(#[source] IdentityError),
    /// The device certificate is not the identity's.
    #[error("invalid device certificate")]
    InvalidDeviceCertificate(#[source] DeviceError),
    /// A prekey's signature does not verify against the device key.
    #[error("invalid signature on prekey {id}")]
    InvalidPreKeySignature {
        /// The prekey's id.
        id: u32,
    },
    /// The ML-KEM key is signed but its encoding is not canonical.
    #[error("invalid ml-kem prekey")]
    InvalidKemKey,
    /// A valid bundle of an identity other than the one the caller knows for
    /// this contact: their key changed, which the user must see.
    #[error("the contact's identity key changed")]
    ChangedIdentity,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::phrase::Seed;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    pub(crate) const NOW: u64 = 1_700_000_000_000;
    /// Offset of the signed prekey in a bundle: suite, identity, certificate.
    const SIGNED_PREKEY_AT: usize = 1 + PUBLIC_IDENTITY_BYTES + CERTIFICATE_BYTES;

    pub(crate) struct Fixture {
        pub(crate) identity: Identity,
        pub(crate) device: Device,
        pub(crate) prekeys: PreKeys,
        pub(crate) rng: ChaCha20Rng,
    }

    impl Fixture {
        pub(crate) fn new(seed: u8, one_time: usize) -> Self {
            let mut rng = ChaCha20Rng::seed_from_u64(u64::from(seed));
            let identity = Identity::from_seed(&Seed::from_bytes(&[seed; 64]).unwrap()).unwrap();
            let device = Device::new(&identity, NOW, &mut rng);
            let mut prekeys = PreKeys::new(&device, NOW, &mut rng);
            prekeys.generate_one_time_prekeys(&device, one_time, &mut rng).unwrap();
            Self { identity, device, prekeys, rng }
        }

        pub(crate) fn first_ids(&self) -> (Option<PreKeyId>, Option<PreKeyId>) {
            // What a node handing out the publication would give next.
            let next = self
                .prekeys
                .publication(&self.identity.public(), &self.device)
                .unwrap()
                .take_bundle();
            let kem = next.kem_prekey();
            (
                next.one_time_prekey().map(X25519PreKey::id),
                (kem.kind() == KemPreKeyKind::OneTime).then_some(kem.id()),
            )
        }

        pub(crate) fn bundle(
            &self,
            one_time: Option<PreKeyId>,
            kem: Option<PreKeyId>,
        ) -> PreKeyBundle {
            self.prekeys.bundle(&self.identity.public(), &self.device, one_time, kem).unwrap()
        }

        pub(crate) fn full_bundle(&self) -> PreKeyBundle {
            let (one_time, kem) = self.first_ids();
            self.bundle(one_time, kem)
        }

        pub(crate) fn identity_key(&self) -> VerifyingKey {
            self.identity.signing_key().verifying_key()
        }
    }

    pub(crate) fn decode_and_verify(
        bytes: &[u8],
        expected: Option<&VerifyingKey>,
    ) -> Result<PreKeyBundle, BundleError> {
        UnverifiedPreKeyBundle::from_bytes(bytes)?.verify(expected)
    }

    #[test]
    fn bundle_round_trips_and_verifies_with_and_without_one_time_prekeys() {
        let alice = Fixture::new(1, 2);
        let key = alice.identity_key();
        for bundle in [alice.full_bundle(), alice.bundle(None, None)] {
            let bytes = bundle.to_bytes();
            let decoded = decode_and_verify(&bytes, Some(&key)).unwrap();
            assert_eq!(decoded, bundle);
            assert_eq!(decode_and_verify(&bytes, None).unwrap(), bundle);
        }
        let full = alice.full_bundle();
        assert_eq!(full.to_bytes().len(), MAX_BUNDLE_BYTES);
        assert_eq!(full.kem_prekey().kind(), KemPreKeyKind::OneTime);
        assert_eq!(alice.bundle(None, None).kem_prekey().kind(), KemPreKeyKind::LastResort);
        assert_eq!(
            alice.bundle(None, None).to_bytes().len(),
            MAX_BUNDLE_BYTES - X25519_PREKEY_BYTES
        );
    }

    #[test]
    fn every_flipped_bundle_byte_is_refused() {
        let alice = Fixture::new(2, 1);
        let key = alice.identity_key();
        for bytes in [alice.full_bundle().to_bytes(), alice.bundle(None, None).to_bytes()] {
            for i in 0..bytes.len() {
                for mask in [0x01, 0x80] {
                    let mut tampered = bytes.clone();
                    tampered[i] ^= mask;
                    assert!(
                        decode_and_verify(&tampered, None).is_err(),
                        "flipping bit {mask:#x} of byte {i} went unnoticed"
                    );
                    assert!(decode_and_verify(&tampered, Some(&key)).is_err());
                }
            }
        }
    }

    #[test]
    fn truncated_or_extended_bundle_is_refused() {
        let alice = Fixture::new(3, 1);
        for bytes in [alice.full_bundle().to_bytes(), alice.bundle(None, None).to_bytes()] {
            for cut in 0..bytes.len() {
                assert!(UnverifiedPreKeyBundle::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(UnverifiedPreKeyBundle::from_bytes(&longer).is_err());
        }
    }

    #[test]
    fn oversized_bundle_is_refused_before_decoding() {
        let bytes = vec![1u8; MAX_BUNDLE_BYTES + 1];
        assert_eq!(
            UnverifiedPreKeyBundle::from_bytes(&bytes),
            Err(DecodeError::TooLarge { len: MAX_BUNDLE_BYTES + 1, max: MAX_BUNDLE_BYTES })
        );
    }

    #[test]
    fn bundle_with_prekeys_of_another_device_is_refused() {
        let mut alice = Fixture::new(4, 1);
        let other_device = Device::new(&alice.identity, NOW, &mut alice.rng);
        let other = PreKeys::new(&other_device, NOW, &mut alice.rng);
        let theirs =
            other.bundle(&alice.identity.public(), &other_device, None, None).unwrap().to_bytes();
        let mut bytes = alice.bundle(None, None).to_bytes();
        let range = SIGNED_PREKEY_AT..SIGNED_PREKEY_AT + X25519_PREKEY_BYTES;
        bytes[range.clone()].copy_from_slice(&theirs[range]);
        assert!(matches!(
            decode_and_verify(&bytes, None),
            Err(BundleError::InvalidPreKeySignature { .. })
        ));
        // The other way round: another device's certificate over these prekeys.
        let mut bytes = alice.bundle(None, None).to_bytes();
        let range = 1 + PUBLIC_IDENTITY_BYTES..SIGNED_PREKEY_AT;
        bytes[range.clone()].copy_from_slice(&theirs[range]);
        assert!(matches!(
            decode_and_verify(&bytes, None),
            Err(BundleError::InvalidPreKeySignature { .. })
        ));
    }

    #[test]
    fn bundle_with_device_of_another_identity_is_refused() {
        let alice = Fixture::new(5, 0);
        let mallory = Fixture::new(6, 0);
        let mut bytes = alice.bundle(None, None).to_bytes();
        bytes[1..1 + PUBLIC_IDENTITY_BYTES].copy_from_slice(&mallory.identity.public().to_bytes());
        assert_eq!(
            decode_and_verify(&bytes, None),
            Err(BundleError::InvalidDeviceCertificate(DeviceError::WrongIdentity))
        );
        assert_eq!(
            alice.prekeys.bundle(&mallory.identity.public(), &alice.device, None, None),
            Err(PreKeyError::WrongIdentity)
        );
        assert_eq!(
            alice.prekeys.bundle(&alice.identity.public(), &mallory.device, None, None),
            Err(PreKeyError::WrongDevice)
        );
    }

    #[test]
    fn bundle_of_a_changed_identity_is_refused() {
        let alice = Fixture::new(7, 0);
        let mallory = Fixture::new(8, 0);
        let bytes = mallory.bundle(None, None).to_bytes();
        assert_eq!(
            decode_and_verify(&bytes, Some(&alice.identity_key())),
            Err(BundleError::ChangedIdentity)
        );
        assert!(decode_and_verify(&bytes, Some(&mallory.identity_key())).is_ok());
    }

    #[test]
    fn off_curve_identity_key_is_refused() {
        let alice = Fixture::new(9, 0);
        let mut bytes = alice.bundle(None, None).to_bytes();
        // BIP340 test vector 5: not the x-coordinate of a point on secp256k1.
        let off_curve =
            hex::decode("EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34")
                .unwrap();
        bytes[2..34].copy_from_slice(&off_curve);
        assert_eq!(
            decode_and_verify(&bytes, None),
            Err(BundleError::InvalidIdentity(IdentityError::InvalidKey))
        );
    }

    #[test]
    fn signed_but_unreduced_kem_key_is_refused() {
        let mut alice = Fixture::new(10, 0);
        let last_resort = alice.prekeys.last_resort_kem_prekey();
        let mut key = *last_resort.key().as_bytes();
        // 12-bit coefficients: 0xfff is above q = 3329.
        key[0] = 0xff;
        key[1] |= 0x0f;
        let id = last_resort.id();
        let kind = PreKeyKind::Kem(KemPreKeyKind::LastResort);
        let signature = sign_prekey(&alice.device, id, kind, &key, &mut alice.rng);
        let mut bytes = alice.bundle(None, None).to_bytes();
        let kem_at = bytes.len() - KEM_PREKEY_BYTES;
        bytes[kem_at + 5..kem_at + 5 + kem::PUBLIC_KEY_BYTES].copy_from_slice(&key);
        bytes[kem_at + 5 + kem::PUBLIC_KEY_BYTES..].copy_from_slice(signature.as_bytes());
        assert_eq!(decode_and_verify(&bytes, None), Err(BundleError::InvalidKemKey));
    }

    #[test]
    fn kem_prekey_signature_covers_its_kind() {
        let alice = Fixture::new(11, 1);
        let (_, kem) = alice.first_ids();
        for (bundle, other_kind) in [
            (alice.bundle(None, None), KemPreKeyKind::OneTime),
            (alice.bundle(None, kem), KemPreKeyKind::LastResort),
        ] {
            let mut bytes = bundle.to_bytes();
            let kem_at = bytes.len() - KEM_PREKEY_BYTES;
            bytes[kem_at] = other_kind.to_byte();
            assert!(matches!(
                decode_and_verify(&bytes, None),
                Err(BundleError::InvalidPreKeySignature { .. })
            ));
        }
    }

    #[test]
    fn bundle_names_only_prekeys_the_device_holds() {
        let alice = Fixture::new(12, 1);
        let (one_time, kem) = alice.first_ids();
        let public = alice.identity.public();
        // A one-time X25519 id is not a one-time ML-KEM id and the other way round.
        assert!(matches!(
            alice.prekeys.bundle(&public, &alice.device, kem, None),
            Err(PreKeyError::UnknownPreKey { .. })
        ));
        assert!(matches!(
            alice.prekeys.bundle(&public, &alice.device, None, one_time),
            Err(PreKeyError::UnknownPreKey { .. })
        ));
    }

    #[test]
    fn publication_round_trips_and_hands_out_each_one_time_prekey_once() {
        let alice = Fixture::new(23, 2);
        let key = alice.identity_key();
        let publication =
            alice.prekeys.publication(&alice.identity.public(), &alice.device).unwrap();
        let mut decoded = UnverifiedPreKeyPublication::from_bytes(&publication.to_bytes())
            .unwrap()
            .verify(Some(&key))
            .unwrap();
        assert_eq!(decoded, publication);
        let mut handed_out = Vec::new();
        for _ in 0..3 {
            let bundle = decoded.take_bundle();
            let bytes = bundle.to_bytes();
            assert_eq!(decode_and_verify(&bytes, Some(&key)).unwrap(), bundle);
            handed_out.push((
                bundle.one_time_prekey().map(X25519PreKey::id),
                bundle.kem_prekey().id(),
                bundle.kem_prekey().kind(),
            ));
        }
        let one_time: Vec<_> = publication.one_time.iter().map(X25519PreKey::id).collect();
        let kem: Vec<_> = publication.kem_one_time.iter().map(KemPreKey::id).collect();
        let last_resort = publication.last_resort.id();
        assert_eq!(
            handed_out,
            vec![
                (Some(one_time[0]), kem[0], KemPreKeyKind::OneTime),
                (Some(one_time[1]), kem[1], KemPreKeyKind::OneTime),
                (None, last_resort, KemPreKeyKind::LastResort),
            ]
        );
        assert_eq!(decoded.one_time_prekey_count(), 0);
        assert_eq!(decoded.kem_one_time_prekey_count(), 0);
        assert_eq!(
            decoded.last_resort_bundle(),
            alice.bundle(None, None),
            "the cacheable bundle has no one-time prekey"
        );
    }

    #[test]
    fn every_flipped_publication_byte_is_refused() {
        let alice = Fixture::new(24, 1);
        let bytes =
            alice.prekeys.publication(&alice.identity.public(), &alice.device).unwrap().to_bytes();
        for i in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[i] ^= 0x01;
            let result = UnverifiedPreKeyPublication::from_bytes(&tampered)
                .map_err(BundleError::from)
                .and_then(|publication| publication.verify(None));
            assert!(result.is_err(), "flipping byte {i} went unnoticed");
        }
        for cut in 0..bytes.len() {
            assert!(UnverifiedPreKeyPublication::from_bytes(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn publication_counts_are_checked_before_allocation() {
        let alice = Fixture::new(25, 0);
        let bytes =
            alice.prekeys.publication(&alice.identity.public(), &alice.device).unwrap().to_bytes();
        let count_at = bytes.len() - 8;
        let mut huge = bytes.clone();
        huge[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            UnverifiedPreKeyPublication::from_bytes(&huge),
            Err(DecodeError::TooLarge { len: u32::MAX as usize, max: MAX_ONE_TIME_PREKEYS })
        );
        let mut claims_more = bytes;
        claims_more[count_at..count_at + 4].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(
            UnverifiedPreKeyPublication::from_bytes(&claims_more),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn publication_refuses_repeated_prekeys() {
        let alice = Fixture::new(26, 2);
        let mut publication =
            alice.prekeys.publication(&alice.identity.public(), &alice.device).unwrap();
        publication.one_time[1] = publication.one_time[0];
        assert_eq!(
            UnverifiedPreKeyPublication::from_bytes(&publication.to_bytes()),
            Err(DecodeError::Invalid("prekey ids not increasing"))
        );
    }
}
