//! Authenticated encryption through aws-lc-rs.
//!
//! Cipher suite 1 uses AES-256-GCM everywhere (about 10 GB/s with AES-NI on
//! the machines xchat is measured on). ChaCha20-Poly1305 is wired in too, for
//! a later suite aimed at CPUs without AES instructions; nothing in suite 1
//! uses it. Nonces are always passed in: callers either use a key once
//! (ratchet message keys) or derive unique nonces (file chunks, header keys
//! with random nonces).

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

/// Length of an AEAD key.
pub const KEY_BYTES: usize = 32;
/// Length of an AEAD nonce.
pub const NONCE_BYTES: usize = 12;
/// Length of an AEAD tag.
pub const TAG_BYTES: usize = 16;

/// An AEAD algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// AES-256-GCM (NIST SP 800-38D), cipher suite 1.
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 8439), reserved for a later suite.
    ChaCha20Poly1305,
}

impl Algorithm {
    fn aws(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes256Gcm => &aead::AES_256_GCM,
            Self::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// An expanded AEAD key. aws-lc wipes the key schedule when it is dropped.
pub struct Key(LessSafeKey);

impl Key {
    /// An AES-256-GCM key, the AEAD of cipher suite 1.
    pub fn new(key: &[u8; KEY_BYTES]) -> Self {
        Self::with_algorithm(Algorithm::Aes256Gcm, key)
    }

    /// A key for `algorithm`.
    pub fn with_algorithm(algorithm: Algorithm, key: &[u8; KEY_BYTES]) -> Self {
        // Both algorithms take exactly 32-byte keys, so this cannot fail.
        #[allow(clippy::expect_used)]
        let key = UnboundKey::new(algorithm.aws(), key).expect("32-byte key for a 32-byte AEAD");
        Self(LessSafeKey::new(key))
    }

    /// Encrypts `buffer` in place and appends the tag.
    pub fn seal(&self, nonce: &[u8; NONCE_BYTES], aad: &[u8], buffer: &mut Vec<u8>) {
        let nonce = Nonce::assume_unique_for_key(*nonce);
        // aws-lc only fails on inputs longer than the algorithm's limit
        // (64 GiB for GCM), far beyond any buffer xchat seals.
        #[allow(clippy::expect_used)]
        self.0
            .seal_in_place_append_tag(nonce, Aad::from(aad), buffer)
            .expect("aead input within limits");
    }

    /// Encrypts `in_out` in place and returns the detached tag.
    pub fn seal_detached(
        &self,
        nonce: &[u8; NONCE_BYTES],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; TAG_BYTES] {
        let nonce = Nonce::assume_unique_for_key(*nonce);
        #[allow(clippy::expect_used)]
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce, Aad::from(aad), in_out)
            .expect("aead input within limits");
        let mut out = [0u8; TAG_BYTES];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypts `in_out` (ciphertext followed by its tag) in place and returns
    /// the plaintext, a prefix of `in_out`.
    ///
    /// # Errors
    /// [`OpenError`] when the tag does not verify; `in_out` is then garbage.
    pub fn open<'a>(
        &self,
        nonce: &[u8; NONCE_BYTES],
        aad: &[u8],
        in_out: &'a mut [u8],
    ) -> Result<&'a mut [u8], OpenError> {
        let nonce = Nonce::assume_unique_for_key(*nonce);
        self.0.open_in_place(nonce, Aad::from(aad), in_out).map_err(|_| OpenError)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("aead::Key(<redacted>)")
    }
}

/// A ciphertext that does not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("decryption failed")]
pub struct OpenError;
