//! Parses arbitrary text as a recovery phrase.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_crypto::phrase::RecoveryPhrase;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(phrase) = RecoveryPhrase::parse(text)
    {
        // A phrase that parses prints back to words that parse to it.
        let again = RecoveryPhrase::parse(&phrase.to_words()).map(|p| *p.entropy());
        assert_eq!(again.ok(), Some(*phrase.entropy()));
    }
});
