//! Decodes arbitrary bytes as a message's content (the ratchet's plaintext),
//! one or several; what decodes must survive its round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_proto::content::Content;

fuzz_target!(|data: &[u8]| {
    if let Ok(content) = Content::decode(data) {
        assert_eq!(Content::decode(&content.encode()), Ok(content));
    }
    if let Ok(contents) = Content::decode_all(data) {
        let again = Content::encode_all(&contents).and_then(|bytes| Content::decode_all(&bytes));
        assert_eq!(again, Ok(contents));
    }
});
