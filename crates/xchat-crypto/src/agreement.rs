//! X25519 key agreement (RFC 7748) through aws-lc-rs.
//!
//! Every key agreement in xchat is X25519; secp256k1 keys are for signatures
//! only. Shared secrets that come out all-zero (a low-order public key) are
//! refused: such a peer key contributes nothing and is a known attack on
//! protocols that do not check it.

use aws_lc_rs::agreement;
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of an X25519 public key, secret key and shared secret.
pub const KEY_BYTES: usize = 32;

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_BYTES]);

impl PublicKey {
    /// Wraps 32 bytes as a public key. Every 32-byte string is a valid
    /// X25519 u-coordinate; weak keys are refused at agreement time.
    pub const fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// The key's 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "agreement::PublicKey({})", crate::fingerprint(&self.0))
    }
}

/// An X25519 secret key. Wiped on drop; never printed.
///
/// The key is imported into aws-lc once, when it is made: aws-lc computes the
/// public key at import, so importing on every agreement would cost a second
/// scalar multiplication each time. aws-lc wipes its copy when it is freed.
pub struct SecretKey {
    bytes: Box<[u8; KEY_BYTES]>,
    key: agreement::PrivateKey,
}

impl SecretKey {
    /// Draws a new secret key from `rng`.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_bytes(&bytes)
    }

    /// Restores a secret key from its 32 bytes (clamping is X25519's job).
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Self {
        // X25519 accepts every 32-byte scalar; aws-lc only reports allocation
        // failure here.
        #[allow(clippy::expect_used)]
        let key = agreement::PrivateKey::from_private_key(&agreement::X25519, bytes)
            .expect("every 32-byte string is an X25519 scalar");
        Self { bytes: Box::new(*bytes), key }
    }

    /// The secret's bytes, for a record. Wiped when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; KEY_BYTES]> {
        Zeroizing::new(*self.bytes)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        // aws-lc computed the public key at import; this copies it out.
        #[allow(clippy::expect_used)]
        let public = self.key.compute_public_key().expect("X25519 public key of an imported key");
        let mut out = [0u8; KEY_BYTES];
        out.copy_from_slice(public.as_ref());
        PublicKey(out)
    }

    /// X25519(self, their).
    ///
    /// # Errors
    /// [`AgreementError::WeakKey`] when `their` is a low-order point (the
    /// shared secret would be all zeros).
    pub fn diffie_hellman(&self, their: &PublicKey) -> Result<SharedSecret, AgreementError> {
        let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, their.0);
        let mut out = Box::new([0u8; KEY_BYTES]);
        agreement::agree(&self.key, peer, AgreementError::WeakKey, |secret| {
            out.copy_from_slice(secret);
            Ok(())
        })?;
        // aws-lc refuses low-order points itself; this is belt and braces.
        if bool::from(subtle::ConstantTimeEq::ct_eq(out.as_slice(), &[0u8; KEY_BYTES][..])) {
            return Err(AgreementError::WeakKey);
        }
        Ok(SharedSecret(out))
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("agreement::SecretKey(<redacted>)")
    }
}

/// A secret key with its public key computed once.
#[derive(Debug)]
pub struct KeyPair {
    secret: SecretKey,
    public: PublicKey,
}

impl KeyPair {
    /// Draws a new key pair from `rng`.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        Self::from_secret(SecretKey::generate(rng))
    }

    /// Completes a secret key with its public key.
    pub fn from_secret(secret: SecretKey) -> Self {
        let public = secret.public_key();
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

/// The output of one X25519 agreement. Wiped on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SharedSecret(Box<[u8; KEY_BYTES]>);

impl SharedSecret {
    /// The secret's bytes, to be fed into a KDF.
    pub fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("agreement::SharedSecret(<redacted>)")
    }
}

/// Why a key agreement failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AgreementError {
    /// The peer's public key is of low order: the agreement would be all zeros.
    #[error("weak x25519 public key")]
    WeakKey,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn keys_can_move_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SecretKey>();
        assert_send_sync::<KeyPair>();
    }

    #[test]
    fn agreement_is_symmetric() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = KeyPair::generate(&mut rng);
        let b = KeyPair::generate(&mut rng);
        let ab = a.secret().diffie_hellman(b.public()).unwrap();
        let ba = b.secret().diffie_hellman(a.public()).unwrap();
        assert_eq!(ab.as_bytes(), ba.as_bytes());
    }

    #[test]
    fn rfc7748_vector() {
        // RFC 7748 section 6.1.
        let alice: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap();
        let bob_public: [u8; 32] =
            hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
                .unwrap()
                .try_into()
                .unwrap();
        let secret = SecretKey::from_bytes(&alice);
        assert_eq!(
            hex::encode(secret.public_key().as_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let shared = secret.diffie_hellman(&PublicKey::from_bytes(bob_public)).unwrap();
        assert_eq!(
            hex::encode(shared.as_bytes()),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
    }

    #[test]
    fn low_order_points_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let ours = SecretKey::generate(&mut rng);
        // The zero point and the order-8 points of Curve25519 (RFC 7748 section 6.1 note).
        let weak = [
            [0u8; 32],
            {
                let mut one = [0u8; 32];
                one[0] = 1;
                one
            },
            hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
                .unwrap()
                .try_into()
                .unwrap(),
        ];
        for point in weak {
            assert_eq!(
                ours.diffie_hellman(&PublicKey::from_bytes(point)).unwrap_err(),
                AgreementError::WeakKey
            );
        }
    }
}
