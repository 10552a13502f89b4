//! Decodes arbitrary bytes as a mailbox node's response; what decodes must
//! survive its round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_proto::mailbox::Response;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = Response::decode(data) {
        assert_eq!(Response::decode(&response.encode()), Ok(response));
    }
});
