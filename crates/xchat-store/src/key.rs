//! The database key: Argon2id of the user's passphrase, or the 32 bytes of a
//! key file. SQLCipher gets it as a raw key, so its own PBKDF2 is not run
//! again (`docs/storage.md`, "The key").

use std::io::Read;
use std::path::Path;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::StoreError;
use crate::header::KeyHeader;

/// Bytes of a database key, of a key file, and of SQLCipher's AES-256 key.
pub const KEY_BYTES: usize = 32;
/// Bytes of a key file: the key itself.
pub const KEY_FILE_BYTES: usize = KEY_BYTES;
/// Bytes of the random Argon2id salt (RFC 9106 recommends 16).
pub const SALT_BYTES: usize = 16;
/// Longest passphrase accepted, in bytes (UTF-8).
pub const MAX_PASSPHRASE_BYTES: usize = 1024;
/// Most memory a profile's header may ask Argon2id for, in KiB (1 GiB): a
/// damaged or hostile header cannot make the node allocate without bound.
pub const MAX_KDF_MEMORY_KIB: u32 = 1024 * 1024;
/// Most Argon2id passes a header may ask for.
pub const MAX_KDF_ITERATIONS: u32 = 64;
/// Most Argon2id lanes a header may ask for.
pub const MAX_KDF_LANES: u32 = 16;

/// Argon2id's cost parameters, kept in the key header so they can be raised
/// for new profiles without breaking old ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    memory_kib: u32,
    iterations: u32,
    lanes: u32,
}

impl KdfParams {
    /// The parameters of a new desktop profile: m = 64 MiB, t = 3, p = 1.
    ///
    /// RFC 9106 section 4 recommends, when 2 GiB cannot be spared,
    /// m = 64 MiB with t = 3; OWASP's floor is m = 19 MiB with t = 2. 64 MiB
    /// is at hand on any desktop, and each guess costs an attacker 64 MiB of
    /// memory for 3 passes, which is what makes GPUs and ASICs slow at it.
    /// One lane: without the `parallel` feature the argon2 crate computes
    /// lanes one after the other, so more lanes would cost the user as much
    /// time without costing the attacker more. Measured at about 0.2 s in a
    /// release build on this project's 2-core build machine
    /// (`docs/storage.md`); a key is derived once per unlock.
    pub const DESKTOP: Self = Self { memory_kib: 64 * 1024, iterations: 3, lanes: 1 };

    /// Checked parameters.
    ///
    /// # Errors
    /// [`StoreError::KdfParams`] outside `8 × lanes ..= MAX_KDF_MEMORY_KIB`
    /// KiB, `1 ..= MAX_KDF_ITERATIONS` passes or `1 ..= MAX_KDF_LANES` lanes.
    pub fn new(memory_kib: u32, iterations: u32, lanes: u32) -> Result<Self, StoreError> {
        if !(1..=MAX_KDF_LANES).contains(&lanes) {
            return Err(StoreError::KdfParams("lanes"));
        }
        if !(1..=MAX_KDF_ITERATIONS).contains(&iterations) {
            return Err(StoreError::KdfParams("iterations"));
        }
        // Argon2 needs 8 blocks of 1 KiB per lane.
        if !(8 * lanes..=MAX_KDF_MEMORY_KIB).contains(&memory_kib) {
            return Err(StoreError::KdfParams("memory"));
        }
        Ok(Self { memory_kib, iterations, lanes })
    }

    /// Memory, in KiB.
    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    /// Passes over the memory.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Lanes (Argon2's parallelism).
    pub fn lanes(&self) -> u32 {
        self.lanes
    }
}

/// How a profile's database key is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Argon2id of a passphrase.
    Passphrase,
    /// A key file.
    KeyFile,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Passphrase => "a passphrase",
            Self::KeyFile => "a key file",
        })
    }
}

/// Where a key came from: what the key header records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// Argon2id with these parameters and salt.
    Passphrase { params: KdfParams, salt: [u8; SALT_BYTES] },
    /// A key file.
    KeyFile,
}

impl KeySource {
    pub(crate) fn kind(&self) -> KeyKind {
        match self {
            Self::Passphrase { .. } => KeyKind::Passphrase,
            Self::KeyFile => KeyKind::KeyFile,
        }
    }
}

/// The 32-byte key of a profile's SQLCipher database, and where it came
/// from. Wiped on drop; never printed.
pub struct DatabaseKey {
    bytes: Box<Zeroizing<[u8; KEY_BYTES]>>,
    source: KeySource,
}

impl DatabaseKey {
    /// The key of a new profile protected by `passphrase`: Argon2id with
    /// `params` and a fresh 16-byte salt from `rng`.
    ///
    /// # Errors
    /// [`StoreError::EmptyPassphrase`], [`StoreError::TooLarge`] beyond
    /// [`MAX_PASSPHRASE_BYTES`], [`StoreError::KeyDerivation`] if Argon2id
    /// cannot allocate its memory.
    pub fn new_from_passphrase(
        passphrase: &str,
        params: KdfParams,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, StoreError> {
        let mut salt = [0u8; SALT_BYTES];
        rng.fill_bytes(&mut salt);
        Self::derive(passphrase, params, salt)
    }

    /// The key of the existing profile in `dir`, from its passphrase: reads
    /// the salt and parameters of the profile's key header. Whether the
    /// passphrase is the right one is told by [`crate::Store::open`].
    ///
    /// # Errors
    /// [`StoreError::NotFound`] without a profile,
    /// [`StoreError::Corrupt`] for a damaged header,
    /// [`StoreError::WrongKeyKind`] for a profile opened with a key file,
    /// and the errors of [`DatabaseKey::new_from_passphrase`].
    pub fn from_passphrase(dir: &Path, passphrase: &str) -> Result<Self, StoreError> {
        match KeyHeader::read(dir)?.source() {
            KeySource::Passphrase { params, salt } => Self::derive(passphrase, params, salt),
            KeySource::KeyFile => Err(StoreError::WrongKeyKind {
                expected: KeyKind::KeyFile,
                given: KeyKind::Passphrase,
            }),
        }
    }

    /// The key in the key file at `path`: exactly [`KEY_FILE_BYTES`] bytes,
    /// readable by its owner only (mode 0600 or stricter, on Unix).
    ///
    /// # Errors
    /// [`StoreError::KeyFilePermissions`], [`StoreError::KeyFileLength`],
    /// [`StoreError::Io`].
    pub fn from_key_file(path: &Path) -> Result<Self, StoreError> {
        let mut file = std::fs::File::open(path)?;
        let metadata = file.metadata()?;
        check_owner_only(&metadata)?;
        if metadata.len() != KEY_FILE_BYTES as u64 {
            return Err(StoreError::KeyFileLength {
                len: metadata.len(),
                expected: KEY_FILE_BYTES,
            });
        }
        let mut bytes = Box::new(Zeroizing::new([0u8; KEY_BYTES]));
        file.read_exact(bytes.as_mut_slice())?;
        // The file may have grown since `metadata`: a key is exactly 32 bytes.
        if file.read(&mut [0u8; 1])? != 0 {
            return Err(StoreError::KeyFileLength {
                len: metadata.len().saturating_add(1),
                expected: KEY_FILE_BYTES,
            });
        }
        Ok(Self { bytes, source: KeySource::KeyFile })
    }

    /// Writes a new key file of 32 random bytes from `rng` at `path`, mode
    /// 0600, refusing to replace an existing file, and returns its key.
    ///
    /// # Errors
    /// [`StoreError::Io`] (`AlreadyExists` if `path` exists),
    /// [`StoreError::DiskFull`].
    pub fn create_key_file(path: &Path, rng: &mut impl CryptoRng) -> Result<Self, StoreError> {
        let mut bytes = Box::new(Zeroizing::new([0u8; KEY_BYTES]));
        rng.fill_bytes(bytes.as_mut_slice());
        crate::files::write_new_file(path, bytes.as_slice())?;
        Ok(Self { bytes, source: KeySource::KeyFile })
    }

    /// How this key is made.
    pub fn kind(&self) -> KeyKind {
        self.source.kind()
    }

    pub(crate) fn source(&self) -> KeySource {
        self.source
    }

    fn derive(
        passphrase: &str,
        params: KdfParams,
        salt: [u8; SALT_BYTES],
    ) -> Result<Self, StoreError> {
        if passphrase.is_empty() {
            return Err(StoreError::EmptyPassphrase);
        }
        if passphrase.len() > MAX_PASSPHRASE_BYTES {
            return Err(StoreError::TooLarge {
                what: "passphrase",
                len: passphrase.len(),
                max: MAX_PASSPHRASE_BYTES,
            });
        }
        // `KdfParams` was checked against argon2's own bounds when made.
        let argon2_params = argon2::Params::new(
            params.memory_kib,
            params.iterations,
            params.lanes,
            Some(KEY_BYTES),
        )
        .map_err(StoreError::KeyDerivation)?;
        let argon2 =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, argon2_params);
        let mut bytes = Box::new(Zeroizing::new([0u8; KEY_BYTES]));
        argon2
            .hash_password_into(passphrase.as_bytes(), &salt, bytes.as_mut_slice())
            .map_err(StoreError::KeyDerivation)?;
        Ok(Self { bytes, source: KeySource::Passphrase { params, salt } })
    }

    /// The tag the key header keeps: HMAC-SHA256 under the key of
    /// `kdf::STORE_KEY_CHECK`. Public: it only confirms a key already held.
    pub(crate) fn check_tag(&self) -> [u8; 32] {
        *xchat_crypto::kdf::hmac_sha256(self.bytes.as_slice(), xchat_crypto::kdf::STORE_KEY_CHECK)
    }

    /// Whether `tag` is this key's check tag, in constant time.
    pub(crate) fn matches(&self, tag: &[u8; 32]) -> bool {
        bool::from(self.check_tag().ct_eq(tag))
    }

    /// SQLCipher's raw-key form, `x'<64 hex digits>'`: SQLCipher uses the
    /// key as it is, with no PBKDF2. Built in one wiped buffer of its exact
    /// size, so no copy is left in a freed allocation.
    pub(crate) fn sqlcipher_raw_key(&self) -> Zeroizing<Vec<u8>> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut raw = Zeroizing::new(Vec::with_capacity(2 * KEY_BYTES + 3));
        raw.extend_from_slice(b"x'");
        for byte in self.bytes.iter() {
            raw.push(HEX[usize::from(byte >> 4)]);
            raw.push(HEX[usize::from(byte & 0x0f)]);
        }
        raw.push(b'\'');
        raw
    }
}

impl Zeroize for DatabaseKey {
    fn zeroize(&mut self) {
        self.bytes.zeroize();
    }
}

impl ZeroizeOnDrop for DatabaseKey {}

impl std::fmt::Debug for DatabaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseKey")
            .field("kind", &self.kind())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Refuses a key file that anyone but its owner may read or write.
#[cfg(unix)]
fn check_owner_only(metadata: &std::fs::Metadata) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(StoreError::KeyFilePermissions { mode });
    }
    Ok(())
}

/// Windows has no permission bits; the profile directory's ACL protects it.
#[cfg(not(unix))]
fn check_owner_only(_: &std::fs::Metadata) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// Cheap parameters: the tests exercise the code, not the cost.
    fn fast() -> KdfParams {
        KdfParams::new(64, 1, 1).unwrap()
    }

    #[test]
    fn passphrase_key_is_argon2id_of_the_passphrase_and_salt() {
        // RFC 9106's Argon2id test vector has a secret and associated data,
        // which xchat does not use; check against the argon2 crate directly
        // instead, and that salt and passphrase both matter.
        let params = KdfParams::new(256, 2, 1).unwrap();
        let key = DatabaseKey::derive("correct horse", params, [7; SALT_BYTES]).unwrap();
        let mut expected = [0u8; 32];
        argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(256, 2, 1, Some(32)).unwrap(),
        )
        .hash_password_into(b"correct horse", &[7; SALT_BYTES], &mut expected)
        .unwrap();
        assert_eq!(key.bytes.as_slice(), &expected);
        let other_salt = DatabaseKey::derive("correct horse", params, [8; SALT_BYTES]).unwrap();
        let other_passphrase =
            DatabaseKey::derive("correct horsf", params, [7; SALT_BYTES]).unwrap();
        assert_ne!(key.bytes.as_slice(), other_salt.bytes.as_slice());
        assert_ne!(key.bytes.as_slice(), other_passphrase.bytes.as_slice());
    }

    #[test]
    fn new_passphrase_key_draws_its_salt_from_the_rng() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = DatabaseKey::new_from_passphrase("pass", fast(), &mut rng).unwrap();
        let b = DatabaseKey::new_from_passphrase("pass", fast(), &mut rng).unwrap();
        assert_ne!(a.source, b.source);
        assert_ne!(a.bytes.as_slice(), b.bytes.as_slice());
    }

    #[test]
    fn empty_and_overlong_passphrases_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        assert!(matches!(
            DatabaseKey::new_from_passphrase("", fast(), &mut rng),
            Err(StoreError::EmptyPassphrase)
        ));
        let long = "a".repeat(MAX_PASSPHRASE_BYTES + 1);
        assert!(matches!(
            DatabaseKey::new_from_passphrase(&long, fast(), &mut rng),
            Err(StoreError::TooLarge { len, max: MAX_PASSPHRASE_BYTES, .. }) if len == long.len()
        ));
        let longest = "a".repeat(MAX_PASSPHRASE_BYTES);
        assert!(DatabaseKey::new_from_passphrase(&longest, fast(), &mut rng).is_ok());
    }

    #[test]
    fn kdf_params_out_of_range_are_refused() {
        assert!(KdfParams::new(8, 1, 1).is_ok());
        assert!(matches!(KdfParams::new(7, 1, 1), Err(StoreError::KdfParams("memory"))));
        assert!(matches!(KdfParams::new(15, 1, 2), Err(StoreError::KdfParams("memory"))));
        assert!(matches!(
            KdfParams::new(MAX_KDF_MEMORY_KIB + 1, 1, 1),
            Err(StoreError::KdfParams("memory"))
        ));
        assert!(matches!(KdfParams::new(64, 0, 1), Err(StoreError::KdfParams("iterations"))));
        assert!(matches!(
            KdfParams::new(64, MAX_KDF_ITERATIONS + 1, 1),
            Err(StoreError::KdfParams("iterations"))
        ));
        assert!(matches!(KdfParams::new(64, 1, 0), Err(StoreError::KdfParams("lanes"))));
        assert!(matches!(
            KdfParams::new(1024, 1, MAX_KDF_LANES + 1),
            Err(StoreError::KdfParams("lanes"))
        ));
        let desktop = KdfParams::DESKTOP;
        assert_eq!(
            KdfParams::new(desktop.memory_kib(), desktop.iterations(), desktop.lanes()).unwrap(),
            desktop
        );
    }

    #[test]
    fn raw_key_is_sqlcipher_blob_syntax() {
        let key = DatabaseKey {
            bytes: Box::new(Zeroizing::new([0xab; KEY_BYTES])),
            source: KeySource::KeyFile,
        };
        let raw = key.sqlcipher_raw_key();
        assert_eq!(raw.len(), 67);
        assert_eq!(raw.capacity(), 67);
        assert_eq!(&raw[..2], b"x'");
        assert_eq!(raw[66], b'\'');
        assert!(raw[2..66].chunks(2).all(|pair| pair == b"ab"));
    }

    #[test]
    fn check_tag_matches_only_its_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let a = DatabaseKey::new_from_passphrase("a", fast(), &mut rng).unwrap();
        let b = DatabaseKey::new_from_passphrase("b", fast(), &mut rng).unwrap();
        assert!(a.matches(&a.check_tag()));
        assert!(!a.matches(&b.check_tag()));
        // The tag is not the key.
        assert_ne!(&a.check_tag(), a.bytes.as_slice());
    }

    #[test]
    fn debug_of_a_key_is_redacted() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let key = DatabaseKey::new_from_passphrase("secret", fast(), &mut rng).unwrap();
        insta::assert_snapshot!(format!("{key:?}"), @r#"DatabaseKey { kind: Passphrase, key: "<redacted>" }"#);
    }
}
