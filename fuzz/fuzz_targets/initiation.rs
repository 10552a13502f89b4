//! Decodes arbitrary bytes as a handshake initiation and answers it with a
//! fixed responder's prekeys.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_crypto::bundle::PreKeys;
use xchat_crypto::device::Device;
use xchat_crypto::handshake::{self, UnverifiedInitiation};
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::RecoveryPhrase;

struct Responder {
    identity: Identity,
    device: Device,
    prekeys: PreKeys,
}

static RESPONDER: LazyLock<Option<Responder>> = LazyLock::new(|| {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let seed = RecoveryPhrase::from_entropy(&[6u8; 32]).to_seed("");
    let identity = Identity::from_seed(&seed).ok()?;
    let device = Device::new(&identity, 0, &mut rng);
    let mut prekeys = PreKeys::new(&device, 0, &mut rng);
    prekeys.generate_one_time_prekeys(&device, 4, &mut rng).ok()?;
    Some(Responder { identity, device, prekeys })
});

fuzz_target!(|data: &[u8]| {
    let Some(responder) = RESPONDER.as_ref() else {
        return;
    };
    if let Ok(initiation) = UnverifiedInitiation::from_bytes(data) {
        let _ = handshake::respond(
            &responder.identity,
            &responder.device,
            &responder.prekeys,
            initiation,
            None,
        );
    }
});
