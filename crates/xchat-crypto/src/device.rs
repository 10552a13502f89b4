//! Devices: each device of an identity has its own keys, certified by the
//! identity, and can be revoked by a signed statement.
//!
//! A device's keys are random (not derived from the phrase): restoring the
//! phrase on a new phone makes a new device with a new certificate, and
//! losing a device never loses the identity. The device signing key signs the
//! device's prekeys; the device agreement key receives sealed envelopes.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::agreement;
use crate::encoding::{DecodeError, Reader, Writer};
use crate::identity::Identity;
use crate::kdf;
use crate::signature::{Signature, SigningKey, VerifyingKey};
use crate::suite::CipherSuite;

/// Bytes of a device id.
pub const DEVICE_ID_BYTES: usize = 16;
/// Bytes of an encoded [`DeviceCertificate`].
pub const CERTIFICATE_BYTES: usize = 1 + 32 + DEVICE_ID_BYTES + 32 + 32 + 8 + 64;
/// Bytes of an encoded [`Revocation`].
pub const REVOCATION_BYTES: usize = 1 + 32 + DEVICE_ID_BYTES + 8 + 64;
/// Version of the [`Device`] record layout.
const DEVICE_RECORD_VERSION: u8 = 1;

/// A device's random 16-byte id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId([u8; DEVICE_ID_BYTES]);

impl DeviceId {
    /// Wraps 16 bytes.
    pub const fn from_bytes(bytes: [u8; DEVICE_ID_BYTES]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; DEVICE_ID_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceId(")?;
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, ")")
    }
}

/// The fields a device certificate signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CertificateBody {
    identity: VerifyingKey,
    device_id: DeviceId,
    signing: VerifyingKey,
    agreement: agreement::PublicKey,
    created_at_ms: u64,
}

impl CertificateBody {
    fn write(&self, w: &mut Writer) {
        w.u8(CipherSuite::V1.to_byte())
            .fixed(&self.identity.to_bytes())
            .fixed(self.device_id.as_bytes())
            .fixed(&self.signing.to_bytes())
            .fixed(self.agreement.as_bytes())
            .u64(self.created_at_ms);
    }

    fn to_bytes(self) -> Vec<u8> {
        let mut w = Writer::with_capacity(CERTIFICATE_BYTES);
        self.write(&mut w);
        w.into_bytes()
    }
}

/// An identity's signed statement that a device belongs to it: the device's
/// id, public keys and creation time. Verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceCertificate {
    body: CertificateBody,
    signature: Signature,
}

impl DeviceCertificate {
    /// The certifying identity's signing key.
    pub fn identity(&self) -> &VerifyingKey {
        &self.body.identity
    }

    /// The device's id.
    pub fn device_id(&self) -> DeviceId {
        self.body.device_id
    }

    /// The device's signing key (it signs the device's prekeys).
    pub fn signing_key(&self) -> &VerifyingKey {
        &self.body.signing
    }

    /// The device's X25519 key (sealed envelopes are encrypted to it).
    pub fn agreement_key(&self) -> &agreement::PublicKey {
        &self.body.agreement
    }

    /// When the device was certified, in milliseconds since the Unix epoch.
    pub fn created_at_ms(&self) -> u64 {
        self.body.created_at_ms
    }

    /// Encodes as `suite (1) || identity (32) || device id (16) || signing key (32)
    /// || agreement key (32) || created at ms (8) || signature (64)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(CERTIFICATE_BYTES);
        self.write(&mut w);
        w.into_bytes()
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        self.body.write(w);
        w.fixed(self.signature.as_bytes());
    }
}

/// A decoded device certificate whose signature has not been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnverifiedDeviceCertificate {
    identity: [u8; 32],
    device_id: [u8; DEVICE_ID_BYTES],
    signing: [u8; 32],
    agreement: [u8; 32],
    created_at_ms: u64,
    signature: [u8; 64],
}

impl UnverifiedDeviceCertificate {
    /// Decodes the layout of [`DeviceCertificate::to_bytes`].
    ///
    /// # Errors
    /// [`DecodeError`] for a wrong length or unknown suite.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let certificate = Self::read(&mut r)?;
        r.finish()?;
        Ok(certificate)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        CipherSuite::from_byte(r.u8()?)?;
        Ok(Self {
            identity: r.array()?,
            device_id: r.array()?,
            signing: r.array()?,
            agreement: r.array()?,
            created_at_ms: r.u64()?,
            signature: r.array()?,
        })
    }

    /// The X25519 key the certificate claims for its device, before the
    /// signature is checked: sealed sender authenticates the envelope's
    /// payload with it first and verifies the certificate after.
    pub(crate) fn claimed_agreement_key(&self) -> agreement::PublicKey {
        agreement::PublicKey::from_bytes(self.agreement)
    }

    /// Checks that `identity` signed this certificate.
    ///
    /// # Errors
    /// [`DeviceError::WrongIdentity`] when it names another identity,
    /// [`DeviceError::InvalidKey`] for an off-curve key,
    /// [`DeviceError::InvalidSignature`] when the signature does not verify.
    pub fn verify(self, identity: &VerifyingKey) -> Result<DeviceCertificate, DeviceError> {
        if self.identity != identity.to_bytes() {
            return Err(DeviceError::WrongIdentity);
        }
        let body = CertificateBody {
            identity: *identity,
            device_id: DeviceId(self.device_id),
            signing: VerifyingKey::from_bytes(&self.signing)
                .map_err(|_| DeviceError::InvalidKey)?,
            agreement: agreement::PublicKey::from_bytes(self.agreement),
            created_at_ms: self.created_at_ms,
        };
        let signature = Signature::from_bytes(self.signature);
        identity
            .verify(kdf::SIG_DEVICE_CERT, &body.to_bytes(), &signature)
            .map_err(|_| DeviceError::InvalidSignature)?;
        Ok(DeviceCertificate { body, signature })
    }
}

/// One device's secret keys and its certificate. Wiped on drop; never printed.
pub struct Device {
    signing: SigningKey,
    agreement: agreement::KeyPair,
    certificate: DeviceCertificate,
}

impl Device {
    /// Creates a device of `identity` with fresh random keys, certified at `now_ms`.
    pub fn new(identity: &Identity, now_ms: u64, rng: &mut impl CryptoRng) -> Self {
        let mut id = [0u8; DEVICE_ID_BYTES];
        rng.fill_bytes(&mut id);
        let signing = SigningKey::generate(rng);
        let agreement = agreement::KeyPair::generate(rng);
        let body = CertificateBody {
            identity: identity.signing_key().verifying_key(),
            device_id: DeviceId(id),
            signing: signing.verifying_key(),
            agreement: *agreement.public(),
            created_at_ms: now_ms,
        };
        let signature = identity.signing_key().sign(kdf::SIG_DEVICE_CERT, &body.to_bytes(), rng);
        Self { signing, agreement, certificate: DeviceCertificate { body, signature } }
    }

    /// The device's id.
    pub fn id(&self) -> DeviceId {
        self.certificate.device_id()
    }

    /// The device's signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The device's X25519 key pair.
    pub fn agreement(&self) -> &agreement::KeyPair {
        &self.agreement
    }

    /// The identity's certificate of this device.
    pub fn certificate(&self) -> &DeviceCertificate {
        &self.certificate
    }

    /// The versioned record: `version (1) || signing secret (32) ||
    /// agreement secret (32) || certificate`. Wiped when dropped.
    pub fn to_record(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(1 + 64 + CERTIFICATE_BYTES);
        w.u8(DEVICE_RECORD_VERSION)
            .fixed(self.signing.to_bytes().as_ref())
            .fixed(self.agreement.secret().to_bytes().as_ref());
        self.certificate.write(&mut w);
        w.into_secret_bytes()
    }

    /// Restores a device from [`Device::to_record`], checking that its keys
    /// match its certificate and that `identity` signed it.
    ///
    /// # Errors
    /// [`DeviceError`] for a malformed, foreign or inconsistent record.
    pub fn from_record(record: &[u8], identity: &VerifyingKey) -> Result<Self, DeviceError> {
        let mut r = Reader::new(record);
        let version = r.u8()?;
        if version != DEVICE_RECORD_VERSION {
            return Err(DecodeError::UnknownVersion(version).into());
        }
        let signing_secret = r.secret_array::<32>()?;
        let agreement_secret = r.secret_array::<32>()?;
        let signing =
            SigningKey::from_bytes(&signing_secret).map_err(|_| DeviceError::InvalidKey)?;
        let agreement =
            agreement::KeyPair::from_secret(agreement::SecretKey::from_bytes(&agreement_secret));
        let certificate = UnverifiedDeviceCertificate::read(&mut r)?.verify(identity)?;
        r.finish()?;
        if certificate.signing_key() != &signing.verifying_key()
            || certificate.agreement_key() != agreement.public()
        {
            return Err(DeviceError::InvalidKey);
        }
        Ok(Self { signing, agreement, certificate })
    }

    /// Revokes the device `device_id` of `identity` at `now_ms`.
    pub fn revoke(
        identity: &Identity,
        device_id: DeviceId,
        now_ms: u64,
        rng: &mut impl CryptoRng,
    ) -> Revocation {
        let identity_key = identity.signing_key().verifying_key();
        let message = revocation_message(&identity_key, device_id, now_ms);
        let signature = identity.signing_key().sign(kdf::SIG_DEVICE_REVOCATION, &message, rng);
        Revocation { identity: identity_key, device_id, revoked_at_ms: now_ms, signature }
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("id", &self.id()).field("secret", &"<redacted>").finish()
    }
}

fn revocation_message(identity: &VerifyingKey, device_id: DeviceId, revoked_at_ms: u64) -> Vec<u8> {
    let mut w = Writer::with_capacity(REVOCATION_BYTES);
    w.u8(CipherSuite::V1.to_byte())
        .fixed(&identity.to_bytes())
        .fixed(device_id.as_bytes())
        .u64(revoked_at_ms);
    w.into_bytes()
}

/// An identity's signed statement that one of its devices is revoked from a
/// time on. Verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    identity: VerifyingKey,
    device_id: DeviceId,
    revoked_at_ms: u64,
    signature: Signature,
}

impl Revocation {
    /// The revoked device.
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The revoking identity.
    pub fn identity(&self) -> &VerifyingKey {
        &self.identity
    }

    /// From when the device is revoked, in milliseconds since the Unix epoch.
    pub fn revoked_at_ms(&self) -> u64 {
        self.revoked_at_ms
    }

    /// Encodes as `suite (1) || identity (32) || device id (16) || revoked at ms (8) || signature (64)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = revocation_message(&self.identity, self.device_id, self.revoked_at_ms);
        bytes.extend_from_slice(self.signature.as_bytes());
        bytes
    }
}

/// A decoded revocation whose signature has not been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnverifiedRevocation {
    identity: [u8; 32],
    device_id: [u8; DEVICE_ID_BYTES],
    revoked_at_ms: u64,
    signature: [u8; 64],
}

impl UnverifiedRevocation {
    /// Decodes the layout of [`Revocation::to_bytes`].
    ///
    /// # Errors
    /// [`DecodeError`] for a wrong length or unknown suite.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        CipherSuite::from_byte(r.u8()?)?;
        let revocation = Self {
            identity: r.array()?,
            device_id: r.array()?,
            revoked_at_ms: r.u64()?,
            signature: r.array()?,
        };
        r.finish()?;
        Ok(revocation)
    }

    /// Checks that `identity` signed this revocation.
    ///
    /// # Errors
    /// As [`UnverifiedDeviceCertificate::verify`].
    pub fn verify(self, identity: &VerifyingKey) -> Result<Revocation, DeviceError> {
        if self.identity != identity.to_bytes() {
            return Err(DeviceError::WrongIdentity);
        }
        let device_id = DeviceId(self.device_id);
        let signature = Signature::from_bytes(self.signature);
        identity
            .verify(
                kdf::SIG_DEVICE_REVOCATION,
                &revocation_message(identity, device_id, self.revoked_at_ms),
                &signature,
            )
            .map_err(|_| DeviceError::InvalidSignature)?;
        Ok(Revocation {
            identity: *identity,
            device_id,
            revoked_at_ms: self.revoked_at_ms,
            signature,
        })
    }
}

/// Why a device certificate, record or revocation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Malformed bytes.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Signed by, or naming, another identity.
    #[error("certificate of another identity")]
    WrongIdentity,
    /// A key that is not valid, or that does not match the certificate.
    #[error("invalid device key")]
    InvalidKey,
    /// The identity's signature does not verify.
    #[error("invalid device signature")]
    InvalidSignature,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phrase::Seed;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn identity(byte: u8) -> Identity {
        Identity::from_seed(&Seed::from_bytes(&[byte; 64]).unwrap()).unwrap()
    }

    #[test]
    fn certificate_round_trips_and_verifies() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let alice = identity(1);
        let device = Device::new(&alice, 1_700_000_000_000, &mut rng);
        let bytes = device.certificate().to_bytes();
        assert_eq!(bytes.len(), CERTIFICATE_BYTES);
        let key = alice.signing_key().verifying_key();
        let certificate =
            UnverifiedDeviceCertificate::from_bytes(&bytes).unwrap().verify(&key).unwrap();
        assert_eq!(&certificate, device.certificate());
    }

    #[test]
    fn certificate_of_another_identity_or_tampered_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let alice = identity(1);
        let mallory = identity(2);
        let device = Device::new(&alice, 5, &mut rng);
        let bytes = device.certificate().to_bytes();
        let mallory_key = mallory.signing_key().verifying_key();
        assert_eq!(
            UnverifiedDeviceCertificate::from_bytes(&bytes).unwrap().verify(&mallory_key),
            Err(DeviceError::WrongIdentity)
        );
        let alice_key = alice.signing_key().verifying_key();
        for i in 33..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[i] ^= 0x40;
            let result = UnverifiedDeviceCertificate::from_bytes(&tampered)
                .map_err(DeviceError::from)
                .and_then(|c| c.verify(&alice_key));
            assert!(result.is_err(), "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn device_record_round_trips() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let alice = identity(1);
        let device = Device::new(&alice, 9, &mut rng);
        let key = alice.signing_key().verifying_key();
        let restored = Device::from_record(&device.to_record(), &key).unwrap();
        assert_eq!(restored.certificate(), device.certificate());
        assert_eq!(restored.agreement().public(), device.agreement().public());
    }

    #[test]
    fn revocation_verifies_only_for_its_identity() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let alice = identity(1);
        let device = Device::new(&alice, 9, &mut rng);
        let revocation = Device::revoke(&alice, device.id(), 10, &mut rng);
        let bytes = revocation.to_bytes();
        assert_eq!(bytes.len(), REVOCATION_BYTES);
        let key = alice.signing_key().verifying_key();
        let decoded = UnverifiedRevocation::from_bytes(&bytes).unwrap().verify(&key).unwrap();
        assert_eq!(decoded, revocation);
        let mut tampered = bytes;
        tampered[60] ^= 1;
        assert_eq!(
            UnverifiedRevocation::from_bytes(&tampered).unwrap().verify(&key),
            Err(DeviceError::InvalidSignature)
        );
    }
}
