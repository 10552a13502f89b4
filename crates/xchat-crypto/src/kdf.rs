//! Key derivation (HKDF-SHA256, HMAC-SHA256) and every domain-separation label
//! xchat uses, in one place.
//!
//! A label is never reused for two purposes. Signature contexts live here too:
//! every BIP340 signature xchat makes is over `label || message`, so a
//! signature made for one purpose can never be replayed as another.
//! `docs/protocol.md` lists the same labels with their byte layouts.

use aws_lc_rs::{digest, hkdf, hmac};
use zeroize::Zeroizing;

// --- Identity derivation ----------------------------------------------------

/// HKDF info turning the BIP32 key-agreement node into the identity's X25519 secret.
pub const IDENTITY_AGREEMENT_INFO: &[u8] = b"xchat/v1/identity/agreement";
/// HKDF info turning the BIP32 backup node into the key that encrypts backups.
pub const IDENTITY_BACKUP_INFO: &[u8] = b"xchat/v1/identity/backup";

// --- Signature contexts -----------------------------------------------------

/// Context of the identity signature over the identity's key-agreement key.
pub const SIG_AGREEMENT_CERT: &[u8] = b"xchat/v1/sig/agreement-cert";
/// Context of the identity signature over a device certificate.
pub const SIG_DEVICE_CERT: &[u8] = b"xchat/v1/sig/device-cert";
/// Context of the identity signature over a device revocation.
pub const SIG_DEVICE_REVOCATION: &[u8] = b"xchat/v1/sig/device-revocation";
/// Context of a device signature over its signed X25519 prekey.
pub const SIG_SIGNED_PREKEY: &[u8] = b"xchat/v1/sig/signed-prekey";
/// Context of a device signature over a one-time X25519 prekey.
pub const SIG_ONE_TIME_PREKEY: &[u8] = b"xchat/v1/sig/one-time-prekey";
/// Context of a device signature over an ML-KEM-768 prekey.
pub const SIG_KEM_PREKEY: &[u8] = b"xchat/v1/sig/kem-prekey";

// --- Handshake ----------------------------------------------------------------

/// HKDF info of the PQXDH handshake's root secret.
pub const HANDSHAKE_INFO: &[u8] = b"xchat/v1/handshake";
/// Salt of the PQXDH handshake (32 zero bytes are replaced by a named salt).
pub const HANDSHAKE_SALT: &[u8] = b"xchat/v1/handshake/salt";
/// First 32 bytes of the handshake's HKDF input, before the DH outputs: the
/// `F` of Signal's X3DH and PQXDH for X25519, kept so the derivation is
/// PQXDH's. (There it separates the input from XEdDSA's use of the same
/// keys; xchat never signs with an X25519 key.)
pub const HANDSHAKE_IKM_PREFIX: [u8; 32] = [0xFF; 32];
/// First bytes of the handshake transcript that SHA-256 hashes.
pub const HANDSHAKE_TRANSCRIPT: &[u8] = b"xchat/v1/handshake/transcript";

// --- Double Ratchet -----------------------------------------------------------

/// HKDF info of the root-key step (KDF_RK) of the Double Ratchet.
pub const RATCHET_ROOT_INFO: &[u8] = b"xchat/v1/ratchet/root";
/// HMAC input deriving a message key from a chain key (KDF_CK).
pub const RATCHET_MESSAGE_KEY: &[u8] = &[0x01];
/// HMAC input deriving the next chain key from a chain key (KDF_CK).
pub const RATCHET_CHAIN_KEY: &[u8] = &[0x02];

// --- Sealed sender --------------------------------------------------------------

/// HKDF info of a sealed envelope's layer 1 (chain key and sender-certificate
/// key, from the ephemeral-static agreement).
pub const SEALED_SENDER_LAYER1_INFO: &[u8] = b"xchat/v1/sealed-sender/layer1";
/// HKDF info of a sealed envelope's layer 2 (payload key, from the
/// static-static agreement chained with layer 1).
pub const SEALED_SENDER_LAYER2_INFO: &[u8] = b"xchat/v1/sealed-sender/layer2";

// --- Files ------------------------------------------------------------------------

/// HKDF info of a file's chunk-encryption key, from the file's random key.
pub const FILE_CHUNK_KEY_INFO: &[u8] = b"xchat/v1/file/chunk-key";
/// HKDF info of a file's fetch token, from the file's random key: what a
/// device that holds the file's descriptor proves to the device serving it.
pub const FILE_FETCH_TOKEN_INFO: &[u8] = b"xchat/v1/file/fetch-token";
/// HMAC-SHA256 prefix of a fetch proof under a fetch token (the transcript
/// layout: `docs/network.md`, "/xchat/file/1").
pub const FILE_FETCH_PROOF: &[u8] = b"xchat/v1/file/fetch-proof";

// --- Backups (byte layout: `backup.rs`) --------------------------------------------

/// HKDF info of a backup's file key, from the identity's backup key and the
/// backup's random salt.
pub const BACKUP_FILE_KEY_INFO: &[u8] = b"xchat/v1/backup/file-key";

// --- Mailboxes (byte layouts: docs/wire.md, xchat-proto's `mailbox`) ------------

/// Context of a mailbox key's signature over a fetch request.
pub const SIG_MAILBOX_FETCH: &[u8] = b"xchat/v1/sig/mailbox-fetch";
/// Context of a mailbox key's signature over a delete request.
pub const SIG_MAILBOX_DELETE: &[u8] = b"xchat/v1/sig/mailbox-delete";
/// SHA-256 prefix of a mailbox item's id, computed over the stored envelope.
pub const MAILBOX_ITEM_ID: &[u8] = b"xchat/v1/mailbox/item-id";
/// SHA-256 prefix of a mailbox store request's proof-of-work stamp.
pub const MAILBOX_STAMP: &[u8] = b"xchat/v1/mailbox/stamp";
/// SHA-256 prefix of a mailbox key's tweak (`mailbox.rs`).
pub const MAILBOX_KEY_TWEAK: &[u8] = b"xchat/v1/mailbox/key-tweak";

// --- Presence (byte layout: `presence.rs`) --------------------------------------

/// SHA-256 prefix of a presence key's tweak (`presence.rs`).
pub const PRESENCE_KEY_TWEAK: &[u8] = b"xchat/v1/presence/key-tweak";
/// HKDF info of a presence record's cipher key.
pub const PRESENCE_CIPHER_INFO: &[u8] = b"xchat/v1/presence/cipher";
/// Context of a presence key's signature over its record.
pub const SIG_PRESENCE: &[u8] = b"xchat/v1/sig/presence";

// --- Store ----------------------------------------------------------------------

/// HMAC-SHA256 message under the database key whose tag the store's plaintext
/// key header keeps, so a wrong passphrase is told apart from a damaged
/// database before SQLCipher reads a page (`docs/storage.md`).
pub const STORE_KEY_CHECK: &[u8] = b"xchat/v1/store/key-check";

// --- Safety numbers -------------------------------------------------------------

/// Domain separator of the safety-number fingerprint of one identity.
pub const SAFETY_NUMBER_CONTEXT: &str = "xchat/v1/safety-number";

/// Length of every symmetric key xchat derives.
pub const KEY_BYTES: usize = 32;

/// HKDF-SHA256 (RFC 5869): extract with `salt` from `ikm`, then expand with
/// `info` into `out`.
///
/// # Errors
/// [`KdfError::OutputTooLong`] when `out` is longer than 255 × 32 bytes.
pub fn hkdf_sha256(
    salt: &[u8],
    ikm: &[u8],
    info: &[&[u8]],
    out: &mut [u8],
) -> Result<(), KdfError> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let okm = prk.expand(info, Len(out.len())).map_err(|_| KdfError::OutputTooLong)?;
    okm.fill(out).map_err(|_| KdfError::OutputTooLong)
}

/// HKDF-SHA256 into a fresh 32-byte key, wiped on drop.
pub(crate) fn derive_key(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; KEY_BYTES]> {
    let mut out = Zeroizing::new([0u8; KEY_BYTES]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
    #[allow(clippy::expect_used)]
    hkdf_sha256(salt, ikm, info, out.as_mut()).expect("32 bytes is a valid HKDF output length");
    out
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&key, data);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(tag.as_ref());
    out
}

/// HMAC-SHA256 of two messages under one key, sharing the key schedule (the
/// ipad and opad blocks are hashed once): the Double Ratchet's KDF_CK derives
/// a message key and the next chain key from one chain key this way.
pub(crate) fn hmac_sha256_pair(
    key: &[u8],
    first: &[u8],
    second: &[u8],
) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut a = Zeroizing::new([0u8; 32]);
    let mut b = Zeroizing::new([0u8; 32]);
    a.copy_from_slice(hmac::sign(&key, first).as_ref());
    b.copy_from_slice(hmac::sign(&key, second).as_ref());
    (a, b)
}

/// Why a key derivation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KdfError {
    /// More output was asked of HKDF-SHA256 than 255 blocks.
    #[error("hkdf output too long")]
    OutputTooLong,
}
