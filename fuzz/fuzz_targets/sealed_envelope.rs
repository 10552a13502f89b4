//! Opens arbitrary bytes as a sealed envelope addressed to a fixed device.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_crypto::device::Device;
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_crypto::sealed;

static DEVICE: LazyLock<Option<Device>> = LazyLock::new(|| {
    let seed = RecoveryPhrase::from_entropy(&[5u8; 32]).to_seed("");
    let identity = Identity::from_seed(&seed).ok()?;
    Some(Device::new(&identity, 0, &mut ChaCha20Rng::seed_from_u64(5)))
});

fuzz_target!(|data: &[u8]| {
    if let Some(device) = DEVICE.as_ref() {
        let _ = sealed::open(device, data);
    }
});
