//! Decodes and verifies arbitrary bytes as a prekey bundle and as a prekey
//! publication.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_crypto::bundle::{UnverifiedPreKeyBundle, UnverifiedPreKeyPublication};

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = UnverifiedPreKeyBundle::from_bytes(data)
        && let Ok(verified) = bundle.verify(None)
    {
        assert_eq!(verified.to_bytes(), data);
    }
    if let Ok(publication) = UnverifiedPreKeyPublication::from_bytes(data)
        && let Ok(verified) = publication.verify(None)
    {
        assert_eq!(verified.to_bytes(), data);
    }
});
