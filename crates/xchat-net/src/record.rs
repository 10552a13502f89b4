//! What xchat keeps in its DHT, and the checks every record passes before a
//! node stores it or hands it to its caller.
//!
//! Three kinds, told apart by the key's prefix (`docs/network.md`):
//!
//! | key | value | checked |
//! |---|---|---|
//! | `"/xchat/prekeys/1/"` (17) `\|\|` identity key (32) `\|\|` device id (16) | [`PreKeyRecord`](xchat_proto::bundle::PreKeyRecord) holding one bundle with no one-time prekey | every signature; the bundle's identity and device are the key's |
//! | `"/xchat/devices/1/"` (17) `\|\|` identity key (32) | [`DeviceList`](xchat_proto::bundle::DeviceList) | every certificate and revocation signed by the key's identity |
//! | `"/xchat/presence/1/"` (18) `\|\|` presence key (32) | [`PresenceRecord`] sealing a [`Presence`] | signed by the key; its epoch is not over |
//!
//! A presence record says which peer id and addresses a device has now,
//! sealed so that only whoever knows the device's address can read it, under
//! a key that changes every day (`xchat_crypto::presence`). Storing nodes
//! check its signature and that its day is today or yesterday by their
//! clock; they learn no identity.
//!
//! A one-time prekey never goes in a shared record: every initiator would
//! use it. The publication time is not signed, so it only orders two valid
//! copies of one record: a node keeps the later, and refuses one dated more
//! than [`MAX_RECORD_CLOCK_AHEAD_MS`] ahead of its clock (which would
//! otherwise shadow every later publication).

use libp2p::{Multiaddr, PeerId};
use xchat_crypto::device::{DEVICE_ID_BYTES, DeviceId};
use xchat_crypto::presence::{self, PresenceRecord};
use xchat_crypto::signature::{PUBLIC_KEY_BYTES, VerifyingKey};
use xchat_proto::ProtoError;
use xchat_proto::bundle::{
    MAX_DEVICE_LIST_BYTES, PreKeys, UnverifiedDeviceList, UnverifiedPreKeyRecord,
};

/// Key prefix of a device's prekey bundle.
pub const PREKEY_KEY_PREFIX: &[u8] = b"/xchat/prekeys/1/";
/// Key prefix of an identity's device list.
pub const DEVICE_LIST_KEY_PREFIX: &[u8] = b"/xchat/devices/1/";
/// Most bytes of a record's value: the largest device list (11 915 bytes);
/// a bundle is about 1.7 KB. Checked before decoding.
pub const MAX_RECORD_VALUE_BYTES: usize = MAX_DEVICE_LIST_BYTES;
/// Key prefix of a device's presence record of one day.
pub const PRESENCE_KEY_PREFIX: &[u8] = b"/xchat/presence/1/";
/// Most addresses a [`Presence`] carries.
pub const MAX_PRESENCE_ADDRESSES: usize = 8;
/// Most bytes of one address in a [`Presence`].
pub const MAX_PRESENCE_ADDRESS_BYTES: usize = 100;
/// Furthest ahead of a node's clock a record's publication time may be, in
/// milliseconds (10 minutes).
pub const MAX_RECORD_CLOCK_AHEAD_MS: u64 = 10 * 60 * 1000;

/// The key of `device`'s prekey bundle record for `identity`.
pub fn prekey_key(identity: &VerifyingKey, device: &DeviceId) -> Vec<u8> {
    [PREKEY_KEY_PREFIX, &identity.to_bytes(), device.as_bytes()].concat()
}

/// The key of `identity`'s device list record.
pub fn device_list_key(identity: &VerifyingKey) -> Vec<u8> {
    [DEVICE_LIST_KEY_PREFIX, &identity.to_bytes()].concat()
}

/// The key of a device's presence record for one day (see
/// [`xchat_crypto::presence::presence_key`]).
pub fn presence_record_key(presence_key: &VerifyingKey) -> Vec<u8> {
    [PRESENCE_KEY_PREFIX, &presence_key.to_bytes()].concat()
}

/// What a presence record says: where a device can be reached now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// The device's transport peer id.
    pub peer: PeerId,
    /// Addresses it listens on, at most [`MAX_PRESENCE_ADDRESSES`].
    pub addresses: Vec<Multiaddr>,
}

impl Presence {
    /// The payload to seal: the peer id, then each address, each a `u8`
    /// length and its bytes; addresses past [`MAX_PRESENCE_ADDRESSES`] or
    /// longer than [`MAX_PRESENCE_ADDRESS_BYTES`] are left out.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let peer = self.peer.to_bytes();
        let fields = std::iter::once(peer).chain(
            self.addresses
                .iter()
                .map(Multiaddr::to_vec)
                .filter(|a| a.len() <= MAX_PRESENCE_ADDRESS_BYTES)
                .take(MAX_PRESENCE_ADDRESSES),
        );
        for field in fields {
            // Peer ids are at most 42 bytes; addresses were filtered above.
            #[allow(clippy::cast_possible_truncation)]
            out.push(field.len() as u8);
            out.extend_from_slice(&field);
        }
        out
    }

    /// Reads a payload [`Self::encode`] made.
    ///
    /// # Errors
    /// [`RecordError::BadPresence`] for anything else.
    pub fn decode(mut bytes: &[u8]) -> Result<Self, RecordError> {
        let mut fields = Vec::new();
        while let Some((&len, rest)) = bytes.split_first() {
            let len = usize::from(len);
            if rest.len() < len || fields.len() > MAX_PRESENCE_ADDRESSES {
                // A peer id and at most MAX_PRESENCE_ADDRESSES addresses.
                return Err(RecordError::BadPresence);
            }
            let (field, rest) = rest.split_at(len);
            fields.push(field);
            bytes = rest;
        }
        let (peer, addresses) = fields.split_first().ok_or(RecordError::BadPresence)?;
        let peer = PeerId::from_bytes(peer).map_err(|_| RecordError::BadPresence)?;
        let addresses = addresses
            .iter()
            .map(|a| Multiaddr::try_from(a.to_vec()).map_err(|_| RecordError::BadPresence))
            .collect::<Result<_, _>>()?;
        Ok(Self { peer, addresses })
    }
}

/// Why a record was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The key is not one of xchat's kinds, or has the wrong length.
    #[error("unknown record key")]
    UnknownKey,
    /// The key names an identity key off the curve.
    #[error("record key names an invalid identity key")]
    InvalidKey,
    /// The value is over [`MAX_RECORD_VALUE_BYTES`].
    #[error("record value of {len} bytes over {max}")]
    TooLarge {
        /// The value's length.
        len: usize,
        /// The most accepted.
        max: usize,
    },
    /// The value did not decode.
    #[error("malformed record")]
    Malformed(#[source] ProtoError),
    /// A signature, certificate or key inside did not verify.
    #[error("record does not verify")]
    Invalid,
    /// The value is valid but belongs under another key.
    #[error("record stored under another identity or device's key")]
    WrongKey,
    /// A prekey record holding a whole publication or a one-time prekey.
    #[error("prekey record must hold one bundle without a one-time prekey")]
    NotSharedBundle,
    /// A presence record that does not verify or decode.
    #[error("invalid presence record")]
    Presence(#[from] presence::PresenceError),
    /// A presence record of a day that is over (before yesterday).
    #[error("presence record of a past day")]
    Expired,
    /// A presence payload that does not decode.
    #[error("malformed presence payload")]
    BadPresence,
    /// Published more than [`MAX_RECORD_CLOCK_AHEAD_MS`] after the node's
    /// clock.
    #[error("record dated {ahead_ms} ms ahead of the node's clock")]
    FromTheFuture {
        /// How far ahead.
        ahead_ms: u64,
    },
}

/// Checks `value` as the record at `key`, at `now_ms` by this node's clock;
/// returns its publication time, which orders two valid copies.
///
/// # Errors
/// [`RecordError`].
pub fn validate(key: &[u8], value: &[u8], now_ms: u64) -> Result<u64, RecordError> {
    if value.len() > MAX_RECORD_VALUE_BYTES {
        return Err(RecordError::TooLarge { len: value.len(), max: MAX_RECORD_VALUE_BYTES });
    }
    let published_at_ms = if let Some(rest) = key.strip_prefix(PREKEY_KEY_PREFIX) {
        let (identity, device) = split_prekey_key(rest)?;
        let record = UnverifiedPreKeyRecord::decode(value).map_err(RecordError::Malformed)?;
        let published_at_ms = record.published_at_ms;
        let record = record.verify(Some(&identity)).map_err(|_| RecordError::Invalid)?;
        let PreKeys::Bundle(bundle) = record.prekeys else {
            return Err(RecordError::NotSharedBundle);
        };
        if bundle.one_time_prekey().is_some() {
            return Err(RecordError::NotSharedBundle);
        }
        if bundle.device().device_id() != device {
            return Err(RecordError::WrongKey);
        }
        published_at_ms
    } else if let Some(rest) = key.strip_prefix(DEVICE_LIST_KEY_PREFIX) {
        let identity = identity_key(rest)?;
        let list = UnverifiedDeviceList::decode(value).map_err(RecordError::Malformed)?;
        list.verify(&identity).map_err(|_| RecordError::Invalid)?.published_at_ms()
    } else if let Some(rest) = key.strip_prefix(PRESENCE_KEY_PREFIX) {
        let record = PresenceRecord::decode(value)?;
        if rest != record.key().to_bytes() {
            return Err(RecordError::WrongKey);
        }
        if record.epoch().saturating_add(1) < presence::epoch_of(now_ms) {
            return Err(RecordError::Expired);
        }
        record.published_at_ms()
    } else {
        return Err(RecordError::UnknownKey);
    };
    let ahead_ms = published_at_ms.saturating_sub(now_ms);
    if ahead_ms > MAX_RECORD_CLOCK_AHEAD_MS {
        return Err(RecordError::FromTheFuture { ahead_ms });
    }
    Ok(published_at_ms)
}

fn identity_key(bytes: &[u8]) -> Result<VerifyingKey, RecordError> {
    let bytes: &[u8; PUBLIC_KEY_BYTES] = bytes.try_into().map_err(|_| RecordError::UnknownKey)?;
    VerifyingKey::from_bytes(bytes).map_err(|_| RecordError::InvalidKey)
}

fn split_prekey_key(rest: &[u8]) -> Result<(VerifyingKey, DeviceId), RecordError> {
    if rest.len() != PUBLIC_KEY_BYTES + DEVICE_ID_BYTES {
        return Err(RecordError::UnknownKey);
    }
    let (identity, device) = rest.split_at(PUBLIC_KEY_BYTES);
    let device: [u8; DEVICE_ID_BYTES] = device.try_into().map_err(|_| RecordError::UnknownKey)?;
    Ok((identity_key(identity)?, DeviceId::from_bytes(device)))
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;
    use xchat_crypto::bundle::PreKeys as DevicePreKeys;
    use xchat_crypto::device::Device;
    use xchat_crypto::identity::Identity;
    use xchat_crypto::phrase::RecoveryPhrase;
    use xchat_proto::bundle::{DeviceList, PreKeyRecord};

    use super::*;

    const NOW: u64 = 1_790_000_000_000;

    fn identity(entropy: u8) -> Identity {
        Identity::from_seed(&RecoveryPhrase::from_entropy(&[entropy; 32]).to_seed("")).unwrap()
    }

    struct Published {
        identity: VerifyingKey,
        device: DeviceId,
        bundle: Vec<u8>,
        with_one_time: Vec<u8>,
        publication: Vec<u8>,
        devices: Vec<u8>,
    }

    fn published(entropy: u8, at_ms: u64) -> Published {
        let mut rng = ChaCha20Rng::seed_from_u64(entropy.into());
        let alice = identity(entropy);
        let device = Device::new(&alice, NOW, &mut rng);
        let mut prekeys = DevicePreKeys::new(&device, NOW, &mut rng);
        prekeys.generate_one_time_prekeys(&device, 2, &mut rng).unwrap();
        let mut publication = prekeys.publication(&alice.public(), &device).unwrap();
        let record = |prekeys| PreKeyRecord { published_at_ms: at_ms, prekeys }.encode();
        let list = DeviceList::new(at_ms, vec![*device.certificate()], Vec::new()).unwrap();
        Published {
            identity: alice.signing_key().verifying_key(),
            device: device.id(),
            bundle: record(PreKeys::Bundle(publication.last_resort_bundle())),
            with_one_time: record(PreKeys::Bundle(publication.take_bundle())),
            publication: record(PreKeys::Publication(publication)),
            devices: list.encode(),
        }
    }

    #[test]
    fn a_shared_bundle_and_a_device_list_are_accepted_under_their_keys() {
        let alice = published(1, NOW);
        let key = prekey_key(&alice.identity, &alice.device);
        assert_eq!(key.len(), 17 + 32 + 16);
        assert_eq!(validate(&key, &alice.bundle, NOW).unwrap(), NOW);
        let key = device_list_key(&alice.identity);
        assert_eq!(validate(&key, &alice.devices, NOW).unwrap(), NOW);
    }

    #[test]
    fn a_record_under_another_identity_or_device_is_refused() {
        let (alice, bob) = (published(1, NOW), published(2, NOW));
        let bobs = prekey_key(&bob.identity, &alice.device);
        assert!(matches!(validate(&bobs, &alice.bundle, NOW), Err(RecordError::Invalid)));
        let other_device = prekey_key(&alice.identity, &bob.device);
        assert!(matches!(validate(&other_device, &alice.bundle, NOW), Err(RecordError::WrongKey)));
        let bobs = device_list_key(&bob.identity);
        assert!(matches!(validate(&bobs, &alice.devices, NOW), Err(RecordError::Invalid)));
    }

    #[test]
    fn one_time_prekeys_and_publications_stay_out_of_the_dht() {
        let alice = published(1, NOW);
        let key = prekey_key(&alice.identity, &alice.device);
        for value in [&alice.with_one_time, &alice.publication] {
            assert!(matches!(
                validate(&key, value, NOW),
                Err(RecordError::NotSharedBundle | RecordError::TooLarge { .. })
            ));
        }
    }

    #[test]
    fn records_from_the_future_are_refused() {
        let alice = published(1, NOW + MAX_RECORD_CLOCK_AHEAD_MS + 1);
        let key = prekey_key(&alice.identity, &alice.device);
        assert!(matches!(
            validate(&key, &alice.bundle, NOW),
            Err(RecordError::FromTheFuture { .. })
        ));
    }

    #[test]
    fn garbage_keys_and_values_are_refused() {
        let alice = published(1, NOW);
        assert!(matches!(
            validate(b"/ipfs/pk/x", &alice.bundle, NOW),
            Err(RecordError::UnknownKey)
        ));
        let short = [PREKEY_KEY_PREFIX, &[1; 10]].concat();
        assert!(matches!(validate(&short, &alice.bundle, NOW), Err(RecordError::UnknownKey)));
        let key = prekey_key(&alice.identity, &alice.device);
        assert!(matches!(validate(&key, &[0xff; 64], NOW), Err(RecordError::Malformed(_))));
        let big = vec![0; MAX_RECORD_VALUE_BYTES + 1];
        assert!(matches!(validate(&key, &big, NOW), Err(RecordError::TooLarge { .. })));
    }

    fn presence(entropy: u8, at_ms: u64) -> (Identity, DeviceId, PresenceRecord, Presence) {
        let mut rng = ChaCha20Rng::seed_from_u64(entropy.into());
        let alice = identity(entropy);
        let device = DeviceId::from_bytes([entropy; 16]);
        let here = Presence {
            peer: PeerId::random(),
            addresses: vec![
                "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
                "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap(),
            ],
        };
        let record = PresenceRecord::seal(&alice, device, at_ms, &here.encode(), &mut rng).unwrap();
        (alice, device, record, here)
    }

    #[test]
    fn a_presence_record_is_accepted_under_its_key_and_read_by_a_contact() {
        let (alice, device, record, here) = presence(1, NOW);
        let key = presence_record_key(record.key());
        assert_eq!(validate(&key, record.as_bytes(), NOW).unwrap(), NOW);
        let epoch = presence::epoch_of(NOW);
        let payload = record.open(&alice.signing_key().verifying_key(), device, epoch).unwrap();
        assert_eq!(Presence::decode(&payload).unwrap(), here);
    }

    #[test]
    fn a_presence_record_under_another_key_or_of_a_past_day_is_refused() {
        let (_, _, record, _) = presence(1, NOW);
        let (_, _, other, _) = presence(2, NOW);
        let key = presence_record_key(other.key());
        assert!(matches!(validate(&key, record.as_bytes(), NOW), Err(RecordError::WrongKey)));
        let key = presence_record_key(record.key());
        let day = presence::EPOCH_MS;
        assert!(validate(&key, record.as_bytes(), NOW + day).is_ok());
        assert!(matches!(
            validate(&key, record.as_bytes(), NOW + 2 * day),
            Err(RecordError::Expired)
        ));
        let mut tampered = record.as_bytes().to_vec();
        tampered[60] ^= 1;
        assert!(matches!(validate(&key, &tampered, NOW), Err(RecordError::Presence(_))));
    }

    #[test]
    fn presence_payloads_that_do_not_decode_are_refused() {
        for bad in [&[][..], &[5, 1, 2], &[1, 0xff], &[200; 3]] {
            assert!(Presence::decode(bad).is_err(), "{bad:?}");
        }
        let many = Presence {
            peer: PeerId::random(),
            addresses: vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap(); 20],
        };
        assert_eq!(Presence::decode(&many.encode()).unwrap().addresses.len(), 8);
    }

    proptest::proptest! {
        #[test]
        fn any_value_under_any_kind_of_key_is_refused_without_panic(
            kind in 0usize..4,
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
        ) {
            let prefix =
                [PREKEY_KEY_PREFIX, DEVICE_LIST_KEY_PREFIX, PRESENCE_KEY_PREFIX, b"/other/"][kind];
            let key = [prefix, &tail].concat();
            proptest::prop_assert!(validate(&key, &value, NOW).is_err());
        }
    }
}
