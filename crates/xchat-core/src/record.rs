//! What the core asks the store to keep: the records of messages,
//! conversations, the outbox and settings. Cryptographic state (identity,
//! device, prekeys, sessions) travels as the opaque versioned records of
//! `xchat-crypto`; everything here is plain data the store maps to columns
//! and the UI queries.

use xchat_crypto::device::DeviceId;
use xchat_crypto::signature::VerifyingKey;
use xchat_proto::content::{CallId, FileId, MessageId, VanishingTimer};
use zeroize::Zeroizing;

use crate::contact::ContactId;
use crate::retry::Route;
use crate::time::UnixMillis;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The user sent it.
    Outgoing,
    /// The contact sent it.
    Incoming,
}

/// Where a message stands, as the user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Written, not yet taken by the network (no session yet, or in flight).
    Pending,
    /// Handed to the contact's device directly.
    Sent,
    /// Left in the contact's mailbox while they are offline.
    InMailbox,
    /// The contact's device confirmed it (an encrypted delivery receipt).
    Delivered,
    /// The contact read it (an encrypted read receipt, if they send them).
    Read,
    /// Given up, for the reason given.
    Failed(FailReason),
    /// An incoming message the user has not read.
    Unread,
    /// An incoming message the user has read.
    Seen,
}

/// Why a message was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// No device of the contact could be reached in `retry::GIVE_UP_AFTER`.
    Undeliverable,
    /// The contact publishes no prekey bundle: no session can start.
    NoSession,
}

/// One message of a conversation's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// The message's random id, the same on every device.
    pub id: MessageId,
    /// The conversation (one per contact).
    pub contact: ContactId,
    /// Who wrote it.
    pub direction: Direction,
    /// The sender's timestamp: history is ordered by it, ties by `id`.
    pub sent_at: UnixMillis,
    /// When this device wrote it down.
    pub received_at: UnixMillis,
    /// The text (for a file: its name; empty for a call).
    pub text: String,
    /// The file it offers, if it is a file's message ([`crate::transfer`]).
    pub file: Option<FileId>,
    /// The call it records, if it is a call's entry ([`crate::call`]).
    pub call: Option<CallEntry>,
    /// Its state.
    pub status: Status,
    /// The vanishing timer it was sent with.
    pub timer: VanishingTimer,
    /// When it disappears: set at send time for outgoing messages, at read
    /// time for incoming ones; `None` without a timer (or not read yet).
    pub expires_at: Option<UnixMillis>,
}

impl MessageRecord {
    /// The key history is ordered by: the sender's timestamp, then the id,
    /// so every device shows the same order.
    pub fn order_key(&self) -> (UnixMillis, [u8; 16]) {
        (self.sent_at, *self.id.as_bytes())
    }
}

/// A call, as the history shows it: written by this device, never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallEntry {
    /// The call.
    pub call_id: CallId,
    /// How it went.
    pub outcome: CallOutcome,
    /// Whether it was a video call (else audio only).
    pub video: bool,
}

/// How a call went, as far as the history tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// It rang here and nobody took it: the caller hung up first, or it
    /// rang for [`crate::call::RING_TIMEOUT`].
    Missed,
}

/// An incoming message not read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnreadRecord {
    /// The message.
    pub id: MessageId,
    /// Its conversation.
    pub contact: ContactId,
    /// Its vanishing timer, which starts when it is read.
    pub timer: VanishingTimer,
    /// Whether reading it sends the contact a read receipt: not for an
    /// entry this device wrote itself (a missed call).
    pub receipt: bool,
}

/// A conversation's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationRecord {
    /// The contact.
    pub contact: ContactId,
    /// The vanishing timer of new messages.
    pub timer: VanishingTimer,
}

/// The profile's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Whether this device tells contacts when the user read their messages.
    pub read_receipts: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self { read_receipts: true }
    }
}

/// An outbox entry's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboxId(pub u64);

/// What an outbox entry waits for before it leaves the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaits {
    /// A delivery receipt for `message` (user messages).
    Receipt,
    /// The network's acknowledgement (receipts themselves: nobody receipts
    /// a receipt).
    Transport,
}

/// One sealed envelope waiting for delivery to one device. The envelope is
/// encrypted once and the ratchet state that made it is written in the same
/// transaction, so every retry sends the very same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The entry's id.
    pub id: OutboxId,
    /// The message it carries (for a receipt: the receipt's own id); the
    /// first, when it carries several.
    pub message: MessageId,
    /// The further messages its envelope carries: texts sent to the device
    /// at once, in one ratchet message (`Content::encode_all`). Each leaves
    /// the entry with its own delivery receipt; the last takes the entry out.
    pub more: Vec<MessageId>,
    /// The recipient's identity.
    pub identity: VerifyingKey,
    /// The recipient device.
    pub device: DeviceId,
    /// The encoded `xchat_proto::envelope::Envelope`.
    pub envelope: Vec<u8>,
    /// What takes it out of the outbox.
    pub awaits: Awaits,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt_at: UnixMillis,
    /// When it was queued (to give up after `retry::GIVE_UP_AFTER`).
    pub queued_at: UnixMillis,
    /// Where it reached so far: `Some(Route::Mailbox)` once a mailbox holds it.
    pub reached: Option<Route>,
    /// When a mailbox last took it (it is stored again after
    /// `retry::MAILBOX_REFRESH`).
    pub mailbox_at: Option<UnixMillis>,
}

impl OutboxEntry {
    /// Every message its envelope carries, the first first.
    pub fn messages(&self) -> impl Iterator<Item = MessageId> + '_ {
        std::iter::once(self.message).chain(self.more.iter().copied())
    }

    /// Takes `message` out of those the entry waits for: `None` when it
    /// does not carry it, `Some(true)` when it was the last (the entry is
    /// done, and left as it was), `Some(false)` when others remain.
    pub(crate) fn take(&mut self, message: MessageId) -> Option<bool> {
        if let Some(at) = self.more.iter().position(|m| *m == message) {
            self.more.remove(at);
            return Some(false);
        }
        if self.message != message {
            return None;
        }
        if self.more.is_empty() {
            return Some(true);
        }
        self.message = self.more.remove(0);
        Some(false)
    }
}

/// A message waiting for a session with its contact (no device known yet):
/// its encoded content, to encrypt once a bundle arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The message.
    pub message: MessageId,
    /// The contact.
    pub contact: ContactId,
    /// The encoded `xchat_proto::content::Content` (plaintext: the store
    /// keeps it encrypted).
    pub content: Zeroizing<Vec<u8>>,
    /// What its envelopes will wait for in the outbox.
    pub awaits: Awaits,
}

/// A contact's device and the session with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// The contact's identity.
    pub identity: VerifyingKey,
    /// The device.
    pub device: DeviceId,
    /// The device's certificate (`DeviceCertificate::to_bytes`).
    pub certificate: Vec<u8>,
    /// The session (`ratchet::Session::to_record`), once there is one.
    pub session: Option<Zeroizing<Vec<u8>>>,
    /// Sessions it replaced, newest first (records too).
    pub archived: Vec<Zeroizing<Vec<u8>>>,
    /// Our initiation, sent with every message until the device answers.
    pub initiation: Option<Vec<u8>>,
    /// Ephemeral keys of the initiations accepted from the device.
    pub accepted_initiations: Vec<[u8; 32]>,
}
