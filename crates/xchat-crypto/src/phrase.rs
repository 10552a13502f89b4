//! The recovery phrase: BIP39, 24 English words (256 bits of entropy), with an
//! optional passphrase.
//!
//! The phrase is the user's wallet: every identity key is derived from the
//! seed it gives (`docs/keys.md`). A mistyped phrase is refused with the
//! position of the first unknown word, or a checksum error, never accepted as
//! another identity.

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Number of words in an xchat recovery phrase.
pub const WORDS: usize = 24;
/// Bytes of entropy behind a phrase.
pub const ENTROPY_BYTES: usize = 32;
/// Bytes of the BIP39 seed.
pub const SEED_BYTES: usize = 64;
/// Longest word of the BIP39 English list, in bytes.
pub const MAX_WORD_BYTES: usize = 8;
/// Bytes of a normalized phrase: 24 words of at most 8 letters, single spaces.
const MAX_NORMALIZED_BYTES: usize = WORDS * (MAX_WORD_BYTES + 1);

/// A BIP39 recovery phrase. Wiped on drop; never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct RecoveryPhrase {
    entropy: Box<[u8; ENTROPY_BYTES]>,
}

impl RecoveryPhrase {
    /// Draws a new phrase (256 bits of entropy) from `rng`.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut entropy = Box::new([0u8; ENTROPY_BYTES]);
        rng.fill_bytes(entropy.as_mut());
        Self { entropy }
    }

    /// The phrase of 32 bytes of entropy.
    pub fn from_entropy(entropy: &[u8; ENTROPY_BYTES]) -> Self {
        Self { entropy: Box::new(*entropy) }
    }

    /// Parses a phrase typed by a user: 24 English words separated by any
    /// whitespace, in any case.
    ///
    /// # Errors
    /// [`PhraseError`] says that the word count is wrong, which word is the
    /// first unknown one, or that the checksum does not match (checked in
    /// that order).
    pub fn parse(phrase: &str) -> Result<Self, PhraseError> {
        // Counting first allocates nothing, whatever the input's size.
        let count = phrase.split_whitespace().count();
        if count != WORDS {
            return Err(PhraseError::WordCount { found: count, expected: WORDS });
        }
        // Built in place in a buffer that never reallocates, so no copy of
        // the phrase is left behind unwiped.
        let mut normalized = Zeroizing::new(String::with_capacity(MAX_NORMALIZED_BYTES));
        for (index, word) in phrase.split_whitespace().enumerate() {
            let unknown = PhraseError::UnknownWord { position: index + 1 };
            if word.len() > MAX_WORD_BYTES || !word.is_ascii() {
                return Err(unknown);
            }
            let start = normalized.len();
            if start > 0 {
                normalized.push(' ');
            }
            normalized.extend(word.chars().map(|c| c.to_ascii_lowercase()));
            let lowercase = normalized.get(start..).unwrap_or_default().trim_start();
            if bip39::Language::English.find_word(lowercase).is_none() {
                return Err(unknown);
            }
        }
        let mnemonic = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &normalized)
            .map_err(|error| match error {
                bip39::Error::UnknownWord(index) => {
                    PhraseError::UnknownWord { position: index + 1 }
                }
                bip39::Error::InvalidChecksum => PhraseError::Checksum,
                _ => PhraseError::WordCount { found: count, expected: WORDS },
            })?;
        let (entropy, len) = mnemonic.to_entropy_array();
        let entropy = Zeroizing::new(entropy);
        if len != ENTROPY_BYTES {
            return Err(PhraseError::WordCount { found: count, expected: WORDS });
        }
        let mut out = Box::new([0u8; ENTROPY_BYTES]);
        out.copy_from_slice(&entropy[..ENTROPY_BYTES]);
        Ok(Self { entropy: out })
    }

    /// The 24 words, space-separated, to show the user once.
    pub fn to_words(&self) -> Zeroizing<String> {
        // 32 bytes is a valid BIP39 entropy length.
        #[allow(clippy::expect_used)]
        let mnemonic =
            bip39::Mnemonic::from_entropy_in(bip39::Language::English, self.entropy.as_ref())
                .expect("32 bytes of entropy");
        Zeroizing::new(mnemonic.to_string())
    }

    /// The phrase's entropy, for an encrypted record. Wiped when dropped.
    pub fn entropy(&self) -> Zeroizing<[u8; ENTROPY_BYTES]> {
        Zeroizing::new(*self.entropy)
    }

    /// The BIP39 seed: PBKDF2-HMAC-SHA512 over the phrase with
    /// `"mnemonic" || passphrase` as salt (2048 rounds).
    pub fn to_seed(&self, passphrase: &str) -> Seed {
        #[allow(clippy::expect_used)]
        let mnemonic =
            bip39::Mnemonic::from_entropy_in(bip39::Language::English, self.entropy.as_ref())
                .expect("32 bytes of entropy");
        let bytes = Zeroizing::new(mnemonic.to_seed(passphrase));
        Seed(bytes.to_vec())
    }
}

impl std::fmt::Debug for RecoveryPhrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryPhrase(<redacted>)")
    }
}

/// The seed behind every identity key (64 bytes from BIP39; BIP32 allows 16
/// to 64). Wiped on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Seed(Vec<u8>);

impl Seed {
    /// Wraps seed bytes (a BIP39 seed, or a BIP32 test seed).
    ///
    /// # Errors
    /// [`PhraseError::SeedLength`] outside BIP32's 16 to 64 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PhraseError> {
        if !(16..=SEED_BYTES).contains(&bytes.len()) {
            return Err(PhraseError::SeedLength { len: bytes.len() });
        }
        Ok(Self(bytes.to_vec()))
    }

    /// The seed's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

/// Why a recovery phrase was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhraseError {
    /// Not 24 words.
    #[error("a recovery phrase has {expected} words, this one has {found}")]
    WordCount {
        /// Words found.
        found: usize,
        /// Words expected.
        expected: usize,
    },
    /// A word is not in the BIP39 English list.
    #[error("word {position} is not a recovery-phrase word")]
    UnknownWord {
        /// 1-based position of the word.
        position: usize,
    },
    /// A seed shorter than 16 or longer than 64 bytes.
    #[error("a seed has 16 to 64 bytes, not {len}")]
    SeedLength {
        /// The length given.
        len: usize,
    },
    /// Every word is known but the checksum does not match: a word is wrong
    /// or two are swapped.
    #[error("the recovery phrase's checksum does not match: a word is mistyped or out of order")]
    Checksum,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// The phrase of 32 zero bytes (BIP39 test vector): 23 times `abandon`, then `art`.
    fn zero_phrase_words() -> Vec<&'static str> {
        let mut words = vec!["abandon"; WORDS - 1];
        words.push("art");
        words
    }

    #[test]
    fn generated_phrase_round_trips_through_its_words() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for _ in 0..16 {
            let phrase = RecoveryPhrase::generate(&mut rng);
            let words = phrase.to_words();
            assert_eq!(words.split(' ').count(), WORDS);
            let parsed = RecoveryPhrase::parse(&words).unwrap();
            assert_eq!(*parsed.entropy(), *phrase.entropy());
            assert_eq!(parsed.to_seed("pass").as_bytes(), phrase.to_seed("pass").as_bytes());
        }
    }

    #[test]
    fn entropy_gives_the_known_words() {
        let phrase = RecoveryPhrase::from_entropy(&[0u8; ENTROPY_BYTES]);
        assert_eq!(*phrase.to_words(), zero_phrase_words().join(" "));
    }

    #[test]
    fn unknown_word_reports_its_one_based_position() {
        for position in 1..=WORDS {
            let mut words = zero_phrase_words();
            words[position - 1] = "abandun";
            assert_eq!(
                RecoveryPhrase::parse(&words.join(" ")).unwrap_err(),
                PhraseError::UnknownWord { position },
            );
        }
        // The first of several unknown words is reported, whatever its length.
        let mut words = zero_phrase_words();
        words[3] = "zzz";
        words[9] = "abandonabandon";
        words[1] = "éclair";
        assert_eq!(
            RecoveryPhrase::parse(&words.join(" ")).unwrap_err(),
            PhraseError::UnknownWord { position: 2 },
        );
        words[1] = "abandon";
        assert_eq!(
            RecoveryPhrase::parse(&words.join(" ")).unwrap_err(),
            PhraseError::UnknownWord { position: 4 },
        );
    }

    #[test]
    fn wrong_checksum_is_refused() {
        let mut words = zero_phrase_words();
        words[WORDS - 1] = "abandon";
        assert_eq!(RecoveryPhrase::parse(&words.join(" ")).unwrap_err(), PhraseError::Checksum);
        // Two words swapped.
        let phrase = RecoveryPhrase::generate(&mut ChaCha20Rng::seed_from_u64(2));
        let words = phrase.to_words();
        let mut words: Vec<&str> = words.split(' ').collect();
        let other = (1..WORDS).find(|&i| words[i] != words[0]).unwrap();
        words.swap(0, other);
        assert_eq!(RecoveryPhrase::parse(&words.join(" ")).unwrap_err(), PhraseError::Checksum);
    }

    #[test]
    fn wrong_word_count_is_refused() {
        let words = zero_phrase_words();
        for found in [0, 1, 12, 18, 23] {
            assert_eq!(
                RecoveryPhrase::parse(&words[..found].join(" ")).unwrap_err(),
                PhraseError::WordCount { found, expected: WORDS }
            );
        }
        let longer = format!("{} abandon", words.join(" "));
        assert_eq!(
            RecoveryPhrase::parse(&longer).unwrap_err(),
            PhraseError::WordCount { found: WORDS + 1, expected: WORDS }
        );
    }

    #[test]
    fn case_and_whitespace_are_tolerated() {
        let words = zero_phrase_words();
        let messy: String = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let w = if i % 2 == 0 { w.to_ascii_uppercase() } else { (*w).to_owned() };
                let gap = ["  ", "\t", "\n", "\r\n", "\u{3000}"][i % 5];
                format!("{gap}{w}")
            })
            .collect::<String>()
            + " \n";
        let parsed = RecoveryPhrase::parse(&messy).unwrap();
        assert_eq!(*parsed.entropy(), [0u8; ENTROPY_BYTES]);
    }

    #[test]
    fn seed_depends_on_the_passphrase() {
        let phrase = RecoveryPhrase::from_entropy(&[7u8; ENTROPY_BYTES]);
        assert_ne!(phrase.to_seed("").as_bytes(), phrase.to_seed("correct horse").as_bytes());
        assert_eq!(phrase.to_seed("").as_bytes().len(), SEED_BYTES);
    }

    #[test]
    fn seed_outside_bip32_lengths_is_refused() {
        assert_eq!(Seed::from_bytes(&[0u8; 15]).unwrap_err(), PhraseError::SeedLength { len: 15 });
        assert_eq!(Seed::from_bytes(&[0u8; 65]).unwrap_err(), PhraseError::SeedLength { len: 65 });
        assert!(Seed::from_bytes(&[0u8; 16]).is_ok());
        assert!(Seed::from_bytes(&[0u8; 64]).is_ok());
    }

    #[test]
    fn debug_never_shows_the_phrase_or_seed() {
        let phrase = RecoveryPhrase::from_entropy(&[0u8; ENTROPY_BYTES]);
        insta::assert_snapshot!(format!("{phrase:?}"), @"RecoveryPhrase(<redacted>)");
        insta::assert_snapshot!(format!("{:?}", phrase.to_seed("")), @"Seed(<redacted>)");
    }
}
