//! Unpads arbitrary bytes, and pads then unpads them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_crypto::padding;

fuzz_target!(|data: &[u8]| {
    if let Ok(plaintext) = padding::unpad(data) {
        // Only a canonical padding unpads: padding the result gives the input back.
        assert_eq!(padding::pad(plaintext).ok().as_deref().map(Vec::as_slice), Some(data));
    }
    if let Ok(padded) = padding::pad(data) {
        assert!(padding::is_padded_len(padded.len()));
        assert_eq!(padding::unpad(&padded).ok(), Some(data));
    }
});
