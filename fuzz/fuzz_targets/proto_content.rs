//! Decodes arbitrary bytes as a message's content (the ratchet's plaintext);
//! what decodes must survive its round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_proto::content::Content;

fuzz_target!(|data: &[u8]| {
    if let Ok(content) = Content::decode(data) {
        assert_eq!(Content::decode(&content.encode()), Ok(content));
    }
});
