//! ML-KEM-768 (FIPS 203), the post-quantum half of the handshake, through
//! `libcrux-ml-kem` (formally verified, and the implementation libsignal uses).
//!
//! libcrux takes its randomness explicitly, so key generation and
//! encapsulation draw from the caller's RNG like the rest of this crate, and
//! deterministic tests are possible.

use libcrux_ml_kem::mlkem768;
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of an ML-KEM-768 encapsulation (public) key.
pub const PUBLIC_KEY_BYTES: usize = 1184;
/// Length of an ML-KEM-768 decapsulation (secret) key.
pub const SECRET_KEY_BYTES: usize = 2400;
/// Length of an ML-KEM-768 ciphertext.
pub const CIPHERTEXT_BYTES: usize = 1088;
/// Length of the shared secret.
pub const SHARED_SECRET_BYTES: usize = 32;

/// An ML-KEM-768 encapsulation key whose encoding has been checked
/// (FIPS 203 section 7.2 modulus check).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(Box<[u8; PUBLIC_KEY_BYTES]>);

impl PublicKey {
    /// Parses and checks an encapsulation key.
    ///
    /// # Errors
    /// [`KemError::InvalidPublicKey`] when a coefficient is not reduced.
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_BYTES]) -> Result<Self, KemError> {
        let key = mlkem768::MlKem768PublicKey::from(bytes);
        if !mlkem768::validate_public_key(&key) {
            return Err(KemError::InvalidPublicKey);
        }
        Ok(Self(Box::new(*bytes)))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_BYTES] {
        &self.0
    }

    /// Encapsulates a fresh shared secret to this key.
    pub fn encapsulate(&self, rng: &mut impl CryptoRng) -> (Ciphertext, SharedSecret) {
        let mut randomness = Zeroizing::new([0u8; SHARED_SECRET_BYTES]);
        rng.fill_bytes(randomness.as_mut());
        let key = mlkem768::MlKem768PublicKey::from(self.0.as_ref());
        let (ciphertext, shared) = mlkem768::encapsulate(&key, *randomness);
        let mut secret = Box::new([0u8; SHARED_SECRET_BYTES]);
        secret.copy_from_slice(shared.as_ref());
        (Ciphertext(Box::new(*ciphertext.as_slice())), SharedSecret(secret))
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kem::PublicKey({})", crate::fingerprint(self.0.as_ref()))
    }
}

/// An ML-KEM-768 decapsulation key. Wiped on drop; never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretKey(Box<[u8; SECRET_KEY_BYTES]>);

impl SecretKey {
    /// Restores a decapsulation key from its bytes.
    pub fn from_bytes(bytes: &[u8; SECRET_KEY_BYTES]) -> Self {
        Self(Box::new(*bytes))
    }

    /// The key's bytes, for a record. Wiped when dropped.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.to_vec())
    }

    /// Decapsulates `ciphertext`. ML-KEM never reports failure: a forged
    /// ciphertext yields an unrelated secret (implicit rejection), which makes
    /// the handshake's AEAD fail later.
    pub fn decapsulate(&self, ciphertext: &Ciphertext) -> SharedSecret {
        let mut key = mlkem768::MlKem768PrivateKey::from(self.0.as_ref());
        let ciphertext = mlkem768::MlKem768Ciphertext::from(ciphertext.0.as_ref());
        let shared = mlkem768::decapsulate(&key, &ciphertext);
        key[0..].zeroize();
        let mut secret = Box::new([0u8; SHARED_SECRET_BYTES]);
        secret.copy_from_slice(shared.as_ref());
        SharedSecret(secret)
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("kem::SecretKey(<redacted>)")
    }
}

/// An ML-KEM-768 key pair.
#[derive(Debug)]
pub struct KeyPair {
    secret: SecretKey,
    public: PublicKey,
}

impl KeyPair {
    /// Draws a new key pair from `rng`.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut seed = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(seed.as_mut());
        let pair = mlkem768::generate_key_pair(*seed);
        let (mut secret, public) = pair.into_parts();
        let keys = Self {
            secret: SecretKey(Box::new(*secret.as_slice())),
            public: PublicKey(Box::new(*public.as_slice())),
        };
        secret[0..].zeroize();
        keys
    }

    /// Rebuilds a key pair from its stored halves.
    pub fn from_parts(secret: SecretKey, public: PublicKey) -> Self {
        Self { secret, public }
    }

    /// The secret half.
    pub fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }
}

/// An ML-KEM-768 ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct Ciphertext(Box<[u8; CIPHERTEXT_BYTES]>);

impl Ciphertext {
    /// Wraps ciphertext bytes. Any byte string of the right length is a
    /// ciphertext; a forged one decapsulates to an unrelated secret.
    pub fn from_bytes(bytes: &[u8; CIPHERTEXT_BYTES]) -> Self {
        Self(Box::new(*bytes))
    }

    /// The ciphertext's bytes.
    pub fn as_bytes(&self) -> &[u8; CIPHERTEXT_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kem::Ciphertext({})", crate::fingerprint(self.0.as_ref()))
    }
}

/// A 32-byte ML-KEM shared secret. Wiped on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SharedSecret(Box<[u8; SHARED_SECRET_BYTES]>);

impl SharedSecret {
    /// The secret's bytes, to be fed into a KDF.
    pub fn as_bytes(&self) -> &[u8; SHARED_SECRET_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("kem::SharedSecret(<redacted>)")
    }
}

/// Why an ML-KEM operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KemError {
    /// The encapsulation key's encoding is not canonical.
    #[error("invalid ml-kem-768 public key")]
    InvalidPublicKey,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn encapsulation_round_trips() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let pair = KeyPair::generate(&mut rng);
        let (ciphertext, sent) = pair.public().encapsulate(&mut rng);
        let received = pair.secret().decapsulate(&ciphertext);
        assert_eq!(sent.as_bytes(), received.as_bytes());
    }

    #[test]
    fn tampered_ciphertext_yields_another_secret() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let pair = KeyPair::generate(&mut rng);
        let (ciphertext, sent) = pair.public().encapsulate(&mut rng);
        let mut bytes = *ciphertext.as_bytes();
        bytes[17] ^= 1;
        let received = pair.secret().decapsulate(&Ciphertext::from_bytes(&bytes));
        assert_ne!(sent.as_bytes(), received.as_bytes());
    }

    #[test]
    fn unreduced_public_key_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let pair = KeyPair::generate(&mut rng);
        let mut bytes = *pair.public().as_bytes();
        // 12-bit coefficients: 0xfff is above q = 3329.
        bytes[0] = 0xff;
        bytes[1] |= 0x0f;
        assert_eq!(PublicKey::from_bytes(&bytes), Err(KemError::InvalidPublicKey));
    }
}
