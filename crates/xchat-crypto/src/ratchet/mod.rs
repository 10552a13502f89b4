//! The Double Ratchet with header encryption: the session between two
//! devices after the handshake.
//!
//! This follows the Signal Double Ratchet specification (revision 1, 2016),
//! section 4, "Double Ratchet with header encryption": a DH ratchet on X25519
//! ([`crate::agreement`]), HMAC-SHA256 sending and receiving chains, and
//! AES-256-GCM for both headers and bodies. Relays see a version byte, a
//! random nonce and ciphertext: no ratchet key, no counter, nothing that
//! links two messages of a session. [`Session`] is the whole state;
//! `docs/protocol.md` ("Double Ratchet") has the layouts below.
//!
//! # Message
//!
//! | offset | bytes    | field |
//! |--------|----------|-------|
//! | 0      | 1        | version: [`VERSION`] (cipher suite 1) |
//! | 1      | 12       | nonce: random; the header's and the body's GCM nonce |
//! | 13     | 56       | encrypted header: AES-256-GCM(header key, nonce, aad = version ‖ associated data) of the 40-byte header, tag included |
//! | 69     | `p` + 16 | body: AES-256-GCM(message key, nonce, aad = associated data ‖ bytes 0..69) of the padded plaintext, tag included |
//!
//! The header (40 bytes) is the sender's ratchet public key (32), the length
//! of its previous sending chain (u32, big-endian) and the message's number
//! in the current chain (u32, big-endian). `p` is a padding bucket
//! ([`crate::padding`]): 256, 512, ... bytes. The associated data is the
//! handshake transcript hash ([`SessionKeys`]), so a message cannot be moved
//! from one session to another.
//!
//! # Nonces, and a state rolled back
//!
//! A header key seals every header of a chain, so its nonce must differ per
//! message without being a visible counter: it is 96 random bits. A chain
//! holds at most `2^32 - 1` messages (`N` is a u32, and [`Session::encrypt`]
//! refuses beyond), which keeps a header key within NIST SP 800-38D's bound
//! of `2^32` random-nonce encryptions.
//!
//! A message key is unique to its message in a correct run, so a fixed
//! nonce would do, until a device's state is rolled back: a backup restored,
//! a VM snapshot resumed, a crash after sending but before the new record was
//! stored. The rolled-back sender derives the same message keys again and
//! encrypts *new* plaintexts under them. With a nonce derived from the key,
//! that is a repeated (key, nonce) pair under GCM, which gives away the XOR
//! of the two plaintexts and the GHASH key (so forgeries). The body therefore
//! reuses the header's random nonce: a reused message key then sees two
//! distinct random nonces, which GCM is built for. What a rollback still
//! costs is delivery, not confidentiality: a receiver that already read
//! message `N` refuses the second message `N` as a replay.
//!
//! # Limits
//!
//! [`MAX_MESSAGE_BYTES`] is checked before any work. A header's counters are
//! checked against [`MAX_SKIP`] before any key is derived, in O(1); skipped
//! keys are bounded by [`MAX_SKIPPED_KEYS`] and [`MAX_SKIPPED_CHAINS`] (the
//! oldest are forgotten), which also bounds header trial decryption to
//! `2 + MAX_SKIPPED_CHAINS` keys: the current receiving header key, the next
//! one, and one per chain with skipped keys.
//!
//! # Compute, then commit
//!
//! [`Session::decrypt`] derives every key it needs into locals, opens the
//! body, and only then writes the session: a message that fails (tampered,
//! truncated, replayed, forged) leaves the session exactly as it was,
//! without the cost of copying the session per message.

mod chain;
mod header;
mod skipped;

use std::collections::VecDeque;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use self::chain::{ChainKey, MessageKey, RootKey};
use self::header::{ENCRYPTED_HEADER_BYTES, Header, HeaderKey};
pub use self::skipped::{MAX_SKIPPED_CHAINS, MAX_SKIPPED_KEYS};
use self::skipped::{SkippedChain, SkippedKeys};
use crate::agreement::{self, PublicKey};
use crate::encoding::{DecodeError, Reader, Writer};
use crate::handshake::SessionKeys;
use crate::suite::CipherSuite;
use crate::{aead, padding};

/// The version byte of a ratchet message: the cipher suite.
pub const VERSION: u8 = CipherSuite::V1.to_byte();
/// The most message keys one message may make a chain skip (per chain: a
/// DH ratchet step may skip up to this many in the old chain and in the new
/// one). As libsignal: a sender that lost more than this many messages in a
/// row is not worth the receiver's memory and time.
pub const MAX_SKIP: u32 = 2_000;
/// Bytes of a message before its body: version, nonce, encrypted header.
pub const PREFIX_BYTES: usize = 1 + aead::NONCE_BYTES + ENCRYPTED_HEADER_BYTES;
/// Bytes a message adds to its padded plaintext.
pub const OVERHEAD_BYTES: usize = PREFIX_BYTES + aead::TAG_BYTES;
/// The largest padded plaintext a message carries, in bytes: 252 KiB, a
/// padding bucket (Padmé), chosen so that a message, with room to spare for
/// the handshake's initiation, fits in one sealed-sender payload (256 KiB).
/// Larger content travels as a file.
pub const MAX_PADDED_BYTES: usize = 252 * 1024;
const _: () = assert!(padding::is_padded_len(MAX_PADDED_BYTES));
/// The largest plaintext [`Session::encrypt`] takes, in bytes.
pub const MAX_PLAINTEXT_BYTES: usize = MAX_PADDED_BYTES - 1;
/// The shortest message, in bytes: an empty plaintext, padded.
pub const MIN_MESSAGE_BYTES: usize = OVERHEAD_BYTES + padding::MIN_PADDED_BYTES;
/// The longest message, in bytes: the largest padded plaintext.
pub const MAX_MESSAGE_BYTES: usize = OVERHEAD_BYTES + MAX_PADDED_BYTES;

/// The version byte of a session record.
const RECORD_VERSION: u8 = 1;
/// A chain in a record: presence, chain key, header key, message number.
const CHAIN_RECORD_BYTES: usize = 1 + 32 + 32 + 4;
/// A skipped key in a record: message number, key.
const SKIPPED_KEY_RECORD_BYTES: usize = 4 + 32;
/// A record without skipped keys.
const FIXED_RECORD_BYTES: usize = 1 // version
    + 32 // associated data
    + 32 // root key
    + 32 // our ratchet secret key
    + 1 + 32 // their ratchet key
    + CHAIN_RECORD_BYTES // sending
    + 4 // previous sending chain length
    + 32 // next sending header key
    + CHAIN_RECORD_BYTES // receiving
    + 32 // next receiving header key
    + 4; // skipped chain count
/// The longest session record, in bytes: every skipped key kept, in as many
/// chains as allowed.
pub const MAX_RECORD_BYTES: usize = FIXED_RECORD_BYTES
    + MAX_SKIPPED_CHAINS * (32 + 4)
    + MAX_SKIPPED_KEYS * SKIPPED_KEY_RECORD_BYTES;

/// A sending or receiving chain: its key, its header key, and the number of
/// the next message in it.
struct Chain {
    chain_key: ChainKey,
    header_key: HeaderKey,
    next: u32,
}

/// The Double Ratchet state of one session between two devices.
///
/// Messages are encrypted with [`Session::encrypt`] and decrypted with
/// [`Session::decrypt`]; [`Session::to_record`] saves the state after every
/// call that changed it.
pub struct Session {
    associated_data: [u8; 32],
    root_key: RootKey,
    our_ratchet_key: agreement::KeyPair,
    their_ratchet_key: Option<PublicKey>,
    /// `None` until the responder has received a message.
    sending: Option<Chain>,
    previous_sending_length: u32,
    next_sending_header_key: HeaderKey,
    /// `None` until the first message from the peer.
    receiving: Option<Chain>,
    next_receiving_header_key: HeaderKey,
    skipped: SkippedKeys,
}

/// The parts of a message, split but not yet authenticated.
struct UnverifiedMessage<'a> {
    nonce: [u8; aead::NONCE_BYTES],
    encrypted_header: [u8; ENCRYPTED_HEADER_BYTES],
    prefix: &'a [u8; PREFIX_BYTES],
    body: &'a [u8],
}

impl<'a> UnverifiedMessage<'a> {
    fn parse(message: &'a [u8]) -> Result<Self, DecryptError> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(DecryptError::TooLarge { len: message.len(), max: MAX_MESSAGE_BYTES });
        }
        let mut r = Reader::new(message);
        let version = r.u8().map_err(|_| DecryptError::Undecryptable)?;
        if version != VERSION {
            return Err(DecryptError::UnknownVersion(version));
        }
        // The body's length is public: refuse what cannot be a padded
        // plaintext before any decryption.
        let body_len = message.len().saturating_sub(OVERHEAD_BYTES);
        if message.len() < MIN_MESSAGE_BYTES || !padding::is_padded_len(body_len) {
            return Err(DecryptError::Undecryptable);
        }
        let nonce = r.array().map_err(|_| DecryptError::Undecryptable)?;
        let encrypted_header = r.array().map_err(|_| DecryptError::Undecryptable)?;
        let body = r.rest();
        let prefix = message
            .get(..PREFIX_BYTES)
            .and_then(|prefix| prefix.try_into().ok())
            .ok_or(DecryptError::Undecryptable)?;
        Ok(Self { nonce, encrypted_header, prefix, body })
    }
}

/// The associated data of a header: `version (1) ‖ associated data (32)`.
fn header_aad(associated_data: &[u8; 32]) -> [u8; 33] {
    let mut aad = [0u8; 33];
    let (version, rest) = aad.split_at_mut(1);
    version.copy_from_slice(&[VERSION]);
    rest.copy_from_slice(associated_data);
    aad
}

/// The associated data of a body: `associated data (32) ‖ message bytes
/// 0..69` (version, nonce, encrypted header).
fn body_aad(associated_data: &[u8; 32], prefix: &[u8; PREFIX_BYTES]) -> [u8; 32 + PREFIX_BYTES] {
    let mut aad = [0u8; 32 + PREFIX_BYTES];
    let (ad, rest) = aad.split_at_mut(32);
    ad.copy_from_slice(associated_data);
    rest.copy_from_slice(prefix);
    aad
}

/// Opens a body under its message key and removes the padding.
fn open_body(
    message_key: &[u8; 32],
    associated_data: &[u8; 32],
    message: &UnverifiedMessage<'_>,
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    let key = aead::Key::new(message_key);
    let aad = body_aad(associated_data, message.prefix);
    let mut buf = Zeroizing::new(message.body.to_vec());
    let padded_len =
        key.open(&message.nonce, &aad, &mut buf).map_err(|_| DecryptError::Undecryptable)?.len();
    let padded = buf.get(..padded_len).ok_or(DecryptError::Undecryptable)?;
    let plaintext_len = padding::unpad(padded).map_err(|_| DecryptError::Undecryptable)?.len();
    buf.truncate(plaintext_len);
    Ok(buf)
}

impl Session {
    /// The initiator's session, from the handshake's keys and the
    /// responder's signed prekey, which is the responder's first ratchet
    /// key. The initiator can send at once.
    ///
    /// # Errors
    /// [`RatchetError::WeakKey`] when `their_ratchet_key` is a low-order
    /// point.
    pub fn new_initiator(
        keys: SessionKeys,
        their_ratchet_key: PublicKey,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, RatchetError> {
        let our_ratchet_key = agreement::KeyPair::generate(rng);
        let dh = our_ratchet_key
            .secret()
            .diffie_hellman(&their_ratchet_key)
            .map_err(|_| RatchetError::WeakKey)?;
        let step = RootKey::from_bytes(&keys.root_key).step(&dh);
        Ok(Self {
            associated_data: keys.associated_data,
            root_key: step.root_key,
            our_ratchet_key,
            their_ratchet_key: Some(their_ratchet_key),
            sending: Some(Chain {
                chain_key: step.chain_key,
                header_key: HeaderKey::from_bytes(&keys.initiator_header_key),
                next: 0,
            }),
            previous_sending_length: 0,
            next_sending_header_key: step.next_header_key,
            receiving: None,
            next_receiving_header_key: HeaderKey::from_bytes(&keys.responder_header_key),
            skipped: SkippedKeys::default(),
        })
    }

    /// The responder's session, from the handshake's keys and the key pair
    /// of its signed prekey. The responder sends once it has received the
    /// initiator's first message.
    pub fn new_responder(keys: SessionKeys, our_ratchet_key: agreement::KeyPair) -> Self {
        Self {
            associated_data: keys.associated_data,
            root_key: RootKey::from_bytes(&keys.root_key),
            our_ratchet_key,
            their_ratchet_key: None,
            sending: None,
            previous_sending_length: 0,
            next_sending_header_key: HeaderKey::from_bytes(&keys.responder_header_key),
            receiving: None,
            next_receiving_header_key: HeaderKey::from_bytes(&keys.initiator_header_key),
            skipped: SkippedKeys::default(),
        }
    }

    /// Pads and encrypts `plaintext` into a message (layout in the module
    /// documentation).
    ///
    /// # Errors
    /// [`EncryptError::TooLarge`] above [`MAX_PLAINTEXT_BYTES`];
    /// [`EncryptError::AwaitingFirstMessage`] for a responder that has not
    /// received a message yet; [`EncryptError::ChainExhausted`] after
    /// `2^32 - 1` messages without a reply. The session is unchanged.
    pub fn encrypt(
        &mut self,
        plaintext: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>, EncryptError> {
        let too_large = EncryptError::TooLarge { len: plaintext.len(), max: MAX_PLAINTEXT_BYTES };
        if plaintext.len() > MAX_PLAINTEXT_BYTES {
            return Err(too_large);
        }
        let padded_len = padding::padded_len(plaintext.len()).ok_or(too_large)?;
        let sending = self.sending.as_mut().ok_or(EncryptError::AwaitingFirstMessage)?;
        if sending.next == u32::MAX {
            return Err(EncryptError::ChainExhausted);
        }
        let header = Header {
            ratchet_key: *self.our_ratchet_key.public(),
            previous_chain_length: self.previous_sending_length,
            message_number: sending.next,
        };
        let (message_key, next_chain_key) = sending.chain_key.step();
        let mut nonce = [0u8; aead::NONCE_BYTES];
        rng.fill_bytes(&mut nonce);

        let mut prefix = [0u8; PREFIX_BYTES];
        let (version, rest) = prefix.split_at_mut(1);
        let (nonce_field, header_field) = rest.split_at_mut(aead::NONCE_BYTES);
        version.copy_from_slice(&[VERSION]);
        nonce_field.copy_from_slice(&nonce);
        header_field.copy_from_slice(&sending.header_key.seal(
            &nonce,
            &header_aad(&self.associated_data),
            &header,
        ));
        let aad = body_aad(&self.associated_data, &prefix);

        // One allocation of the final size: the plaintext is padded straight
        // into the output and encrypted in place, so no copy of it is left
        // in freed memory.
        let mut message = Vec::with_capacity(OVERHEAD_BYTES + padded_len);
        message.extend_from_slice(&prefix);
        padding::pad_into(plaintext, &mut message).map_err(|_| too_large)?;
        // `message` starts with the PREFIX_BYTES just written.
        let (_, body) = message.split_at_mut(PREFIX_BYTES);
        let tag = aead::Key::new(&message_key).seal_detached(&nonce, &aad, body);
        message.extend_from_slice(&tag);

        sending.chain_key.set(&next_chain_key);
        sending.next += 1;
        Ok(message)
    }

    /// Decrypts a message from the peer and removes its padding.
    ///
    /// The header is tried under the current receiving header key, then the
    /// next one (a new ratchet key from the peer: a DH ratchet step, which
    /// draws our next ratchet key from `rng`), then the header keys of the
    /// chains with skipped keys.
    ///
    /// # Errors
    /// [`DecryptError::Undecryptable`] for every message that does not
    /// authenticate, including replays; [`DecryptError::TooLarge`],
    /// [`DecryptError::UnknownVersion`] and [`DecryptError::TooManySkipped`]
    /// for the rest. On any error the session is unchanged.
    pub fn decrypt(
        &mut self,
        message: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let message = UnverifiedMessage::parse(message)?;
        let aad = header_aad(&self.associated_data);
        let current = self.receiving.as_ref().and_then(|receiving| {
            receiving.header_key.open(&message.nonce, &aad, &message.encrypted_header)
        });
        if let Some(header) = current {
            return self.decrypt_in_current_chain(&header, &message);
        }
        if let Some(header) =
            self.next_receiving_header_key.open(&message.nonce, &aad, &message.encrypted_header)
        {
            return self.decrypt_with_ratchet_step(&header, &message, rng);
        }
        let slot = self
            .skipped
            .find(&message.nonce, &aad, &message.encrypted_header)
            .ok_or(DecryptError::Undecryptable)?;
        let key = self.skipped.key(slot).ok_or(DecryptError::Undecryptable)?;
        let plaintext = open_body(key.as_bytes(), &self.associated_data, &message)?;
        self.skipped.remove(slot);
        Ok(plaintext)
    }

    /// A message of the current receiving chain: a skipped one, or one at or
    /// ahead of the chain.
    fn decrypt_in_current_chain(
        &mut self,
        header: &Header,
        message: &UnverifiedMessage<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let receiving = self.receiving.as_mut().ok_or(DecryptError::Undecryptable)?;
        if self.their_ratchet_key != Some(header.ratchet_key) {
            return Err(DecryptError::Undecryptable);
        }
        let number = header.message_number;
        if number < receiving.next {
            // Behind the chain: a late message whose key was kept, or a
            // replay, which finds no key.
            let slot = self
                .skipped
                .find_in_chain(&receiving.header_key, header)
                .ok_or(DecryptError::Undecryptable)?;
            let key = self.skipped.key(slot).ok_or(DecryptError::Undecryptable)?;
            let plaintext = open_body(key.as_bytes(), &self.associated_data, message)?;
            self.skipped.remove(slot);
            return Ok(plaintext);
        }
        let skip = number - receiving.next;
        if skip > MAX_SKIP {
            return Err(DecryptError::TooManySkipped { skip, max: MAX_SKIP });
        }
        let next = number.checked_add(1).ok_or(DecryptError::Undecryptable)?;
        let advance = receiving.chain_key.advance(receiving.next, number);
        let plaintext = open_body(&advance.message_key, &self.associated_data, message)?;

        receiving.chain_key.set(&advance.next_chain_key);
        receiving.next = next;
        self.skipped.insert(&receiving.header_key, advance.skipped);
        Ok(plaintext)
    }

    /// The first message under the next receiving header key: the peer has
    /// a new ratchet key. Both halves of the DH ratchet step are computed,
    /// then committed together.
    fn decrypt_with_ratchet_step(
        &mut self,
        header: &Header,
        message: &UnverifiedMessage<'_>,
        rng: &mut impl CryptoRng,
    ) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        // The counters bound the work, so they are checked before any.
        let number = header.message_number;
        if number > MAX_SKIP {
            return Err(DecryptError::TooManySkipped { skip: number, max: MAX_SKIP });
        }
        let left_behind = self
            .receiving
            .as_ref()
            .map_or(0, |receiving| header.previous_chain_length.saturating_sub(receiving.next));
        if left_behind > MAX_SKIP {
            return Err(DecryptError::TooManySkipped { skip: left_behind, max: MAX_SKIP });
        }

        let dh = self
            .our_ratchet_key
            .secret()
            .diffie_hellman(&header.ratchet_key)
            .map_err(|_| DecryptError::Undecryptable)?;
        let receive_step = self.root_key.step(&dh);
        let advance = receive_step.chain_key.advance(0, number);
        let plaintext = open_body(&advance.message_key, &self.associated_data, message)?;

        // The message is authentic: the sending half of the step, and the
        // keys the old receiving chain leaves behind.
        let our_ratchet_key = agreement::KeyPair::generate(rng);
        let dh = our_ratchet_key
            .secret()
            .diffie_hellman(&header.ratchet_key)
            .map_err(|_| DecryptError::Undecryptable)?;
        let send_step = receive_step.root_key.step(&dh);
        let old_skipped = self.receiving.as_ref().map(|receiving| {
            receiving.chain_key.skipped(receiving.next, header.previous_chain_length)
        });

        if let (Some(old), Some(keys)) = (self.receiving.take(), old_skipped) {
            self.skipped.insert(&old.header_key, keys);
        }
        self.previous_sending_length = self.sending.as_ref().map_or(0, |sending| sending.next);
        let sending_header_key =
            std::mem::replace(&mut self.next_sending_header_key, send_step.next_header_key);
        self.sending =
            Some(Chain { chain_key: send_step.chain_key, header_key: sending_header_key, next: 0 });
        let receiving_header_key =
            std::mem::replace(&mut self.next_receiving_header_key, receive_step.next_header_key);
        let mut chain_key = receive_step.chain_key;
        chain_key.set(&advance.next_chain_key);
        let receiving = self.receiving.insert(Chain {
            chain_key,
            header_key: receiving_header_key,
            next: number + 1,
        });
        self.skipped.insert(&receiving.header_key, advance.skipped);
        self.their_ratchet_key = Some(header.ratchet_key);
        self.our_ratchet_key = our_ratchet_key;
        self.root_key = send_step.root_key;
        Ok(plaintext)
    }

    /// The number of message keys kept for messages not yet received.
    pub fn skipped_key_count(&self) -> usize {
        self.skipped.len()
    }

    /// The session's versioned record, wiped when dropped.
    ///
    /// | bytes | field |
    /// |-------|-------|
    /// | 1     | record version (1) |
    /// | 32    | associated data |
    /// | 32    | root key |
    /// | 32    | our ratchet secret key |
    /// | 1 (+32) | their ratchet key: 0 absent, 1 present then the key |
    /// | 1 (+32+32+4) | sending chain: 0 absent, 1 present then chain key, header key, next message number |
    /// | 4     | previous sending chain length |
    /// | 32    | next sending header key |
    /// | 1 (+32+32+4) | receiving chain, as the sending chain |
    /// | 32    | next receiving header key |
    /// | 4     | number of chains with skipped keys, at most [`MAX_SKIPPED_CHAINS`], oldest first |
    /// | per chain: 32 + 4 | header key, number of keys (at least 1) |
    /// | per key: 4 + 32 | message number (strictly increasing in a chain), message key |
    ///
    /// Integers are big-endian. At most [`MAX_RECORD_BYTES`].
    pub fn to_record(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(
            FIXED_RECORD_BYTES
                + self.skipped.chains().count() * (32 + 4)
                + self.skipped.len() * SKIPPED_KEY_RECORD_BYTES,
        );
        w.u8(RECORD_VERSION)
            .fixed(&self.associated_data)
            .fixed(self.root_key.as_bytes())
            .fixed(self.our_ratchet_key.secret().to_bytes().as_ref());
        match &self.their_ratchet_key {
            Some(key) => w.u8(1).fixed(key.as_bytes()),
            None => w.u8(0),
        };
        write_chain(&mut w, self.sending.as_ref());
        w.u32(self.previous_sending_length).fixed(self.next_sending_header_key.as_bytes());
        write_chain(&mut w, self.receiving.as_ref());
        w.fixed(self.next_receiving_header_key.as_bytes());
        // At most MAX_SKIPPED_CHAINS and MAX_SKIPPED_KEYS: far below u32.
        #[allow(clippy::cast_possible_truncation)]
        w.u32(self.skipped.chains().count() as u32);
        for chain in self.skipped.chains() {
            #[allow(clippy::cast_possible_truncation)]
            w.fixed(chain.header_key.as_bytes()).u32(chain.keys.len() as u32);
            for (number, key) in &chain.keys {
                w.u32(*number).fixed(key.as_bytes());
            }
        }
        w.into_secret_bytes()
    }

    /// Restores a session from [`Session::to_record`].
    ///
    /// # Errors
    /// [`RecordError`] for a record that is too long, malformed, of an
    /// unknown version, over the limits, or inconsistent.
    pub fn from_record(record: &[u8]) -> Result<Self, RecordError> {
        if record.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge { len: record.len(), max: MAX_RECORD_BYTES });
        }
        let mut r = Reader::new(record);
        let version = r.u8()?;
        if version != RECORD_VERSION {
            return Err(DecodeError::UnknownVersion(version).into());
        }
        let associated_data = r.array::<32>()?;
        let root_key = RootKey::from_bytes(&*r.secret_array::<32>()?);
        let our_ratchet_key = agreement::KeyPair::from_secret(agreement::SecretKey::from_bytes(
            &*r.secret_array::<32>()?,
        ));
        let their_ratchet_key =
            if read_presence(&mut r)? { Some(PublicKey::from_bytes(r.array()?)) } else { None };
        let sending = read_chain(&mut r)?;
        let previous_sending_length = r.u32()?;
        let next_sending_header_key = HeaderKey::from_bytes(&*r.secret_array::<32>()?);
        let receiving = read_chain(&mut r)?;
        let next_receiving_header_key = HeaderKey::from_bytes(&*r.secret_array::<32>()?);
        let skipped = read_skipped(&mut r)?;
        r.finish()?;

        // The states a session goes through: a fresh responder (nothing), a
        // fresh initiator (their key and a sending chain), then everything.
        if their_ratchet_key.is_some() != sending.is_some()
            || (receiving.is_some() && sending.is_none())
        {
            return Err(DecodeError::Invalid("session state").into());
        }
        Ok(Self {
            associated_data,
            root_key,
            our_ratchet_key,
            their_ratchet_key,
            sending,
            previous_sending_length,
            next_sending_header_key,
            receiving,
            next_receiving_header_key,
            skipped,
        })
    }
}

fn write_chain(w: &mut Writer, chain: Option<&Chain>) {
    match chain {
        Some(chain) => w
            .u8(1)
            .fixed(chain.chain_key.as_bytes())
            .fixed(chain.header_key.as_bytes())
            .u32(chain.next),
        None => w.u8(0),
    };
}

fn read_presence(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Invalid("presence flag")),
    }
}

fn read_chain(r: &mut Reader<'_>) -> Result<Option<Chain>, DecodeError> {
    if !read_presence(r)? {
        return Ok(None);
    }
    let chain_key = ChainKey::from_bytes(&*r.secret_array::<32>()?);
    let header_key = HeaderKey::from_bytes(&*r.secret_array::<32>()?);
    let next = r.u32()?;
    Ok(Some(Chain { chain_key, header_key, next }))
}

fn read_skipped(r: &mut Reader<'_>) -> Result<SkippedKeys, DecodeError> {
    let chain_count = r.u32()? as usize;
    if chain_count > MAX_SKIPPED_CHAINS {
        return Err(DecodeError::TooLarge { len: chain_count, max: MAX_SKIPPED_CHAINS });
    }
    let mut chains = VecDeque::with_capacity(chain_count);
    let mut total = 0usize;
    for _ in 0..chain_count {
        let header_key = HeaderKey::from_bytes(&*r.secret_array::<32>()?);
        let count = r.u32()? as usize;
        if count == 0 {
            return Err(DecodeError::Invalid("empty skipped chain"));
        }
        total = total.saturating_add(count);
        if total > MAX_SKIPPED_KEYS {
            return Err(DecodeError::TooLarge { len: total, max: MAX_SKIPPED_KEYS });
        }
        if count.saturating_mul(SKIPPED_KEY_RECORD_BYTES) > r.remaining() {
            return Err(DecodeError::Truncated);
        }
        let mut keys = VecDeque::with_capacity(count);
        let mut previous: Option<u32> = None;
        for _ in 0..count {
            let number = r.u32()?;
            if previous.is_some_and(|previous| number <= previous) {
                return Err(DecodeError::Invalid("skipped key order"));
            }
            previous = Some(number);
            keys.push_back((number, MessageKey::from_bytes(&*r.secret_array::<32>()?)));
        }
        chains.push_back(SkippedChain { header_key, keys });
    }
    Ok(SkippedKeys::from_chains(chains))
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sent", &self.sending.as_ref().map(|chain| chain.next))
            .field("received", &self.receiving.as_ref().map(|chain| chain.next))
            .field("skipped_keys", &self.skipped.len())
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// Why a session could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RatchetError {
    /// The peer's ratchet key is a low-order point.
    #[error("weak ratchet public key")]
    WeakKey,
}

/// Why a message could not be encrypted. The session is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncryptError {
    /// The plaintext is longer than [`MAX_PLAINTEXT_BYTES`].
    #[error("plaintext of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The plaintext's length.
        len: usize,
        /// [`MAX_PLAINTEXT_BYTES`].
        max: usize,
    },
    /// A responder sends only after the initiator's first message.
    #[error("no sending chain before the first message from the peer")]
    AwaitingFirstMessage,
    /// `2^32 - 1` messages were sent in one chain: the peer must reply.
    #[error("sending chain exhausted")]
    ChainExhausted,
}

/// Why a message could not be decrypted. The session is unchanged.
///
/// Every failure to authenticate is the one opaque
/// [`DecryptError::Undecryptable`], so a sender learns nothing from which
/// check failed; the other variants are about public bytes (length,
/// version) or about a header that did authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// The message is longer than [`MAX_MESSAGE_BYTES`].
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// [`MAX_MESSAGE_BYTES`].
        max: usize,
    },
    /// The version byte is not [`VERSION`].
    #[error("unknown message version {0}")]
    UnknownVersion(u8),
    /// An authentic header asks to skip more than [`MAX_SKIP`] message keys.
    #[error("message skips {skip} keys, more than the limit of {max}")]
    TooManySkipped {
        /// The number of keys the message would skip.
        skip: u32,
        /// [`MAX_SKIP`].
        max: u32,
    },
    /// The message does not authenticate, was already decrypted, or its key
    /// was forgotten.
    #[error("message could not be decrypted")]
    Undecryptable,
}

/// Why a session record could not be restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record is longer than [`MAX_RECORD_BYTES`].
    #[error("session record of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The record's length.
        len: usize,
        /// [`MAX_RECORD_BYTES`].
        max: usize,
    },
    /// The record is not a session record this build can read.
    #[error("malformed session record: {0}")]
    Malformed(#[from] DecodeError),
}

#[cfg(test)]
mod tests;
