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
        Self {
            entropy: Box::new(*entropy),
        }
    }

    /// Parses a phrase typed by a user: 24 English words separated by
    /// whitespace, in any case.
    ///
    /// # Errors
    /// [`PhraseError`] says which word is unknown, or that the word count or
    /// the checksum is wrong.
    pub fn parse(phrase: &str) -> Result<Self, PhraseError> {
        let normalized = Zeroizing::new(
            phrase
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase(),
        );
        let count = normalized.split(' ').filter(|w| !w.is_empty()).count();
        if count != WORDS {
            return Err(PhraseError::WordCount {
                found: count,
                expected: WORDS,
            });
        }
        let mnemonic = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &normalized)
            .map_err(|error| match error {
                bip39::Error::UnknownWord(index) => PhraseError::UnknownWord {
                    position: index + 1,
                },
                bip39::Error::InvalidChecksum => PhraseError::Checksum,
                _ => PhraseError::WordCount {
                    found: count,
                    expected: WORDS,
                },
            })?;
        let (entropy, len) = mnemonic.to_entropy_array();
        let entropy = Zeroizing::new(entropy);
        if len != ENTROPY_BYTES {
            return Err(PhraseError::WordCount {
                found: count,
                expected: WORDS,
            });
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
