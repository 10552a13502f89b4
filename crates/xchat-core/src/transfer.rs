//! File transfers: the bookkeeping of files whose encrypted bytes the
//! network layer moves.
//!
//! A file travels in two parts. Its descriptor (id, name, media type, size,
//! BLAKE3 hash and the random key of its encryption) is the body of an
//! ordinary message, so it gets the outbox, the retries, the receipts and
//! the vanishing timer of any text. Its bytes, encrypted chunk by chunk
//! under that key (`xchat_crypto::file`), go separately: the recipient's
//! node fetches them from the sender's device when the user accepts the
//! file, and tells the core how far it got.
//!
//! ```text
//! sender:    FileSent ─▶ Offered ─▶ (recipient fetches) ─▶ Complete
//! recipient: (descriptor arrives) Offered ─FileAccepted─▶ Accepted ─FileProgress─▶ Transferring
//!                 ─FileCompleted (hash verified by the node)─▶ Complete
//!                 ─FileFailed(reason)─▶ Failed(reason) ─FileAccepted─▶ Accepted (resumes)
//! ```
//!
//! Only the core's bookkeeping lives here: the node encrypts and hashes the
//! local file before `FileSent`, and it decrypts and verifies the hash of a
//! fetched one before `FileCompleted`.

use xchat_crypto::device::DeviceId;
use xchat_proto::content::{FileDescriptor, FileId, MessageId};

use crate::contact::ContactId;
use crate::record::Direction;
use crate::time::UnixMillis;

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferState {
    /// Offered in a message; nothing moved yet (for the recipient: not
    /// accepted yet).
    Offered,
    /// The recipient accepted it; its node is to fetch it.
    Accepted,
    /// Bytes are moving: `TransferRecord::chunks_done` says how far.
    Transferring,
    /// Every chunk arrived and the plaintext's hash matches the descriptor.
    Complete,
    /// Stopped, for the reason given; the recipient may accept it again.
    Failed(TransferFailure),
}

impl TransferState {
    /// Whether bytes may still move (offered, accepted or transferring).
    pub fn is_moving(self) -> bool {
        matches!(self, Self::Offered | Self::Accepted | Self::Transferring)
    }

    /// Whether the messenger follows it: every state but `Complete` (a
    /// failed download may be accepted again, and resumes).
    pub fn is_open(self) -> bool {
        self != Self::Complete
    }
}

/// Most open transfers ([`TransferState::is_open`]) the messenger follows
/// at once; an offer beyond it is kept in the history as failed
/// ([`TransferFailure::NoSpace`]) rather than followed.
pub const MAX_OPEN_TRANSFERS: usize = 10_000;

/// Why a transfer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferFailure {
    /// The sender's device could not be reached, or stopped answering.
    Unreachable,
    /// The bytes did not decrypt or their hash does not match the
    /// descriptor's: the sender's copy, or what the network carried, is not
    /// the file that was offered.
    Corrupt,
    /// The user cancelled it.
    Cancelled,
    /// The disk is full, or the file is larger than what the user allows.
    NoSpace,
}

/// One file offered in a conversation, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    /// What the file is, with the key that decrypts it.
    pub descriptor: FileDescriptor,
    /// The message that offered it (in the history; its text is the name).
    pub message: MessageId,
    /// The conversation.
    pub contact: ContactId,
    /// Sent by the user, or received.
    pub direction: Direction,
    /// For a received file, the contact's device that offered it (and holds
    /// the bytes).
    pub source: Option<DeviceId>,
    /// Where it stands.
    pub state: TransferState,
    /// Chunks moved and verified so far (for a resumed transfer, the next
    /// chunk to fetch).
    pub chunks_done: u64,
    /// When the state last changed.
    pub updated_at: UnixMillis,
}

impl TransferRecord {
    /// The file's id.
    pub fn file(&self) -> FileId {
        self.descriptor.id()
    }

    /// How many chunks the file has.
    pub fn chunk_count(&self) -> u64 {
        xchat_crypto::file::ChunkCipher::chunk_count(self.descriptor.size()).unwrap_or(u64::MAX)
    }
}
