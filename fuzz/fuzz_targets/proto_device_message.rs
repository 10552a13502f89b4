//! Decodes arbitrary bytes as the device message inside a sealed envelope;
//! what decodes must survive its round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_proto::envelope::DeviceMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = DeviceMessage::decode(data) {
        assert_eq!(DeviceMessage::decode(&message.encode()), Ok(message));
    }
});
