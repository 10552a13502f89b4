//! The key header: a small plaintext file next to the database that says how
//! its key is made (Argon2id's parameters and salt, or a key file) and holds
//! a check tag of the key.
//!
//! Byte layout, version 1 (integers big-endian; `docs/storage.md`):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `xchatkey` |
//! | 1 | version, `1` |
//! | 1 | kind: `1` passphrase (Argon2id), `2` key file |
//! | 4 | Argon2id memory in KiB (passphrase only) |
//! | 4 | Argon2id passes (passphrase only) |
//! | 4 | Argon2id lanes (passphrase only) |
//! | 16 | Argon2id salt (passphrase only) |
//! | 32 | check tag: HMAC-SHA256(database key, `kdf::STORE_KEY_CHECK`) |
//!
//! 70 bytes for a passphrase, 42 for a key file. Nothing in it is secret: the
//! salt and parameters are public inputs of Argon2id, and the tag lets an
//! attacker test a guessed key no faster than the database's first page
//! already does (one HMAC after the Argon2id that dominates each guess).
//! What it gives is a clean answer: a tag that does not match is a wrong
//! passphrase; a tag that matches while SQLCipher refuses the first page is a
//! damaged database, not a passphrase to type again.
//!
//! The header is written once, when the profile is created, and never
//! rewritten; a new version of the layout is read alongside this one.

use std::io::Read;
use std::path::Path;

use crate::error::CorruptPart;
use crate::key::{KdfParams, KeySource, SALT_BYTES};
use crate::{DatabaseKey, StoreError};

/// The key header's file name in a profile directory.
pub const HEADER_FILE: &str = "store.header";
/// The header's first bytes.
const MAGIC: &[u8; 8] = b"xchatkey";
/// The layout's version.
const VERSION: u8 = 1;
const KIND_PASSPHRASE: u8 = 1;
const KIND_KEY_FILE: u8 = 2;
/// Bytes of a check tag.
const TAG_BYTES: usize = 32;
/// Bytes of a passphrase header, the longest layout.
pub(crate) const MAX_HEADER_BYTES: usize = 8 + 1 + 1 + 12 + SALT_BYTES + TAG_BYTES;

/// A profile's key header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyHeader {
    source: KeySource,
    tag: [u8; TAG_BYTES],
}

impl KeyHeader {
    /// The header of a profile keyed with `key`.
    pub(crate) fn new(key: &DatabaseKey) -> Self {
        Self { source: key.source(), tag: key.check_tag() }
    }

    pub(crate) fn source(&self) -> KeySource {
        self.source
    }

    /// Whether `key` is the key this header checks.
    pub(crate) fn admits(&self, key: &DatabaseKey) -> Result<(), StoreError> {
        if key.kind() != self.source.kind() {
            return Err(StoreError::WrongKeyKind {
                expected: self.source.kind(),
                given: key.kind(),
            });
        }
        if !key.matches(&self.tag) {
            return Err(StoreError::WrongKey);
        }
        Ok(())
    }

    /// Reads the header of the profile in `dir`, refusing a file longer than
    /// the longest layout before reading it.
    pub(crate) fn read(dir: &Path) -> Result<Self, StoreError> {
        let file = match std::fs::File::open(dir.join(HEADER_FILE)) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound);
            }
            Err(err) => return Err(err.into()),
        };
        let mut bytes = Vec::with_capacity(MAX_HEADER_BYTES);
        // One byte more than the longest layout tells "too long" apart.
        file.take(MAX_HEADER_BYTES as u64 + 1).read_to_end(&mut bytes)?;
        Self::from_bytes(&bytes).ok_or(StoreError::Corrupt(CorruptPart::KeyHeader))
    }

    /// Writes the header into `dir` durably, refusing to replace one.
    pub(crate) fn write_new(&self, dir: &Path) -> Result<(), StoreError> {
        crate::files::write_new_file(&dir.join(HEADER_FILE), &self.to_bytes())
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(MAX_HEADER_BYTES);
        bytes.extend_from_slice(MAGIC);
        bytes.push(VERSION);
        match &self.source {
            KeySource::Passphrase { params, salt } => {
                bytes.push(KIND_PASSPHRASE);
                bytes.extend_from_slice(&params.memory_kib().to_be_bytes());
                bytes.extend_from_slice(&params.iterations().to_be_bytes());
                bytes.extend_from_slice(&params.lanes().to_be_bytes());
                bytes.extend_from_slice(salt);
            }
            KeySource::KeyFile => bytes.push(KIND_KEY_FILE),
        }
        bytes.extend_from_slice(&self.tag);
        bytes
    }

    /// Decodes the layout above; `None` for anything else (an unknown
    /// version or kind, parameters out of range, a wrong length).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let (&version, rest) = rest.split_first()?;
        if version != VERSION {
            return None;
        }
        let (&kind, rest) = rest.split_first()?;
        let (source, rest) = match kind {
            KIND_PASSPHRASE => {
                let (memory, rest) = take_u32(rest)?;
                let (iterations, rest) = take_u32(rest)?;
                let (lanes, rest) = take_u32(rest)?;
                let (salt, rest) = rest.split_first_chunk::<SALT_BYTES>()?;
                let params = KdfParams::new(memory, iterations, lanes).ok()?;
                (KeySource::Passphrase { params, salt: *salt }, rest)
            }
            KIND_KEY_FILE => (KeySource::KeyFile, rest),
            _ => return None,
        };
        let tag: [u8; TAG_BYTES] = rest.try_into().ok()?;
        Some(Self { source, tag })
    }
}

fn take_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (value, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*value), rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn passphrase_header() -> KeyHeader {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let params = KdfParams::new(64, 2, 1).unwrap();
        KeyHeader::new(&DatabaseKey::new_from_passphrase("p", params, &mut rng).unwrap())
    }

    fn key_file_header() -> KeyHeader {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        KeyHeader::new(&DatabaseKey::create_key_file(&dir.path().join("k"), &mut rng).unwrap())
    }

    proptest::proptest! {
        #[test]
        fn header_decoder_accepts_only_canonical_bytes(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..=MAX_HEADER_BYTES + 2)
        ) {
            if let Some(header) = KeyHeader::from_bytes(&bytes) {
                proptest::prop_assert_eq!(header.to_bytes(), bytes);
            }
        }

        #[test]
        fn passphrase_header_round_trips(
            memory in 8u32..=crate::key::MAX_KDF_MEMORY_KIB,
            iterations in 1u32..=crate::key::MAX_KDF_ITERATIONS,
            salt in proptest::array::uniform16(proptest::num::u8::ANY),
            tag in proptest::array::uniform32(proptest::num::u8::ANY),
        ) {
            let params = KdfParams::new(memory, iterations, 1).unwrap();
            let header = KeyHeader { source: KeySource::Passphrase { params, salt }, tag };
            proptest::prop_assert_eq!(KeyHeader::from_bytes(&header.to_bytes()), Some(header));
        }
    }

    #[test]
    fn header_round_trips_both_kinds() {
        for header in [passphrase_header(), key_file_header()] {
            let bytes = header.to_bytes();
            assert_eq!(KeyHeader::from_bytes(&bytes), Some(header));
        }
        assert_eq!(passphrase_header().to_bytes().len(), MAX_HEADER_BYTES);
        assert_eq!(key_file_header().to_bytes().len(), 42);
    }

    #[test]
    fn header_layout_is_as_documented() {
        let bytes = passphrase_header().to_bytes();
        assert_eq!(&bytes[..8], b"xchatkey");
        assert_eq!(bytes[8], 1);
        assert_eq!(bytes[9], 1);
        assert_eq!(&bytes[10..14], &64u32.to_be_bytes());
        assert_eq!(&bytes[14..18], &2u32.to_be_bytes());
        assert_eq!(&bytes[18..22], &1u32.to_be_bytes());
    }

    #[test]
    fn header_decoder_refuses_every_truncation_and_extension() {
        for header in [passphrase_header(), key_file_header()] {
            let bytes = header.to_bytes();
            for len in 0..bytes.len() {
                assert_eq!(KeyHeader::from_bytes(&bytes[..len]), None, "length {len}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(KeyHeader::from_bytes(&longer), None);
        }
    }

    #[test]
    fn header_decoder_refuses_unknown_version_kind_and_params() {
        let bytes = passphrase_header().to_bytes();
        let with = |at: usize, value: &[u8]| {
            let mut changed = bytes.clone();
            changed[at..at + value.len()].copy_from_slice(value);
            KeyHeader::from_bytes(&changed)
        };
        assert_eq!(with(0, b"X"), None);
        assert_eq!(with(8, &[2]), None);
        assert_eq!(with(9, &[3]), None);
        assert_eq!(with(10, &(crate::key::MAX_KDF_MEMORY_KIB + 1).to_be_bytes()), None);
        assert_eq!(with(14, &0u32.to_be_bytes()), None);
        assert_eq!(with(18, &0u32.to_be_bytes()), None);
    }
}
