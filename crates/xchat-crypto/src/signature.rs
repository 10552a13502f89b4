//! BIP340 Schnorr signatures on secp256k1, through libsecp256k1 (the
//! `secp256k1` crate, Bitcoin Core's library).
//!
//! Every signature in xchat is BIP340 over the raw message (no pre-hash), so
//! the BIP340 known-answer vectors run through these wrappers unchanged.
//! Protocol code signs `context || message` with a context from [`crate::kdf`].

use rand_core::CryptoRng;
use secp256k1::{Keypair, Scalar, XOnlyPublicKey, schnorr};
use zeroize::Zeroizing;

/// Length of an x-only public key.
pub const PUBLIC_KEY_BYTES: usize = 32;
/// Length of a secret key.
pub const SECRET_KEY_BYTES: usize = 32;
/// Length of a signature.
pub const SIGNATURE_BYTES: usize = 64;

/// A BIP340 signing key. Wiped on drop; never printed.
pub struct SigningKey(Keypair);

impl SigningKey {
    /// Draws a new signing key from `rng`.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        loop {
            let mut bytes = Zeroizing::new([0u8; SECRET_KEY_BYTES]);
            rng.fill_bytes(bytes.as_mut());
            // Fails with probability about 2^-128 (zero or not below the order).
            if let Ok(key) = Self::from_bytes(&bytes) {
                return key;
            }
        }
    }

    /// Restores a signing key from its 32-byte scalar.
    ///
    /// # Errors
    /// [`KeyError::InvalidSecretKey`] when the scalar is zero or not below the
    /// group order.
    pub fn from_bytes(bytes: &[u8; SECRET_KEY_BYTES]) -> Result<Self, KeyError> {
        Keypair::from_secret_bytes(*bytes).map(Self).map_err(|_| KeyError::InvalidSecretKey)
    }

    /// The scalar, for a record. Wiped when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; SECRET_KEY_BYTES]> {
        Zeroizing::new(self.0.to_secret_bytes())
    }

    /// The x-only public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.x_only_public_key().0)
    }

    /// The key tweaked as BIP341 tweaks an x-only key: `d' = d + t` for the
    /// even-y form of this key, so that `tweaked(t).verifying_key()` is
    /// `verifying_key().tweaked(t)` (libsecp256k1's
    /// `secp256k1_keypair_xonly_tweak_add`).
    ///
    /// # Errors
    /// [`KeyError::InvalidTweak`] for a tweak not below the group order, or
    /// one that gives zero (probability about 2^-128 for a hash).
    pub fn tweaked(&self, tweak: &[u8; 32]) -> Result<Self, KeyError> {
        let tweak = Scalar::from_be_bytes(*tweak).map_err(|_| KeyError::InvalidTweak)?;
        self.0.add_xonly_tweak(&tweak).map(Self).map_err(|_| KeyError::InvalidTweak)
    }

    /// Signs `message` as BIP340 does, with `aux_rand` as its auxiliary
    /// randomness (which only hardens against side channels; a fixed value is
    /// still a correct signature, as the BIP340 vectors show).
    pub fn sign_with_aux(&self, message: &[u8], aux_rand: &[u8; 32]) -> Signature {
        Signature(schnorr::sign_with_aux_rand(message, &self.0, aux_rand).to_byte_array())
    }

    /// Signs `context || message` with fresh auxiliary randomness from `rng`.
    pub fn sign(&self, context: &[u8], message: &[u8], rng: &mut impl CryptoRng) -> Signature {
        let mut aux = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(aux.as_mut());
        let mut signed = Vec::with_capacity(context.len() + message.len());
        signed.extend_from_slice(context);
        signed.extend_from_slice(message);
        self.sign_with_aux(&signed, &aux)
    }
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        self.0.non_secure_erase();
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("signature::SigningKey(<redacted>)")
    }
}

/// A BIP340 x-only public key (a point on secp256k1 with even y).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VerifyingKey(XOnlyPublicKey);

impl VerifyingKey {
    /// Parses an x-only public key.
    ///
    /// # Errors
    /// [`KeyError::InvalidPublicKey`] when the bytes are not the x-coordinate
    /// of a point on the curve.
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_BYTES]) -> Result<Self, KeyError> {
        XOnlyPublicKey::from_byte_array(*bytes).map(Self).map_err(|_| KeyError::InvalidPublicKey)
    }

    /// The key's 32 bytes.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_BYTES] {
        self.0.to_byte_array()
    }

    /// The x-only key `P + t·G` (BIP341's tweak; see [`SigningKey::tweaked`]).
    ///
    /// # Errors
    /// [`KeyError::InvalidTweak`] as [`SigningKey::tweaked`].
    pub fn tweaked(&self, tweak: &[u8; 32]) -> Result<Self, KeyError> {
        let tweak = Scalar::from_be_bytes(*tweak).map_err(|_| KeyError::InvalidTweak)?;
        self.0.add_tweak(&tweak).map(|(key, _parity)| Self(key)).map_err(|_| KeyError::InvalidTweak)
    }

    /// Verifies a BIP340 signature over the raw `message`.
    ///
    /// # Errors
    /// [`SignatureError`] when the signature does not verify.
    pub fn verify_raw(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let signature = schnorr::Signature::from_byte_array(signature.0);
        schnorr::verify(&signature, message, &self.0).map_err(|_| SignatureError)
    }

    /// Verifies a signature over `context || message`, as made by [`SigningKey::sign`].
    ///
    /// # Errors
    /// [`SignatureError`] when the signature does not verify.
    pub fn verify(
        &self,
        context: &[u8],
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let mut signed = Vec::with_capacity(context.len() + message.len());
        signed.extend_from_slice(context);
        signed.extend_from_slice(message);
        self.verify_raw(&signed, signature)
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "signature::VerifyingKey({})", crate::fingerprint(&self.to_bytes()))
    }
}

/// A 64-byte BIP340 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; SIGNATURE_BYTES]);

impl Signature {
    /// Wraps 64 bytes; whether they verify is for [`VerifyingKey::verify`].
    pub const fn from_bytes(bytes: [u8; SIGNATURE_BYTES]) -> Self {
        Self(bytes)
    }

    /// The signature's 64 bytes.
    pub const fn as_bytes(&self) -> &[u8; SIGNATURE_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", crate::fingerprint(&self.0))
    }
}

/// A key that is not a valid secp256k1 key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Zero, or not below the group order.
    #[error("invalid secp256k1 secret key")]
    InvalidSecretKey,
    /// Not the x-coordinate of a curve point.
    #[error("invalid secp256k1 public key")]
    InvalidPublicKey,
    /// A tweak not below the group order, or that cancels the key.
    #[error("invalid key tweak")]
    InvalidTweak,
}

/// A signature that does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid signature")]
pub struct SignatureError;

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn signatures_are_bound_to_their_context() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let key = SigningKey::generate(&mut rng);
        let signature = key.sign(b"ctx-a", b"message", &mut rng);
        let public = key.verifying_key();
        assert!(public.verify(b"ctx-a", b"message", &signature).is_ok());
        assert!(public.verify(b"ctx-b", b"message", &signature).is_err());
        assert!(public.verify(b"ctx-a", b"messagf", &signature).is_err());
    }

    #[test]
    fn off_curve_public_keys_are_refused() {
        // x = 5 is not on secp256k1 (BIP340 vector 5), and x >= p is not a field element.
        let five = hex::decode("EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34")
            .map(|v| <[u8; 32]>::try_from(v).unwrap())
            .unwrap();
        assert_eq!(VerifyingKey::from_bytes(&five), Err(KeyError::InvalidPublicKey));
        assert_eq!(VerifyingKey::from_bytes(&[0xff; 32]), Err(KeyError::InvalidPublicKey));
        assert!(SigningKey::from_bytes(&[0u8; 32]).is_err());
        assert!(SigningKey::from_bytes(&[0xff; 32]).is_err());
    }
}
