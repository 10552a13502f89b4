//! Decodes and verifies arbitrary bytes as the device list of a fixed
//! identity; a list that verifies must survive its round trip.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_crypto::signature::VerifyingKey;
use xchat_proto::bundle::UnverifiedDeviceList;

static IDENTITY: LazyLock<Option<VerifyingKey>> = LazyLock::new(|| {
    let seed = RecoveryPhrase::from_entropy(&[6u8; 32]).to_seed("");
    Some(Identity::from_seed(&seed).ok()?.signing_key().verifying_key())
});

fuzz_target!(|data: &[u8]| {
    if let Some(identity) = IDENTITY.as_ref()
        && let Ok(list) = UnverifiedDeviceList::decode(data)
        && let Ok(verified) = list.verify(identity)
    {
        let again = UnverifiedDeviceList::decode(&verified.encode()).map(|l| l.verify(identity));
        assert_eq!(again, Ok(Ok(verified)));
    }
});
