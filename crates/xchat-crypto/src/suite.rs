//! The cipher suite, identified by a version byte on the wire.
//!
//! Every hand-encoded layout of this crate starts with the suite's byte, so a
//! later suite can replace a primitive without ambiguity. A decoder that sees
//! a suite it does not know refuses the input.

use crate::encoding::DecodeError;

/// A cipher suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// BIP340 on secp256k1, X25519, ML-KEM-768, AES-256-GCM,
    /// HKDF/HMAC-SHA256, BLAKE3.
    V1,
}

impl CipherSuite {
    /// The suite's byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::V1 => 1,
        }
    }

    /// Reads a suite byte.
    ///
    /// # Errors
    /// [`DecodeError::UnknownVersion`] for a suite this build does not know.
    pub const fn from_byte(byte: u8) -> Result<Self, DecodeError> {
        match byte {
            1 => Ok(Self::V1),
            other => Err(DecodeError::UnknownVersion(other)),
        }
    }
}
