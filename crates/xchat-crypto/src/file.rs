//! The file cipher: files of any size, encrypted in constant memory.
//!
//! Each file has its own random [`FileKey`], sent inside the (end-to-end
//! encrypted) message that shares the file, with the file's [`FileDigest`]
//! (length and BLAKE3 hash of the plaintext, so users can compare copies).
//! The ciphertext itself travels separately, chunk by chunk.
//!
//! The plaintext is cut into chunks of [`CHUNK_BYTES`] (the last one shorter,
//! possibly empty only when it is the only one: an empty file is one empty
//! last chunk). Chunk `i` is sealed with AES-256-GCM under the chunk key with
//! the nonce
//!
//! | bytes | field |
//! |---|---|
//! | 7 | zero |
//! | 4 | chunk index `i`, `u32` big-endian |
//! | 1 | last-chunk flag: `1` for the last chunk, `0` otherwise |
//!
//! and no associated data. This is the STREAM construction (Hoang,
//! Reyhanitabar, Rogaway and Vizar, "Online Authenticated-Encryption and its
//! Nonce-Reuse Misuse-Resistance", CRYPTO 2015): the index in the nonce
//! refuses reordered and duplicated chunks, and the flag refuses a stream cut
//! at a chunk boundary (its new last chunk was not sealed as last) and a stream
//! extended past its last chunk. The 7-byte prefix is zero because the key is
//! used for one file only.
//!
//! | key | derivation |
//! |---|---|
//! | file key | 32 random bytes, one per file |
//! | chunk key | HKDF-SHA256(salt = empty, ikm = file key, info = [`kdf::FILE_CHUNK_KEY_INFO`]) |
//!
//! The ciphertext is the concatenation of the sealed chunks,
//! `CHUNK_BYTES + 16` bytes each but the last, with no header: its suite is
//! the suite of the message that carries its key, and the KDF label binds it.
//! A file has at most [`MAX_FILE_CHUNKS`] chunks (2^32, the `u32` index),
//! so at most [`MAX_FILE_BYTES`] (256 TiB); at that size AES-GCM's bound on
//! the data under one key is still about 2^-41.
//!
//! | fetch token | HKDF-SHA256(salt = empty, ikm = file key, info = [`kdf::FILE_FETCH_TOKEN_INFO`]) |
//! | fetch proof | HMAC-SHA256(key = fetch token, [`kdf::FILE_FETCH_PROOF`] `\|\|` transcript) |
//!
//! The fetch token lets the device serving a file's ciphertext tell a device
//! that holds the file's descriptor from any other, without learning the
//! file key from it (HKDF is one-way) and without an identity: the fetcher
//! proves the token with a [`FetchToken::prove`] MAC over a transcript the
//! network layer defines (the file, both transport keys), so a proof seen by
//! one server cannot be replayed to another.
//!
//! [`encrypt`] and [`decrypt`] stream over [`Read`] and [`Write`] with one
//! chunk buffer; [`ChunkCipher`] seals and opens single chunks, for a network
//! layer that fetches and resumes transfers chunk by chunk.

use std::io::{self, Read, Write};

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::aead;
use crate::kdf;

/// Bytes of plaintext in every chunk but the last (64 KiB).
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Bytes of a sealed full chunk: plaintext and tag.
pub const ENCRYPTED_CHUNK_BYTES: usize = CHUNK_BYTES + aead::TAG_BYTES;
/// Most chunks in a file: every `u32` chunk index (2^32).
pub const MAX_FILE_CHUNKS: u64 = 1 << 32;
/// Most bytes in a file: [`MAX_FILE_CHUNKS`] full chunks (2^48, 256 TiB).
pub const MAX_FILE_BYTES: u64 = MAX_FILE_CHUNKS * CHUNK_BYTES as u64;
/// Bytes of a [`FileKey`].
pub const FILE_KEY_BYTES: usize = 32;
/// Bytes of a [`FileDigest`]'s hash (BLAKE3).
pub const HASH_BYTES: usize = 32;

/// A file's key: 32 random bytes, one per file. Wiped on drop; never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct FileKey(Box<[u8; FILE_KEY_BYTES]>);

impl FileKey {
    /// Draws a new file key from `rng`.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut bytes = Box::new([0u8; FILE_KEY_BYTES]);
        rng.fill_bytes(bytes.as_mut());
        Self(bytes)
    }

    /// Restores a key from its bytes, as a message carried it.
    pub fn from_bytes(bytes: &[u8; FILE_KEY_BYTES]) -> Self {
        Self(Box::new(*bytes))
    }

    /// The key's bytes, for the message that shares the file. Wiped when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; FILE_KEY_BYTES]> {
        Zeroizing::new(*self.0)
    }
}

impl FileKey {
    /// The file's fetch token: what the device serving the file checks
    /// fetch proofs against, derived one-way from the key.
    pub fn fetch_token(&self) -> FetchToken {
        let token = kdf::derive_key(&[], self.0.as_ref(), &[kdf::FILE_FETCH_TOKEN_INFO]);
        FetchToken(Box::new(*token))
    }
}

/// Bytes of a [`FetchToken`].
pub const FETCH_TOKEN_BYTES: usize = 32;
/// Bytes of a fetch proof ([`FetchToken::prove`]): an HMAC-SHA256 tag.
pub const FETCH_PROOF_BYTES: usize = 32;

/// A file's fetch token ([`FileKey::fetch_token`]): the device serving the
/// file keeps it to check fetch proofs; a fetcher derives it from the key in
/// the file's descriptor. Grants the file's ciphertext only, never its
/// plaintext. Wiped on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct FetchToken(Box<[u8; FETCH_TOKEN_BYTES]>);

impl FetchToken {
    /// Restores a token from its stored bytes.
    pub fn from_bytes(bytes: &[u8; FETCH_TOKEN_BYTES]) -> Self {
        Self(Box::new(*bytes))
    }

    /// The token's bytes, for the serving device's store. Wiped when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; FETCH_TOKEN_BYTES]> {
        Zeroizing::new(*self.0)
    }

    /// The proof of holding this token over `transcript`:
    /// HMAC-SHA256(token, [`kdf::FILE_FETCH_PROOF`] `||` transcript).
    pub fn prove(&self, transcript: &[u8]) -> [u8; FETCH_PROOF_BYTES] {
        let mut message = Vec::with_capacity(kdf::FILE_FETCH_PROOF.len() + transcript.len());
        message.extend_from_slice(kdf::FILE_FETCH_PROOF);
        message.extend_from_slice(transcript);
        *kdf::hmac_sha256(self.0.as_ref(), &message)
    }

    /// Whether `proof` is this token's proof over `transcript`, compared in
    /// constant time.
    pub fn verify(&self, transcript: &[u8], proof: &[u8; FETCH_PROOF_BYTES]) -> bool {
        use subtle::ConstantTimeEq;
        self.prove(transcript).ct_eq(proof).into()
    }
}

impl std::fmt::Debug for FetchToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FetchToken(<redacted>)")
    }
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(<redacted>)")
    }
}

/// What identifies a file's content: its plaintext length and BLAKE3 hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileDigest {
    plaintext_len: u64,
    hash: [u8; HASH_BYTES],
}

impl FileDigest {
    /// A digest, as a message carried it.
    pub const fn new(plaintext_len: u64, hash: [u8; HASH_BYTES]) -> Self {
        Self { plaintext_len, hash }
    }

    /// The plaintext's length in bytes.
    pub const fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// The BLAKE3 hash of the plaintext.
    pub const fn hash(&self) -> &[u8; HASH_BYTES] {
        &self.hash
    }
}

impl std::fmt::Debug for FileDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileDigest({} bytes, {})", self.plaintext_len, crate::fingerprint(&self.hash))
    }
}

/// Seals and opens the chunks of one file. Holds the chunk key; never printed.
pub struct ChunkCipher {
    key: aead::Key,
}

impl ChunkCipher {
    /// The cipher of the file whose key is `file_key`.
    pub fn new(file_key: &FileKey) -> Self {
        let key = kdf::derive_key(&[], file_key.0.as_ref(), &[kdf::FILE_CHUNK_KEY_INFO]);
        Self { key: aead::Key::new(&key) }
    }

    /// Encrypts chunk `index` in place and appends its tag. `is_last` marks
    /// the file's last chunk.
    ///
    /// # Errors
    /// [`ChunkError::InvalidLength`] when `buffer` does not fit the chunk's
    /// place: [`CHUNK_BYTES`] for every chunk but the last, at most that for
    /// the last, and empty only for the single chunk of an empty file.
    pub fn seal_chunk(
        &self,
        index: u32,
        is_last: bool,
        buffer: &mut Vec<u8>,
    ) -> Result<(), ChunkError> {
        if !fits(index, is_last, buffer.len()) {
            return Err(ChunkError::InvalidLength { len: buffer.len() });
        }
        self.key.seal(&nonce(index, is_last), &[], buffer);
        Ok(())
    }

    /// Decrypts sealed chunk `index` in place, leaving its plaintext in `buffer`.
    ///
    /// # Errors
    /// [`ChunkError::Decryption`] when the chunk does not authenticate at this
    /// index and place (or is of a length no such chunk has); `buffer` is then
    /// cleared.
    pub fn open_chunk(
        &self,
        index: u32,
        is_last: bool,
        buffer: &mut Vec<u8>,
    ) -> Result<(), ChunkError> {
        match self.open_in_place(index, is_last, buffer) {
            Ok(len) => {
                buffer.truncate(len);
                Ok(())
            }
            Err(error) => {
                buffer.zeroize();
                Err(error)
            }
        }
    }

    /// The number of chunks of a `plaintext_len`-byte file (at least one),
    /// or `None` over [`MAX_FILE_BYTES`].
    pub const fn chunk_count(plaintext_len: u64) -> Option<u64> {
        if plaintext_len > MAX_FILE_BYTES {
            return None;
        }
        let chunks = plaintext_len.div_ceil(CHUNK_BYTES as u64);
        Some(if chunks == 0 { 1 } else { chunks })
    }

    /// The ciphertext length of a `plaintext_len`-byte file, or `None` over
    /// [`MAX_FILE_BYTES`].
    pub const fn encrypted_len(plaintext_len: u64) -> Option<u64> {
        match Self::chunk_count(plaintext_len) {
            // At most 2^48 + 2^36: no overflow.
            Some(chunks) => Some(plaintext_len + chunks * aead::TAG_BYTES as u64),
            None => None,
        }
    }

    /// The plaintext length of an `encrypted_len`-byte ciphertext, or `None`
    /// when no file encrypts to that length.
    pub const fn plaintext_len(encrypted_len: u64) -> Option<u64> {
        let full = ENCRYPTED_CHUNK_BYTES as u64;
        let tag = aead::TAG_BYTES as u64;
        if encrypted_len < tag {
            return None;
        }
        let mut chunks = encrypted_len / full;
        let rest = encrypted_len % full;
        let plaintext_len = if rest == 0 {
            // Only full chunks: the last one is full too.
            chunks * CHUNK_BYTES as u64
        } else if rest > tag || (rest == tag && chunks == 0) {
            chunks += 1;
            encrypted_len - chunks * tag
        } else {
            // A short last chunk would hold nothing or less than its tag.
            return None;
        };
        if chunks > MAX_FILE_CHUNKS {
            return None;
        }
        Some(plaintext_len)
    }

    /// Encrypts `chunk` in place and returns the tag.
    fn seal_in_place(&self, index: u32, is_last: bool, chunk: &mut [u8]) -> [u8; aead::TAG_BYTES] {
        self.key.seal_detached(&nonce(index, is_last), &[], chunk)
    }

    /// Decrypts `sealed` (ciphertext and tag) in place and returns the
    /// plaintext's length.
    fn open_in_place(
        &self,
        index: u32,
        is_last: bool,
        sealed: &mut [u8],
    ) -> Result<usize, ChunkError> {
        let Some(len) = sealed.len().checked_sub(aead::TAG_BYTES) else {
            return Err(ChunkError::Decryption);
        };
        if !fits(index, is_last, len) {
            return Err(ChunkError::Decryption);
        }
        self.key
            .open(&nonce(index, is_last), &[], sealed)
            .map(|plaintext| plaintext.len())
            .map_err(|aead::OpenError| ChunkError::Decryption)
    }
}

impl std::fmt::Debug for ChunkCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChunkCipher(<redacted>)")
    }
}

/// Whether a plaintext of `len` bytes can be chunk `index`: full unless last,
/// and empty only as the single chunk of an empty file (so every file has
/// exactly one encryption).
const fn fits(index: u32, is_last: bool, len: usize) -> bool {
    if is_last { len <= CHUNK_BYTES && (len > 0 || index == 0) } else { len == CHUNK_BYTES }
}

/// The STREAM nonce of chunk `index`: `0^7 || index (u32 BE) || last flag`.
const fn nonce(index: u32, is_last: bool) -> [u8; aead::NONCE_BYTES] {
    let i = index.to_be_bytes();
    [0, 0, 0, 0, 0, 0, 0, i[0], i[1], i[2], i[3], is_last as u8]
}

/// Encrypts everything `reader` gives under `key` and writes the ciphertext
/// to `writer`, in memory of one chunk whatever the size. Returns the
/// plaintext's digest, computed in the same pass.
///
/// Wrap a reader or writer that makes system calls in a `BufReader` or
/// `BufWriter`: the cipher reads one byte ahead at every chunk boundary.
///
/// # Errors
/// [`FileError::Io`] when reading or writing fails, [`FileError::TooLarge`]
/// past [`MAX_FILE_BYTES`]. The output is then incomplete.
pub fn encrypt(
    key: &FileKey,
    mut reader: impl Read,
    mut writer: impl Write,
) -> Result<FileDigest, FileError> {
    let cipher = ChunkCipher::new(key);
    let mut buffer = Zeroizing::new(vec![0u8; ENCRYPTED_CHUNK_BYTES]);
    let mut hasher = blake3::Hasher::new();
    let mut plaintext_len = 0u64;
    let mut lookahead = None;
    for index in 0..=u32::MAX {
        let mut len = 0;
        if let Some(byte) = lookahead.take() {
            buffer[0] = byte;
            len = 1;
        }
        len += read_full(&mut reader, &mut buffer[len..CHUNK_BYTES])?;
        let is_last = len < CHUNK_BYTES || {
            lookahead = read_byte(&mut reader)?;
            lookahead.is_none()
        };
        let chunk = &mut buffer[..len];
        hasher.update(chunk);
        let tag = cipher.seal_in_place(index, is_last, chunk);
        buffer[len..len + aead::TAG_BYTES].copy_from_slice(&tag);
        writer.write_all(&buffer[..len + aead::TAG_BYTES])?;
        plaintext_len += len as u64;
        if is_last {
            writer.flush()?;
            return Ok(FileDigest::new(plaintext_len, *hasher.finalize().as_bytes()));
        }
    }
    Err(FileError::TooLarge { max_bytes: MAX_FILE_BYTES })
}

/// Decrypts the ciphertext `reader` gives under `key` and writes the
/// plaintext to `writer`, in memory of one chunk whatever the size. Returns
/// the plaintext's digest, for the caller to compare with the one the
/// message carried.
///
/// Every chunk is authenticated before any of it is written. On an error the
/// writer may hold authentic leading chunks of the file, never the whole
/// file: the caller discards the output.
///
/// # Errors
/// [`FileError::Decryption`] for a ciphertext that is not exactly a file
/// encrypted under `key` (a wrong key; a flipped, reordered, duplicated,
/// truncated or extended chunk), [`FileError::Io`] when reading or writing
/// fails, [`FileError::TooLarge`] past [`MAX_FILE_CHUNKS`] chunks.
pub fn decrypt(
    key: &FileKey,
    mut reader: impl Read,
    mut writer: impl Write,
) -> Result<FileDigest, FileError> {
    let cipher = ChunkCipher::new(key);
    let mut buffer = Zeroizing::new(vec![0u8; ENCRYPTED_CHUNK_BYTES]);
    let mut hasher = blake3::Hasher::new();
    let mut plaintext_len = 0u64;
    let mut lookahead = None;
    for index in 0..=u32::MAX {
        let mut len = 0;
        if let Some(byte) = lookahead.take() {
            buffer[0] = byte;
            len = 1;
        }
        len += read_full(&mut reader, &mut buffer[len..])?;
        // A short chunk can only be the last; a full one is last when the
        // stream ends right after it.
        let is_last = len < ENCRYPTED_CHUNK_BYTES || {
            lookahead = read_byte(&mut reader)?;
            lookahead.is_none()
        };
        let plaintext = cipher
            .open_in_place(index, is_last, &mut buffer[..len])
            .map_err(|_| FileError::Decryption)?;
        let chunk = &buffer[..plaintext];
        hasher.update(chunk);
        writer.write_all(chunk)?;
        plaintext_len += plaintext as u64;
        if is_last {
            writer.flush()?;
            return Ok(FileDigest::new(plaintext_len, *hasher.finalize().as_bytes()));
        }
    }
    Err(FileError::TooLarge { max_bytes: MAX_FILE_BYTES })
}

/// Reads until `buffer` is full or the stream ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Reads one byte, or `None` at the end of the stream.
fn read_byte(reader: &mut impl Read) -> io::Result<Option<u8>> {
    let mut byte = [0u8; 1];
    Ok((read_full(reader, &mut byte)? == 1).then_some(byte[0]))
}

/// Why a file could not be encrypted or decrypted.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading the input or writing the output failed.
    #[error("file i/o failed")]
    Io(#[from] io::Error),
    /// The ciphertext is not a file encrypted under this key. Deliberately
    /// says no more.
    #[error("file decryption failed")]
    Decryption,
    /// The file exceeds [`MAX_FILE_BYTES`].
    #[error("file exceeds the limit of {max_bytes} bytes")]
    TooLarge {
        /// The limit.
        max_bytes: u64,
    },
}

/// Why a single chunk could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A plaintext chunk whose length does not fit its place in the file.
    #[error("chunk of {len} bytes does not fit its place in the file")]
    InvalidLength {
        /// The chunk's length.
        len: usize,
    },
    /// The chunk does not authenticate. Deliberately says no more.
    #[error("chunk decryption failed")]
    Decryption,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn key(seed: u64) -> FileKey {
        FileKey::generate(&mut ChaCha20Rng::seed_from_u64(seed))
    }

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
    }

    fn encrypt_vec(key: &FileKey, plaintext: &[u8]) -> (Vec<u8>, FileDigest) {
        let mut ciphertext = Vec::new();
        let digest = encrypt(key, plaintext, &mut ciphertext).unwrap();
        (ciphertext, digest)
    }

    fn decrypt_vec(key: &FileKey, ciphertext: &[u8]) -> Result<(Vec<u8>, FileDigest), FileError> {
        let mut out = Vec::new();
        let digest = decrypt(key, ciphertext, &mut out)?;
        Ok((out, digest))
    }

    fn assert_round_trip(len: usize) {
        let key = key(len as u64);
        let plain = plaintext(len);
        let (ciphertext, digest) = encrypt_vec(&key, &plain);
        assert_eq!(
            ciphertext.len() as u64,
            ChunkCipher::encrypted_len(len as u64).unwrap(),
            "length of {len}"
        );
        assert_eq!(ChunkCipher::plaintext_len(ciphertext.len() as u64), Some(len as u64));
        assert_eq!(digest.plaintext_len(), len as u64);
        assert_eq!(digest.hash(), blake3::hash(&plain).as_bytes());
        let (decrypted, decrypted_digest) = decrypt_vec(&key, &ciphertext).unwrap();
        assert!(decrypted == plain, "round trip of {len} bytes");
        assert_eq!(decrypted_digest, digest);
    }

    #[test]
    fn files_round_trip_at_chunk_boundaries() {
        for len in [
            0,
            1,
            CHUNK_BYTES - 1,
            CHUNK_BYTES,
            CHUNK_BYTES + 1,
            2 * CHUNK_BYTES,
            5 * 1024 * 1024 + 17,
        ] {
            assert_round_trip(len);
        }
    }

    #[test]
    fn empty_file_is_one_empty_last_chunk() {
        let key = key(1);
        let (ciphertext, digest) = encrypt_vec(&key, &[]);
        assert_eq!(ciphertext.len(), aead::TAG_BYTES);
        assert_eq!(digest.hash(), blake3::hash(&[]).as_bytes());
        let mut chunk = Vec::new();
        ChunkCipher::new(&key).seal_chunk(0, true, &mut chunk).unwrap();
        assert_eq!(chunk, ciphertext);
        assert_eq!(decrypt_vec(&key, &[]).unwrap_err().to_string(), "file decryption failed");
    }

    #[test]
    fn stream_matches_chunk_api() {
        let key = key(2);
        let plain = plaintext(2 * CHUNK_BYTES + 100);
        let (ciphertext, _) = encrypt_vec(&key, &plain);
        let cipher = ChunkCipher::new(&key);
        let mut expected = Vec::new();
        let chunks: Vec<_> = plain.chunks(CHUNK_BYTES).collect();
        assert_eq!(chunks.len() as u64, ChunkCipher::chunk_count(plain.len() as u64).unwrap());
        for (i, chunk) in chunks.iter().enumerate() {
            let mut buffer = chunk.to_vec();
            cipher.seal_chunk(i as u32, i + 1 == chunks.len(), &mut buffer).unwrap();
            expected.extend_from_slice(&buffer);
        }
        assert_eq!(ciphertext, expected);
        for (i, sealed) in ciphertext.chunks(ENCRYPTED_CHUNK_BYTES).enumerate() {
            let mut buffer = sealed.to_vec();
            cipher.open_chunk(i as u32, i + 1 == chunks.len(), &mut buffer).unwrap();
            assert_eq!(buffer, chunks[i]);
        }
    }

    #[test]
    fn chunk_api_refuses_misplaced_lengths_and_chunks() {
        let cipher = ChunkCipher::new(&key(3));
        let mut short = vec![0u8; CHUNK_BYTES - 1];
        assert_eq!(
            cipher.seal_chunk(0, false, &mut short),
            Err(ChunkError::InvalidLength { len: CHUNK_BYTES - 1 })
        );
        let mut long = vec![0u8; CHUNK_BYTES + 1];
        assert_eq!(
            cipher.seal_chunk(0, true, &mut long),
            Err(ChunkError::InvalidLength { len: CHUNK_BYTES + 1 })
        );
        assert_eq!(
            cipher.seal_chunk(1, true, &mut Vec::new()),
            Err(ChunkError::InvalidLength { len: 0 })
        );
        let mut sealed = vec![9u8; 100];
        cipher.seal_chunk(4, true, &mut sealed).unwrap();
        for (index, is_last) in [(3, true), (5, true), (4, false)] {
            let mut copy = sealed.clone();
            assert_eq!(cipher.open_chunk(index, is_last, &mut copy), Err(ChunkError::Decryption));
            assert!(copy.is_empty(), "a failed open leaves no bytes behind");
        }
        let mut copy = sealed.clone();
        cipher.open_chunk(4, true, &mut copy).unwrap();
        assert_eq!(copy, vec![9u8; 100]);
        let mut tiny = vec![0u8; aead::TAG_BYTES - 1];
        assert_eq!(cipher.open_chunk(0, true, &mut tiny), Err(ChunkError::Decryption));
    }

    #[test]
    fn decrypt_refuses_truncation_mid_chunk_and_at_chunk_boundary() {
        let key = key(4);
        let (ciphertext, _) = encrypt_vec(&key, &plaintext(3 * CHUNK_BYTES + 500));
        for len in [
            0,
            1,
            aead::TAG_BYTES,
            ENCRYPTED_CHUNK_BYTES - 1,
            ENCRYPTED_CHUNK_BYTES,
            ENCRYPTED_CHUNK_BYTES + 1,
            2 * ENCRYPTED_CHUNK_BYTES,
            3 * ENCRYPTED_CHUNK_BYTES,
            ciphertext.len() - 1,
        ] {
            assert!(
                matches!(decrypt_vec(&key, &ciphertext[..len]), Err(FileError::Decryption)),
                "truncation to {len} bytes went unnoticed"
            );
        }
    }

    #[test]
    fn decrypt_refuses_truncation_of_a_file_of_whole_chunks() {
        let key = key(5);
        let (ciphertext, _) = encrypt_vec(&key, &plaintext(3 * CHUNK_BYTES));
        assert_eq!(ciphertext.len(), 3 * ENCRYPTED_CHUNK_BYTES);
        for chunks in 1..3 {
            assert!(matches!(
                decrypt_vec(&key, &ciphertext[..chunks * ENCRYPTED_CHUNK_BYTES]),
                Err(FileError::Decryption)
            ));
        }
    }

    #[test]
    fn decrypt_writes_only_authenticated_chunks() {
        let key = key(6);
        let plain = plaintext(3 * CHUNK_BYTES + 10);
        let (mut ciphertext, _) = encrypt_vec(&key, &plain);
        ciphertext[2 * ENCRYPTED_CHUNK_BYTES + 5] ^= 1;
        let mut out = Vec::new();
        assert!(matches!(
            decrypt(&key, ciphertext.as_slice(), &mut out),
            Err(FileError::Decryption)
        ));
        // The two chunks before the damaged one, and nothing of it.
        assert_eq!(out, plain[..2 * CHUNK_BYTES]);
    }

    #[test]
    fn decrypt_refuses_reordered_duplicated_and_extended_chunks() {
        let key = key(7);
        let (ciphertext, _) = encrypt_vec(&key, &plaintext(3 * CHUNK_BYTES + 500));
        let chunk = |i: usize| {
            let end = ((i + 1) * ENCRYPTED_CHUNK_BYTES).min(ciphertext.len());
            &ciphertext[i * ENCRYPTED_CHUNK_BYTES..end]
        };
        let reordered = [chunk(1), chunk(0), chunk(2), chunk(3)].concat();
        let duplicated = [chunk(0), chunk(0), chunk(1), chunk(2), chunk(3)].concat();
        let repeated_last = [&ciphertext[..], chunk(3)].concat();
        let extended_by_chunk = [&ciphertext[..], chunk(1)].concat();
        let extended_by_byte = [&ciphertext[..], &[0u8][..]].concat();
        let dropped_middle = [chunk(0), chunk(2), chunk(3)].concat();
        for (name, tampered) in [
            ("reordered", reordered),
            ("duplicated", duplicated),
            ("repeated last", repeated_last),
            ("extended by a chunk", extended_by_chunk),
            ("extended by a byte", extended_by_byte),
            ("middle chunk dropped", dropped_middle),
        ] {
            assert!(
                matches!(decrypt_vec(&key, &tampered), Err(FileError::Decryption)),
                "{name} ciphertext went unnoticed"
            );
        }
    }

    #[test]
    fn decrypt_refuses_extension_of_a_file_of_whole_chunks() {
        let key = key(8);
        let (ciphertext, _) = encrypt_vec(&key, &plaintext(2 * CHUNK_BYTES));
        // An empty chunk sealed as last after the real last chunk.
        let mut empty_last = Vec::new();
        ChunkCipher::new(&key).seal_chunk(0, true, &mut empty_last).unwrap();
        let extended = [&ciphertext[..], &empty_last[..]].concat();
        assert!(matches!(decrypt_vec(&key, &extended), Err(FileError::Decryption)));
    }

    #[test]
    fn decrypt_refuses_flipped_bits() {
        let key = key(9);
        let (ciphertext, _) = encrypt_vec(&key, &plaintext(CHUNK_BYTES + 40));
        let positions = [
            0,
            17,
            CHUNK_BYTES - 1,
            CHUNK_BYTES,
            ENCRYPTED_CHUNK_BYTES - 1,
            ENCRYPTED_CHUNK_BYTES,
            ciphertext.len() - aead::TAG_BYTES - 1,
            ciphertext.len() - 1,
        ];
        for i in positions {
            let mut tampered = ciphertext.clone();
            tampered[i] ^= 0x20;
            assert!(
                matches!(decrypt_vec(&key, &tampered), Err(FileError::Decryption)),
                "flipping byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn decrypt_with_wrong_key_fails() {
        let (ciphertext, _) = encrypt_vec(&key(10), &plaintext(1000));
        assert!(matches!(decrypt_vec(&key(11), &ciphertext), Err(FileError::Decryption)));
    }

    #[test]
    fn file_key_restores_from_its_bytes() {
        let original = key(12);
        let restored = FileKey::from_bytes(&original.to_bytes());
        let (ciphertext, digest) = encrypt_vec(&original, b"same key");
        assert_eq!(decrypt_vec(&restored, &ciphertext).unwrap().1, digest);
    }

    #[test]
    fn lengths_are_consistent_and_capped() {
        assert_eq!(ChunkCipher::chunk_count(0), Some(1));
        assert_eq!(ChunkCipher::chunk_count(CHUNK_BYTES as u64), Some(1));
        assert_eq!(ChunkCipher::chunk_count(CHUNK_BYTES as u64 + 1), Some(2));
        assert_eq!(ChunkCipher::chunk_count(MAX_FILE_BYTES), Some(MAX_FILE_CHUNKS));
        assert_eq!(ChunkCipher::chunk_count(MAX_FILE_BYTES + 1), None);
        assert_eq!(ChunkCipher::encrypted_len(MAX_FILE_BYTES + 1), None);
        let max_encrypted = ChunkCipher::encrypted_len(MAX_FILE_BYTES).unwrap();
        assert_eq!(ChunkCipher::plaintext_len(max_encrypted), Some(MAX_FILE_BYTES));
        assert_eq!(ChunkCipher::plaintext_len(max_encrypted + 17), None);
        // Lengths no encryption produces: shorter than a tag, or a short
        // last chunk with no plaintext.
        for len in [0, 15, ENCRYPTED_CHUNK_BYTES as u64 + 16, ENCRYPTED_CHUNK_BYTES as u64 + 5] {
            assert_eq!(ChunkCipher::plaintext_len(len), None, "{len}");
        }
        assert_eq!(ChunkCipher::plaintext_len(16), Some(0));
    }

    #[test]
    fn fetch_token_is_per_file_and_apart_from_the_chunk_key() {
        let token = key(20).fetch_token();
        assert_eq!(*token.to_bytes(), *key(20).fetch_token().to_bytes());
        assert_ne!(*token.to_bytes(), *key(21).fetch_token().to_bytes());
        let chunk_key =
            kdf::derive_key(&[], key(20).to_bytes().as_ref(), &[kdf::FILE_CHUNK_KEY_INFO]);
        assert_ne!(*token.to_bytes(), *chunk_key);
        assert_ne!(*token.to_bytes(), *key(20).to_bytes());
    }

    #[test]
    fn fetch_proof_verifies_only_under_its_token_and_transcript() {
        let token = key(22).fetch_token();
        let proof = token.prove(b"file and peers");
        assert!(token.verify(b"file and peers", &proof));
        assert!(FetchToken::from_bytes(&token.to_bytes()).verify(b"file and peers", &proof));
        assert!(!token.verify(b"file and other peers", &proof));
        assert!(!key(23).fetch_token().verify(b"file and peers", &proof));
        let mut flipped = proof;
        flipped[31] ^= 1;
        assert!(!token.verify(b"file and peers", &flipped));
    }

    #[test]
    fn secret_types_debug_redacted() {
        insta::assert_snapshot!(format!("{:?}", key(13).fetch_token()), @"FetchToken(<redacted>)");
        insta::assert_snapshot!(format!("{:?}", key(13)), @"FileKey(<redacted>)");
        insta::assert_snapshot!(
            format!("{:?}", ChunkCipher::new(&key(13))),
            @"ChunkCipher(<redacted>)"
        );
    }

    /// Yields `len` deterministic pseudo-random bytes in reads of odd sizes,
    /// without holding them.
    struct Generator {
        remaining: u64,
        state: u64,
        max_read: usize,
    }

    impl Read for Generator {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max_read).min(self.remaining as usize);
            for byte in &mut buf[..n] {
                // xorshift64
                self.state ^= self.state << 13;
                self.state ^= self.state >> 7;
                self.state ^= self.state << 17;
                *byte = self.state as u8;
            }
            self.remaining -= n as u64;
            Ok(n)
        }
    }

    fn generator(len: u64, max_read: usize) -> Generator {
        Generator { remaining: len, state: 0x9e37_79b9_7f4a_7c15, max_read }
    }

    /// Hashes what is written, keeping nothing.
    #[derive(Default)]
    struct HashingWriter {
        hasher: blake3::Hasher,
        len: u64,
    }

    impl Write for HashingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.hasher.update(buf);
            self.len += buf.len() as u64;
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Produces a file's ciphertext on the fly from a plaintext source,
    /// through the chunk API: one chunk in memory at a time.
    struct EncryptingReader {
        source: Generator,
        cipher: ChunkCipher,
        index: u32,
        chunk: Vec<u8>,
        position: usize,
        done: bool,
    }

    impl Read for EncryptingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.position == self.chunk.len() {
                if self.done {
                    return Ok(0);
                }
                self.chunk.resize(CHUNK_BYTES, 0);
                let len = read_full(&mut self.source, &mut self.chunk)?;
                self.chunk.truncate(len);
                self.done = self.source.remaining == 0;
                self.cipher.seal_chunk(self.index, self.done, &mut self.chunk).unwrap();
                self.index += 1;
                self.position = 0;
            }
            let n = buf.len().min(self.chunk.len() - self.position);
            buf[..n].copy_from_slice(&self.chunk[self.position..self.position + n]);
            self.position += n;
            Ok(n)
        }
    }

    #[test]
    fn a_64_mib_file_streams_through_in_constant_memory() {
        const LEN: u64 = 64 * 1024 * 1024;
        let key = key(14);
        let mut plain_hash = HashingWriter::default();
        io::copy(&mut generator(LEN, 1 << 20), &mut plain_hash).unwrap();
        let plain_hash = plain_hash.hasher.finalize();

        let mut ciphertext = HashingWriter::default();
        let digest = encrypt(&key, generator(LEN, 40_000), &mut ciphertext).unwrap();
        assert_eq!(digest, FileDigest::new(LEN, *plain_hash.as_bytes()));
        assert_eq!(ciphertext.len, ChunkCipher::encrypted_len(LEN).unwrap());

        let mut reencrypted = HashingWriter::default();
        let source = EncryptingReader {
            source: generator(LEN, 1 << 20),
            cipher: ChunkCipher::new(&key),
            index: 0,
            chunk: Vec::with_capacity(ENCRYPTED_CHUNK_BYTES),
            position: 0,
            done: false,
        };
        let mut plain_out = HashingWriter::default();
        let decrypted = decrypt(
            &key,
            io::BufReader::with_capacity(100_000, TeeReader(source, &mut reencrypted)),
            &mut plain_out,
        )
        .unwrap();
        assert_eq!(decrypted, digest);
        assert_eq!(plain_out.len, LEN);
        assert_eq!(plain_out.hasher.finalize(), plain_hash);
        // The chunk API made exactly the ciphertext the stream API made.
        assert_eq!(reencrypted.hasher.finalize(), ciphertext.hasher.finalize());
    }

    /// Copies what it reads into a writer.
    struct TeeReader<'a, R>(R, &'a mut HashingWriter);

    impl<R: Read> Read for TeeReader<'_, R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1.write_all(&buf[..n])?;
            Ok(n)
        }
    }

    #[test]
    fn io_errors_are_reported_as_io() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk gone"))
            }
        }
        assert!(matches!(encrypt(&key(15), Failing, io::sink()), Err(FileError::Io(_))));
        assert!(matches!(decrypt(&key(15), Failing, io::sink()), Err(FileError::Io(_))));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn files_of_any_size_round_trip_through_any_read_sizes(
            len in 0usize..(3 * CHUNK_BYTES + 64),
            max_read in 1usize..(2 * ENCRYPTED_CHUNK_BYTES),
            seed in any::<u64>(),
        ) {
            let key = key(seed);
            let mut plain = Vec::new();
            generator(len as u64, max_read).read_to_end(&mut plain).unwrap();
            let mut ciphertext = Vec::new();
            let digest = encrypt(&key, generator(len as u64, max_read), &mut ciphertext).unwrap();
            prop_assert_eq!(ciphertext.len() as u64, ChunkCipher::encrypted_len(len as u64).unwrap());
            prop_assert_eq!(digest, FileDigest::new(len as u64, *blake3::hash(&plain).as_bytes()));
            let mut out = Vec::new();
            let reader = ShortReads { inner: ciphertext.as_slice(), max_read };
            prop_assert_eq!(decrypt(&key, reader, &mut out).unwrap(), digest);
            prop_assert!(out == plain);
        }
    }

    /// Hands out at most `max_read` bytes per read.
    struct ShortReads<'a> {
        inner: &'a [u8],
        max_read: usize,
    }

    impl Read for ShortReads<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max_read);
            self.inner.read(&mut buf[..n])
        }
    }
}
