//! Decrypts arbitrary bytes as a ratchet message of a live session: nothing
//! the fuzzer makes can decrypt, and a refusal changes nothing.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_crypto::bundle::{PreKeys, UnverifiedPreKeyBundle};
use xchat_crypto::device::Device;
use xchat_crypto::handshake::{self, UnverifiedInitiation};
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_crypto::ratchet::Session;

/// The record of the responder's session after one message.
static SESSION: LazyLock<Option<Vec<u8>>> = LazyLock::new(|| {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let alice = Identity::from_seed(&RecoveryPhrase::from_entropy(&[1; 32]).to_seed("")).ok()?;
    let bob = Identity::from_seed(&RecoveryPhrase::from_entropy(&[2; 32]).to_seed("")).ok()?;
    let alice_device = Device::new(&alice, 0, &mut rng);
    let bob_device = Device::new(&bob, 0, &mut rng);
    let prekeys = PreKeys::new(&bob_device, 0, &mut rng);
    let bundle = prekeys.bundle(&bob.public(), &bob_device, None, None).ok()?;
    let bundle = UnverifiedPreKeyBundle::from_bytes(&bundle.to_bytes()).ok()?.verify(None).ok()?;
    let initiated = handshake::initiate(&alice, &alice_device, &bundle, &mut rng).ok()?;
    let initiation = UnverifiedInitiation::from_bytes(&initiated.initiation.to_bytes()).ok()?;
    let responded = handshake::respond(&bob, &bob_device, &prekeys, initiation, None).ok()?;
    let mut a =
        Session::new_initiator(initiated.keys, initiated.their_ratchet_key, &mut rng).ok()?;
    let mut b = Session::new_responder(responded.keys, responded.our_ratchet_key);
    b.decrypt(&a.encrypt(b"hi", &mut rng).ok()?, &mut rng).ok()?;
    Some(b.to_record().to_vec())
});

fuzz_target!(|data: &[u8]| {
    let Some(record) = SESSION.as_ref() else { return };
    let Ok(mut session) = Session::from_record(record) else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    assert!(session.decrypt(data, &mut rng).is_err());
    assert_eq!(session.to_record().as_slice(), record.as_slice());
});
