//! The mailbox protocol's messages: a device leaves [`Envelope`]s for an
//! offline device on the nodes closest to that device's mailbox key; the
//! mailbox's owner fetches and deletes them.
//!
//! - **Store** is open to anyone who pays a proof-of-work [`Stamp`] over the
//!   mailbox key, the envelope's [`ItemId`] and the TTL. A node asks more
//!   work when it is loaded: a store below what it asks now is refused with
//!   [`ErrorCode::InsufficientWork`] saying how many bits it asks (at most
//!   [`MAX_DEMANDED_DIFFICULTY_BITS`]), and the sender may mint again.
//! - **Fetch** and **delete** are signed by the mailbox key (BIP340) over a
//!   fixed byte layout, never over protobuf bytes (which have no canonical
//!   form), with a timestamp and a random nonce against replays.
//!
//! Decoded requests are `Unverified*`; `verify` checks the stamp or the
//! signature and the clock skew (time is a parameter). What only a node's
//! state can tell, a nonce seen before or a full mailbox, is the node's
//! check. Every refusal has a stable [`ErrorCode`].
//!
//! # Item id
//!
//! `SHA-256(MAILBOX_ITEM_ID || envelope)`, the envelope being the encoded
//! [`Envelope`] as stored. Every node that holds an envelope names it alike,
//! so a delete reaches every replica.
//!
//! # Stamp input
//!
//! A stamp holds when `SHA-256` of these bytes starts with at least
//! `difficulty` zero bits (most significant bit of byte 0 first):
//!
//! | bytes | field |
//! |---|---|
//! | 22 | [`kdf::MAILBOX_STAMP`], `xchat/v1/mailbox/stamp` |
//! | 1 | stamp version, `0x01` |
//! | 32 | mailbox key |
//! | 4 | TTL in seconds, `u32` big-endian |
//! | 1 | difficulty in bits |
//! | 32 | item id |
//! | 8 | nonce, `u64` big-endian |
//!
//! # Signed messages
//!
//! BIP340 by the mailbox key over `context || message`:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, `0x01` |
//! | 32 | mailbox key |
//! | 8 | timestamp in ms, `u64` big-endian |
//! | 16 | request nonce |
//! | 4 | delete only: number of item ids, `u32` big-endian |
//! | 32 each | delete only: the item ids, in request order |
//!
//! The context is [`kdf::SIG_MAILBOX_FETCH`] (`xchat/v1/sig/mailbox-fetch`) or
//! [`kdf::SIG_MAILBOX_DELETE`] (`xchat/v1/sig/mailbox-delete`), so a fetch's
//! signature never authorises a delete.
//!
//! [`Envelope`]: crate::envelope::Envelope

use rand_core::CryptoRng;
use xchat_crypto::kdf;
use xchat_crypto::signature::{PUBLIC_KEY_BYTES, Signature, SigningKey, VerifyingKey};

use crate::decode::{self, ProtoError};
use crate::envelope::MAX_ENVELOPE_BYTES;
use crate::generated as pb;

/// Bytes of a mailbox key: a BIP340 x-only public key.
pub const MAILBOX_KEY_BYTES: usize = PUBLIC_KEY_BYTES;
/// Bytes of an [`ItemId`]: a SHA-256 hash.
pub const ITEM_ID_BYTES: usize = 32;
/// Bytes of a fetch or delete request's random nonce.
pub const REQUEST_NONCE_BYTES: usize = 16;
/// Longest time a node keeps an envelope, in seconds (7 days). Prekeys must
/// outlive it: `xchat_crypto::bundle::SIGNED_PREKEY_GRACE_PERIOD_MS` is as
/// long.
pub const MAX_TTL_SECONDS: u32 = 7 * 24 * 60 * 60;
/// Most bits of work a stamp may claim: its nonce has 64 bits.
pub const MAX_STAMP_DIFFICULTY_BITS: u8 = 64;
/// Most bits of work a node may ask of a store, under any load: about 16
/// million SHA-256 computations, seconds on a phone's core, so an honest
/// sender can always pay it. A refusal asking more does not decode (a
/// forged or broken node cannot make a sender mint for hours).
pub const MAX_DEMANDED_DIFFICULTY_BITS: u8 = 24;
/// Most item ids in one delete request.
pub const MAX_DELETE_ITEMS: usize = 256;
/// Most items in one fetch response (one delete request can clear them).
pub const MAX_FETCH_ITEMS: usize = MAX_DELETE_ITEMS;
/// Largest difference between a fetch or delete request's timestamp and the
/// verifying node's clock, in milliseconds (5 minutes). A node remembers
/// the nonces it accepted for twice as long, to refuse replays.
pub const MAX_REQUEST_SKEW_MS: u64 = 5 * 60 * 1000;
/// Most bytes of an encoded request: a store of the largest envelope and
/// [`crate::HEADROOM_BYTES`]. Checked before decoding.
pub const MAX_REQUEST_BYTES: usize = MAX_ENVELOPE_BYTES + crate::HEADROOM_BYTES;
/// Most bytes of an encoded response (4 MiB). [`Fetched::push`] keeps a
/// response within it. Checked before decoding.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Version byte of the signed messages.
const SIGNED_MESSAGE_VERSION: u8 = 1;
/// Version byte of the stamp input.
const STAMP_VERSION: u8 = 1;

// A full delete request fits the request limit.
const _: () =
    assert!(MAX_DELETE_ITEMS * decode::delimited_len(ITEM_ID_BYTES) + 256 <= MAX_REQUEST_BYTES);

/// The id of an envelope held by a mailbox: SHA-256 of the envelope with the
/// label [`kdf::MAILBOX_ITEM_ID`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId([u8; ITEM_ID_BYTES]);

impl ItemId {
    /// The id of `envelope`, an encoded [`Envelope`](crate::envelope::Envelope).
    pub fn of_envelope(envelope: &[u8]) -> Self {
        Self(kdf::sha256(&[kdf::MAILBOX_ITEM_ID, envelope]))
    }

    /// Wraps stored id bytes.
    pub const fn from_bytes(bytes: [u8; ITEM_ID_BYTES]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; ITEM_ID_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for ItemId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ItemId({})", xchat_crypto::fingerprint(&self.0))
    }
}

/// A proof-of-work stamp (see the module doc for its input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    nonce: u64,
    difficulty_bits: u8,
}

impl Stamp {
    /// Searches the first nonce that gives `difficulty_bits` zero bits: about
    /// `2^difficulty_bits` SHA-256 computations.
    ///
    /// # Errors
    /// [`ProtoError::OutOfRange`] over [`MAX_STAMP_DIFFICULTY_BITS`].
    pub fn mint(
        mailbox_key: &VerifyingKey,
        item: &ItemId,
        ttl_seconds: u32,
        difficulty_bits: u8,
    ) -> Result<Self, ProtoError> {
        check_difficulty(difficulty_bits.into())?;
        (0..=u64::MAX)
            .map(|nonce| Self { nonce, difficulty_bits })
            .find(|stamp| stamp.holds(mailbox_key, item, ttl_seconds))
            .ok_or(ProtoError::Invalid { field: "Stamp.nonce", reason: "no nonce holds" })
    }

    /// The nonce found.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// The bits of work claimed.
    pub fn difficulty_bits(&self) -> u8 {
        self.difficulty_bits
    }

    /// Whether the stamp input's hash has the claimed zero bits.
    fn holds(&self, mailbox_key: &VerifyingKey, item: &ItemId, ttl_seconds: u32) -> bool {
        let hash = kdf::sha256(&[
            kdf::MAILBOX_STAMP,
            &[STAMP_VERSION],
            &mailbox_key.to_bytes(),
            &ttl_seconds.to_be_bytes(),
            &[self.difficulty_bits],
            &item.0,
            &self.nonce.to_be_bytes(),
        ]);
        leading_zero_bits(&hash) >= u32::from(self.difficulty_bits)
    }
}

fn leading_zero_bits(hash: &[u8; 32]) -> u32 {
    let mut bits = 0;
    for byte in hash {
        bits += byte.leading_zeros();
        if *byte != 0 {
            break;
        }
    }
    bits
}

fn check_difficulty(bits: u32) -> Result<u8, ProtoError> {
    u8::try_from(bits).ok().filter(|bits| *bits <= MAX_STAMP_DIFFICULTY_BITS).ok_or(
        ProtoError::OutOfRange {
            field: "Stamp.difficulty_bits",
            value: bits.into(),
            min: 0,
            max: MAX_STAMP_DIFFICULTY_BITS.into(),
        },
    )
}

fn check_ttl(ttl_seconds: u32) -> Result<(), ProtoError> {
    if ttl_seconds == 0 || ttl_seconds > MAX_TTL_SECONDS {
        return Err(ProtoError::OutOfRange {
            field: "StoreRequest.ttl_seconds",
            value: ttl_seconds.into(),
            min: 1,
            max: MAX_TTL_SECONDS.into(),
        });
    }
    Ok(())
}

fn check_envelope(envelope: &[u8], field: &'static str) -> Result<(), ProtoError> {
    decode::length(envelope.len(), field, 1, MAX_ENVELOPE_BYTES)
}

/// Why a decoded request was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The timestamp is more than [`MAX_REQUEST_SKEW_MS`] from the node's
    /// clock.
    #[error("request timestamp {skew_ms} ms from the node's clock")]
    Stale {
        /// The difference, in milliseconds.
        skew_ms: u64,
    },
    /// The signature does not verify under the mailbox key.
    #[error("invalid mailbox signature")]
    InvalidSignature,
    /// The stamp claims less work than the node asks for.
    #[error("stamp claims {claimed_bits} bits of work, below {min_bits}")]
    InsufficientWork {
        /// The bits claimed.
        claimed_bits: u8,
        /// The node's minimum.
        min_bits: u8,
    },
    /// The stamp does not show the work it claims.
    #[error("stamp does not hold")]
    InvalidStamp,
}

/// A verified request to keep an envelope in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRequest {
    mailbox_key: VerifyingKey,
    envelope: Vec<u8>,
    item_id: ItemId,
    ttl_seconds: u32,
    stamp: Stamp,
}

impl StoreRequest {
    /// A request to keep `envelope` (an encoded
    /// [`Envelope`](crate::envelope::Envelope)) for `ttl_seconds` in the
    /// mailbox of `mailbox_key`, with a stamp of `difficulty_bits` (minted
    /// here: about `2^difficulty_bits` hashes).
    ///
    /// # Errors
    /// [`ProtoError::LengthOutOfRange`] or [`ProtoError::MissingField`] for
    /// an envelope outside 1 to [`MAX_ENVELOPE_BYTES`],
    /// [`ProtoError::OutOfRange`] for a TTL outside 1 to [`MAX_TTL_SECONDS`]
    /// or a difficulty over [`MAX_STAMP_DIFFICULTY_BITS`].
    pub fn new(
        mailbox_key: VerifyingKey,
        envelope: Vec<u8>,
        ttl_seconds: u32,
        difficulty_bits: u8,
    ) -> Result<Self, ProtoError> {
        check_envelope(&envelope, "StoreRequest.envelope")?;
        check_ttl(ttl_seconds)?;
        let item_id = ItemId::of_envelope(&envelope);
        let stamp = Stamp::mint(&mailbox_key, &item_id, ttl_seconds, difficulty_bits)?;
        Ok(Self { mailbox_key, envelope, item_id, ttl_seconds, stamp })
    }

    /// The mailbox.
    pub fn mailbox_key(&self) -> &VerifyingKey {
        &self.mailbox_key
    }

    /// The encoded envelope, as the sender wrote it.
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// The encoded envelope, by value.
    pub fn into_envelope(self) -> Vec<u8> {
        self.envelope
    }

    /// The envelope's item id.
    pub fn item_id(&self) -> ItemId {
        self.item_id
    }

    /// How long to keep it, in seconds.
    pub fn ttl_seconds(&self) -> u32 {
        self.ttl_seconds
    }

    /// The proof of work.
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// The same request with a new stamp of `difficulty_bits` (minted here:
    /// about `2^difficulty_bits` hashes), for a node that asks more work.
    ///
    /// # Errors
    /// [`ProtoError::OutOfRange`] over [`MAX_STAMP_DIFFICULTY_BITS`].
    pub fn restamp(self, difficulty_bits: u8) -> Result<Self, ProtoError> {
        let stamp =
            Stamp::mint(&self.mailbox_key, &self.item_id, self.ttl_seconds, difficulty_bits)?;
        Ok(Self { stamp, ..self })
    }

    fn to_proto(&self) -> pb::StoreRequest {
        pb::StoreRequest {
            mailbox_key: self.mailbox_key.to_bytes().to_vec(),
            envelope: self.envelope.clone(),
            ttl_seconds: self.ttl_seconds,
            stamp: Some(pb::Stamp {
                nonce: self.stamp.nonce,
                difficulty_bits: self.stamp.difficulty_bits.into(),
            }),
        }
    }
}

/// A decoded store request whose stamp has not been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedStoreRequest(StoreRequest);

impl UnverifiedStoreRequest {
    /// The mailbox it names.
    pub fn mailbox_key(&self) -> &VerifyingKey {
        &self.0.mailbox_key
    }

    /// Checks that the stamp claims at least `min_difficulty_bits` (the
    /// node's policy) and holds.
    ///
    /// # Errors
    /// [`VerifyError::InsufficientWork`], [`VerifyError::InvalidStamp`].
    pub fn verify(self, min_difficulty_bits: u8) -> Result<StoreRequest, VerifyError> {
        let request = self.0;
        if request.stamp.difficulty_bits < min_difficulty_bits {
            return Err(VerifyError::InsufficientWork {
                claimed_bits: request.stamp.difficulty_bits,
                min_bits: min_difficulty_bits,
            });
        }
        if !request.stamp.holds(&request.mailbox_key, &request.item_id, request.ttl_seconds) {
            return Err(VerifyError::InvalidStamp);
        }
        Ok(request)
    }
}

impl TryFrom<pb::StoreRequest> for UnverifiedStoreRequest {
    type Error = ProtoError;

    fn try_from(raw: pb::StoreRequest) -> Result<Self, ProtoError> {
        let mailbox_key = mailbox_key(&raw.mailbox_key, "StoreRequest.mailbox_key")?;
        check_envelope(&raw.envelope, "StoreRequest.envelope")?;
        check_ttl(raw.ttl_seconds)?;
        let stamp = decode::required(raw.stamp, "StoreRequest.stamp")?;
        let stamp =
            Stamp { nonce: stamp.nonce, difficulty_bits: check_difficulty(stamp.difficulty_bits)? };
        let item_id = ItemId::of_envelope(&raw.envelope);
        Ok(Self(StoreRequest {
            mailbox_key,
            envelope: raw.envelope,
            item_id,
            ttl_seconds: raw.ttl_seconds,
            stamp,
        }))
    }
}

fn mailbox_key(bytes: &[u8], field: &'static str) -> Result<VerifyingKey, ProtoError> {
    VerifyingKey::from_bytes(&decode::fixed(bytes, field)?)
        .map_err(|_| ProtoError::InvalidKey { field })
}

/// What fetch and delete requests share: who asks, when, and a nonce,
/// signed by the mailbox key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signed {
    mailbox_key: VerifyingKey,
    timestamp_ms: u64,
    nonce: [u8; REQUEST_NONCE_BYTES],
    signature: Signature,
}

impl Signed {
    fn sign(
        context: &[u8],
        mailbox: &SigningKey,
        timestamp_ms: u64,
        item_ids: Option<&[ItemId]>,
        rng: &mut impl CryptoRng,
    ) -> Self {
        let mut nonce = [0u8; REQUEST_NONCE_BYTES];
        rng.fill_bytes(&mut nonce);
        let mailbox_key = mailbox.verifying_key();
        let message = signed_message(&mailbox_key, timestamp_ms, &nonce, item_ids);
        let signature = mailbox.sign(context, &message, rng);
        Self { mailbox_key, timestamp_ms, nonce, signature }
    }

    fn verify(
        &self,
        context: &[u8],
        item_ids: Option<&[ItemId]>,
        now_ms: u64,
    ) -> Result<(), VerifyError> {
        let skew_ms = now_ms.abs_diff(self.timestamp_ms);
        if skew_ms > MAX_REQUEST_SKEW_MS {
            return Err(VerifyError::Stale { skew_ms });
        }
        let message = signed_message(&self.mailbox_key, self.timestamp_ms, &self.nonce, item_ids);
        self.mailbox_key
            .verify(context, &message, &self.signature)
            .map_err(|_| VerifyError::InvalidSignature)
    }

    fn parse(
        mailbox_key_bytes: &[u8],
        timestamp_ms: u64,
        nonce: &[u8],
        signature: &[u8],
        fields: &SignedFields,
    ) -> Result<Self, ProtoError> {
        Ok(Self {
            mailbox_key: mailbox_key(mailbox_key_bytes, fields.mailbox_key)?,
            timestamp_ms,
            nonce: decode::fixed(nonce, fields.nonce)?,
            signature: Signature::from_bytes(decode::fixed(signature, fields.signature)?),
        })
    }
}

/// The names of a signed request's fields, for errors.
struct SignedFields {
    mailbox_key: &'static str,
    nonce: &'static str,
    signature: &'static str,
}

const FETCH_FIELDS: SignedFields = SignedFields {
    mailbox_key: "FetchRequest.mailbox_key",
    nonce: "FetchRequest.nonce",
    signature: "FetchRequest.signature",
};

const DELETE_FIELDS: SignedFields = SignedFields {
    mailbox_key: "DeleteRequest.mailbox_key",
    nonce: "DeleteRequest.nonce",
    signature: "DeleteRequest.signature",
};

/// The signed message of a fetch (`item_ids` absent) or a delete (see the
/// module doc).
fn signed_message(
    mailbox_key: &VerifyingKey,
    timestamp_ms: u64,
    nonce: &[u8; REQUEST_NONCE_BYTES],
    item_ids: Option<&[ItemId]>,
) -> Vec<u8> {
    let ids = item_ids.unwrap_or_default();
    let mut message =
        Vec::with_capacity(1 + MAILBOX_KEY_BYTES + 8 + REQUEST_NONCE_BYTES + 4 + ids.len() * 32);
    message.push(SIGNED_MESSAGE_VERSION);
    message.extend_from_slice(&mailbox_key.to_bytes());
    message.extend_from_slice(&timestamp_ms.to_be_bytes());
    message.extend_from_slice(nonce);
    if let Some(ids) = item_ids {
        // At most MAX_DELETE_ITEMS, checked by every constructor.
        #[allow(clippy::cast_possible_truncation)]
        message.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            message.extend_from_slice(&id.0);
        }
    }
    message
}

/// A verified request to list a mailbox's envelopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest(Signed);

impl FetchRequest {
    /// A request by the owner of `mailbox`, at `timestamp_ms` by its clock;
    /// the nonce and the signature's auxiliary randomness come from `rng`.
    pub fn new(mailbox: &SigningKey, timestamp_ms: u64, rng: &mut impl CryptoRng) -> Self {
        Self(Signed::sign(kdf::SIG_MAILBOX_FETCH, mailbox, timestamp_ms, None, rng))
    }

    /// The mailbox.
    pub fn mailbox_key(&self) -> &VerifyingKey {
        &self.0.mailbox_key
    }

    /// When it was made, by the owner's clock: milliseconds since the Unix
    /// epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.0.timestamp_ms
    }

    /// Its nonce: a node refuses one it accepted before.
    pub fn nonce(&self) -> &[u8; REQUEST_NONCE_BYTES] {
        &self.0.nonce
    }
}

/// A decoded fetch request whose signature has not been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedFetchRequest(Signed);

impl UnverifiedFetchRequest {
    /// The mailbox it names.
    pub fn mailbox_key(&self) -> &VerifyingKey {
        &self.0.mailbox_key
    }

    /// Checks the timestamp against `now_ms` (within
    /// [`MAX_REQUEST_SKEW_MS`]) and the signature.
    ///
    /// # Errors
    /// [`VerifyError::Stale`], [`VerifyError::InvalidSignature`].
    pub fn verify(self, now_ms: u64) -> Result<FetchRequest, VerifyError> {
        self.0.verify(kdf::SIG_MAILBOX_FETCH, None, now_ms)?;
        Ok(FetchRequest(self.0))
    }
}

/// A verified request to delete envelopes of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    signed: Signed,
    item_ids: Vec<ItemId>,
}

impl DeleteRequest {
    /// A request by the owner of `mailbox` to delete `item_ids`, at
    /// `timestamp_ms` by its clock.
    ///
    /// # Errors
    /// [`ProtoError::MissingField`] for no id, [`ProtoError::TooMany`] over
    /// [`MAX_DELETE_ITEMS`].
    pub fn new(
        mailbox: &SigningKey,
        timestamp_ms: u64,
        item_ids: Vec<ItemId>,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, ProtoError> {
        check_delete_count(item_ids.len())?;
        let signed =
            Signed::sign(kdf::SIG_MAILBOX_DELETE, mailbox, timestamp_ms, Some(&item_ids), rng);
        Ok(Self { signed, item_ids })
    }

    /// The mailbox.
    pub fn mailbox_key(&self) -> &VerifyingKey {
        &self.signed.mailbox_key
    }

    /// When it was made, by the owner's clock: milliseconds since the Unix
    /// epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.signed.timestamp_ms
    }

    /// Its nonce: a node refuses one it accepted before.
    pub fn nonce(&self) -> &[u8; REQUEST_NONCE_BYTES] {
        &self.signed.nonce
    }

    /// The items to delete.
    pub fn item_ids(&self) -> &[ItemId] {
        &self.item_ids
    }
}

fn check_delete_count(count: usize) -> Result<(), ProtoError> {
    const FIELD: &str = "DeleteRequest.item_ids";
    if count == 0 {
        return Err(ProtoError::MissingField { field: FIELD });
    }
    decode::count(count, FIELD, MAX_DELETE_ITEMS)
}

/// A decoded delete request whose signature has not been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedDeleteRequest(DeleteRequest);

impl UnverifiedDeleteRequest {
    /// The mailbox it names.
    pub fn mailbox_key(&self) -> &VerifyingKey {
        &self.0.signed.mailbox_key
    }

    /// Checks the timestamp against `now_ms` (within
    /// [`MAX_REQUEST_SKEW_MS`]) and the signature, which covers the item ids.
    ///
    /// # Errors
    /// [`VerifyError::Stale`], [`VerifyError::InvalidSignature`].
    pub fn verify(self, now_ms: u64) -> Result<DeleteRequest, VerifyError> {
        self.0.signed.verify(kdf::SIG_MAILBOX_DELETE, Some(&self.0.item_ids), now_ms)?;
        Ok(self.0)
    }
}

/// A request to a mailbox node, as its sender builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Keep an envelope.
    Store(StoreRequest),
    /// List the envelopes of a mailbox.
    Fetch(FetchRequest),
    /// Delete envelopes of a mailbox.
    Delete(DeleteRequest),
}

impl Request {
    /// Encodes the request; at most [`MAX_REQUEST_BYTES`].
    pub fn encode(&self) -> Vec<u8> {
        use pb::mailbox_request::Request as R;
        let request = match self {
            Self::Store(store) => R::Store(store.to_proto()),
            Self::Fetch(FetchRequest(signed)) => R::Fetch(pb::FetchRequest {
                mailbox_key: signed.mailbox_key.to_bytes().to_vec(),
                timestamp_ms: signed.timestamp_ms,
                nonce: signed.nonce.to_vec(),
                signature: signed.signature.as_bytes().to_vec(),
            }),
            Self::Delete(DeleteRequest { signed, item_ids }) => R::Delete(pb::DeleteRequest {
                mailbox_key: signed.mailbox_key.to_bytes().to_vec(),
                timestamp_ms: signed.timestamp_ms,
                nonce: signed.nonce.to_vec(),
                item_ids: item_ids.iter().map(|id| id.0.to_vec()).collect(),
                signature: signed.signature.as_bytes().to_vec(),
            }),
        };
        prost::Message::encode_to_vec(&pb::MailboxRequest { request: Some(request) })
    }
}

/// A decoded request, before its stamp or signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnverifiedRequest {
    /// Keep an envelope.
    Store(UnverifiedStoreRequest),
    /// List the envelopes of a mailbox.
    Fetch(UnverifiedFetchRequest),
    /// Delete envelopes of a mailbox.
    Delete(UnverifiedDeleteRequest),
}

impl UnverifiedRequest {
    /// Decodes a request from the network.
    ///
    /// # Errors
    /// [`ProtoError::TooLarge`] over [`MAX_REQUEST_BYTES`] (before decoding),
    /// [`ProtoError::Malformed`], and a [`ProtoError`] naming the first field
    /// that breaks its rule (a mailbox key off the curve is
    /// [`ProtoError::InvalidKey`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let raw: pb::MailboxRequest = decode::message(bytes, "MailboxRequest", MAX_REQUEST_BYTES)?;
        Self::try_from(raw)
    }
}

impl TryFrom<pb::MailboxRequest> for UnverifiedRequest {
    type Error = ProtoError;

    fn try_from(raw: pb::MailboxRequest) -> Result<Self, ProtoError> {
        use pb::mailbox_request::Request as R;
        Ok(match decode::required(raw.request, "MailboxRequest.request")? {
            R::Store(store) => Self::Store(UnverifiedStoreRequest::try_from(store)?),
            R::Fetch(fetch) => Self::Fetch(UnverifiedFetchRequest(Signed::parse(
                &fetch.mailbox_key,
                fetch.timestamp_ms,
                &fetch.nonce,
                &fetch.signature,
                &FETCH_FIELDS,
            )?)),
            R::Delete(delete) => {
                let signed = Signed::parse(
                    &delete.mailbox_key,
                    delete.timestamp_ms,
                    &delete.nonce,
                    &delete.signature,
                    &DELETE_FIELDS,
                )?;
                check_delete_count(delete.item_ids.len())?;
                let item_ids = delete
                    .item_ids
                    .iter()
                    .map(|id| decode::fixed(id, "DeleteRequest.item_ids").map(ItemId))
                    .collect::<Result<Vec<_>, _>>()?;
                Self::Delete(UnverifiedDeleteRequest(DeleteRequest { signed, item_ids }))
            }
        })
    }
}

/// Why a node refused a request. The numbers (the `.proto`'s) are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request did not decode or broke a field's limit.
    Malformed,
    /// The request is larger than the node accepts.
    TooLarge,
    /// The signature does not verify under the mailbox key.
    InvalidSignature,
    /// The timestamp is too far from the node's clock.
    Stale,
    /// The nonce was seen before.
    Replayed,
    /// The stamp does not show the work the node asks for.
    InsufficientWork {
        /// The bits of work the node asks of a store now (1 to
        /// [`MAX_DEMANDED_DIFFICULTY_BITS`]); `None` when it does not say
        /// (an older node, or a stamp that does not hold).
        required_bits: Option<u8>,
    },
    /// The mailbox holds as much as the node allows.
    MailboxFull,
    /// Too many requests: try later.
    RateLimited,
    /// The node is not among those that keep this mailbox.
    NotResponsible,
    /// The node failed; the request may succeed later.
    Internal,
}

impl ErrorCode {
    /// The code's stable number on the wire.
    pub fn number(self) -> i32 {
        pb::ErrorCode::from(self).into()
    }
}

impl From<ErrorCode> for pb::ErrorCode {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::Malformed => Self::Malformed,
            ErrorCode::TooLarge => Self::TooLarge,
            ErrorCode::InvalidSignature => Self::InvalidSignature,
            ErrorCode::Stale => Self::Stale,
            ErrorCode::Replayed => Self::Replayed,
            ErrorCode::InsufficientWork { .. } => Self::InsufficientWork,
            ErrorCode::MailboxFull => Self::MailboxFull,
            ErrorCode::RateLimited => Self::RateLimited,
            ErrorCode::NotResponsible => Self::NotResponsible,
            ErrorCode::Internal => Self::Internal,
        }
    }
}

impl From<&ProtoError> for ErrorCode {
    fn from(error: &ProtoError) -> Self {
        match error {
            ProtoError::TooLarge { .. } => Self::TooLarge,
            _ => Self::Malformed,
        }
    }
}

impl From<&VerifyError> for ErrorCode {
    fn from(error: &VerifyError) -> Self {
        match error {
            VerifyError::Stale { .. } => Self::Stale,
            VerifyError::InvalidSignature => Self::InvalidSignature,
            VerifyError::InsufficientWork { min_bits, .. } => Self::InsufficientWork {
                required_bits: Some(*min_bits)
                    .filter(|bits| (1..=MAX_DEMANDED_DIFFICULTY_BITS).contains(bits)),
            },
            VerifyError::InvalidStamp => Self::InsufficientWork { required_bits: None },
        }
    }
}

/// A refusal's code, and the difficulty asked with
/// [`ErrorCode::InsufficientWork`] (0: not said).
fn error_code(refused: &pb::Refused) -> Result<ErrorCode, ProtoError> {
    const FIELD: &str = "Refused.code";
    const REQUIRED: &str = "Refused.required_difficulty_bits";
    let (value, required) = (refused.code, refused.required_difficulty_bits);
    let code: pb::ErrorCode = decode::enumeration(value, FIELD)?;
    if required != 0 && code != pb::ErrorCode::InsufficientWork {
        return Err(ProtoError::Invalid {
            field: REQUIRED,
            reason: "set with another code than INSUFFICIENT_WORK",
        });
    }
    if required > MAX_DEMANDED_DIFFICULTY_BITS.into() {
        return Err(ProtoError::OutOfRange {
            field: REQUIRED,
            value: required.into(),
            min: 0,
            max: MAX_DEMANDED_DIFFICULTY_BITS.into(),
        });
    }
    Ok(match code {
        pb::ErrorCode::Malformed => ErrorCode::Malformed,
        pb::ErrorCode::TooLarge => ErrorCode::TooLarge,
        pb::ErrorCode::InvalidSignature => ErrorCode::InvalidSignature,
        pb::ErrorCode::Stale => ErrorCode::Stale,
        pb::ErrorCode::Replayed => ErrorCode::Replayed,
        pb::ErrorCode::InsufficientWork => ErrorCode::InsufficientWork {
            // At most MAX_DEMANDED_DIFFICULTY_BITS, checked above.
            required_bits: u8::try_from(required).ok().filter(|bits| *bits > 0),
        },
        pb::ErrorCode::MailboxFull => ErrorCode::MailboxFull,
        pb::ErrorCode::RateLimited => ErrorCode::RateLimited,
        pb::ErrorCode::NotResponsible => ErrorCode::NotResponsible,
        pb::ErrorCode::Internal => ErrorCode::Internal,
        pb::ErrorCode::Unspecified => {
            return Err(ProtoError::UnknownEnumValue { field: FIELD, value });
        }
    })
}

/// An envelope held by a mailbox.
#[derive(Clone, PartialEq, Eq)]
pub struct Item {
    id: ItemId,
    stored_at_ms: u64,
    envelope: Vec<u8>,
}

impl Item {
    /// An envelope a node stored at `stored_at_ms` by its clock; its id is
    /// computed.
    ///
    /// # Errors
    /// [`ProtoError::LengthOutOfRange`] or [`ProtoError::MissingField`] for
    /// an envelope outside 1 to [`MAX_ENVELOPE_BYTES`].
    pub fn new(stored_at_ms: u64, envelope: Vec<u8>) -> Result<Self, ProtoError> {
        check_envelope(&envelope, "Item.envelope")?;
        Ok(Self { id: ItemId::of_envelope(&envelope), stored_at_ms, envelope })
    }

    /// Its id, as the node gave it (the owner only hands it back to delete).
    pub fn id(&self) -> ItemId {
        self.id
    }

    /// When the node stored it, by the node's clock: milliseconds since the
    /// Unix epoch.
    pub fn stored_at_ms(&self) -> u64 {
        self.stored_at_ms
    }

    /// The encoded envelope, for [`Envelope::decode`](crate::envelope::Envelope::decode).
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// The encoded envelope, by value.
    pub fn into_envelope(self) -> Vec<u8> {
        self.envelope
    }

    /// Its encoded length as a field of [`Fetched`].
    fn encoded_len(&self) -> usize {
        let stored_at =
            if self.stored_at_ms == 0 { 0 } else { 1 + decode::varint_len(self.stored_at_ms) };
        decode::delimited_len(
            decode::delimited_len(ITEM_ID_BYTES)
                + stored_at
                + decode::delimited_len(self.envelope.len()),
        )
    }
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("id", &self.id)
            .field("stored_at_ms", &self.stored_at_ms)
            .field("envelope_bytes", &self.envelope.len())
            .finish()
    }
}

/// A page of a mailbox's envelopes, oldest first: at most
/// [`MAX_FETCH_ITEMS`], and an encoded response within
/// [`MAX_RESPONSE_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fetched {
    items: Vec<Item>,
    more: bool,
    /// The encoded length of `items`.
    items_len: usize,
}

/// Bytes a response adds around its items: the `fetched` field's key and
/// length (at most 4 bytes below 4 MiB), and `more`.
const FETCHED_FRAMING_BYTES: usize = 1 + 4 + 2;

impl Fetched {
    /// An empty page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `item` if the page has room for it, else gives it back.
    ///
    /// # Errors
    /// The item, when the page already holds [`MAX_FETCH_ITEMS`] or the
    /// response would exceed [`MAX_RESPONSE_BYTES`].
    pub fn push(&mut self, item: Item) -> Result<(), Item> {
        let len = self.items_len + item.encoded_len();
        if self.items.len() >= MAX_FETCH_ITEMS || len + FETCHED_FRAMING_BYTES > MAX_RESPONSE_BYTES {
            return Err(item);
        }
        self.items.push(item);
        self.items_len = len;
        Ok(())
    }

    /// Tells the owner whether items remain after this page.
    pub fn set_more(&mut self, more: bool) {
        self.more = more;
    }

    /// The items.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The items, by value.
    pub fn into_items(self) -> Vec<Item> {
        self.items
    }

    /// Whether items remain: fetch again after deleting these.
    pub fn more(&self) -> bool {
        self.more
    }
}

/// A mailbox node's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The envelope of a store request is kept under this id.
    Stored(ItemId),
    /// A page of the envelopes of a fetch request.
    Fetched(Fetched),
    /// How many of a delete request's items were held and are now deleted.
    Deleted {
        /// The number deleted.
        count: u32,
    },
    /// The request was refused.
    Refused(ErrorCode),
}

impl Response {
    /// Decodes a node's answer.
    ///
    /// # Errors
    /// [`ProtoError::TooLarge`] over [`MAX_RESPONSE_BYTES`] (before
    /// decoding), [`ProtoError::Malformed`], and a [`ProtoError`] naming the
    /// first field that breaks its rule.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let raw: pb::MailboxResponse =
            decode::message(bytes, "MailboxResponse", MAX_RESPONSE_BYTES)?;
        Self::try_from(raw)
    }

    /// Encodes the answer; at most [`MAX_RESPONSE_BYTES`].
    pub fn encode(&self) -> Vec<u8> {
        use pb::mailbox_response::Result as R;
        let result = match self {
            Self::Stored(id) => R::Stored(pb::Stored { item_id: id.0.to_vec() }),
            Self::Fetched(fetched) => R::Fetched(pb::Fetched {
                items: fetched
                    .items
                    .iter()
                    .map(|item| pb::Item {
                        id: item.id.0.to_vec(),
                        stored_at_ms: item.stored_at_ms,
                        envelope: item.envelope.clone(),
                    })
                    .collect(),
                more: fetched.more,
            }),
            Self::Deleted { count } => R::Deleted(pb::Deleted { count: *count }),
            Self::Refused(code) => R::Refused(pb::Refused {
                code: pb::ErrorCode::from(*code).into(),
                required_difficulty_bits: match code {
                    // A value past the limit would not decode: not said.
                    ErrorCode::InsufficientWork { required_bits: Some(bits) }
                        if *bits <= MAX_DEMANDED_DIFFICULTY_BITS =>
                    {
                        u32::from(*bits)
                    }
                    _ => 0,
                },
            }),
        };
        prost::Message::encode_to_vec(&pb::MailboxResponse { result: Some(result) })
    }
}

impl TryFrom<pb::MailboxResponse> for Response {
    type Error = ProtoError;

    fn try_from(raw: pb::MailboxResponse) -> Result<Self, ProtoError> {
        use pb::mailbox_response::Result as R;
        Ok(match decode::required(raw.result, "MailboxResponse.result")? {
            R::Stored(stored) => {
                Self::Stored(ItemId(decode::fixed(&stored.item_id, "Stored.item_id")?))
            }
            R::Fetched(fetched) => {
                decode::count(fetched.items.len(), "Fetched.items", MAX_FETCH_ITEMS)?;
                let mut page = Fetched { more: fetched.more, ..Fetched::default() };
                for item in fetched.items {
                    check_envelope(&item.envelope, "Item.envelope")?;
                    let item = Item {
                        id: ItemId(decode::fixed(&item.id, "Item.id")?),
                        stored_at_ms: item.stored_at_ms,
                        envelope: item.envelope,
                    };
                    page.items_len += item.encoded_len();
                    page.items.push(item);
                }
                Self::Fetched(page)
            }
            R::Deleted(deleted) => Self::Deleted { count: deleted.count },
            R::Refused(refused) => Self::Refused(error_code(&refused)?),
        })
    }
}

#[cfg(test)]
mod tests;
