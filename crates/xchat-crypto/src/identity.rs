//! A user's identity: the keys derived from their recovery phrase.
//!
//! BIP32 on secp256k1 along xchat's own hardened paths (`docs/keys.md`):
//!
//! | path | key |
//! |---|---|
//! | `m/7889768'/0'/0'` | identity signing key (BIP340) |
//! | `m/7889768'/1'/0'` | input of the identity key-agreement key (X25519, through HKDF) |
//! | `m/7889768'/2'/0'` | input of the backup key |
//!
//! `7889768` is `0x786368`, ASCII `xch`. The signing key is never used for key
//! agreement: the X25519 key is derived on its own path and certified by a
//! BIP340 signature of the signing key.

use std::str::FromStr;

use zeroize::Zeroizing;

use crate::agreement;
use crate::encoding::{DecodeError, Reader, Writer};
use crate::kdf;
use crate::phrase::Seed;
use crate::signature::{self, Signature, SigningKey, VerifyingKey};
use crate::suite::CipherSuite;

/// BIP32 purpose of every xchat key (`0x786368`, ASCII `xch`), hardened.
pub const PURPOSE: u32 = 7_889_768;
/// Path of the identity signing key.
pub const SIGNING_PATH: &str = "m/7889768'/0'/0'";
/// Path of the input of the identity key-agreement key.
pub const AGREEMENT_PATH: &str = "m/7889768'/1'/0'";
/// Path of the input of the backup key.
pub const BACKUP_PATH: &str = "m/7889768'/2'/0'";

/// Bytes of an encoded [`PublicIdentity`]: suite, signing key, agreement key, signature.
pub const PUBLIC_IDENTITY_BYTES: usize = 1 + 32 + 32 + 64;

/// A BIP32 extended private key on secp256k1. Wiped on drop; never printed.
pub struct ExtendedPrivateKey(bip32::ExtendedPrivateKey<secp256k1::SecretKey>);

impl ExtendedPrivateKey {
    /// The master key of `seed` (BIP32 "Master key generation").
    ///
    /// # Errors
    /// [`IdentityError::Derivation`] for the (2^-127 likely) invalid master key.
    pub fn master(seed: &Seed) -> Result<Self, IdentityError> {
        bip32::ExtendedPrivateKey::new(seed.as_bytes())
            .map(Self)
            .map_err(|_| IdentityError::Derivation)
    }

    /// Derives along `path` (`m/…`, `'` or `H` for hardened) from this key.
    ///
    /// # Errors
    /// [`IdentityError::Path`] for a malformed path; [`IdentityError::Derivation`]
    /// for the (2^-127 likely) invalid child.
    pub fn derive(&self, path: &str) -> Result<Self, IdentityError> {
        let path = bip32::DerivationPath::from_str(&path.replace('H', "'"))
            .map_err(|_| IdentityError::Path)?;
        let mut key = Self(self.0.clone());
        for child in path.iter() {
            key = Self(key.0.derive_child(child).map_err(|_| IdentityError::Derivation)?);
        }
        Ok(key)
    }

    /// The private key's 32 bytes. Wiped when dropped.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.private_key().to_secret_bytes())
    }

    /// The `xprv…` serialization (BIP32 "Serialization format").
    pub fn to_xprv(&self) -> Zeroizing<String> {
        self.0.to_string(bip32::Prefix::XPRV)
    }

    /// The `xpub…` serialization of the matching public key.
    pub fn to_xpub(&self) -> String {
        self.public_key().to_xpub()
    }

    /// The matching extended public key.
    pub fn public_key(&self) -> ExtendedPublicKey {
        ExtendedPublicKey(self.0.public_key())
    }

    /// Parses an `xprv…` string, refusing every malformed key (BIP32 test vector 5).
    ///
    /// # Errors
    /// [`IdentityError::ExtendedKey`] for a key that is not a valid xprv.
    pub fn from_xprv(xprv: &str) -> Result<Self, IdentityError> {
        let key = parse_extended_key(xprv, bip32::Prefix::XPRV)?;
        bip32::ExtendedPrivateKey::try_from(key).map(Self).map_err(|_| IdentityError::ExtendedKey)
    }
}

/// A BIP32 extended public key on secp256k1 (`xpub…`).
#[derive(Clone, PartialEq, Eq)]
pub struct ExtendedPublicKey(bip32::ExtendedPublicKey<secp256k1::PublicKey>);

impl ExtendedPublicKey {
    /// Parses an `xpub…` string, refusing every malformed key (BIP32 test vector 5).
    ///
    /// # Errors
    /// [`IdentityError::ExtendedKey`] for a key that is not a valid xpub
    /// (an `xprv` included: this never derives a public key from a private one).
    pub fn from_xpub(xpub: &str) -> Result<Self, IdentityError> {
        let key = parse_extended_key(xpub, bip32::Prefix::XPUB)?;
        bip32::ExtendedPublicKey::try_from(key).map(Self).map_err(|_| IdentityError::ExtendedKey)
    }

    /// The `xpub…` serialization (BIP32 "Serialization format").
    pub fn to_xpub(&self) -> String {
        self.0.to_string(bip32::Prefix::XPUB)
    }
}

impl std::fmt::Debug for ExtendedPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExtendedPublicKey({})", crate::fingerprint(self.to_xpub().as_bytes()))
    }
}

/// Decodes an extended key of the `expected` version, with the checks BIP32
/// asks of a deserializer that the `bip32` crate leaves out: a master key
/// (depth 0) has a zero parent fingerprint and a zero child number.
fn parse_extended_key(
    text: &str,
    expected: bip32::Prefix,
) -> Result<bip32::ExtendedKey, IdentityError> {
    let key = bip32::ExtendedKey::from_str(text).map_err(|_| IdentityError::ExtendedKey)?;
    // `Prefix` equality compares the four characters and the version bytes.
    if key.prefix != expected {
        return Err(IdentityError::ExtendedKey);
    }
    if key.attrs.depth == 0
        && (key.attrs.parent_fingerprint != [0u8; 4] || key.attrs.child_number.0 != 0)
    {
        return Err(IdentityError::ExtendedKey);
    }
    Ok(key)
}

impl std::fmt::Debug for ExtendedPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtendedPrivateKey(<redacted>)")
    }
}

/// A user's identity keys, as derived from their recovery phrase: the
/// BIP340 signing key, the X25519 key-agreement key, and the signing key's
/// certificate over the agreement key. Wiped on drop; never printed.
pub struct Identity {
    signing: SigningKey,
    agreement: agreement::KeyPair,
    agreement_signature: Signature,
    backup_key: Zeroizing<[u8; 32]>,
}

/// Version of the [`Identity`] record layout.
const IDENTITY_RECORD_VERSION: u8 = 1;
/// Bytes of an [`Identity`] record.
const IDENTITY_RECORD_BYTES: usize = 1 + 32 + 32 + 64 + 32;

impl Identity {
    /// Derives the identity of `seed` (`docs/keys.md`). Deterministic: the
    /// same phrase and passphrase give the same identity on every device.
    ///
    /// # Errors
    /// [`IdentityError::Derivation`] for the (2^-127 likely) invalid key.
    pub fn from_seed(seed: &Seed) -> Result<Self, IdentityError> {
        let master = ExtendedPrivateKey::master(seed)?;
        let signing = SigningKey::from_bytes(&master.derive(SIGNING_PATH)?.secret_bytes())
            .map_err(|_| IdentityError::Derivation)?;
        let agreement_input = master.derive(AGREEMENT_PATH)?.secret_bytes();
        let agreement_secret =
            kdf::derive_key(&[], agreement_input.as_ref(), &[kdf::IDENTITY_AGREEMENT_INFO]);
        let agreement =
            agreement::KeyPair::from_secret(agreement::SecretKey::from_bytes(&agreement_secret));
        // BIP340 with zero auxiliary randomness is still a secure, deterministic
        // signature; it keeps the identity a pure function of the seed.
        let mut signed = Vec::with_capacity(kdf::SIG_AGREEMENT_CERT.len() + 64);
        signed.extend_from_slice(kdf::SIG_AGREEMENT_CERT);
        signed.extend_from_slice(&agreement_certificate_message(
            &signing.verifying_key(),
            agreement.public(),
        ));
        let agreement_signature = signing.sign_with_aux(&signed, &[0u8; 32]);
        let backup_input = master.derive(BACKUP_PATH)?.secret_bytes();
        let backup_key = kdf::derive_key(&[], backup_input.as_ref(), &[kdf::IDENTITY_BACKUP_INFO]);
        Ok(Self { signing, agreement, agreement_signature, backup_key })
    }

    /// The key that encrypts this identity's backups: derived from the
    /// phrase, so a profile restored from the phrase can open them.
    pub fn backup_key(&self) -> &[u8; 32] {
        &self.backup_key
    }

    /// The versioned record: `version (1) || signing secret (32) || agreement
    /// secret (32) || agreement certificate (64) || backup key (32)`. Wiped
    /// when dropped.
    pub fn to_record(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(IDENTITY_RECORD_BYTES);
        w.u8(IDENTITY_RECORD_VERSION)
            .fixed(self.signing.to_bytes().as_ref())
            .fixed(self.agreement.secret().to_bytes().as_ref())
            .fixed(self.agreement_signature.as_bytes())
            .fixed(self.backup_key.as_ref());
        w.into_secret_bytes()
    }

    /// Restores an identity from [`Identity::to_record`], checking that its
    /// certificate is its own.
    ///
    /// # Errors
    /// [`IdentityError::Record`] for a malformed record,
    /// [`IdentityError::InvalidKey`] or [`IdentityError::InvalidCertificate`]
    /// for keys that do not belong together.
    pub fn from_record(record: &[u8]) -> Result<Self, IdentityError> {
        let mut r = Reader::new(record);
        let version = r.u8().map_err(IdentityError::Record)?;
        if version != IDENTITY_RECORD_VERSION {
            return Err(IdentityError::Record(DecodeError::UnknownVersion(version)));
        }
        let signing_secret = r.secret_array::<32>().map_err(IdentityError::Record)?;
        let agreement_secret = r.secret_array::<32>().map_err(IdentityError::Record)?;
        let agreement_signature = Signature::from_bytes(r.array().map_err(IdentityError::Record)?);
        let backup_key = r.secret_array::<32>().map_err(IdentityError::Record)?;
        r.finish().map_err(IdentityError::Record)?;
        let signing =
            SigningKey::from_bytes(&signing_secret).map_err(|_| IdentityError::InvalidKey)?;
        let agreement =
            agreement::KeyPair::from_secret(agreement::SecretKey::from_bytes(&agreement_secret));
        let identity = Self { signing, agreement, agreement_signature, backup_key };
        UnverifiedPublicIdentity::from_bytes(&identity.public().to_bytes())
            .map_err(IdentityError::Record)?
            .verify()?;
        Ok(identity)
    }

    /// The BIP340 signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The X25519 key-agreement key pair.
    pub fn agreement(&self) -> &agreement::KeyPair {
        &self.agreement
    }

    /// The public half, as contacts see it.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity {
            signing: self.signing.verifying_key(),
            agreement: *self.agreement.public(),
            agreement_signature: self.agreement_signature,
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public().signing)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The bytes the identity signs to certify its agreement key:
/// `signing key (32) || agreement key (32)`.
fn agreement_certificate_message(
    signing: &VerifyingKey,
    agreement: &agreement::PublicKey,
) -> [u8; 64] {
    let mut message = [0u8; 64];
    message[..32].copy_from_slice(&signing.to_bytes());
    message[32..].copy_from_slice(agreement.as_bytes());
    message
}

/// A contact's public identity whose agreement-key certificate has been
/// checked: the signing key (what the address encodes) and the X25519 key it
/// certified.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicIdentity {
    signing: VerifyingKey,
    agreement: agreement::PublicKey,
    agreement_signature: Signature,
}

impl PublicIdentity {
    /// The identity's BIP340 key: what an address encodes.
    pub fn signing_key(&self) -> &VerifyingKey {
        &self.signing
    }

    /// The identity's certified X25519 key.
    pub fn agreement_key(&self) -> &agreement::PublicKey {
        &self.agreement
    }

    /// Encodes as `suite (1) || signing key (32) || agreement key (32) || signature (64)`.
    pub fn to_bytes(&self) -> [u8; PUBLIC_IDENTITY_BYTES] {
        let mut w = Writer::with_capacity(PUBLIC_IDENTITY_BYTES);
        w.u8(CipherSuite::V1.to_byte())
            .fixed(&self.signing.to_bytes())
            .fixed(self.agreement.as_bytes())
            .fixed(self.agreement_signature.as_bytes());
        let bytes = w.into_bytes();
        let mut out = [0u8; PUBLIC_IDENTITY_BYTES];
        out.copy_from_slice(&bytes);
        out
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.fixed(&self.to_bytes());
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<UnverifiedPublicIdentity, DecodeError> {
        CipherSuite::from_byte(r.u8()?)?;
        Ok(UnverifiedPublicIdentity {
            signing: r.array()?,
            agreement: r.array()?,
            agreement_signature: r.array()?,
        })
    }
}

impl std::fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicIdentity({})", crate::fingerprint(&self.signing.to_bytes()))
    }
}

/// A decoded public identity whose certificate has not been checked yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnverifiedPublicIdentity {
    signing: [u8; 32],
    agreement: [u8; 32],
    agreement_signature: [u8; 64],
}

impl UnverifiedPublicIdentity {
    /// Decodes the layout of [`PublicIdentity::to_bytes`].
    ///
    /// # Errors
    /// [`DecodeError`] for a wrong length or an unknown suite.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let identity = PublicIdentity::read(&mut r)?;
        r.finish()?;
        Ok(identity)
    }

    /// Checks the signing key and its signature over the agreement key.
    ///
    /// # Errors
    /// [`IdentityError::InvalidKey`] for an off-curve signing key,
    /// [`IdentityError::InvalidCertificate`] for a bad signature.
    pub fn verify(self) -> Result<PublicIdentity, IdentityError> {
        let signing =
            VerifyingKey::from_bytes(&self.signing).map_err(|_| IdentityError::InvalidKey)?;
        let agreement = agreement::PublicKey::from_bytes(self.agreement);
        let agreement_signature = Signature::from_bytes(self.agreement_signature);
        signing
            .verify(
                kdf::SIG_AGREEMENT_CERT,
                &agreement_certificate_message(&signing, &agreement),
                &agreement_signature,
            )
            .map_err(|signature::SignatureError| IdentityError::InvalidCertificate)?;
        Ok(PublicIdentity { signing, agreement, agreement_signature })
    }
}

/// Why an identity could not be derived or checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// BIP32 produced an invalid key (probability about 2^-127 per step).
    #[error("key derivation produced an invalid key")]
    Derivation,
    /// A derivation path that is not of the form `m/0'/1/…`.
    #[error("malformed derivation path")]
    Path,
    /// A malformed identity record.
    #[error("malformed identity record: {0}")]
    Record(DecodeError),
    /// An extended key string that is not a valid xprv or xpub (as asked).
    #[error("invalid extended key")]
    ExtendedKey,
    /// A public key that is not on secp256k1.
    #[error("invalid identity key")]
    InvalidKey,
    /// The identity's signature over its agreement key does not verify.
    #[error("invalid identity certificate")]
    InvalidCertificate,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(byte: u8) -> Seed {
        Seed::from_bytes(&[byte; 64]).unwrap()
    }

    #[test]
    fn identity_is_a_function_of_the_seed() {
        let a = Identity::from_seed(&seed(1)).unwrap();
        let b = Identity::from_seed(&seed(1)).unwrap();
        let c = Identity::from_seed(&seed(2)).unwrap();
        assert_eq!(a.public(), b.public());
        assert_ne!(a.public(), c.public());
    }

    #[test]
    fn signing_and_agreement_keys_are_distinct() {
        let identity = Identity::from_seed(&seed(3)).unwrap();
        assert_ne!(
            identity.signing_key().to_bytes().as_ref(),
            identity.agreement().secret().to_bytes().as_ref()
        );
    }

    #[test]
    fn public_identity_round_trips_and_verifies() {
        let identity = Identity::from_seed(&seed(4)).unwrap();
        let bytes = identity.public().to_bytes();
        let decoded = UnverifiedPublicIdentity::from_bytes(&bytes).unwrap().verify().unwrap();
        assert_eq!(decoded, identity.public());
    }

    #[test]
    fn identity_record_round_trips_and_refuses_tampering() {
        let identity = Identity::from_seed(&seed(7)).unwrap();
        let record = identity.to_record();
        let restored = Identity::from_record(&record).unwrap();
        assert_eq!(restored.public(), identity.public());
        assert_eq!(restored.backup_key(), identity.backup_key());
        let mut tampered = record.to_vec();
        tampered[40] ^= 1;
        assert_eq!(Identity::from_record(&tampered).err(), Some(IdentityError::InvalidCertificate));
        assert!(matches!(
            Identity::from_record(&record[..record.len() - 1]),
            Err(IdentityError::Record(DecodeError::Truncated))
        ));
    }

    #[test]
    fn extended_keys_round_trip_and_an_xprv_is_not_an_xpub() {
        let key = ExtendedPrivateKey::master(&seed(7)).unwrap().derive(SIGNING_PATH).unwrap();
        let xprv = key.to_xprv();
        let xpub = key.to_xpub();
        assert_eq!(*ExtendedPrivateKey::from_xprv(&xprv).unwrap().to_xprv(), *xprv);
        assert_eq!(ExtendedPublicKey::from_xpub(&xpub).unwrap(), key.public_key());
        assert_eq!(ExtendedPublicKey::from_xpub(&xprv).unwrap_err(), IdentityError::ExtendedKey);
        assert_eq!(ExtendedPrivateKey::from_xprv(&xpub).unwrap_err(), IdentityError::ExtendedKey);
    }

    #[test]
    fn swapped_agreement_key_is_refused() {
        let a = Identity::from_seed(&seed(5)).unwrap();
        let b = Identity::from_seed(&seed(6)).unwrap();
        let mut bytes = a.public().to_bytes();
        bytes[33..65].copy_from_slice(b.public().agreement_key().as_bytes());
        assert_eq!(
            UnverifiedPublicIdentity::from_bytes(&bytes).unwrap().verify(),
            Err(IdentityError::InvalidCertificate)
        );
    }
}
