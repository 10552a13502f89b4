//! Decodes and verifies arbitrary bytes as a public identity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_crypto::identity::UnverifiedPublicIdentity;

fuzz_target!(|data: &[u8]| {
    if let Ok(identity) = UnverifiedPublicIdentity::from_bytes(data)
        && let Ok(verified) = identity.verify()
    {
        // Only a canonical encoding verifies.
        assert_eq!(verified.to_bytes().as_slice(), data);
    }
});
