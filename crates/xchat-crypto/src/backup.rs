//! Backup files: a profile's data encrypted under a key that only the
//! recovery phrase gives.
//!
//! The identity's backup key ([`Identity::backup_key`], from its own BIP32
//! path of the phrase's seed) never encrypts anything itself: each backup
//! draws a random salt, and its file key is
//! `HKDF-SHA256(salt, ikm = backup key, info = kdf::BACKUP_FILE_KEY_INFO)`.
//! The contents are then encrypted with [`crate::file`]'s cipher (STREAM
//! over AES-256-GCM in 64 KiB chunks), in constant memory.
//!
//! # Layout (suite 1)
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic `xchatbak` |
//! | 8 | 1 | version (`1`) |
//! | 9 | 1 | cipher suite (`1`) |
//! | 10 | 32 | salt |
//! | 42 | … | the contents, encrypted by [`crate::file::encrypt`] under the file key |
//!
//! The header is not authenticated on its own, and need not be: a changed
//! salt derives another file key, under which no chunk authenticates, and a
//! changed magic, version or suite is refused. A wrong phrase and a damaged
//! file are one error, [`BackupError::Decryption`].
//!
//! [`Identity::backup_key`]: crate::identity::Identity::backup_key

use std::io::{Read, Write};

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::file::{self, FileDigest, FileError, FileKey};
use crate::kdf;
use crate::suite::CipherSuite;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"xchatbak";
/// The layout's version.
pub const VERSION: u8 = 1;
/// Bytes of the salt.
pub const SALT_BYTES: usize = 32;
/// Bytes of the header before the encrypted contents.
pub const HEADER_BYTES: usize = MAGIC.len() + 2 + SALT_BYTES;

/// Encrypts everything `reader` gives into a backup file written to
/// `writer`, under a file key derived from `backup_key` and a fresh salt.
///
/// # Errors
/// [`FileError::Io`] when reading or writing fails; the output is then
/// incomplete and must be discarded.
pub fn encrypt(
    backup_key: &[u8; kdf::KEY_BYTES],
    reader: impl Read,
    mut writer: impl Write,
    rng: &mut impl CryptoRng,
) -> Result<FileDigest, FileError> {
    let mut salt = [0u8; SALT_BYTES];
    rng.fill_bytes(&mut salt);
    let mut header = [0u8; HEADER_BYTES];
    header[..MAGIC.len()].copy_from_slice(MAGIC);
    header[MAGIC.len()] = VERSION;
    header[MAGIC.len() + 1] = CipherSuite::V1.to_byte();
    header[MAGIC.len() + 2..].copy_from_slice(&salt);
    writer.write_all(&header)?;
    file::encrypt(&file_key(backup_key, &salt), reader, writer)
}

/// Decrypts a backup file from `reader` into `writer`. Every chunk is
/// authenticated before it is written; on an error the output is to be
/// discarded.
///
/// # Errors
/// [`BackupError::NotABackup`], [`BackupError::UnsupportedVersion`],
/// [`BackupError::Decryption`] for a wrong key (another phrase) or a damaged
/// file, [`BackupError::Io`].
pub fn decrypt(
    backup_key: &[u8; kdf::KEY_BYTES],
    mut reader: impl Read,
    writer: impl Write,
) -> Result<FileDigest, BackupError> {
    let mut header = [0u8; HEADER_BYTES];
    reader.read_exact(&mut header).map_err(|err| match err.kind() {
        std::io::ErrorKind::UnexpectedEof => BackupError::NotABackup,
        _ => BackupError::Io(err),
    })?;
    let (magic, rest) = header.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let (version, suite, salt) = match rest {
        [version, suite, salt @ ..] => (*version, *suite, salt),
        _ => return Err(BackupError::NotABackup),
    };
    if version != VERSION || suite != CipherSuite::V1.to_byte() {
        return Err(BackupError::UnsupportedVersion { version, suite });
    }
    file::decrypt(&file_key(backup_key, salt), reader, writer).map_err(|err| match err {
        FileError::Io(err) => BackupError::Io(err),
        FileError::Decryption | FileError::TooLarge { .. } => BackupError::Decryption,
    })
}

fn file_key(backup_key: &[u8; kdf::KEY_BYTES], salt: &[u8]) -> FileKey {
    let key: Zeroizing<[u8; kdf::KEY_BYTES]> =
        kdf::derive_key(salt, backup_key, &[kdf::BACKUP_FILE_KEY_INFO]);
    FileKey::from_bytes(&key)
}

/// Why a backup could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file does not start like a backup.
    #[error("not an xchat backup file")]
    NotABackup,
    /// A backup of a layout or cipher suite this version does not know.
    #[error("backup version {version} (suite {suite}) is not supported: update xchat")]
    UnsupportedVersion {
        /// The file's version byte.
        version: u8,
        /// The file's suite byte.
        suite: u8,
    },
    /// The backup does not decrypt: made from another recovery phrase, or
    /// damaged. Deliberately says no more.
    #[error("the backup does not decrypt: another recovery phrase, or a damaged file")]
    Decryption,
    /// Reading or writing failed.
    #[error("backup i/o failed")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    fn backup(key: &[u8; 32], contents: &[u8], seed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let digest =
            encrypt(key, contents, &mut out, &mut ChaCha20Rng::seed_from_u64(seed)).unwrap();
        assert_eq!(digest.plaintext_len(), contents.len() as u64);
        out
    }

    fn restore(key: &[u8; 32], file: &[u8]) -> Result<Vec<u8>, BackupError> {
        let mut out = Vec::new();
        decrypt(key, file, &mut out).map(|_| out)
    }

    #[test]
    fn backup_round_trips_and_hides_its_contents() {
        let contents: Vec<u8> = b"meet at the old mill ".repeat(10_000);
        let file = backup(&[7; 32], &contents, 1);
        assert_eq!(&file[..8], MAGIC);
        assert!(!file.windows(21).any(|w| w == b"meet at the old mill "));
        assert_eq!(restore(&[7; 32], &file).unwrap(), contents);
    }

    #[test]
    fn each_backup_has_its_own_salt_and_key() {
        let (a, b) = (backup(&[7; 32], b"same", 1), backup(&[7; 32], b"same", 2));
        assert_ne!(a[10..42], b[10..42]);
        assert_ne!(a[42..], b[42..]);
    }

    #[test]
    fn another_key_or_a_changed_byte_is_refused_as_one_error() {
        let file = backup(&[7; 32], b"contents", 1);
        assert!(matches!(restore(&[8; 32], &file), Err(BackupError::Decryption)));
        for index in [10, 41, 42, file.len() - 1] {
            let mut changed = file.clone();
            changed[index] ^= 1;
            assert!(matches!(restore(&[7; 32], &changed), Err(BackupError::Decryption)));
        }
        assert!(matches!(restore(&[7; 32], &file[..file.len() - 1]), Err(BackupError::Decryption)));
    }

    #[test]
    fn foreign_and_future_files_are_told_apart() {
        assert!(matches!(restore(&[7; 32], b"short"), Err(BackupError::NotABackup)));
        assert!(matches!(restore(&[7; 32], &[0; 100]), Err(BackupError::NotABackup)));
        let mut file = backup(&[7; 32], b"contents", 1);
        file[8] = 2;
        assert!(matches!(
            restore(&[7; 32], &file),
            Err(BackupError::UnsupportedVersion { version: 2, suite: 1 })
        ));
    }
}
