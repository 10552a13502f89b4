//! The PQXDH-style handshake end to end, through the public API only: a
//! device publishes prekeys, another fetches a bundle and initiates, the
//! first answers from its (possibly restored) prekeys.

// The helpers below are test code too.
#![allow(clippy::unwrap_used)]

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use subtle::ConstantTimeEq;
use xchat_crypto::DecodeError;
use xchat_crypto::bundle::{
    KemPreKeyKind, PreKeyBundle, PreKeyError, PreKeyId, PreKeys, UnverifiedPreKeyBundle,
};
use xchat_crypto::device::Device;
use xchat_crypto::handshake::{
    HandshakeError, Initiated, MAX_INITIATION_BYTES, Responded, SessionKeys, UnverifiedInitiation,
    initiate, respond,
};
use xchat_crypto::identity::Identity;
use xchat_crypto::kdf;
use xchat_crypto::kem;
use xchat_crypto::phrase::Seed;

const NOW: u64 = 1_700_000_000_000;
/// Offsets in an initiation: suite (1), identity (129), certificate (185),
/// responder's device id (16), ephemeral key (32), signed prekey id (4).
const RECIPIENT_AT: usize = 1 + 129 + 185;
const EPHEMERAL_AT: usize = RECIPIENT_AT + 16;
const PRESENCE_AT: usize = EPHEMERAL_AT + 32 + 4;

struct Party {
    identity: Identity,
    device: Device,
    prekeys: PreKeys,
}

impl Party {
    fn new(seed: u8, rng: &mut ChaCha20Rng) -> Self {
        let identity = Identity::from_seed(&Seed::from_bytes(&[seed; 64]).unwrap()).unwrap();
        let device = Device::new(&identity, NOW, rng);
        let mut prekeys = PreKeys::new(&device, NOW, rng);
        prekeys.generate_one_time_prekeys(&device, 3, rng).unwrap();
        Self { identity, device, prekeys }
    }

    /// A bundle as an initiator gets it (through bytes, verified), with the
    /// device's next one-time prekeys of the kinds asked for.
    fn bundle(&self, one_time: bool, kem_one_time: bool) -> PreKeyBundle {
        let next =
            self.prekeys.publication(&self.identity.public(), &self.device).unwrap().take_bundle();
        let bundle = self
            .prekeys
            .bundle(
                &self.identity.public(),
                &self.device,
                one_time.then(|| next.one_time_prekey().unwrap().id()),
                kem_one_time.then(|| next.kem_prekey().id()),
            )
            .unwrap();
        UnverifiedPreKeyBundle::from_bytes(&bundle.to_bytes())
            .unwrap()
            .verify(Some(&self.identity.signing_key().verifying_key()))
            .unwrap()
    }

    fn respond_to(&self, initiation: &[u8]) -> Result<Responded, HandshakeError> {
        respond(
            &self.identity,
            &self.device,
            &self.prekeys,
            UnverifiedInitiation::from_bytes(initiation)?,
            None,
        )
    }
}

fn same(a: &SessionKeys, b: &SessionKeys) -> bool {
    bool::from(a.ct_eq(b))
}

fn setup(seed: u64) -> (ChaCha20Rng, Party, Party) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let alice = Party::new(1, &mut rng);
    let bob = Party::new(2, &mut rng);
    (rng, alice, bob)
}

fn start(alice: &Party, bundle: &PreKeyBundle, rng: &mut ChaCha20Rng) -> Initiated {
    initiate(&alice.identity, &alice.device, bundle, rng).unwrap()
}

#[test]
fn both_sides_derive_identical_keys_for_every_kind_of_bundle() {
    let (mut rng, alice, bob) = setup(1);
    for (one_time, kem_one_time) in [(true, true), (false, false), (true, false), (false, true)] {
        let bundle = bob.bundle(one_time, kem_one_time);
        let initiated = start(&alice, &bundle, &mut rng);
        let bytes = initiated.initiation.to_bytes();
        assert!(bytes.len() <= MAX_INITIATION_BYTES);
        let responded = bob.respond_to(&bytes).unwrap();
        assert!(
            same(&initiated.keys, &responded.keys),
            "one-time {one_time}, kem one-time {kem_one_time}"
        );
        assert_eq!(&initiated.their_ratchet_key, responded.our_ratchet_key.public());
        assert_eq!(
            responded.prekey_use.one_time_prekey(),
            bundle.one_time_prekey().map(|prekey| prekey.id())
        );
        let kem = bundle.kem_prekey();
        assert_eq!(
            responded.prekey_use.kem_one_time_prekey(),
            (kem.kind() == KemPreKeyKind::OneTime).then_some(kem.id())
        );
        assert_eq!(responded.prekey_use.is_reusable_only(), !one_time && !kem_one_time);
    }
}

#[test]
fn initiation_round_trips_through_bytes() {
    let (mut rng, alice, bob) = setup(2);
    let bundle = bob.bundle(true, true);
    let initiation = start(&alice, &bundle, &mut rng).initiation;
    assert_eq!(initiation.to_bytes().len(), MAX_INITIATION_BYTES);
    let decoded = UnverifiedInitiation::from_bytes(&initiation.to_bytes()).unwrap();
    assert_eq!(decoded.ephemeral_key(), initiation.ephemeral_key());
    assert_eq!(decoded.recipient_device(), bob.device.id());
    assert_eq!(decoded.signed_prekey_id(), bundle.signed_prekey().id());
    assert_eq!(decoded.one_time_prekey_id(), bundle.one_time_prekey().map(|prekey| prekey.id()));
    assert_eq!(decoded.kem_prekey_id(), bundle.kem_prekey().id());
    assert_eq!(initiation.initiator(), &alice.identity.public());
    assert_eq!(initiation.initiator_device(), alice.device.certificate());
}

#[test]
fn every_flipped_initiation_byte_gives_an_error_or_other_keys() {
    let (mut rng, alice, bob) = setup(3);
    for bundle in [bob.bundle(true, true), bob.bundle(false, false)] {
        let initiated = start(&alice, &bundle, &mut rng);
        let bytes = initiated.initiation.to_bytes();
        for i in 0..bytes.len() {
            for mask in [0x01, 0x80] {
                let mut tampered = bytes.clone();
                tampered[i] ^= mask;
                if let Ok(responded) = bob.respond_to(&tampered) {
                    assert!(
                        !same(&initiated.keys, &responded.keys),
                        "flipping bit {mask:#x} of byte {i} went unnoticed"
                    );
                }
            }
        }
    }
}

#[test]
fn truncated_or_extended_initiation_does_not_decode() {
    let (mut rng, alice, bob) = setup(4);
    for bundle in [bob.bundle(true, true), bob.bundle(false, false)] {
        let bytes = start(&alice, &bundle, &mut rng).initiation.to_bytes();
        for cut in 0..bytes.len() {
            assert!(UnverifiedInitiation::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(UnverifiedInitiation::from_bytes(&longer).is_err());
    }
    let oversized = vec![1u8; MAX_INITIATION_BYTES + 1];
    assert_eq!(
        UnverifiedInitiation::from_bytes(&oversized),
        Err(DecodeError::TooLarge { len: MAX_INITIATION_BYTES + 1, max: MAX_INITIATION_BYTES })
    );
}

#[test]
fn initiation_without_the_kem_part_does_not_decode() {
    let (mut rng, alice, bob) = setup(5);
    for bundle in [bob.bundle(true, true), bob.bundle(false, false)] {
        let bytes = start(&alice, &bundle, &mut rng).initiation.to_bytes();
        // Without the ciphertext, and without the ML-KEM prekey id too.
        for stripped in [kem::CIPHERTEXT_BYTES, 4 + kem::CIPHERTEXT_BYTES] {
            assert_eq!(
                UnverifiedInitiation::from_bytes(&bytes[..bytes.len() - stripped]),
                Err(DecodeError::Truncated)
            );
        }
        // A classical-only initiation claiming no one-time prekey cannot
        // borrow the ML-KEM bytes as padding either.
        let mut no_kem = bytes[..bytes.len() - 4 - kem::CIPHERTEXT_BYTES].to_vec();
        no_kem[PRESENCE_AT] = 0;
        assert!(UnverifiedInitiation::from_bytes(&no_kem).is_err());
    }
}

#[test]
fn swapped_kem_ciphertext_gives_other_keys() {
    let (mut rng, alice, bob) = setup(6);
    let bundle = bob.bundle(true, true);
    let first = start(&alice, &bundle, &mut rng);
    let second = start(&alice, &bundle, &mut rng);
    let mut bytes = first.initiation.to_bytes();
    let other = second.initiation.to_bytes();
    let at = bytes.len() - kem::CIPHERTEXT_BYTES;
    bytes[at..].copy_from_slice(&other[at..]);
    let responded = bob.respond_to(&bytes).unwrap();
    assert!(!same(&first.keys, &responded.keys));
    assert!(!same(&second.keys, &responded.keys));
}

#[test]
fn swapped_kem_prekey_id_gives_other_keys_or_an_error() {
    let (mut rng, alice, bob) = setup(7);
    let one_time_kem = bob.bundle(true, true);
    let last_resort = bob.bundle(true, false);
    let initiated = start(&alice, &one_time_kem, &mut rng);
    let bytes = initiated.initiation.to_bytes();
    let id_at = bytes.len() - kem::CIPHERTEXT_BYTES - 4;
    let others = [
        last_resort.kem_prekey().id(),
        PreKeyId::new(one_time_kem.kem_prekey().id().get() + 2),
        PreKeyId::new(u32::MAX),
    ];
    for other in others {
        let mut tampered = bytes.clone();
        tampered[id_at..id_at + 4].copy_from_slice(&other.get().to_be_bytes());
        match bob.respond_to(&tampered) {
            Ok(responded) => assert!(!same(&initiated.keys, &responded.keys)),
            Err(error) => assert_eq!(error, HandshakeError::UnknownPreKey),
        }
    }
    // Pointing an initiation made to the last resort at a one-time ML-KEM
    // prekey is no better.
    let initiated = start(&alice, &last_resort, &mut rng);
    let mut tampered = initiated.initiation.to_bytes();
    tampered[id_at..id_at + 4].copy_from_slice(&one_time_kem.kem_prekey().id().get().to_be_bytes());
    let responded = bob.respond_to(&tampered).unwrap();
    assert!(!same(&initiated.keys, &responded.keys));
}

#[test]
fn respond_refuses_a_replay_after_consume() {
    let (mut rng, alice, mut bob) = setup(8);
    let bytes = start(&alice, &bob.bundle(true, true), &mut rng).initiation.to_bytes();
    let responded = bob.respond_to(&bytes).unwrap();
    // Until the first message has decrypted, the initiation can be answered again.
    let again = bob.respond_to(&bytes).unwrap();
    assert!(same(&responded.keys, &again.keys));
    bob.prekeys.consume(responded.prekey_use).unwrap();
    assert_eq!(bob.respond_to(&bytes).unwrap_err(), HandshakeError::UnknownPreKey);
    // A duplicate answered before the consume cannot consume a second time.
    assert!(matches!(
        bob.prekeys.consume(again.prekey_use),
        Err(PreKeyError::UnknownPreKey { .. })
    ));
}

#[test]
fn a_one_time_kem_prekey_alone_still_detects_replay() {
    let (mut rng, alice, mut bob) = setup(9);
    let bytes = start(&alice, &bob.bundle(false, true), &mut rng).initiation.to_bytes();
    let responded = bob.respond_to(&bytes).unwrap();
    bob.prekeys.consume(responded.prekey_use).unwrap();
    assert_eq!(bob.respond_to(&bytes).unwrap_err(), HandshakeError::UnknownPreKey);
}

#[test]
fn reusable_only_initiations_are_told_apart_by_their_ephemeral_key() {
    let (mut rng, alice, mut bob) = setup(10);
    let bundle = bob.bundle(false, false);
    let first = start(&alice, &bundle, &mut rng).initiation.to_bytes();
    let second = start(&alice, &bundle, &mut rng).initiation.to_bytes();
    let responded = bob.respond_to(&first).unwrap();
    assert!(responded.prekey_use.is_reusable_only());
    bob.prekeys.consume(responded.prekey_use).unwrap();
    // Consuming cannot catch this replay: the caller's record of ephemeral keys does.
    assert!(bob.respond_to(&first).is_ok());
    let first = UnverifiedInitiation::from_bytes(&first).unwrap();
    let second = UnverifiedInitiation::from_bytes(&second).unwrap();
    assert_ne!(first.ephemeral_key(), second.ephemeral_key());
}

#[test]
fn changed_initiator_identity_is_refused() {
    let (mut rng, alice, bob) = setup(11);
    let mallory = Party::new(3, &mut rng);
    let bytes = start(&mallory, &bob.bundle(true, true), &mut rng).initiation.to_bytes();
    let alice_key = alice.identity.signing_key().verifying_key();
    let result = respond(
        &bob.identity,
        &bob.device,
        &bob.prekeys,
        UnverifiedInitiation::from_bytes(&bytes).unwrap(),
        Some(&alice_key),
    );
    assert_eq!(result.unwrap_err(), HandshakeError::ChangedIdentity);
    let mallory_key = mallory.identity.signing_key().verifying_key();
    let responded = respond(
        &bob.identity,
        &bob.device,
        &bob.prekeys,
        UnverifiedInitiation::from_bytes(&bytes).unwrap(),
        Some(&mallory_key),
    )
    .unwrap();
    assert_eq!(responded.their_identity, mallory.identity.public());
}

#[test]
fn initiator_device_of_another_identity_is_refused() {
    let (mut rng, alice, bob) = setup(12);
    let mallory = Party::new(3, &mut rng);
    let mut bytes = start(&alice, &bob.bundle(true, true), &mut rng).initiation.to_bytes();
    // Alice's identity with Mallory's device certificate.
    bytes[1 + 129..RECIPIENT_AT].copy_from_slice(&mallory.device.certificate().to_bytes());
    assert!(matches!(bob.respond_to(&bytes), Err(HandshakeError::InvalidDeviceCertificate(_))));
}

#[test]
fn initiation_for_another_device_is_refused() {
    let (mut rng, alice, bob) = setup(13);
    let bob_laptop = Device::new(&bob.identity, NOW, &mut rng);
    let laptop_prekeys = PreKeys::new(&bob_laptop, NOW, &mut rng);
    let bytes = start(&alice, &bob.bundle(false, false), &mut rng).initiation.to_bytes();
    // Both devices have a signed prekey 1: the device id tells them apart.
    let result = respond(
        &bob.identity,
        &bob_laptop,
        &laptop_prekeys,
        UnverifiedInitiation::from_bytes(&bytes).unwrap(),
        None,
    );
    assert_eq!(result.unwrap_err(), HandshakeError::WrongRecipient);
    // Prekeys of another device than the one answering are a caller error.
    let result = respond(
        &bob.identity,
        &bob.device,
        &laptop_prekeys,
        UnverifiedInitiation::from_bytes(&bytes).unwrap(),
        None,
    );
    assert!(matches!(result, Err(HandshakeError::Internal(_))));
}

#[test]
fn unknown_prekey_ids_are_refused() {
    let (mut rng, alice, bob) = setup(14);
    let bytes = start(&alice, &bob.bundle(true, true), &mut rng).initiation.to_bytes();
    let signed_at = EPHEMERAL_AT + 32;
    let one_time_at = PRESENCE_AT + 1;
    for at in [signed_at, one_time_at] {
        let mut tampered = bytes.clone();
        tampered[at..at + 4].copy_from_slice(&999u32.to_be_bytes());
        assert_eq!(bob.respond_to(&tampered).unwrap_err(), HandshakeError::UnknownPreKey);
    }
}

#[test]
fn low_order_ephemeral_key_is_refused() {
    let (mut rng, alice, bob) = setup(15);
    let mut bytes = start(&alice, &bob.bundle(true, true), &mut rng).initiation.to_bytes();
    for point in [[0u8; 32], {
        let mut one = [0u8; 32];
        one[0] = 1;
        one
    }] {
        bytes[EPHEMERAL_AT..EPHEMERAL_AT + 32].copy_from_slice(&point);
        assert_eq!(bob.respond_to(&bytes).unwrap_err(), HandshakeError::WeakKey);
    }
}

#[test]
fn signed_low_order_prekey_is_refused_by_the_initiator() {
    let (mut rng, alice, bob) = setup(16);
    let mut bytes = bob.bundle(false, false).to_bytes();
    let at = 1 + 129 + 185;
    let id: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
    let low_order = [0u8; 32];
    // The signed message of docs/protocol.md: device id || prekey id || kind (1) || key.
    let mut message = bob.device.id().as_bytes().to_vec();
    message.extend_from_slice(&id);
    message.push(1);
    message.extend_from_slice(&low_order);
    let signature = bob.device.signing_key().sign(kdf::SIG_SIGNED_PREKEY, &message, &mut rng);
    bytes[at + 4..at + 36].copy_from_slice(&low_order);
    bytes[at + 36..at + 100].copy_from_slice(signature.as_bytes());
    let bundle = UnverifiedPreKeyBundle::from_bytes(&bytes)
        .unwrap()
        .verify(None)
        .expect("the device signed it");
    assert_eq!(
        initiate(&alice.identity, &alice.device, &bundle, &mut rng).unwrap_err(),
        HandshakeError::WeakKey
    );
}

#[test]
fn restored_prekeys_answer_the_same_initiation() {
    let (mut rng, alice, bob) = setup(17);
    let initiated = start(&alice, &bob.bundle(true, true), &mut rng);
    let bytes = initiated.initiation.to_bytes();
    let restored = PreKeys::from_record(&bob.prekeys.to_record()).unwrap();
    let responded = respond(
        &bob.identity,
        &bob.device,
        &restored,
        UnverifiedInitiation::from_bytes(&bytes).unwrap(),
        None,
    )
    .unwrap();
    assert!(same(&initiated.keys, &responded.keys));
}

#[test]
fn retired_signed_prekey_answers_until_its_grace_period_ends() {
    let (mut rng, alice, mut bob) = setup(18);
    let initiated = start(&alice, &bob.bundle(true, false), &mut rng);
    let bytes = initiated.initiation.to_bytes();
    let rotated_at = NOW + xchat_crypto::bundle::SIGNED_PREKEY_ROTATION_PERIOD_MS;
    bob.prekeys.rotate_signed_prekey(&bob.device, rotated_at, &mut rng).unwrap();
    let responded = bob.respond_to(&bytes).unwrap();
    assert!(same(&initiated.keys, &responded.keys));
    bob.prekeys
        .forget_retired_prekeys(rotated_at + xchat_crypto::bundle::SIGNED_PREKEY_GRACE_PERIOD_MS);
    assert_eq!(bob.respond_to(&bytes).unwrap_err(), HandshakeError::UnknownPreKey);
    // New bundles carry the new signed prekey and work.
    let initiated = start(&alice, &bob.bundle(true, false), &mut rng);
    let responded = bob.respond_to(&initiated.initiation.to_bytes()).unwrap();
    assert!(same(&initiated.keys, &responded.keys));
}

#[test]
fn devices_of_another_identity_are_refused_as_arguments() {
    let (mut rng, alice, bob) = setup(19);
    let bundle = bob.bundle(true, true);
    assert!(matches!(
        initiate(&alice.identity, &bob.device, &bundle, &mut rng),
        Err(HandshakeError::Internal(_))
    ));
    let bytes = start(&alice, &bundle, &mut rng).initiation.to_bytes();
    assert!(matches!(
        respond(
            &alice.identity,
            &bob.device,
            &bob.prekeys,
            UnverifiedInitiation::from_bytes(&bytes).unwrap(),
            None
        ),
        Err(HandshakeError::Internal(_))
    ));
}

mod decoders {
    use super::*;
    use proptest::prelude::*;
    use xchat_crypto::bundle::UnverifiedPreKeyPublication;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = UnverifiedPreKeyBundle::from_bytes(&bytes).map(|bundle| bundle.verify(None));
            let _ = UnverifiedPreKeyPublication::from_bytes(&bytes)
                .map(|publication| publication.verify(None));
            let _ = UnverifiedInitiation::from_bytes(&bytes);
            let _ = PreKeys::from_record(&bytes);
        }

        #[test]
        fn any_overwritten_initiation_byte_gives_an_error_or_other_keys(
            seed in any::<u64>(),
            at in any::<prop::sample::Index>(),
            value in any::<u8>(),
        ) {
            let (mut rng, alice, bob) = setup(seed);
            let initiated = start(&alice, &bob.bundle(true, true), &mut rng);
            let mut bytes = initiated.initiation.to_bytes();
            let at = at.index(bytes.len());
            prop_assume!(bytes[at] != value);
            bytes[at] = value;
            if let Ok(responded) = bob.respond_to(&bytes) {
                prop_assert!(!same(&initiated.keys, &responded.keys));
            }
        }
    }
}
