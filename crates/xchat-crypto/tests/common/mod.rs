//! A pair of sessions as a real handshake leaves them, shared by the
//! integration tests and the benchmarks (`#[path]`-included there).

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use xchat_crypto::bundle::PreKeys;
use xchat_crypto::device::Device;
use xchat_crypto::handshake::{self, UnverifiedInitiation};
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::Seed;
use xchat_crypto::ratchet::Session;

/// An initiator and a responder right after the PQXDH handshake (nothing
/// sent yet), with the RNG that made them.
///
/// # Panics
/// Never for the fixed inputs it uses; a panic is a broken handshake.
#[allow(clippy::unwrap_used)]
pub(crate) fn session_pair(seed: u64) -> (Session, Session, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut identity = || {
        let mut bytes = [0u8; 64];
        rng.fill_bytes(&mut bytes);
        Identity::from_seed(&Seed::from_bytes(&bytes).unwrap()).unwrap()
    };
    let (alice, bob) = (identity(), identity());
    let alice_device = Device::new(&alice, 0, &mut rng);
    let bob_device = Device::new(&bob, 0, &mut rng);
    let prekeys = PreKeys::new(&bob_device, 0, &mut rng);
    let bundle = prekeys.bundle(&bob.public(), &bob_device, None, None).unwrap();
    let initiated = handshake::initiate(&alice, &alice_device, &bundle, &mut rng).unwrap();
    let initiation = UnverifiedInitiation::from_bytes(&initiated.initiation.to_bytes()).unwrap();
    let responded = handshake::respond(&bob, &bob_device, &prekeys, initiation, None).unwrap();
    let initiator =
        Session::new_initiator(initiated.keys, initiated.their_ratchet_key, &mut rng).unwrap();
    let responder = Session::new_responder(responded.keys, responded.our_ratchet_key);
    (initiator, responder, rng)
}
