//! Parses arbitrary text as an address and as an `xchat:` URI.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_crypto::address::Address;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(address) = Address::parse(text) {
        // The printed form parses back to the same address.
        assert_eq!(Address::parse(&address.to_string()).ok(), Some(address));
    }
    if let Ok(uri) = Address::parse_uri(text) {
        assert_eq!(Address::parse_uri(&uri.to_string()).ok(), Some(uri));
    }
});
