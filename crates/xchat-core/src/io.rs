//! The core's interface: the [`Input`]s it is told (events, in the past
//! tense) and the [`Effect`]s it asks for (commands).
//!
//! The node carries out the effects of one input in order, with one rule
//! that makes "no message lost" true across crashes: every [`Effect::Write`]
//! of an input is committed in one store transaction **before** any
//! [`Effect::Send`] or [`Effect::Notify`] of that input is carried out.

use xchat_crypto::address::Address;
use xchat_crypto::device::DeviceId;
use xchat_crypto::signature::{SigningKey, VerifyingKey};
use xchat_proto::content::{CallId, CallSignal, FileDescriptor, FileId, MessageId, VanishingTimer};
use xchat_proto::mailbox::ItemId;
use zeroize::Zeroizing;

use crate::contact::{Added, Contact, ContactError, ContactId};
use crate::record::{
    ConversationRecord, MessageRecord, OutboxEntry, OutboxId, PeerRecord, Settings, Status, Waiting,
};
use crate::retry::Route;
use crate::transfer::{TransferFailure, TransferRecord, TransferState};

/// Something that happened, told to the core.
#[derive(Debug)]
pub enum Input {
    /// The user added `address` under `name` (or a new address for a known name).
    ContactAdded {
        /// The name the user chose.
        name: String,
        /// The contact's address.
        address: Address,
    },
    /// The user compared safety numbers with the contact and marked it verified.
    ContactVerified {
        /// The contact.
        contact: ContactId,
    },
    /// The user acknowledged a contact's key change without verifying.
    KeyChangeAcknowledged {
        /// The contact.
        contact: ContactId,
    },
    /// The user sent a text.
    TextSent {
        /// To whom.
        contact: ContactId,
        /// What.
        text: String,
    },
    /// The user's call sent a signal (offer, answer, ICE candidate, hang-up
    /// or decline) to a contact: it goes live to each of the contact's
    /// devices, never into the history (see `crate::call`).
    CallSignalSent {
        /// To whom.
        contact: ContactId,
        /// What.
        signal: CallSignal,
    },
    /// The user sent a file: the node encrypted it under the descriptor's
    /// key into its own copy and hashed it; the core offers it.
    FileSent {
        /// To whom.
        contact: ContactId,
        /// What.
        descriptor: FileDescriptor,
    },
    /// The user accepted an offered file (or asked again after a failure):
    /// the node is to fetch it.
    FileAccepted {
        /// The file.
        file: FileId,
    },
    /// The user cancelled a transfer.
    FileCancelled {
        /// The file.
        file: FileId,
    },
    /// The network moved (and, for a download, verified) chunks of a file.
    FileProgress {
        /// The file.
        file: FileId,
        /// Chunks done so far.
        chunks_done: u64,
    },
    /// A download finished and its hash matches the descriptor's, or every
    /// chunk of an upload was served.
    FileCompleted {
        /// The file.
        file: FileId,
    },
    /// A transfer stopped.
    FileFailed {
        /// The file.
        file: FileId,
        /// Why.
        reason: TransferFailure,
    },
    /// The user read these incoming messages.
    MessagesRead {
        /// The conversation.
        contact: ContactId,
        /// The messages read.
        ids: Vec<MessageId>,
    },
    /// The user set the conversation's vanishing timer.
    TimerSet {
        /// The conversation.
        contact: ContactId,
        /// The new timer (or off).
        timer: VanishingTimer,
    },
    /// The user turned read receipts on or off.
    ReadReceiptsSet {
        /// Whether to send them.
        enabled: bool,
    },
    /// The network fetched a contact's prekey bundles (one per device), as
    /// encoded `xchat_proto::bundle::PreKeyRecord`s; the core verifies them.
    BundlesFetched {
        /// Whose bundles were asked for.
        identity: VerifyingKey,
        /// What came back (possibly nothing).
        records: Vec<Vec<u8>>,
    },
    /// An envelope arrived (directly, or from our mailbox): an encoded
    /// `xchat_proto::envelope::Envelope`, untrusted.
    EnvelopeReceived {
        /// The bytes.
        envelope: Vec<u8>,
    },
    /// The network delivered an outbox entry's envelope by `route`.
    SendAcknowledged {
        /// The entry.
        entry: OutboxId,
        /// Where it went.
        route: Route,
    },
    /// The network could not deliver an outbox entry's envelope.
    SendFailed {
        /// The entry.
        entry: OutboxId,
        /// The route that failed: only a failed direct send says the
        /// device is not reachable directly (a mailbox failure says
        /// something about the mailbox nodes only).
        route: Route,
    },
    /// The network fetched this device's mailbox of `epoch` (asked by
    /// `Effect::FetchMailbox`): each item is an envelope, untrusted, with
    /// the mailbox's id for it.
    MailboxFetched {
        /// The mailbox's epoch.
        epoch: u64,
        /// What it held.
        items: Vec<(ItemId, Vec<u8>)>,
    },
    /// A contact's device became reachable directly, or stopped being.
    DeviceReachable {
        /// The contact's identity.
        identity: VerifyingKey,
        /// The device.
        device: DeviceId,
        /// Whether it can be reached now.
        reachable: bool,
    },
    /// Time passed: deadlines up to `now` are due (see `Messenger::next_deadline`).
    TimePassed,
}

/// Something the core asks the node to do.
#[derive(Debug)]
pub enum Effect {
    /// Keep this (all writes of one input in one transaction, first).
    Write(Write),
    /// Send an outbox entry's envelope (after the writes are committed).
    Send(Send),
    /// Look up a contact's prekey bundles; answer with `Input::BundlesFetched`.
    FetchBundles {
        /// Whose.
        identity: VerifyingKey,
    },
    /// Publish this device's prekeys (an encoded `PreKeyRecord`).
    PublishPreKeys {
        /// The record.
        record: Vec<u8>,
    },
    /// Fetch a file's encrypted chunks from the device that offered it,
    /// from `from_chunk` on, decrypt them and check the hash; answer with
    /// `FileProgress`, then `FileCompleted` or `FileFailed`.
    FetchFile(Box<FetchFile>),
    /// Fetch what this device's mailboxes of these epochs hold (signing the
    /// requests with each epoch's key); answer with `Input::MailboxFetched`
    /// per epoch.
    FetchMailbox(Vec<MailboxKey>),
    /// Delete these items from this device's mailbox of `key`'s epoch: their
    /// envelopes were processed, and what they caused is committed.
    DeleteFromMailbox {
        /// The mailbox's key.
        key: MailboxKey,
        /// The items.
        items: Vec<ItemId>,
    },
    /// Delete the node's copy of a file (its message vanished).
    DeleteFile {
        /// The file.
        file: FileId,
    },
    /// Tell the user (the UI, the CLI).
    Notify(Event),
    /// The answer to a user's command input (exactly one per command).
    Answer(Result<Done, CommandError>),
}

/// One envelope to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    /// The outbox entry; report the outcome with its id.
    pub entry: OutboxId,
    /// The recipient's identity.
    pub identity: VerifyingKey,
    /// The recipient device.
    pub device: DeviceId,
    /// Direct, or to the recipient's mailbox.
    pub route: Route,
    /// For `Route::Mailbox`: the recipient device's mailbox key of the
    /// current epoch, where the envelope is to be stored.
    pub mailbox: Option<VerifyingKey>,
    /// The encoded envelope.
    pub envelope: Vec<u8>,
}

/// The secret of this device's mailbox key for one epoch
/// (`xchat_crypto::mailbox`), to sign fetch and delete requests.
#[derive(Debug)]
pub struct MailboxKey {
    /// The epoch.
    pub epoch: u64,
    /// The key's secret.
    pub key: SigningKey,
}

/// A file to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFile {
    /// What the file is, with its key and hash.
    pub descriptor: FileDescriptor,
    /// Who offered it.
    pub identity: VerifyingKey,
    /// The device that offered it, which holds the bytes.
    pub device: DeviceId,
    /// The first chunk still missing.
    pub from_chunk: u64,
}

/// A record to keep or remove.
#[derive(Debug)]
pub enum Write {
    /// This device's prekeys (an `xchat_crypto` record).
    PreKeys(Zeroizing<Vec<u8>>),
    /// A contact, new or changed.
    Contact(Contact),
    /// A contact's device and the session with it, new or changed.
    Peer(PeerRecord),
    /// A message of the history, new.
    Message(MessageRecord),
    /// A message's new status.
    Status {
        /// The message.
        id: MessageId,
        /// Its status.
        status: Status,
    },
    /// A message's disappearance time (its timer started).
    Expiry {
        /// The message.
        id: MessageId,
        /// When it goes.
        expires_at: crate::time::UnixMillis,
    },
    /// An envelope that carried a text was processed: remember its hash,
    /// to acknowledge a retry of it again (the ratchet will not decrypt it
    /// twice), also after a restart.
    SeenEnvelope {
        /// SHA-256 of the envelope's bytes.
        hash: [u8; 32],
        /// The conversation.
        contact: ContactId,
        /// The text it carried.
        message: MessageId,
    },
    /// Remove a message (it vanished), securely.
    DeleteMessage(MessageId),
    /// A conversation's settings.
    Conversation(ConversationRecord),
    /// A message waiting for a session.
    Waiting(Waiting),
    /// A waiting message left for the outbox.
    DeleteWaiting(MessageId),
    /// An outbox entry, new or updated.
    Outbox(OutboxEntry),
    /// Remove an outbox entry.
    DeleteOutbox(OutboxId),
    /// The profile's settings.
    Settings(Settings),
    /// A file transfer, new or changed.
    Transfer(Box<TransferRecord>),
    /// Remove a file transfer (its message vanished).
    DeleteTransfer(FileId),
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// A contact was added or changed.
    Contact(Added),
    /// A message was written and queued.
    MessageQueued(MessageId),
    /// A file's message was written and queued.
    FileQueued {
        /// The message that offers it.
        message: MessageId,
        /// The file.
        file: FileId,
    },
    /// The command took effect.
    Ok,
}

/// Why a user's command was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A contact-book rule.
    #[error(transparent)]
    Contact(#[from] ContactError),
    /// The text is empty or too long.
    #[error("a message has 1 to {max} bytes of text")]
    InvalidText {
        /// The longest text allowed.
        max: usize,
    },
    /// Too many call signals in flight at once.
    #[error("too many call signals in flight (at most {max})")]
    TooManyCallSignals {
        /// The limit.
        max: usize,
    },
    /// The user's own address.
    #[error("that is your own address")]
    OwnAddress,
    /// No transfer with this id.
    #[error("no such file")]
    UnknownFile,
    /// The transfer cannot do that in its state (accepting a file that is
    /// complete, or one the user sent).
    #[error("the file transfer is {0:?}")]
    TransferState(TransferState),
    /// Too many transfers at once.
    #[error("too many file transfers at once (at most {max})")]
    TooManyTransfers {
        /// The limit.
        max: usize,
    },
}

/// Something to show the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message arrived.
    MessageReceived(MessageRecord),
    /// A message's status changed.
    StatusChanged {
        /// The message.
        id: MessageId,
        /// The conversation.
        contact: ContactId,
        /// Its status.
        status: Status,
    },
    /// A file transfer changed.
    TransferChanged {
        /// The file.
        file: FileId,
        /// The conversation.
        contact: ContactId,
        /// Where it stands.
        state: TransferState,
        /// Chunks done.
        chunks_done: u64,
    },
    /// A message vanished (its timer ran out).
    MessageExpired {
        /// The message.
        id: MessageId,
    },
    /// A contact set the conversation's vanishing timer.
    TimerChanged {
        /// The conversation.
        contact: ContactId,
        /// The timer.
        timer: VanishingTimer,
    },
    /// A contact's key changed (`Input::ContactAdded` with a new address).
    ContactKeyChanged {
        /// The contact.
        contact: ContactId,
    },
    /// A contact's call sent a signal. `verified` and `key_changed` say how
    /// far the caller's identity is trusted: a call is only as private as
    /// the identity that the DTLS fingerprints in its SDP are bound to, so
    /// the UI warns unless the contact is verified and its key unchanged.
    CallSignal {
        /// The conversation.
        contact: ContactId,
        /// The contact's device that sent it (an answer from one device
        /// ends the ringing on the others).
        device: DeviceId,
        /// The signal.
        signal: CallSignal,
        /// Whether the user verified the contact's safety number.
        verified: bool,
        /// Whether the contact's key changed and the change was not
        /// acknowledged.
        key_changed: bool,
    },
    /// An incoming call was not taken: the caller hung up before the user
    /// answered, or it rang for `call::RING_TIMEOUT`. Not kept in the
    /// history (see `crate::call`).
    CallMissed {
        /// The conversation.
        contact: ContactId,
        /// The call.
        call_id: CallId,
        /// When the offer arrived.
        at: crate::time::UnixMillis,
    },
    /// A call signal of the user's could not be given to any device of the
    /// contact within `call::CALL_SIGNAL_TTL`, and was dropped.
    CallSignalFailed {
        /// The conversation.
        contact: ContactId,
        /// The call.
        call_id: CallId,
    },
    /// Something a peer sent was refused (see [`Refusal`]); counted.
    Refused(Refusal),
    /// A contact sent something this version does not handle yet (typing);
    /// shown, never dropped silently.
    Unsupported {
        /// The conversation.
        contact: ContactId,
        /// What it was.
        what: &'static str,
    },
}

/// Why something a peer sent was refused. Each is counted; none stops the
/// messenger. Most are a peer's (or an attacker's) fault; `Duplicate` is the
/// normal trace of a retry whose first copy arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// The bytes do not decode.
    Malformed,
    /// The envelope or message does not decrypt (tampered, not for us, or a
    /// replay of an envelope already processed).
    Undecryptable,
    /// From an identity that is not a contact.
    UnknownSender,
    /// From a device its identity revoked.
    RevokedDevice,
    /// A message id already in the history (a retry): acknowledged again,
    /// not shown twice.
    Duplicate,
    /// A bundle or certificate that does not verify, or names another identity.
    InvalidBundle,
}
