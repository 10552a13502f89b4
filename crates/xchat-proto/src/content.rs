//! The plaintext inside a ratchet message: one [`Content`] per message, with
//! its id, sending time, the conversation's vanishing timer, and a [`Body`].
//!
//! Every value here is valid once built: constructors check the limits, so
//! [`Content::encode`] cannot produce bytes that [`Content::decode`] refuses.
//! Types that hold what a user wrote (text, file names, SDP, ICE candidates)
//! print only their length in `Debug`; the file key is redacted.

mod call;
mod file;

use std::time::Duration;

use rand_core::CryptoRng;
use xchat_crypto::ratchet;
use zeroize::Zeroizing;

pub use call::{
    CALL_ID_BYTES, CallId, CallSignal, HangUpReason, IceCandidate, MAX_ICE_CANDIDATE_BYTES,
    MAX_SDP_BYTES, MAX_SDP_MID_BYTES, RejectReason, Sdp, Signal,
};
pub use file::{
    FILE_ID_BYTES, FileDescriptor, FileId, FileName, MAX_FILE_NAME_BYTES, MAX_MEDIA_TYPE_BYTES,
    MediaType,
};

use crate::decode::{self, ProtoError};
use crate::generated as pb;

/// Most bytes of an encoded [`Content`]: the ratchet's largest plaintext
/// ([`ratchet::MAX_PLAINTEXT_BYTES`]), which it must fit. Checked before
/// decoding.
pub const MAX_CONTENT_BYTES: usize = ratchet::MAX_PLAINTEXT_BYTES;
/// Bytes of a [`MessageId`].
pub const MESSAGE_ID_BYTES: usize = 16;
/// Most bytes of a text message's UTF-8 (64 KiB).
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Most message ids in one receipt. A receipt of this many ids is about
/// 18 KB encoded.
pub const MAX_RECEIPT_IDS: usize = 1000;
/// Most texts one ratchet message carries beside its first
/// ([`Content::encode_all`]): 64 in all.
pub const MAX_MORE_CONTENTS: usize = 63;
/// Shortest vanishing-message timer, in seconds.
pub const MIN_VANISHING_TIMER_SECS: u32 = 30;
/// Longest vanishing-message timer, in seconds (4 weeks).
pub const MAX_VANISHING_TIMER_SECS: u32 = 4 * 7 * 24 * 60 * 60;

// The largest valid content of each kind fits a ratchet message; the tests
// build each and check the bound itself.
const _: () = assert!(MAX_SDP_BYTES + 64 <= MAX_CONTENT_BYTES);
const _: () = assert!(MAX_TEXT_BYTES + 64 <= MAX_CONTENT_BYTES);
const _: () =
    assert!(MAX_RECEIPT_IDS * decode::delimited_len(MESSAGE_ID_BYTES) + 64 <= MAX_CONTENT_BYTES);

/// A message's id: 16 bytes, unique per message ([`MessageId::new`]);
/// receivers keep one copy per id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId([u8; MESSAGE_ID_BYTES]);

impl MessageId {
    /// A new id made at `now_ms` (milliseconds since the Unix epoch): the
    /// time's low 48 bits, big-endian, then 80 bits from `rng`. One
    /// device's ids sort in the order it made them, so a store's index of
    /// ids grows at its end rather than at a random place per message. The
    /// time is the content's `sent_at_ms`, which its reader sees anyway.
    pub fn new(now_ms: u64, rng: &mut impl CryptoRng) -> Self {
        let mut bytes = [0u8; MESSAGE_ID_BYTES];
        let (time, random) = bytes.split_at_mut(6);
        let [_, _, rest @ ..] = now_ms.to_be_bytes();
        time.copy_from_slice(&rest);
        rng.fill_bytes(random);
        Self(bytes)
    }

    /// Draws an id of 16 random bytes from `rng`.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        let mut bytes = [0u8; MESSAGE_ID_BYTES];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Wraps stored id bytes.
    pub const fn from_bytes(bytes: [u8; MESSAGE_ID_BYTES]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; MESSAGE_ID_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageId(")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// A conversation's vanishing-message timer: off, or a whole number of
/// seconds from [`MIN_VANISHING_TIMER_SECS`] to [`MAX_VANISHING_TIMER_SECS`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VanishingTimer(u32);

impl VanishingTimer {
    /// Messages do not vanish.
    pub const OFF: Self = Self(0);

    /// A timer of `secs` seconds; `0` is [`VanishingTimer::OFF`].
    ///
    /// # Errors
    /// [`ProtoError::OutOfRange`] for 1 to 29 seconds or more than 4 weeks.
    pub const fn from_secs(secs: u32) -> Result<Self, ProtoError> {
        Self::parse(secs, "vanishing timer")
    }

    /// A timer of `duration`, which must be whole seconds.
    ///
    /// # Errors
    /// [`ProtoError::Invalid`] for a fraction of a second,
    /// [`ProtoError::OutOfRange`] as [`VanishingTimer::from_secs`].
    pub fn after(duration: Duration) -> Result<Self, ProtoError> {
        const FIELD: &str = "vanishing timer";
        if duration.subsec_nanos() != 0 {
            return Err(ProtoError::Invalid { field: FIELD, reason: "not whole seconds" });
        }
        match u32::try_from(duration.as_secs()) {
            Ok(0) | Err(_) => Err(ProtoError::OutOfRange {
                field: FIELD,
                value: duration.as_secs(),
                min: MIN_VANISHING_TIMER_SECS as u64,
                max: MAX_VANISHING_TIMER_SECS as u64,
            }),
            Ok(secs) => Self::parse(secs, FIELD),
        }
    }

    const fn parse(secs: u32, field: &'static str) -> Result<Self, ProtoError> {
        if secs != 0 && (secs < MIN_VANISHING_TIMER_SECS || secs > MAX_VANISHING_TIMER_SECS) {
            return Err(ProtoError::OutOfRange {
                field,
                value: secs as u64,
                min: MIN_VANISHING_TIMER_SECS as u64,
                max: MAX_VANISHING_TIMER_SECS as u64,
            });
        }
        Ok(Self(secs))
    }

    /// Whether the timer is off.
    pub const fn is_off(&self) -> bool {
        self.0 == 0
    }

    /// How long a message lives, or `None` when the timer is off.
    pub const fn duration(&self) -> Option<Duration> {
        if self.0 == 0 { None } else { Some(Duration::from_secs(self.0 as u64)) }
    }

    /// The timer in seconds, `0` for off (its wire form).
    pub const fn as_secs(&self) -> u32 {
        self.0
    }
}

impl std::fmt::Debug for VanishingTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 0 {
            f.write_str("VanishingTimer(off)")
        } else {
            write!(f, "VanishingTimer({}s)", self.0)
        }
    }
}

/// The text of a message: UTF-8, 1 to [`MAX_TEXT_BYTES`] bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Text(String);

impl Text {
    /// Checks the length of `text`.
    ///
    /// # Errors
    /// [`ProtoError::MissingField`] when empty,
    /// [`ProtoError::LengthOutOfRange`] over [`MAX_TEXT_BYTES`].
    pub fn new(text: String) -> Result<Self, ProtoError> {
        decode::length(text.len(), "Text.text", 1, MAX_TEXT_BYTES)?;
        Ok(Self(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, by value.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for Text {
    type Error = ProtoError;

    fn try_from(text: String) -> Result<Self, ProtoError> {
        Self::new(text)
    }
}

impl TryFrom<&str> for Text {
    type Error = ProtoError;

    fn try_from(text: &str) -> Result<Self, ProtoError> {
        Self::new(text.to_owned())
    }
}

/// Redacts: never prints what a user wrote.
impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Text({} bytes)", self.0.len())
    }
}

/// What a receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptKind {
    /// The messages reached the recipient's device.
    Delivered,
    /// The recipient read the messages.
    Read,
}

/// A receipt for 1 to [`MAX_RECEIPT_IDS`] earlier messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt {
    kind: ReceiptKind,
    message_ids: Vec<MessageId>,
}

impl Receipt {
    /// A receipt of `kind` for `message_ids`.
    ///
    /// # Errors
    /// [`ProtoError::MissingField`] for no id, [`ProtoError::TooMany`] for
    /// more than [`MAX_RECEIPT_IDS`].
    pub fn new(kind: ReceiptKind, message_ids: Vec<MessageId>) -> Result<Self, ProtoError> {
        check_receipt_ids(message_ids.len())?;
        Ok(Self { kind, message_ids })
    }

    /// Delivered or read.
    pub fn kind(&self) -> ReceiptKind {
        self.kind
    }

    /// The messages it covers.
    pub fn message_ids(&self) -> &[MessageId] {
        &self.message_ids
    }
}

fn check_receipt_ids(count: usize) -> Result<(), ProtoError> {
    const FIELD: &str = "Receipt.message_ids";
    if count == 0 {
        return Err(ProtoError::MissingField { field: FIELD });
    }
    decode::count(count, FIELD, MAX_RECEIPT_IDS)
}

/// A typing indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Typing {
    /// The sender started typing.
    Started,
    /// The sender stopped typing.
    Stopped,
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A text message.
    Text(Text),
    /// A file offered to the recipient; its bytes travel separately.
    File(FileDescriptor),
    /// Delivered or read receipts for earlier messages.
    Receipt(Receipt),
    /// The conversation's vanishing timer changes to this, from this
    /// message's sending time on.
    TimerChange(VanishingTimer),
    /// A step of a call's signalling.
    Call(CallSignal),
    /// A typing indicator.
    Typing(Typing),
}

/// One message between two users' devices: the plaintext of a ratchet
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// The message's id, drawn by the sender.
    pub id: MessageId,
    /// When the sender sent it, by the sender's clock: milliseconds since the
    /// Unix epoch.
    pub sent_at_ms: u64,
    /// The conversation's vanishing timer as the sender sees it.
    pub timer: VanishingTimer,
    /// What it says.
    pub body: Body,
}

impl Content {
    /// Decodes the plaintext of a ratchet message.
    ///
    /// # Errors
    /// [`ProtoError::TooLarge`] over [`MAX_CONTENT_BYTES`] (before
    /// decoding), [`ProtoError::Malformed`], and a [`ProtoError`] naming the
    /// first field that breaks its rule.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let raw: pb::Content = decode::message(bytes, "Content", MAX_CONTENT_BYTES)?;
        if !raw.more.is_empty() {
            return Err(ProtoError::Invalid {
                field: "Content.more",
                reason: "several contents where one is expected",
            });
        }
        Self::try_from(raw)
    }

    /// Decodes the plaintext of a ratchet message into the one content it
    /// holds, or the texts it holds (the first, then its `more`), in order.
    ///
    /// # Errors
    /// As [`Content::decode`]; [`ProtoError::TooMany`] for more than
    /// [`MAX_MORE_CONTENTS`] after the first; [`ProtoError::Invalid`] for a
    /// `more` beside anything but a text, holding anything but texts, or
    /// nested.
    pub fn decode_all(bytes: &[u8]) -> Result<Vec<Self>, ProtoError> {
        let mut raw: pb::Content = decode::message(bytes, "Content", MAX_CONTENT_BYTES)?;
        let more = std::mem::take(&mut raw.more);
        if more.len() > MAX_MORE_CONTENTS {
            return Err(ProtoError::TooMany {
                field: "Content.more",
                count: more.len(),
                max: MAX_MORE_CONTENTS,
            });
        }
        let mut contents = Vec::with_capacity(1 + more.len());
        contents.push(Self::try_from(raw)?);
        for raw in more {
            if !raw.more.is_empty() {
                return Err(ProtoError::Invalid { field: "Content.more", reason: "nested" });
            }
            contents.push(Self::try_from(raw)?);
        }
        if contents.len() > 1 && contents.iter().any(|c| !matches!(c.body, Body::Text(_))) {
            return Err(ProtoError::Invalid { field: "Content.more", reason: "not only texts" });
        }
        Ok(contents)
    }

    /// Encodes several texts as the plaintext of one ratchet message: the
    /// first, carrying the others in its `more`. One content of any kind
    /// encodes as [`Content::encode`] does. Wiped on drop.
    ///
    /// # Errors
    /// [`ProtoError::MissingField`] for none; [`ProtoError::TooMany`] past
    /// [`MAX_MORE_CONTENTS`] after the first; [`ProtoError::Invalid`] when
    /// several hold anything but texts; [`ProtoError::TooLarge`] past
    /// [`MAX_CONTENT_BYTES`] in all.
    pub fn encode_all(contents: &[Self]) -> Result<Zeroizing<Vec<u8>>, ProtoError> {
        let Some((first, more)) = contents.split_first() else {
            return Err(ProtoError::MissingField { field: "Content" });
        };
        if more.len() > MAX_MORE_CONTENTS {
            return Err(ProtoError::TooMany {
                field: "Content.more",
                count: more.len(),
                max: MAX_MORE_CONTENTS,
            });
        }
        if !more.is_empty() && contents.iter().any(|c| !matches!(c.body, Body::Text(_))) {
            return Err(ProtoError::Invalid { field: "Content.more", reason: "not only texts" });
        }
        let mut message = first.to_proto();
        message.more = more.iter().map(Self::to_proto).collect();
        let bytes = Zeroizing::new(prost::Message::encode_to_vec(&message));
        // The texts' copies inside `message` are not wiped by prost; they
        // are dropped here, as `encode`'s are.
        drop(message);
        if bytes.len() > MAX_CONTENT_BYTES {
            return Err(ProtoError::TooLarge {
                message: "Content",
                len: bytes.len(),
                max: MAX_CONTENT_BYTES,
            });
        }
        Ok(bytes)
    }

    /// Encodes the message, to be encrypted by the ratchet. Wiped on drop:
    /// it holds the plaintext and, for a file, its key.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        // `encode_to_vec` allocates the exact length once, so no copy is left
        // behind by a reallocation.
        Zeroizing::new(prost::Message::encode_to_vec(&self.to_proto()))
    }

    fn to_proto(&self) -> pb::Content {
        use pb::content::Body as B;
        let body = match &self.body {
            Body::Text(text) => B::Text(pb::Text { text: text.0.clone() }),
            Body::File(file) => B::File(file.to_proto()),
            Body::Receipt(receipt) => B::Receipt(pb::Receipt {
                kind: match receipt.kind {
                    ReceiptKind::Delivered => pb::ReceiptKind::Delivered,
                    ReceiptKind::Read => pb::ReceiptKind::Read,
                }
                .into(),
                message_ids: receipt.message_ids.iter().map(|id| id.0.to_vec()).collect(),
            }),
            Body::TimerChange(timer) => B::TimerChange(pb::TimerChange { timer_seconds: timer.0 }),
            Body::Call(call) => B::Call(call.to_proto()),
            Body::Typing(typing) => B::Typing(pb::Typing {
                state: match typing {
                    Typing::Started => pb::TypingState::Started,
                    Typing::Stopped => pb::TypingState::Stopped,
                }
                .into(),
            }),
        };
        pb::Content {
            id: self.id.0.to_vec(),
            sent_at_ms: self.sent_at_ms,
            timer_seconds: self.timer.0,
            body: Some(body),
            more: Vec::new(),
        }
    }
}

impl TryFrom<pb::Content> for Content {
    type Error = ProtoError;

    fn try_from(raw: pb::Content) -> Result<Self, ProtoError> {
        use pb::content::Body as B;
        let id = MessageId(decode::fixed(&raw.id, "Content.id")?);
        let timer = VanishingTimer::parse(raw.timer_seconds, "Content.timer_seconds")?;
        let body = match decode::required(raw.body, "Content.body")? {
            B::Text(text) => Body::Text(Text::new(text.text)?),
            B::File(file) => Body::File(FileDescriptor::try_from(file)?),
            B::Receipt(receipt) => {
                let kind = match decode::enumeration(receipt.kind, "Receipt.kind")? {
                    pb::ReceiptKind::Delivered => ReceiptKind::Delivered,
                    pb::ReceiptKind::Read => ReceiptKind::Read,
                    pb::ReceiptKind::Unspecified => {
                        return Err(ProtoError::UnknownEnumValue {
                            field: "Receipt.kind",
                            value: receipt.kind,
                        });
                    }
                };
                check_receipt_ids(receipt.message_ids.len())?;
                let message_ids = receipt
                    .message_ids
                    .iter()
                    .map(|id| decode::fixed(id, "Receipt.message_ids").map(MessageId))
                    .collect::<Result<Vec<_>, _>>()?;
                Body::Receipt(Receipt { kind, message_ids })
            }
            B::TimerChange(change) => Body::TimerChange(VanishingTimer::parse(
                change.timer_seconds,
                "TimerChange.timer_seconds",
            )?),
            B::Call(call) => Body::Call(CallSignal::try_from(call)?),
            B::Typing(typing) => {
                Body::Typing(match decode::enumeration(typing.state, "Typing.state")? {
                    pb::TypingState::Started => Typing::Started,
                    pb::TypingState::Stopped => Typing::Stopped,
                    pb::TypingState::Unspecified => {
                        return Err(ProtoError::UnknownEnumValue {
                            field: "Typing.state",
                            value: typing.state,
                        });
                    }
                })
            }
        };
        Ok(Self { id, sent_at_ms: raw.sent_at_ms, timer, body })
    }
}

#[cfg(test)]
mod tests;
