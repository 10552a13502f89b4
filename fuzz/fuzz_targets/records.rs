//! Restores every kind of record from arbitrary bytes: the first byte picks
//! the kind. A record that restores re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_crypto::bundle::PreKeys;
use xchat_crypto::device::Device;
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::Seed;

fuzz_target!(|data: &[u8]| {
    let Some((kind, record)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            if let Ok(identity) = Identity::from_record(record) {
                assert_eq!(identity.to_record().as_slice(), record);
            }
        }
        1 => {
            let Ok(seed) = Seed::from_bytes(&[7u8; 64]) else {
                return;
            };
            let Ok(identity) = Identity::from_seed(&seed) else {
                return;
            };
            let _ = Device::from_record(record, &identity.signing_key().verifying_key());
        }
        _ => {
            if let Ok(prekeys) = PreKeys::from_record(record) {
                assert_eq!(prekeys.to_record().as_slice(), record);
            }
        }
    }
});
