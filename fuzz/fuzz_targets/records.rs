//! Restores every kind of record from arbitrary bytes: the first byte picks
//! the kind. A record that restores re-encodes to the same bytes.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use xchat_crypto::bundle::PreKeys;
use xchat_crypto::device::Device;
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::Seed;
use xchat_crypto::ratchet::Session;
use xchat_crypto::signature::VerifyingKey;

/// The identity device records are checked against.
static IDENTITY: LazyLock<Option<VerifyingKey>> = LazyLock::new(|| {
    let seed = Seed::from_bytes(&[7u8; 64]).ok()?;
    Some(Identity::from_seed(&seed).ok()?.signing_key().verifying_key())
});

fuzz_target!(|data: &[u8]| {
    let Some((kind, record)) = data.split_first() else { return };
    match kind % 4 {
        0 => {
            if let Ok(identity) = Identity::from_record(record) {
                assert_eq!(identity.to_record().as_slice(), record);
            }
        }
        1 => {
            if let Some(identity) = IDENTITY.as_ref()
                && let Ok(device) = Device::from_record(record, identity)
            {
                assert_eq!(device.to_record().as_slice(), record);
            }
        }
        2 => {
            if let Ok(prekeys) = PreKeys::from_record(record) {
                assert_eq!(prekeys.to_record().as_slice(), record);
            }
        }
        _ => {
            if let Ok(session) = Session::from_record(record) {
                assert_eq!(session.to_record().as_slice(), record);
            }
        }
    }
});
