//! xchat's cryptographic core.
//!
//! Everything that turns a recovery phrase into an identity and a
//! conversation into ciphertext that only its recipients can read. This crate
//! sits at the bottom of xchat's layers (`docs/architecture.md`): it is pure,
//! with no I/O, no async, no clock and no OS randomness. Time is a parameter
//! and every random value comes from the caller's [`rand_core::CryptoRng`].
//! Secrets live in their own types, are wiped on drop and never print.
//!
//! Cipher suite 1 ([`suite::CipherSuite::V1`]): BIP340 Schnorr signatures on
//! secp256k1, X25519 key agreement, ML-KEM-768, AES-256-GCM, HKDF/HMAC-SHA256
//! and BLAKE3 for files.
//!
//! Main types:
//! - identity: [`phrase::RecoveryPhrase`], [`identity::Identity`], [`address::Address`],
//!   [`device::DeviceCertificate`], [`safety::SafetyNumber`];
//! - sessions: [`bundle::PreKeyBundle`], [`handshake`], [`ratchet::Session`];
//! - envelopes and files: [`sealed`], [`padding`], [`mod@file`].

pub mod address;
pub mod aead;
pub mod agreement;
pub mod backup;
pub mod bundle;
pub mod device;
pub mod encoding;
pub mod file;
pub mod handshake;
pub mod identity;
pub mod kdf;
pub mod kem;
pub mod mailbox;
pub mod padding;
pub mod phrase;
pub mod presence;
pub mod ratchet;
pub mod safety;
pub mod sealed;
pub mod signature;
pub mod suite;

pub use encoding::DecodeError;

/// A short, non-secret fingerprint of public bytes for logs and `Debug`:
/// the first 8 hex digits of their BLAKE3 hash.
pub fn fingerprint(bytes: &[u8]) -> String {
    let hash = blake3::hash(bytes);
    hash.as_bytes()[..4].iter().map(|b| format!("{b:02x}")).collect()
}
