//! Decrypts arbitrary bytes as an encrypted file, and opens them as a chunk.
//! No input the fuzzer can make is an authentic ciphertext under a key it
//! does not know, so every attempt must fail, and none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_crypto::file::{self, ChunkCipher, FileKey};

fuzz_target!(|data: &[u8]| {
    let key = FileKey::from_bytes(&[3u8; 32]);
    let mut out = Vec::new();
    assert!(file::decrypt(&key, data, &mut out).is_err());
    let cipher = ChunkCipher::new(&key);
    let index = data.first().copied().unwrap_or(0).into();
    let mut buffer = data.to_vec();
    assert!(cipher.open_chunk(index, data.len().is_multiple_of(2), &mut buffer).is_err());
});
