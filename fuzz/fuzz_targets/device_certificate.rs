//! Decodes and verifies arbitrary bytes as a device certificate and as a
//! revocation, against the identity the bytes claim.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_crypto::device::{UnverifiedDeviceCertificate, UnverifiedRevocation};
use xchat_crypto::signature::VerifyingKey;

fuzz_target!(|data: &[u8]| {
    let claimed = data.get(1..33).and_then(|b| <[u8; 32]>::try_from(b).ok());
    let Some(identity) = claimed.and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok()) else {
        return;
    };
    if let Ok(certificate) = UnverifiedDeviceCertificate::from_bytes(data)
        && let Ok(verified) = certificate.verify(&identity)
    {
        assert_eq!(verified.to_bytes(), data);
    }
    if let Ok(revocation) = UnverifiedRevocation::from_bytes(data)
        && let Ok(verified) = revocation.verify(&identity)
    {
        assert_eq!(verified.to_bytes(), data);
    }
});
