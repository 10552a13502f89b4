//! The description of a shared file: what its recipient needs to fetch,
//! decrypt and check it (`xchat_crypto::file`).

use std::mem;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use xchat_crypto::file::{self, FileDigest, FileKey};
use zeroize::Zeroizing;

use crate::decode::{self, ProtoError};
use crate::generated as pb;

/// Bytes of a [`FileId`].
pub const FILE_ID_BYTES: usize = 16;
/// Most bytes of a file name's UTF-8: the limit of common file systems.
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Most bytes of a media type (`type/subtype`, ASCII).
pub const MAX_MEDIA_TYPE_BYTES: usize = 255;
/// Most characters of each half of a media type (RFC 6838, section 4.2).
const MAX_MEDIA_TYPE_NAME_CHARS: usize = 127;
/// What a name that sanitising empties becomes.
const FALLBACK_FILE_NAME: &str = "file";

/// A file's id: 16 random bytes, drawn by the sender. Names the file in
/// transfer requests.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId([u8; FILE_ID_BYTES]);

impl FileId {
    /// Draws a new id from `rng`.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        let mut bytes = [0u8; FILE_ID_BYTES];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Wraps stored id bytes.
    pub const fn from_bytes(bytes: [u8; FILE_ID_BYTES]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; FILE_ID_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileId(")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// A file's name, safe to use as one path component on any system xchat
/// runs on: UTF-8, 1 to [`MAX_FILE_NAME_BYTES`] bytes, with no `/` or `\`,
/// no control character, no bidirectional control (which can disguise an
/// extension: `txt.exe` shown as `exe.txt`), no `..`, and not only dots.
///
/// [`FileName::new`] checks a name from the wire and refuses a bad one;
/// [`FileName::sanitize`] makes a good one out of a local file's name.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FileName(String);

impl FileName {
    /// Checks `name`.
    ///
    /// # Errors
    /// [`ProtoError::MissingField`] when empty,
    /// [`ProtoError::LengthOutOfRange`] over [`MAX_FILE_NAME_BYTES`],
    /// [`ProtoError::Invalid`] naming the rule broken.
    pub fn new(name: String) -> Result<Self, ProtoError> {
        const FIELD: &str = "FileDescriptor.name";
        decode::length(name.len(), FIELD, 1, MAX_FILE_NAME_BYTES)?;
        if let Some(reason) = name.chars().find_map(refused_char) {
            return Err(ProtoError::Invalid { field: FIELD, reason });
        }
        if name.contains("..") {
            return Err(ProtoError::Invalid { field: FIELD, reason: "contains \"..\"" });
        }
        if name.chars().all(|c| c == '.') {
            return Err(ProtoError::Invalid { field: FIELD, reason: "only dots" });
        }
        Ok(Self(name))
    }

    /// Makes a valid name out of any string (a local file's name, typically):
    /// each refused character becomes `_`, `..` becomes `._`, the name is cut
    /// to [`MAX_FILE_NAME_BYTES`] on a character boundary, and a name left
    /// empty or only dots becomes `file`.
    pub fn sanitize(name: &str) -> Self {
        let mut clean: String =
            name.chars().map(|c| if refused_char(c).is_some() { '_' } else { c }).collect();
        if clean.len() > MAX_FILE_NAME_BYTES {
            let mut end = MAX_FILE_NAME_BYTES;
            while !clean.is_char_boundary(end) {
                end -= 1;
            }
            clean.truncate(end);
        }
        // Same length: the cut above still holds.
        while clean.contains("..") {
            clean = clean.replace("..", "._");
        }
        if clean.chars().all(|c| c == '.') {
            clean = FALLBACK_FILE_NAME.to_owned();
        }
        Self::new(clean).unwrap_or_else(|_| Self(FALLBACK_FILE_NAME.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why `c` may not appear in a file name, if it may not.
fn refused_char(c: char) -> Option<&'static str> {
    match c {
        '/' | '\\' => Some("path separator"),
        c if c.is_control() => Some("control character"),
        // Unicode bidirectional controls: marks, embeddings, overrides, isolates.
        '\u{061C}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}' => Some("bidirectional control"),
        _ => None,
    }
}

impl TryFrom<String> for FileName {
    type Error = ProtoError;

    fn try_from(name: String) -> Result<Self, ProtoError> {
        Self::new(name)
    }
}

/// Redacts: a file's name is what a user wrote.
impl std::fmt::Debug for FileName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileName({} bytes)", self.0.len())
    }
}

/// A media type (RFC 6838 section 4.2), `type/subtype` without parameters:
/// each half 1 to 127 characters, starting with a letter or digit, then
/// letters, digits and ``!#$&-^_.+``. At most [`MAX_MEDIA_TYPE_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaType(String);

impl MediaType {
    /// The type of bytes of unknown type, `application/octet-stream`.
    pub fn octet_stream() -> Self {
        Self("application/octet-stream".to_owned())
    }

    /// Checks `media_type`.
    ///
    /// # Errors
    /// [`ProtoError::MissingField`] when empty,
    /// [`ProtoError::LengthOutOfRange`] over [`MAX_MEDIA_TYPE_BYTES`],
    /// [`ProtoError::Invalid`] when it is not `type/subtype`.
    pub fn new(media_type: String) -> Result<Self, ProtoError> {
        const FIELD: &str = "FileDescriptor.media_type";
        decode::length(media_type.len(), FIELD, 1, MAX_MEDIA_TYPE_BYTES)?;
        let valid = media_type
            .split_once('/')
            .is_some_and(|(kind, subtype)| is_restricted_name(kind) && is_restricted_name(subtype));
        if !valid {
            return Err(ProtoError::Invalid { field: FIELD, reason: "not type/subtype" });
        }
        Ok(Self(media_type))
    }

    /// The media type.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// RFC 6838 `restricted-name`.
fn is_restricted_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    first_ok
        && name.len() <= MAX_MEDIA_TYPE_NAME_CHARS
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

impl TryFrom<String> for MediaType {
    type Error = ProtoError;

    fn try_from(media_type: String) -> Result<Self, ProtoError> {
        Self::new(media_type)
    }
}

/// A file offered in a message: its id, name, media type, key and digest
/// (length and BLAKE3 hash of the plaintext). Encrypted in chunks of
/// [`file::CHUNK_BYTES`], the only chunk size of cipher suite 1.
///
/// Holds the file's key: `Debug` redacts it and equality compares it in
/// constant time.
pub struct FileDescriptor {
    id: FileId,
    name: FileName,
    media_type: MediaType,
    key: FileKey,
    digest: FileDigest,
}

impl FileDescriptor {
    /// Describes a file encrypted under `key` whose plaintext has `digest`.
    ///
    /// # Errors
    /// [`ProtoError::OutOfRange`] for a size over [`file::MAX_FILE_BYTES`].
    pub fn new(
        id: FileId,
        name: FileName,
        media_type: MediaType,
        key: FileKey,
        digest: FileDigest,
    ) -> Result<Self, ProtoError> {
        check_size(digest.plaintext_len())?;
        Ok(Self { id, name, media_type, key, digest })
    }

    /// The file's id.
    pub fn id(&self) -> FileId {
        self.id
    }

    /// The file's name.
    pub fn name(&self) -> &FileName {
        &self.name
    }

    /// The file's media type.
    pub fn media_type(&self) -> &MediaType {
        &self.media_type
    }

    /// The key that decrypts it.
    pub fn key(&self) -> &FileKey {
        &self.key
    }

    /// Its plaintext's length and hash, to compare with what decryption
    /// returns.
    pub fn digest(&self) -> &FileDigest {
        &self.digest
    }

    /// Its plaintext's length in bytes.
    pub fn size(&self) -> u64 {
        self.digest.plaintext_len()
    }

    /// Plaintext bytes per encrypted chunk.
    pub fn chunk_bytes(&self) -> usize {
        file::CHUNK_BYTES
    }

    pub(super) fn to_proto(&self) -> pb::FileDescriptor {
        pb::FileDescriptor {
            file_id: self.id.0.to_vec(),
            name: self.name.0.clone(),
            media_type: self.media_type.0.clone(),
            size: self.digest.plaintext_len(),
            key: self.key.to_bytes().to_vec(),
            hash: self.digest.hash().to_vec(),
            // 65 536 fits a u32.
            chunk_size: file::CHUNK_BYTES as u32,
        }
    }
}

fn check_size(size: u64) -> Result<(), ProtoError> {
    if size > file::MAX_FILE_BYTES {
        return Err(ProtoError::OutOfRange {
            field: "FileDescriptor.size",
            value: size,
            min: 0,
            max: file::MAX_FILE_BYTES,
        });
    }
    Ok(())
}

impl TryFrom<pb::FileDescriptor> for FileDescriptor {
    type Error = ProtoError;

    fn try_from(mut raw: pb::FileDescriptor) -> Result<Self, ProtoError> {
        let id = FileId(decode::fixed(&raw.file_id, "FileDescriptor.file_id")?);
        let name = FileName::new(mem::take(&mut raw.name))?;
        let media_type = MediaType::new(mem::take(&mut raw.media_type))?;
        check_size(raw.size)?;
        // `raw` wipes its copy of the key when dropped.
        let key_bytes = Zeroizing::new(decode::fixed(&raw.key, "FileDescriptor.key")?);
        let key = FileKey::from_bytes(&key_bytes);
        let hash = decode::fixed(&raw.hash, "FileDescriptor.hash")?;
        if raw.chunk_size as usize != file::CHUNK_BYTES {
            return Err(ProtoError::OutOfRange {
                field: "FileDescriptor.chunk_size",
                value: raw.chunk_size.into(),
                min: file::CHUNK_BYTES as u64,
                max: file::CHUNK_BYTES as u64,
            });
        }
        Ok(Self { id, name, media_type, key, digest: FileDigest::new(raw.size, hash) })
    }
}

impl Clone for FileDescriptor {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            name: self.name.clone(),
            media_type: self.media_type.clone(),
            key: FileKey::from_bytes(&self.key.to_bytes()),
            digest: self.digest,
        }
    }
}

/// Compares the key in constant time.
impl PartialEq for FileDescriptor {
    fn eq(&self, other: &Self) -> bool {
        let same_key: bool = self.key.to_bytes()[..].ct_eq(&other.key.to_bytes()[..]).into();
        same_key
            && self.id == other.id
            && self.name == other.name
            && self.media_type == other.media_type
            && self.digest == other.digest
    }
}

impl Eq for FileDescriptor {}

/// Redacts the key and the name.
impl std::fmt::Debug for FileDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDescriptor")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("media_type", &self.media_type)
            .field("key", &self.key)
            .field("digest", &self.digest)
            .finish()
    }
}
