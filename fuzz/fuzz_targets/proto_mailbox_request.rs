//! Decodes and verifies arbitrary bytes as a mailbox request; a request that
//! verifies must survive its round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_proto::mailbox::{Request, UnverifiedRequest};

/// A node's clock for the fuzzer: requests within the skew of it verify.
const NOW_MS: u64 = 1_790_000_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = UnverifiedRequest::decode(data) {
        let verified = match request {
            UnverifiedRequest::Store(store) => store.verify(0).ok().map(Request::Store),
            UnverifiedRequest::Fetch(fetch) => fetch.verify(NOW_MS).ok().map(Request::Fetch),
            UnverifiedRequest::Delete(delete) => delete.verify(NOW_MS).ok().map(Request::Delete),
        };
        if let Some(request) = verified {
            assert!(UnverifiedRequest::decode(&request.encode()).is_ok());
        }
    }
});
