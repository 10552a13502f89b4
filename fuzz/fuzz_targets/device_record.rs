//! Restores a device from arbitrary record bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_crypto::device::Device;
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::Seed;

fuzz_target!(|data: &[u8]| {
    let Ok(seed) = Seed::from_bytes(&[7u8; 64]) else {
        return;
    };
    let Ok(identity) = Identity::from_seed(&seed) else {
        return;
    };
    let _ = Device::from_record(data, &identity.signing_key().verifying_key());
});
