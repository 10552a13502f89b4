//! Records a device publishes so that others can reach it: its prekeys
//! ([`PreKeyRecord`]) and its identity's devices ([`DeviceList`]).
//!
//! The cryptographic contents are xchat-crypto's signed byte layouts, carried
//! as bytes: a decoded record holds them as `Unverified*` values, and only
//! `verify` (which checks every signature against the identity) gives the
//! plain types. Publication times are not signed: they only order two copies
//! of a record, and a node could change them.

use xchat_crypto::bundle::{
    self as crypto_bundle, BundleError, PreKeyBundle, PreKeyPublication, UnverifiedPreKeyBundle,
    UnverifiedPreKeyPublication,
};
use xchat_crypto::device::{
    CERTIFICATE_BYTES, DeviceCertificate, DeviceError, REVOCATION_BYTES, Revocation,
    UnverifiedDeviceCertificate, UnverifiedRevocation,
};
use xchat_crypto::signature::VerifyingKey;

use crate::decode::{self, ProtoError};
use crate::generated as pb;

/// Most bytes of an encoded [`PreKeyRecord`]: the largest prekey publication
/// ([`crypto_bundle::MAX_PUBLICATION_BYTES`]) and [`crate::HEADROOM_BYTES`].
/// Checked before decoding.
pub const MAX_PREKEY_RECORD_BYTES: usize =
    crypto_bundle::MAX_PUBLICATION_BYTES + crate::HEADROOM_BYTES;
/// Most device certificates in a [`DeviceList`].
pub const MAX_DEVICES: usize = 16;
/// Most revocations in a [`DeviceList`].
pub const MAX_REVOCATIONS: usize = 64;
/// Most bytes of an encoded [`DeviceList`]: a full list and
/// [`crate::HEADROOM_BYTES`]. Checked before decoding.
pub const MAX_DEVICE_LIST_BYTES: usize = 1
    + decode::varint_len(u64::MAX)
    + MAX_DEVICES * decode::delimited_len(CERTIFICATE_BYTES)
    + MAX_REVOCATIONS * decode::delimited_len(REVOCATION_BYTES)
    + crate::HEADROOM_BYTES;

/// A device's verified prekeys: one bundle, or the whole publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreKeys {
    /// One bundle (in a DHT record, one without a one-time prekey).
    Bundle(PreKeyBundle),
    /// Every public prekey of the device, for the nodes that hand out its
    /// bundles one initiator at a time.
    Publication(PreKeyPublication),
}

/// A device's prekeys and when it published them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeyRecord {
    /// When the device published them, by its clock: milliseconds since the
    /// Unix epoch. Not signed.
    pub published_at_ms: u64,
    /// The prekeys.
    pub prekeys: PreKeys,
}

impl PreKeyRecord {
    /// Encodes the record for publication. Its size is bounded by
    /// xchat-crypto's limits, within [`MAX_PREKEY_RECORD_BYTES`].
    pub fn encode(&self) -> Vec<u8> {
        let prekeys = match &self.prekeys {
            PreKeys::Bundle(bundle) => pb::pre_key_record::Prekeys::Bundle(bundle.to_bytes()),
            PreKeys::Publication(publication) => {
                pb::pre_key_record::Prekeys::Publication(publication.to_bytes())
            }
        };
        prost::Message::encode_to_vec(&pb::PreKeyRecord {
            published_at_ms: self.published_at_ms,
            prekeys: Some(prekeys),
        })
    }
}

/// Decoded prekeys whose signatures have not been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnverifiedPreKeys {
    /// One bundle.
    Bundle(UnverifiedPreKeyBundle),
    /// A whole publication.
    Publication(UnverifiedPreKeyPublication),
}

/// A decoded [`PreKeyRecord`] whose signatures have not been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedPreKeyRecord {
    /// When the device says it published them: milliseconds since the Unix
    /// epoch. Not signed.
    pub published_at_ms: u64,
    /// The prekeys.
    pub prekeys: UnverifiedPreKeys,
}

impl UnverifiedPreKeyRecord {
    /// Decodes a record fetched from the network, down to xchat-crypto's
    /// layouts (without checking a signature).
    ///
    /// # Errors
    /// [`ProtoError::TooLarge`] over [`MAX_PREKEY_RECORD_BYTES`] (before
    /// decoding), [`ProtoError::Malformed`], [`ProtoError::MissingField`]
    /// without prekeys, [`ProtoError::Crypto`] when the bytes are not a
    /// bundle or publication.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let raw: pb::PreKeyRecord =
            decode::message(bytes, "PreKeyRecord", MAX_PREKEY_RECORD_BYTES)?;
        Self::try_from(raw)
    }

    /// Checks every signature (`UnverifiedPreKeyBundle::verify`), and that
    /// the identity is `expected_identity` when the caller knows one.
    ///
    /// # Errors
    /// [`BundleError`] naming the first check that failed;
    /// [`BundleError::ChangedIdentity`] for a valid record of another
    /// identity than expected.
    pub fn verify(
        self,
        expected_identity: Option<&VerifyingKey>,
    ) -> Result<PreKeyRecord, BundleError> {
        let prekeys = match self.prekeys {
            UnverifiedPreKeys::Bundle(bundle) => PreKeys::Bundle(bundle.verify(expected_identity)?),
            UnverifiedPreKeys::Publication(publication) => {
                PreKeys::Publication(publication.verify(expected_identity)?)
            }
        };
        Ok(PreKeyRecord { published_at_ms: self.published_at_ms, prekeys })
    }
}

impl TryFrom<pb::PreKeyRecord> for UnverifiedPreKeyRecord {
    type Error = ProtoError;

    fn try_from(raw: pb::PreKeyRecord) -> Result<Self, ProtoError> {
        let prekeys = match decode::required(raw.prekeys, "PreKeyRecord.prekeys")? {
            pb::pre_key_record::Prekeys::Bundle(bytes) => {
                UnverifiedPreKeys::Bundle(UnverifiedPreKeyBundle::from_bytes(&bytes).map_err(
                    |source| ProtoError::Crypto { field: "PreKeyRecord.bundle", source },
                )?)
            }
            pb::pre_key_record::Prekeys::Publication(bytes) => UnverifiedPreKeys::Publication(
                UnverifiedPreKeyPublication::from_bytes(&bytes).map_err(|source| {
                    ProtoError::Crypto { field: "PreKeyRecord.publication", source }
                })?,
            ),
        };
        Ok(Self { published_at_ms: raw.published_at_ms, prekeys })
    }
}

/// The devices of one identity, verified: 1 to [`MAX_DEVICES`] device
/// certificates and up to [`MAX_REVOCATIONS`] revocations, all signed by the
/// identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList {
    published_at_ms: u64,
    certificates: Vec<DeviceCertificate>,
    revocations: Vec<Revocation>,
}

impl DeviceList {
    /// A list to publish. Every certificate and revocation must be of the
    /// same identity (the receiver's `verify` refuses the list otherwise).
    ///
    /// # Errors
    /// [`ProtoError::MissingField`] without a certificate,
    /// [`ProtoError::TooMany`] over [`MAX_DEVICES`] or [`MAX_REVOCATIONS`].
    pub fn new(
        published_at_ms: u64,
        certificates: Vec<DeviceCertificate>,
        revocations: Vec<Revocation>,
    ) -> Result<Self, ProtoError> {
        check_device_counts(certificates.len(), revocations.len())?;
        Ok(Self { published_at_ms, certificates, revocations })
    }

    /// When the list was published: milliseconds since the Unix epoch. Not
    /// signed.
    pub fn published_at_ms(&self) -> u64 {
        self.published_at_ms
    }

    /// The identity's device certificates.
    pub fn certificates(&self) -> &[DeviceCertificate] {
        &self.certificates
    }

    /// The identity's revocations of devices.
    pub fn revocations(&self) -> &[Revocation] {
        &self.revocations
    }

    /// Encodes the list for publication.
    pub fn encode(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&pb::DeviceList {
            published_at_ms: self.published_at_ms,
            certificates: self.certificates.iter().map(DeviceCertificate::to_bytes).collect(),
            revocations: self.revocations.iter().map(Revocation::to_bytes).collect(),
        })
    }
}

fn check_device_counts(certificates: usize, revocations: usize) -> Result<(), ProtoError> {
    if certificates == 0 {
        return Err(ProtoError::MissingField { field: "DeviceList.certificates" });
    }
    decode::count(certificates, "DeviceList.certificates", MAX_DEVICES)?;
    decode::count(revocations, "DeviceList.revocations", MAX_REVOCATIONS)
}

/// A decoded [`DeviceList`] whose signatures have not been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedDeviceList {
    published_at_ms: u64,
    certificates: Vec<UnverifiedDeviceCertificate>,
    revocations: Vec<UnverifiedRevocation>,
}

impl UnverifiedDeviceList {
    /// Decodes a list fetched from the network, down to xchat-crypto's
    /// layouts (without checking a signature).
    ///
    /// # Errors
    /// [`ProtoError::TooLarge`] over [`MAX_DEVICE_LIST_BYTES`] (before
    /// decoding), [`ProtoError::Malformed`], the count errors of
    /// [`DeviceList::new`], [`ProtoError::Crypto`] for an entry that is not a
    /// certificate or revocation.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let raw: pb::DeviceList = decode::message(bytes, "DeviceList", MAX_DEVICE_LIST_BYTES)?;
        Self::try_from(raw)
    }

    /// When the list says it was published: milliseconds since the Unix
    /// epoch. Not signed.
    pub fn published_at_ms(&self) -> u64 {
        self.published_at_ms
    }

    /// Checks that `identity` signed every certificate and revocation. One
    /// bad entry refuses the whole list: it was tampered with.
    ///
    /// # Errors
    /// [`DeviceError`] of the first entry that failed.
    pub fn verify(self, identity: &VerifyingKey) -> Result<DeviceList, DeviceError> {
        let certificates = self
            .certificates
            .into_iter()
            .map(|certificate| certificate.verify(identity))
            .collect::<Result<Vec<_>, _>>()?;
        let revocations = self
            .revocations
            .into_iter()
            .map(|revocation| revocation.verify(identity))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DeviceList { published_at_ms: self.published_at_ms, certificates, revocations })
    }
}

impl TryFrom<pb::DeviceList> for UnverifiedDeviceList {
    type Error = ProtoError;

    fn try_from(raw: pb::DeviceList) -> Result<Self, ProtoError> {
        check_device_counts(raw.certificates.len(), raw.revocations.len())?;
        let certificates = raw
            .certificates
            .iter()
            .map(|bytes| {
                UnverifiedDeviceCertificate::from_bytes(bytes).map_err(|source| {
                    ProtoError::Crypto { field: "DeviceList.certificates", source }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let revocations = raw
            .revocations
            .iter()
            .map(|bytes| {
                UnverifiedRevocation::from_bytes(bytes).map_err(|source| ProtoError::Crypto {
                    field: "DeviceList.revocations",
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { published_at_ms: raw.published_at_ms, certificates, revocations })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use xchat_crypto::bundle::PreKeys as DevicePreKeys;
    use xchat_crypto::device::Device;
    use xchat_crypto::identity::Identity;
    use xchat_crypto::phrase::RecoveryPhrase;

    const NOW_MS: u64 = 1_790_000_000_000;

    fn identity(entropy: u8) -> Identity {
        Identity::from_seed(&RecoveryPhrase::from_entropy(&[entropy; 32]).to_seed("")).unwrap()
    }

    fn key(identity: &Identity) -> VerifyingKey {
        identity.signing_key().verifying_key()
    }

    #[test]
    fn prekey_record_round_trips_a_bundle_and_a_publication() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let alice = identity(1);
        let device = Device::new(&alice, NOW_MS, &mut rng);
        let mut prekeys = DevicePreKeys::new(&device, NOW_MS, &mut rng);
        prekeys.generate_one_time_prekeys(&device, 3, &mut rng).unwrap();
        let publication = prekeys.publication(&alice.public(), &device).unwrap();
        let bundle = publication.last_resort_bundle();

        for prekeys in [PreKeys::Bundle(bundle), PreKeys::Publication(publication)] {
            let record = PreKeyRecord { published_at_ms: NOW_MS, prekeys };
            let bytes = record.encode();
            assert!(bytes.len() <= MAX_PREKEY_RECORD_BYTES);
            let decoded = UnverifiedPreKeyRecord::decode(&bytes).unwrap();
            assert_eq!(decoded.published_at_ms, NOW_MS);
            assert_eq!(decoded.verify(Some(&key(&alice))).unwrap(), record);
        }
    }

    #[test]
    fn prekey_record_of_another_identity_is_a_changed_identity() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let alice = identity(1);
        let device = Device::new(&alice, NOW_MS, &mut rng);
        let prekeys = DevicePreKeys::new(&device, NOW_MS, &mut rng);
        let bundle = prekeys.bundle(&alice.public(), &device, None, None).unwrap();
        let bytes =
            PreKeyRecord { published_at_ms: NOW_MS, prekeys: PreKeys::Bundle(bundle) }.encode();
        let decoded = UnverifiedPreKeyRecord::decode(&bytes).unwrap();
        assert_eq!(decoded.verify(Some(&key(&identity(2)))), Err(BundleError::ChangedIdentity));
    }

    #[test]
    fn prekey_record_refuses_missing_and_malformed_prekeys() {
        let raw = pb::PreKeyRecord { published_at_ms: NOW_MS, prekeys: None };
        assert_eq!(
            UnverifiedPreKeyRecord::decode(&raw.encode_to_vec()),
            Err(ProtoError::MissingField { field: "PreKeyRecord.prekeys" })
        );
        let raw = pb::PreKeyRecord {
            published_at_ms: NOW_MS,
            prekeys: Some(pb::pre_key_record::Prekeys::Bundle(vec![1; 100])),
        };
        assert!(matches!(
            UnverifiedPreKeyRecord::decode(&raw.encode_to_vec()),
            Err(ProtoError::Crypto { field: "PreKeyRecord.bundle", .. })
        ));
        let raw = pb::PreKeyRecord {
            published_at_ms: NOW_MS,
            prekeys: Some(pb::pre_key_record::Prekeys::Publication(vec![])),
        };
        assert!(matches!(
            UnverifiedPreKeyRecord::decode(&raw.encode_to_vec()),
            Err(ProtoError::Crypto { field: "PreKeyRecord.publication", .. })
        ));
    }

    #[test]
    fn prekey_record_refuses_input_over_the_limit_before_decoding() {
        let bytes = vec![0xff; MAX_PREKEY_RECORD_BYTES + 1];
        assert!(matches!(
            UnverifiedPreKeyRecord::decode(&bytes),
            Err(ProtoError::TooLarge { message: "PreKeyRecord", .. })
        ));
    }

    /// An identity with `devices` devices, the first `revoked` of them revoked.
    fn device_list(
        devices: usize,
        revoked: usize,
        rng: &mut ChaCha20Rng,
    ) -> (Identity, DeviceList) {
        let alice = identity(1);
        let all: Vec<Device> = (0..devices).map(|_| Device::new(&alice, NOW_MS, rng)).collect();
        let certificates = all.iter().map(|device| *device.certificate()).collect();
        let revocations = all
            .iter()
            .take(revoked)
            .map(|device| Device::revoke(&alice, device.id(), NOW_MS + 1, rng))
            .collect();
        (alice, DeviceList::new(NOW_MS, certificates, revocations).unwrap())
    }

    #[test]
    fn device_list_round_trips_and_verifies() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (alice, list) = device_list(3, 1, &mut rng);
        let bytes = list.encode();
        let decoded = UnverifiedDeviceList::decode(&bytes).unwrap();
        assert_eq!(decoded.published_at_ms(), NOW_MS);
        assert_eq!(decoded.verify(&key(&alice)).unwrap(), list);
    }

    #[test]
    fn full_device_list_fits_its_limit() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let alice = identity(1);
        let device = Device::new(&alice, NOW_MS, &mut rng);
        let certificates = vec![*device.certificate(); MAX_DEVICES];
        let revocations = (0..MAX_REVOCATIONS)
            .map(|_| Device::revoke(&alice, device.id(), u64::MAX, &mut rng))
            .collect();
        let list = DeviceList::new(u64::MAX, certificates, revocations).unwrap();
        assert_eq!(list.encode().len(), MAX_DEVICE_LIST_BYTES - crate::HEADROOM_BYTES);
    }

    #[test]
    fn device_list_of_another_identity_is_refused_whole() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (_, list) = device_list(2, 0, &mut rng);
        let decoded = UnverifiedDeviceList::decode(&list.encode()).unwrap();
        assert_eq!(decoded.verify(&key(&identity(2))), Err(DeviceError::WrongIdentity));
    }

    #[test]
    fn device_list_refuses_bad_counts_and_entries() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let (_, list) = device_list(1, 0, &mut rng);
        let certificate = list.certificates()[0].to_bytes();

        let raw = pb::DeviceList { published_at_ms: 1, certificates: vec![], revocations: vec![] };
        assert_eq!(
            UnverifiedDeviceList::decode(&raw.encode_to_vec()),
            Err(ProtoError::MissingField { field: "DeviceList.certificates" })
        );
        let raw = pb::DeviceList {
            published_at_ms: 1,
            certificates: vec![certificate.clone(); MAX_DEVICES + 1],
            revocations: vec![],
        };
        assert_eq!(
            UnverifiedDeviceList::decode(&raw.encode_to_vec()),
            Err(ProtoError::TooMany {
                field: "DeviceList.certificates",
                count: MAX_DEVICES + 1,
                max: MAX_DEVICES
            })
        );
        let raw = pb::DeviceList {
            published_at_ms: 1,
            certificates: vec![certificate.clone()],
            revocations: vec![vec![1; REVOCATION_BYTES]; MAX_REVOCATIONS + 1],
        };
        assert_eq!(
            UnverifiedDeviceList::decode(&raw.encode_to_vec()),
            Err(ProtoError::TooMany {
                field: "DeviceList.revocations",
                count: MAX_REVOCATIONS + 1,
                max: MAX_REVOCATIONS
            })
        );
        let raw = pb::DeviceList {
            published_at_ms: 1,
            certificates: vec![certificate[..CERTIFICATE_BYTES - 1].to_vec()],
            revocations: vec![],
        };
        assert!(matches!(
            UnverifiedDeviceList::decode(&raw.encode_to_vec()),
            Err(ProtoError::Crypto { field: "DeviceList.certificates", .. })
        ));
        let raw = pb::DeviceList {
            published_at_ms: 1,
            certificates: vec![certificate],
            revocations: vec![vec![]],
        };
        assert!(matches!(
            UnverifiedDeviceList::decode(&raw.encode_to_vec()),
            Err(ProtoError::Crypto { field: "DeviceList.revocations", .. })
        ));
        assert_eq!(
            DeviceList::new(1, vec![], vec![]),
            Err(ProtoError::MissingField { field: "DeviceList.certificates" })
        );
    }
}
