//! Decodes arbitrary bytes as a network envelope; what decodes must survive
//! its round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_proto::envelope::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::decode(data) {
        assert_eq!(Envelope::decode(&envelope.encode()), Ok(envelope));
    }
});
