//! A device's secret prekeys ([`PreKeys`]) and their lifecycle: generation,
//! rotation with a grace period, one-time prekeys consumed exactly once, and
//! the versioned record a store persists (`docs/protocol.md`, "Prekey
//! lifecycle").

use std::collections::BTreeMap;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::{
    KemPreKey, KemPreKeyKind, MAX_ONE_TIME_PREKEYS, PreKeyBundle, PreKeyId, PreKeyKind,
    PreKeyPublication, X25519PreKey, read_count, read_presence, sign_prekey,
};
use crate::agreement;
use crate::device::{DEVICE_ID_BYTES, Device, DeviceId};
use crate::encoding::{DecodeError, Reader, Writer};
use crate::identity::PublicIdentity;
use crate::kem;
use crate::signature::{SIGNATURE_BYTES, Signature, VerifyingKey};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Below this many one-time prekeys of either kind, a device should generate
/// more (up to [`MAX_ONE_TIME_PREKEYS`]) and publish them again, in keys.
pub const ONE_TIME_PREKEY_REPLENISH_BELOW: usize = 25;
/// Suggested age at which a device rotates its signed prekey and its
/// last-resort ML-KEM prekey, in milliseconds (7 days).
pub const SIGNED_PREKEY_ROTATION_PERIOD_MS: u64 = 7 * DAY_MS;
/// How long a replaced signed prekey and last-resort ML-KEM prekey still
/// answer initiations, in milliseconds (7 days). Only one generation is kept,
/// so this is at most [`SIGNED_PREKEY_ROTATION_PERIOD_MS`]; it must cover the
/// time a bundle may be cached plus the time an initiation may wait in a
/// mailbox.
pub const SIGNED_PREKEY_GRACE_PERIOD_MS: u64 = 7 * DAY_MS;

/// Version of the [`PreKeys`] record layout.
const PREKEYS_RECORD_VERSION: u8 = 1;
const SIGNED_SECRET_RECORD_BYTES: usize = 4 + 8 + agreement::KEY_BYTES + SIGNATURE_BYTES;
const ONE_TIME_SECRET_RECORD_BYTES: usize = 4 + agreement::KEY_BYTES + SIGNATURE_BYTES;
const KEM_SECRET_RECORD_BYTES: usize =
    4 + kem::SECRET_KEY_BYTES + kem::PUBLIC_KEY_BYTES + SIGNATURE_BYTES;
/// Most bytes of a [`PreKeys`] record.
pub const MAX_PREKEYS_RECORD_BYTES: usize = 1
    + DEVICE_ID_BYTES
    + 32
    + 4
    + SIGNED_SECRET_RECORD_BYTES
    + KEM_SECRET_RECORD_BYTES
    + 1
    + 8
    + SIGNED_SECRET_RECORD_BYTES
    + KEM_SECRET_RECORD_BYTES
    + 4
    + MAX_ONE_TIME_PREKEYS * ONE_TIME_SECRET_RECORD_BYTES
    + 4
    + MAX_ONE_TIME_PREKEYS * KEM_SECRET_RECORD_BYTES;

/// A signed X25519 prekey with its secret.
struct SignedPreKeySecret {
    id: PreKeyId,
    pair: agreement::KeyPair,
    created_at_ms: u64,
    signature: Signature,
}

impl SignedPreKeySecret {
    fn generate(device: &Device, id: PreKeyId, now_ms: u64, rng: &mut impl CryptoRng) -> Self {
        let pair = agreement::KeyPair::generate(rng);
        let signature = sign_prekey(device, id, PreKeyKind::Signed, pair.public().as_bytes(), rng);
        Self { id, pair, created_at_ms: now_ms, signature }
    }

    fn public(&self) -> X25519PreKey {
        X25519PreKey { id: self.id, key: *self.pair.public(), signature: self.signature }
    }

    /// `id (4) || created at ms (8) || secret (32) || signature (64)`.
    fn write_record(&self, w: &mut Writer) {
        w.u32(self.id.0)
            .u64(self.created_at_ms)
            .fixed(self.pair.secret().to_bytes().as_ref())
            .fixed(self.signature.as_bytes());
    }

    fn read_record(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = PreKeyId(r.u32()?);
        let created_at_ms = r.u64()?;
        let secret = r.secret_array::<{ agreement::KEY_BYTES }>()?;
        let pair = agreement::KeyPair::from_secret(agreement::SecretKey::from_bytes(&secret));
        Ok(Self { id, pair, created_at_ms, signature: Signature::from_bytes(r.array()?) })
    }
}

/// A one-time X25519 prekey with its secret.
struct OneTimePreKeySecret {
    id: PreKeyId,
    pair: agreement::KeyPair,
    signature: Signature,
}

impl OneTimePreKeySecret {
    fn generate(device: &Device, id: PreKeyId, rng: &mut impl CryptoRng) -> Self {
        let pair = agreement::KeyPair::generate(rng);
        let signature = sign_prekey(device, id, PreKeyKind::OneTime, pair.public().as_bytes(), rng);
        Self { id, pair, signature }
    }

    fn public(&self) -> X25519PreKey {
        X25519PreKey { id: self.id, key: *self.pair.public(), signature: self.signature }
    }

    /// `id (4) || secret (32) || signature (64)`.
    fn write_record(&self, w: &mut Writer) {
        w.u32(self.id.0)
            .fixed(self.pair.secret().to_bytes().as_ref())
            .fixed(self.signature.as_bytes());
    }

    fn read_record(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = PreKeyId(r.u32()?);
        let secret = r.secret_array::<{ agreement::KEY_BYTES }>()?;
        let pair = agreement::KeyPair::from_secret(agreement::SecretKey::from_bytes(&secret));
        Ok(Self { id, pair, signature: Signature::from_bytes(r.array()?) })
    }
}

/// An ML-KEM-768 prekey with its secret; its kind is where it is kept.
struct KemPreKeySecret {
    id: PreKeyId,
    pair: kem::KeyPair,
    signature: Signature,
}

impl KemPreKeySecret {
    fn generate(
        device: &Device,
        id: PreKeyId,
        kind: KemPreKeyKind,
        rng: &mut impl CryptoRng,
    ) -> Self {
        let pair = kem::KeyPair::generate(rng);
        let signature =
            sign_prekey(device, id, PreKeyKind::Kem(kind), pair.public().as_bytes(), rng);
        Self { id, pair, signature }
    }

    fn public(&self, kind: KemPreKeyKind) -> KemPreKey {
        KemPreKey { id: self.id, kind, key: self.pair.public().clone(), signature: self.signature }
    }

    /// `id (4) || secret (2400) || public (1184) || signature (64)`.
    fn write_record(&self, w: &mut Writer) {
        w.u32(self.id.0)
            .fixed(self.pair.secret().to_bytes().as_ref())
            .fixed(self.pair.public().as_bytes())
            .fixed(self.signature.as_bytes());
    }

    fn read_record(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = PreKeyId(r.u32()?);
        let secret = r.secret_array::<{ kem::SECRET_KEY_BYTES }>()?;
        let public = kem::PublicKey::from_bytes(&r.array()?)
            .map_err(|_| DecodeError::Invalid("ml-kem public key"))?;
        Ok(Self {
            id,
            pair: kem::KeyPair::from_parts(kem::SecretKey::from_bytes(&secret), public),
            signature: Signature::from_bytes(r.array()?),
        })
    }
}

/// The signed prekey and last-resort ML-KEM prekey a rotation replaced,
/// still answering initiations until [`SIGNED_PREKEY_GRACE_PERIOD_MS`] after
/// `retired_at_ms`.
struct RetiredPreKeys {
    retired_at_ms: u64,
    signed: SignedPreKeySecret,
    last_resort: KemPreKeySecret,
}

/// The one-time prekeys a handshake used, to be deleted with
/// [`PreKeys::consume`] once the session is known to be genuine.
#[derive(Debug, PartialEq, Eq)]
pub struct PreKeyUse {
    device: DeviceId,
    one_time: Option<PreKeyId>,
    kem_one_time: Option<PreKeyId>,
}

impl PreKeyUse {
    pub(crate) fn new(
        device: DeviceId,
        one_time: Option<PreKeyId>,
        kem_one_time: Option<PreKeyId>,
    ) -> Self {
        Self { device, one_time, kem_one_time }
    }

    /// The one-time X25519 prekey used, if any.
    pub fn one_time_prekey(&self) -> Option<PreKeyId> {
        self.one_time
    }

    /// The one-time ML-KEM prekey used, if any (none: the last resort).
    pub fn kem_one_time_prekey(&self) -> Option<PreKeyId> {
        self.kem_one_time
    }

    /// True when the handshake used only reusable prekeys (signed and last
    /// resort): consuming cannot detect its replay, so the caller must
    /// remember its ephemeral key instead ([`crate::handshake`]).
    pub fn is_reusable_only(&self) -> bool {
        self.one_time.is_none() && self.kem_one_time.is_none()
    }
}

/// A device's secret prekeys. Wiped on drop; never printed.
///
/// Every operation that changes it either succeeds whole or leaves it as it
/// was. Persist it with [`PreKeys::to_record`] after each change.
pub struct PreKeys {
    device: DeviceId,
    device_key: VerifyingKey,
    /// The next id to hand out; ids below it have been used.
    next_id: u32,
    signed: SignedPreKeySecret,
    last_resort: KemPreKeySecret,
    retired: Option<RetiredPreKeys>,
    one_time: BTreeMap<PreKeyId, OneTimePreKeySecret>,
    kem_one_time: BTreeMap<PreKeyId, KemPreKeySecret>,
}

impl PreKeys {
    /// A device's first prekeys: a signed prekey and a last-resort ML-KEM
    /// prekey made at `now_ms`, and no one-time prekeys yet
    /// ([`PreKeys::generate_one_time_prekeys`]).
    pub fn new(device: &Device, now_ms: u64, rng: &mut impl CryptoRng) -> Self {
        Self {
            device: device.id(),
            device_key: *device.certificate().signing_key(),
            next_id: 3,
            signed: SignedPreKeySecret::generate(device, PreKeyId(1), now_ms, rng),
            last_resort: KemPreKeySecret::generate(
                device,
                PreKeyId(2),
                KemPreKeyKind::LastResort,
                rng,
            ),
            retired: None,
            one_time: BTreeMap::new(),
            kem_one_time: BTreeMap::new(),
        }
    }

    /// The device these prekeys belong to.
    pub fn device_id(&self) -> DeviceId {
        self.device
    }

    /// The current signed prekey.
    pub fn signed_prekey(&self) -> X25519PreKey {
        self.signed.public()
    }

    /// The current last-resort ML-KEM prekey.
    pub fn last_resort_kem_prekey(&self) -> KemPreKey {
        self.last_resort.public(KemPreKeyKind::LastResort)
    }

    /// One-time X25519 prekeys left.
    pub fn one_time_prekey_count(&self) -> usize {
        self.one_time.len()
    }

    /// One-time ML-KEM prekeys left.
    pub fn kem_one_time_prekey_count(&self) -> usize {
        self.kem_one_time.len()
    }

    /// How many one-time prekeys of each kind can still be generated before
    /// either kind reaches [`MAX_ONE_TIME_PREKEYS`].
    pub fn one_time_prekey_room(&self) -> usize {
        MAX_ONE_TIME_PREKEYS.saturating_sub(self.one_time.len().max(self.kem_one_time.len()))
    }

    /// True when either kind of one-time prekey is below
    /// [`ONE_TIME_PREKEY_REPLENISH_BELOW`].
    pub fn needs_replenishment(&self) -> bool {
        self.one_time.len().min(self.kem_one_time.len()) < ONE_TIME_PREKEY_REPLENISH_BELOW
    }

    /// True when the signed prekey is [`SIGNED_PREKEY_ROTATION_PERIOD_MS`] old.
    pub fn needs_rotation(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.signed.created_at_ms) >= SIGNED_PREKEY_ROTATION_PERIOD_MS
    }

    fn check_device(&self, device: &Device) -> Result<(), PreKeyError> {
        if device.id() != self.device || *device.certificate().signing_key() != self.device_key {
            return Err(PreKeyError::WrongDevice);
        }
        Ok(())
    }

    /// Reserves `count` fresh ids; returns the first and the next counter.
    fn reserve_ids(&self, count: usize) -> Result<(u32, u32), PreKeyError> {
        let count = u32::try_from(count).map_err(|_| PreKeyError::IdsExhausted)?;
        let next = self.next_id.checked_add(count).ok_or(PreKeyError::IdsExhausted)?;
        Ok((self.next_id, next))
    }

    /// Generates `count` one-time X25519 prekeys and `count` one-time
    /// ML-KEM-768 prekeys, signed by `device`.
    ///
    /// # Errors
    /// [`PreKeyError::TooManyOneTimePreKeys`] when either kind would exceed
    /// [`MAX_ONE_TIME_PREKEYS`] (see [`PreKeys::one_time_prekey_room`]);
    /// [`PreKeyError::WrongDevice`]; [`PreKeyError::IdsExhausted`].
    pub fn generate_one_time_prekeys(
        &mut self,
        device: &Device,
        count: usize,
        rng: &mut impl CryptoRng,
    ) -> Result<(), PreKeyError> {
        self.check_device(device)?;
        if count > self.one_time_prekey_room() {
            return Err(PreKeyError::TooManyOneTimePreKeys {
                requested: count,
                max: MAX_ONE_TIME_PREKEYS,
            });
        }
        let (first, next_id) = self.reserve_ids(2 * count)?;
        let ids = first..next_id;
        let (x25519_ids, kem_ids) =
            (ids.clone().step_by(2).map(PreKeyId), ids.skip(1).step_by(2).map(PreKeyId));
        let one_time: Vec<_> =
            x25519_ids.map(|id| OneTimePreKeySecret::generate(device, id, rng)).collect();
        let kem_one_time: Vec<_> = kem_ids
            .map(|id| KemPreKeySecret::generate(device, id, KemPreKeyKind::OneTime, rng))
            .collect();
        self.next_id = next_id;
        self.one_time.extend(one_time.into_iter().map(|prekey| (prekey.id, prekey)));
        self.kem_one_time.extend(kem_one_time.into_iter().map(|prekey| (prekey.id, prekey)));
        Ok(())
    }

    /// Replaces the signed prekey and the last-resort ML-KEM prekey with new
    /// ones made at `now_ms`. The replaced pair keeps answering initiations
    /// until [`PreKeys::forget_retired_prekeys`] drops it,
    /// [`SIGNED_PREKEY_GRACE_PERIOD_MS`] later; a pair retired earlier is
    /// dropped now (one generation is kept).
    ///
    /// # Errors
    /// [`PreKeyError::WrongDevice`]; [`PreKeyError::IdsExhausted`].
    pub fn rotate_signed_prekey(
        &mut self,
        device: &Device,
        now_ms: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<(), PreKeyError> {
        self.check_device(device)?;
        let (first, next_id) = self.reserve_ids(2)?;
        let signed = SignedPreKeySecret::generate(device, PreKeyId(first), now_ms, rng);
        let last_resort =
            KemPreKeySecret::generate(device, PreKeyId(first + 1), KemPreKeyKind::LastResort, rng);
        self.next_id = next_id;
        let signed = std::mem::replace(&mut self.signed, signed);
        let last_resort = std::mem::replace(&mut self.last_resort, last_resort);
        self.retired = Some(RetiredPreKeys { retired_at_ms: now_ms, signed, last_resort });
        Ok(())
    }

    /// Drops the retired signed and last-resort prekeys once their grace
    /// period is over at `now_ms`: initiations made with them fail from then
    /// on with [`crate::handshake::HandshakeError::UnknownPreKey`].
    pub fn forget_retired_prekeys(&mut self, now_ms: u64) {
        if self.retired.as_ref().is_some_and(|retired| {
            now_ms.saturating_sub(retired.retired_at_ms) >= SIGNED_PREKEY_GRACE_PERIOD_MS
        }) {
            self.retired = None;
        }
    }

    /// A bundle of this device: the current signed prekey, the one-time
    /// X25519 prekey `one_time` if given, and the one-time ML-KEM prekey
    /// `kem_one_time` if given, else the last-resort one.
    ///
    /// A bundle that many initiators may fetch (a DHT record) should carry
    /// no one-time prekey: only the first handshake made with a one-time
    /// prekey can complete. Hand those out one per initiator through
    /// [`PreKeys::publication`].
    ///
    /// # Errors
    /// [`PreKeyError::UnknownPreKey`] for an id this device does not hold;
    /// [`PreKeyError::WrongDevice`]; [`PreKeyError::WrongIdentity`] when
    /// `identity` did not certify `device`.
    pub fn bundle(
        &self,
        identity: &PublicIdentity,
        device: &Device,
        one_time: Option<PreKeyId>,
        kem_one_time: Option<PreKeyId>,
    ) -> Result<PreKeyBundle, PreKeyError> {
        self.check_owner(identity, device)?;
        let one_time_prekey = one_time
            .map(|id| {
                self.one_time
                    .get(&id)
                    .map(OneTimePreKeySecret::public)
                    .ok_or(PreKeyError::UnknownPreKey { id: id.0 })
            })
            .transpose()?;
        let kem_prekey = match kem_one_time {
            None => self.last_resort_kem_prekey(),
            Some(id) => self
                .kem_one_time
                .get(&id)
                .map(|prekey| prekey.public(KemPreKeyKind::OneTime))
                .ok_or(PreKeyError::UnknownPreKey { id: id.0 })?,
        };
        Ok(PreKeyBundle {
            identity: *identity,
            device: *device.certificate(),
            signed_prekey: self.signed.public(),
            one_time_prekey,
            kem_prekey,
        })
    }

    /// Every public prekey of this device, signed, for the nodes that hand
    /// out its bundles.
    ///
    /// # Errors
    /// [`PreKeyError::WrongDevice`]; [`PreKeyError::WrongIdentity`].
    pub fn publication(
        &self,
        identity: &PublicIdentity,
        device: &Device,
    ) -> Result<PreKeyPublication, PreKeyError> {
        self.check_owner(identity, device)?;
        Ok(PreKeyPublication {
            identity: *identity,
            device: *device.certificate(),
            signed_prekey: self.signed.public(),
            last_resort: self.last_resort_kem_prekey(),
            one_time: self.one_time.values().map(OneTimePreKeySecret::public).collect(),
            kem_one_time: self
                .kem_one_time
                .values()
                .map(|prekey| prekey.public(KemPreKeyKind::OneTime))
                .collect(),
        })
    }

    fn check_owner(&self, identity: &PublicIdentity, device: &Device) -> Result<(), PreKeyError> {
        self.check_device(device)?;
        if device.certificate().identity() != identity.signing_key() {
            return Err(PreKeyError::WrongIdentity);
        }
        Ok(())
    }

    /// Deletes the one-time prekeys a handshake used. Call it only once the
    /// session's first message has decrypted (`docs/protocol.md`, "Prekey
    /// lifecycle"): a forged initiation then cannot burn prekeys.
    ///
    /// Either every prekey `used` names is deleted or none is.
    ///
    /// # Errors
    /// [`PreKeyError::UnknownPreKey`] when a prekey was already consumed: the
    /// handshake was a replay, or another initiator used the same prekey
    /// first, and its session must be dropped. [`PreKeyError::WrongDevice`]
    /// for a use of another device's prekeys.
    pub fn consume(&mut self, used: PreKeyUse) -> Result<(), PreKeyError> {
        if used.device != self.device {
            return Err(PreKeyError::WrongDevice);
        }
        if let Some(id) = used.one_time.filter(|id| !self.one_time.contains_key(id)) {
            return Err(PreKeyError::UnknownPreKey { id: id.0 });
        }
        if let Some(id) = used.kem_one_time.filter(|id| !self.kem_one_time.contains_key(id)) {
            return Err(PreKeyError::UnknownPreKey { id: id.0 });
        }
        if let Some(id) = used.one_time {
            self.one_time.remove(&id);
        }
        if let Some(id) = used.kem_one_time {
            self.kem_one_time.remove(&id);
        }
        Ok(())
    }

    /// The signed prekey `id`, current or retired.
    pub(crate) fn find_signed(&self, id: PreKeyId) -> Option<&agreement::KeyPair> {
        if self.signed.id == id {
            return Some(&self.signed.pair);
        }
        self.retired
            .as_ref()
            .filter(|retired| retired.signed.id == id)
            .map(|retired| &retired.signed.pair)
    }

    /// The one-time X25519 prekey `id`, if not consumed.
    pub(crate) fn find_one_time(&self, id: PreKeyId) -> Option<&agreement::KeyPair> {
        self.one_time.get(&id).map(|prekey| &prekey.pair)
    }

    /// The ML-KEM prekey `id`: one-time, current last resort or retired one.
    pub(crate) fn find_kem(&self, id: PreKeyId) -> Option<(&kem::KeyPair, KemPreKeyKind)> {
        if let Some(prekey) = self.kem_one_time.get(&id) {
            return Some((&prekey.pair, KemPreKeyKind::OneTime));
        }
        if self.last_resort.id == id {
            return Some((&self.last_resort.pair, KemPreKeyKind::LastResort));
        }
        self.retired
            .as_ref()
            .filter(|retired| retired.last_resort.id == id)
            .map(|retired| (&retired.last_resort.pair, KemPreKeyKind::LastResort))
    }

    fn record_len(&self) -> usize {
        1 + DEVICE_ID_BYTES
            + 32
            + 4
            + SIGNED_SECRET_RECORD_BYTES
            + KEM_SECRET_RECORD_BYTES
            + 1
            + self
                .retired
                .as_ref()
                .map_or(0, |_| 8 + SIGNED_SECRET_RECORD_BYTES + KEM_SECRET_RECORD_BYTES)
            + 4
            + self.one_time.len() * ONE_TIME_SECRET_RECORD_BYTES
            + 4
            + self.kem_one_time.len() * KEM_SECRET_RECORD_BYTES
    }

    /// The versioned record, wiped when dropped:
    ///
    /// | bytes | field |
    /// |---|---|
    /// | 1 | record version (`1`) |
    /// | 16 | device id |
    /// | 32 | device signing key |
    /// | 4 | next prekey id |
    /// | 108 | signed prekey: id (4), created at ms (8), secret (32), signature (64) |
    /// | 3652 | last-resort ML-KEM prekey: id (4), secret (2400), public (1184), signature (64) |
    /// | 1 | retired prekeys present: `0` or `1` |
    /// | 0 or 3768 | retired at ms (8), signed prekey (108), last-resort ML-KEM prekey (3652) |
    /// | 4 | number of one-time X25519 prekeys |
    /// | 100 each | id (4), secret (32), signature (64) |
    /// | 4 | number of one-time ML-KEM prekeys |
    /// | 3652 each | id (4), secret (2400), public (1184), signature (64) |
    pub fn to_record(&self) -> Zeroizing<Vec<u8>> {
        // The exact capacity: the buffer never grows, so no copy of a secret
        // is left behind in a freed allocation.
        let mut w = Writer::with_capacity(self.record_len());
        w.u8(PREKEYS_RECORD_VERSION)
            .fixed(self.device.as_bytes())
            .fixed(&self.device_key.to_bytes())
            .u32(self.next_id);
        self.signed.write_record(&mut w);
        self.last_resort.write_record(&mut w);
        match &self.retired {
            None => {
                w.u8(0);
            }
            Some(retired) => {
                w.u8(1).u64(retired.retired_at_ms);
                retired.signed.write_record(&mut w);
                retired.last_resort.write_record(&mut w);
            }
        }
        // Both maps are bounded by MAX_ONE_TIME_PREKEYS (100).
        #[allow(clippy::cast_possible_truncation)]
        w.u32(self.one_time.len() as u32);
        for prekey in self.one_time.values() {
            prekey.write_record(&mut w);
        }
        #[allow(clippy::cast_possible_truncation)]
        w.u32(self.kem_one_time.len() as u32);
        for prekey in self.kem_one_time.values() {
            prekey.write_record(&mut w);
        }
        w.into_secret_bytes()
    }

    /// Restores prekeys from [`PreKeys::to_record`].
    ///
    /// # Errors
    /// [`PreKeyError::Decode`] for a malformed record, one longer than
    /// [`MAX_PREKEYS_RECORD_BYTES`], or one whose ids are repeated or not
    /// below its id counter; [`PreKeyError::InvalidKey`] for an invalid
    /// device key.
    pub fn from_record(record: &[u8]) -> Result<Self, PreKeyError> {
        if record.len() > MAX_PREKEYS_RECORD_BYTES {
            return Err(
                DecodeError::TooLarge { len: record.len(), max: MAX_PREKEYS_RECORD_BYTES }.into()
            );
        }
        let mut r = Reader::new(record);
        let version = r.u8()?;
        if version != PREKEYS_RECORD_VERSION {
            return Err(DecodeError::UnknownVersion(version).into());
        }
        let device = DeviceId::from_bytes(r.array()?);
        let device_key =
            VerifyingKey::from_bytes(&r.array()?).map_err(|_| PreKeyError::InvalidKey)?;
        let next_id = r.u32()?;
        let signed = SignedPreKeySecret::read_record(&mut r)?;
        let last_resort = KemPreKeySecret::read_record(&mut r)?;
        let retired = if read_presence(&mut r)? {
            Some(RetiredPreKeys {
                retired_at_ms: r.u64()?,
                signed: SignedPreKeySecret::read_record(&mut r)?,
                last_resort: KemPreKeySecret::read_record(&mut r)?,
            })
        } else {
            None
        };
        let count = read_count(&mut r)?;
        let mut one_time = BTreeMap::new();
        for _ in 0..count {
            let prekey = OneTimePreKeySecret::read_record(&mut r)?;
            one_time.insert(prekey.id, prekey);
        }
        let count = read_count(&mut r)?;
        let mut kem_one_time = BTreeMap::new();
        for _ in 0..count {
            let prekey = KemPreKeySecret::read_record(&mut r)?;
            kem_one_time.insert(prekey.id, prekey);
        }
        r.finish()?;
        let prekeys = Self {
            device,
            device_key,
            next_id,
            signed,
            last_resort,
            retired,
            one_time,
            kem_one_time,
        };
        prekeys.check_ids()?;
        Ok(prekeys)
    }

    /// Every id is used once and is below the counter, so no id is reused.
    fn check_ids(&self) -> Result<(), DecodeError> {
        let mut ids = vec![self.signed.id, self.last_resort.id];
        if let Some(retired) = &self.retired {
            ids.extend([retired.signed.id, retired.last_resort.id]);
        }
        ids.extend(self.one_time.values().map(|prekey| prekey.id));
        ids.extend(self.kem_one_time.values().map(|prekey| prekey.id));
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != count || ids.iter().any(|id| id.0 >= self.next_id) {
            return Err(DecodeError::Invalid("prekey ids"));
        }
        Ok(())
    }
}

impl std::fmt::Debug for PreKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreKeys")
            .field("device", &self.device)
            .field("signed_prekey", &self.signed.id)
            .field("last_resort", &self.last_resort.id)
            .field(
                "retired",
                &self.retired.as_ref().map(|retired| (retired.signed.id, retired.last_resort.id)),
            )
            .field("one_time", &self.one_time.len())
            .field("kem_one_time", &self.kem_one_time.len())
            .field("secrets", &"<redacted>")
            .finish()
    }
}

/// Why a prekey operation failed. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PreKeyError {
    /// A malformed record.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The device (or the prekey use) is not the one these prekeys belong to.
    #[error("prekeys of another device")]
    WrongDevice,
    /// The identity did not certify the device.
    #[error("device of another identity")]
    WrongIdentity,
    /// Generating this many would exceed the limit.
    #[error("{requested} more one-time prekeys would exceed the limit of {max}")]
    TooManyOneTimePreKeys {
        /// How many were asked for.
        requested: usize,
        /// The limit per kind.
        max: usize,
    },
    /// The device has used every prekey id (2^32 of them).
    #[error("prekey ids exhausted")]
    IdsExhausted,
    /// No prekey of this id is held (never made, or already consumed).
    #[error("unknown prekey {id}")]
    UnknownPreKey {
        /// The prekey's id.
        id: u32,
    },
    /// A key in the record that is not valid.
    #[error("invalid key in prekey record")]
    InvalidKey,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::MAX_PUBLICATION_BYTES;
    use crate::bundle::tests::{Fixture, NOW, decode_and_verify};
    use crate::signature::SigningKey;

    #[test]
    fn one_time_prekeys_are_bounded() {
        let mut alice = Fixture::new(13, 0);
        let (device, rng) = (&alice.device, &mut alice.rng);
        assert_eq!(
            alice.prekeys.generate_one_time_prekeys(device, MAX_ONE_TIME_PREKEYS + 1, rng),
            Err(PreKeyError::TooManyOneTimePreKeys {
                requested: MAX_ONE_TIME_PREKEYS + 1,
                max: MAX_ONE_TIME_PREKEYS
            })
        );
        assert!(alice.prekeys.needs_replenishment());
        alice.prekeys.generate_one_time_prekeys(device, MAX_ONE_TIME_PREKEYS, rng).unwrap();
        assert_eq!(alice.prekeys.one_time_prekey_count(), MAX_ONE_TIME_PREKEYS);
        assert_eq!(alice.prekeys.kem_one_time_prekey_count(), MAX_ONE_TIME_PREKEYS);
        assert_eq!(alice.prekeys.one_time_prekey_room(), 0);
        assert!(!alice.prekeys.needs_replenishment());
        assert!(alice.prekeys.generate_one_time_prekeys(device, 1, rng).is_err());
        let publication =
            alice.prekeys.publication(&alice.identity.public(), device).unwrap().to_bytes();
        assert_eq!(publication.len(), MAX_PUBLICATION_BYTES);
        let record = alice.prekeys.to_record();
        let restored = PreKeys::from_record(&record).unwrap();
        assert_eq!(restored.one_time_prekey_count(), MAX_ONE_TIME_PREKEYS);
    }

    fn all_ids(prekeys: &PreKeys) -> Vec<u32> {
        let mut ids = vec![prekeys.signed.id.0, prekeys.last_resort.id.0];
        if let Some(retired) = &prekeys.retired {
            ids.extend([retired.signed.id.0, retired.last_resort.id.0]);
        }
        ids.extend(prekeys.one_time.keys().map(|id| id.0));
        ids.extend(prekeys.kem_one_time.keys().map(|id| id.0));
        ids
    }

    #[test]
    fn prekey_ids_are_never_reused() {
        let mut alice = Fixture::new(14, 3);
        let mut seen = all_ids(&alice.prekeys);
        for round in 0..3 {
            let (one_time, kem) = alice.first_ids();
            alice.prekeys.consume(PreKeyUse::new(alice.device.id(), one_time, kem)).unwrap();
            alice.prekeys.rotate_signed_prekey(&alice.device, NOW + round, &mut alice.rng).unwrap();
            alice.prekeys.generate_one_time_prekeys(&alice.device, 2, &mut alice.rng).unwrap();
            seen.extend(all_ids(&alice.prekeys));
        }
        let mut held = all_ids(&alice.prekeys);
        held.sort_unstable();
        held.dedup();
        assert_eq!(held.len(), all_ids(&alice.prekeys).len());
        // Every id ever held named one key: the same id always had the same key.
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), usize::try_from(alice.prekeys.next_id - 1).unwrap());
    }

    #[test]
    fn exhausted_ids_change_nothing() {
        let mut alice = Fixture::new(15, 1);
        alice.prekeys.next_id = u32::MAX - 1;
        let before = alice.prekeys.to_record();
        assert_eq!(
            alice.prekeys.generate_one_time_prekeys(&alice.device, 1, &mut alice.rng),
            Err(PreKeyError::IdsExhausted)
        );
        assert_eq!(
            alice.prekeys.rotate_signed_prekey(&alice.device, NOW, &mut alice.rng),
            Err(PreKeyError::IdsExhausted)
        );
        assert_eq!(alice.prekeys.to_record(), before);
    }

    #[test]
    fn consume_deletes_each_one_time_prekey_exactly_once() {
        let mut alice = Fixture::new(16, 2);
        let (one_time, kem) = alice.first_ids();
        let device = alice.device.id();
        alice.prekeys.consume(PreKeyUse::new(device, one_time, kem)).unwrap();
        assert_eq!(alice.prekeys.one_time_prekey_count(), 1);
        assert_eq!(alice.prekeys.kem_one_time_prekey_count(), 1);
        assert!(alice.prekeys.find_one_time(one_time.unwrap()).is_none());
        assert!(alice.prekeys.find_kem(kem.unwrap()).is_none());
        assert_eq!(
            alice.prekeys.consume(PreKeyUse::new(device, one_time, kem)),
            Err(PreKeyError::UnknownPreKey { id: one_time.unwrap().0 })
        );
        // Reusable prekeys only: nothing to delete.
        alice.prekeys.consume(PreKeyUse::new(device, None, None)).unwrap();
        assert_eq!(alice.prekeys.one_time_prekey_count(), 1);
    }

    #[test]
    fn consume_is_all_or_nothing() {
        let mut alice = Fixture::new(17, 2);
        let (one_time, kem) = alice.first_ids();
        let device = alice.device.id();
        alice.prekeys.consume(PreKeyUse::new(device, None, kem)).unwrap();
        let before = alice.prekeys.to_record();
        // The X25519 prekey is held, the ML-KEM one is gone: neither is deleted.
        assert!(alice.prekeys.consume(PreKeyUse::new(device, one_time, kem)).is_err());
        assert_eq!(alice.prekeys.to_record(), before);
        let other = DeviceId::from_bytes([0xaa; DEVICE_ID_BYTES]);
        assert_eq!(
            alice.prekeys.consume(PreKeyUse::new(other, one_time, None)),
            Err(PreKeyError::WrongDevice)
        );
        assert_eq!(alice.prekeys.to_record(), before);
    }

    #[test]
    fn rotation_keeps_the_previous_prekeys_for_the_grace_period() {
        let mut alice = Fixture::new(18, 0);
        let first = alice.prekeys.signed_prekey().id();
        let first_kem = alice.prekeys.last_resort_kem_prekey().id();
        assert!(!alice.prekeys.needs_rotation(NOW + 1));
        let later = NOW + SIGNED_PREKEY_ROTATION_PERIOD_MS;
        assert!(alice.prekeys.needs_rotation(later));
        alice.prekeys.rotate_signed_prekey(&alice.device, later, &mut alice.rng).unwrap();
        assert!(!alice.prekeys.needs_rotation(later));
        let second = alice.prekeys.signed_prekey().id();
        assert_ne!(first, second);
        assert!(alice.prekeys.find_signed(first).is_some());
        assert!(alice.prekeys.find_kem(first_kem).is_some());
        alice.prekeys.forget_retired_prekeys(later + SIGNED_PREKEY_GRACE_PERIOD_MS - 1);
        assert!(alice.prekeys.find_signed(first).is_some());
        alice.prekeys.forget_retired_prekeys(later + SIGNED_PREKEY_GRACE_PERIOD_MS);
        assert!(alice.prekeys.find_signed(first).is_none());
        assert!(alice.prekeys.find_kem(first_kem).is_none());
        assert!(alice.prekeys.find_signed(second).is_some());
        // A rotated bundle verifies.
        let bytes = alice.bundle(None, None).to_bytes();
        assert!(decode_and_verify(&bytes, Some(&alice.identity_key())).is_ok());
    }

    #[test]
    fn record_round_trips() {
        let mut alice = Fixture::new(19, 3);
        alice.prekeys.rotate_signed_prekey(&alice.device, NOW + 5, &mut alice.rng).unwrap();
        for prekeys in [&alice.prekeys, &Fixture::new(20, 0).prekeys] {
            let record = prekeys.to_record();
            let restored = PreKeys::from_record(&record).unwrap();
            assert_eq!(restored.to_record(), record);
            assert_eq!(restored.signed_prekey(), prekeys.signed_prekey());
            assert_eq!(restored.last_resort_kem_prekey(), prekeys.last_resort_kem_prekey());
            assert_eq!(all_ids(&restored), all_ids(prekeys));
        }
    }

    #[test]
    fn truncated_extended_or_foreign_record_is_refused() {
        let alice = Fixture::new(21, 1);
        let record = alice.prekeys.to_record();
        for cut in 0..record.len() {
            assert!(PreKeys::from_record(&record[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = record.to_vec();
        longer.push(0);
        assert_eq!(
            PreKeys::from_record(&longer).unwrap_err(),
            PreKeyError::Decode(DecodeError::TrailingBytes)
        );
        let mut unknown = record.to_vec();
        unknown[0] = 2;
        assert_eq!(
            PreKeys::from_record(&unknown).unwrap_err(),
            PreKeyError::Decode(DecodeError::UnknownVersion(2))
        );
        let oversized = vec![PREKEYS_RECORD_VERSION; MAX_PREKEYS_RECORD_BYTES + 1];
        assert!(matches!(
            PreKeys::from_record(&oversized),
            Err(PreKeyError::Decode(DecodeError::TooLarge { .. }))
        ));
    }

    #[test]
    fn record_with_an_id_at_or_above_its_counter_is_refused() {
        let alice = Fixture::new(22, 1);
        let mut record = alice.prekeys.to_record().to_vec();
        // The id counter follows the version, device id and device key.
        let at = 1 + DEVICE_ID_BYTES + 32;
        record[at..at + 4].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(
            PreKeys::from_record(&record).unwrap_err(),
            PreKeyError::Decode(DecodeError::Invalid("prekey ids"))
        );
    }

    #[test]
    fn operations_refuse_another_device() {
        let mut alice = Fixture::new(27, 0);
        let other = Device::new(&alice.identity, NOW, &mut alice.rng);
        let before = alice.prekeys.to_record();
        assert_eq!(
            alice.prekeys.generate_one_time_prekeys(&other, 1, &mut alice.rng),
            Err(PreKeyError::WrongDevice)
        );
        assert_eq!(
            alice.prekeys.rotate_signed_prekey(&other, NOW, &mut alice.rng),
            Err(PreKeyError::WrongDevice)
        );
        assert_eq!(alice.prekeys.to_record(), before);
        // The device key is checked too, not only the id.
        let impostor = SigningKey::generate(&mut alice.rng).verifying_key();
        alice.prekeys.device_key = impostor;
        assert_eq!(
            alice.prekeys.publication(&alice.identity.public(), &alice.device),
            Err(PreKeyError::WrongDevice)
        );
    }

    #[test]
    fn debug_of_prekeys_is_redacted() {
        let mut alice = Fixture::new(28, 2);
        alice.prekeys.rotate_signed_prekey(&alice.device, NOW, &mut alice.rng).unwrap();
        insta::assert_snapshot!(
            format!("{:?}", alice.prekeys),
            @r#"PreKeys { device: DeviceId(b57ef1b5), signed_prekey: PreKeyId(7), last_resort: PreKeyId(8), retired: Some((PreKeyId(1), PreKeyId(2))), one_time: 2, kem_one_time: 2, secrets: "<redacted>" }"#
        );
    }
}
