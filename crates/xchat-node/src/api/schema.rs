//! The JSON forms of what the API takes and gives. Ids are lowercase hex,
//! times milliseconds since the Unix epoch. These shapes are the contract
//! the CLI and the web UI are written against: `docs/openapi.json` is
//! generated from them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xchat_core::contact::{Added, Contact, ContactId};
use xchat_core::io::Event;
use xchat_core::record::{CallOutcome, Direction, MessageRecord, Status};
use xchat_core::transfer::{TransferRecord, TransferState};
use xchat_proto::content::{
    CALL_ID_BYTES, CallId, CallSignal, FILE_ID_BYTES, FileId, HangUpReason, IceCandidate,
    MAX_ICE_CANDIDATE_BYTES, MAX_SDP_BYTES, MAX_SDP_MID_BYTES, MESSAGE_ID_BYTES, MessageId,
    RejectReason, Sdp, Signal, VanishingTimer,
};

use super::problem::Problem;

/// This profile and device.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Identity)]
pub struct IdentityJson {
    /// The profile's address (`xchat1...`), to give to contacts.
    pub address: String,
    /// This device's id.
    pub device: String,
    /// The libp2p peer id the node uses on the network.
    pub peer_id: String,
}

/// A contact.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Contact)]
pub struct ContactJson {
    /// The contact's id.
    pub id: String,
    /// The name the user gave.
    pub name: String,
    /// The contact's address.
    pub address: String,
    /// The user compared safety numbers and marked the contact verified.
    pub verified: bool,
    /// The contact's key changed and the user has not acknowledged it:
    /// nothing is sent to them until then.
    pub key_changed: bool,
}

impl From<&Contact> for ContactJson {
    fn from(contact: &Contact) -> Self {
        Self {
            id: hex::encode(contact.id.0),
            name: contact.name.clone(),
            address: contact.address().to_string(),
            verified: contact.verified,
            key_changed: contact.unacknowledged_change.is_some(),
        }
    }
}

/// `POST /api/v1/contacts`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    /// The name to show (1 to 64 bytes, no control characters).
    pub name: String,
    /// The contact's address (`xchat1...`).
    pub address: String,
}

/// What adding a contact did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new contact.
    New,
    /// That name already had that address: nothing changed.
    Unchanged,
    /// That name had another address: the key changed, and sending is
    /// blocked until the user acknowledges it.
    KeyChanged,
}

/// `POST /api/v1/contacts`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactAdded {
    /// The contact's id.
    pub id: String,
    /// What happened.
    pub outcome: Outcome,
}

impl From<Added> for ContactAdded {
    fn from(added: Added) -> Self {
        let (id, outcome) = match added {
            Added::New(id) => (id, Outcome::New),
            Added::Unchanged(id) => (id, Outcome::Unchanged),
            Added::KeyChanged(id) => (id, Outcome::KeyChanged),
        };
        Self { id: hex::encode(id.0), outcome }
    }
}

/// A contact's safety number, to compare with theirs.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SafetyNumber)]
pub struct SafetyNumberJson {
    /// All 60 digits.
    pub digits: String,
    /// The digits in 12 groups of 5, as shown.
    pub groups: Vec<String>,
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Direction)]
pub enum DirectionJson {
    /// From the contact.
    In,
    /// From the user.
    Out,
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Status)]
pub enum StatusJson {
    /// Outgoing, not yet taken by the network.
    Pending,
    /// Outgoing, handed to the contact's device.
    Sent,
    /// Outgoing, left in the contact's mailbox.
    InMailbox,
    /// Outgoing, the contact's device confirmed it.
    Delivered,
    /// Outgoing, the contact read it.
    Read,
    /// Outgoing, given up.
    Failed,
    /// Incoming, not read yet.
    Unread,
    /// Incoming, read.
    Seen,
}

impl From<Status> for StatusJson {
    fn from(status: Status) -> Self {
        match status {
            Status::Pending => Self::Pending,
            Status::Sent => Self::Sent,
            Status::InMailbox => Self::InMailbox,
            Status::Delivered => Self::Delivered,
            Status::Read => Self::Read,
            Status::Failed(_) => Self::Failed,
            Status::Unread => Self::Unread,
            Status::Seen => Self::Seen,
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    /// The message's id (the same on both sides).
    pub id: String,
    /// The conversation's contact id.
    pub contact: String,
    /// Which way it went.
    pub direction: DirectionJson,
    /// The sender's clock when it was sent.
    pub sent_at: u64,
    /// When this device wrote it down.
    pub received_at: u64,
    /// The text (for a file: its name; empty for a call).
    pub text: String,
    /// The file it offers, if any.
    pub file: Option<String>,
    /// The call it records, if it is a call's entry (written by this node,
    /// never sent: a missed call, say).
    pub call: Option<CallEntryJson>,
    /// Where it stands.
    pub status: StatusJson,
    /// When it vanishes, if its timer runs.
    pub expires_at: Option<u64>,
}

/// A call as the history shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CallEntry)]
pub struct CallEntryJson {
    /// The call's id (32 hex digits), as in its `call_signal` events.
    pub call_id: String,
    /// How it went.
    pub outcome: CallOutcomeJson,
    /// Whether it was a video call (else audio only).
    pub video: bool,
}

/// How a call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = CallOutcome)]
pub enum CallOutcomeJson {
    /// It rang here and nobody took it.
    Missed,
}

impl From<&MessageRecord> for Message {
    fn from(message: &MessageRecord) -> Self {
        Self {
            id: hex::encode(message.id.as_bytes()),
            contact: hex::encode(message.contact.0),
            direction: match message.direction {
                Direction::Incoming => DirectionJson::In,
                Direction::Outgoing => DirectionJson::Out,
            },
            sent_at: message.sent_at.0,
            received_at: message.received_at.0,
            text: message.text.clone(),
            file: message.file.map(|file| hex::encode(file.as_bytes())),
            call: message.call.map(|call| CallEntryJson {
                call_id: hex::encode(call.call_id.as_bytes()),
                outcome: match call.outcome {
                    CallOutcome::Missed => CallOutcomeJson::Missed,
                },
                video: call.video,
            }),
            status: message.status.into(),
            expires_at: message.expires_at.map(|at| at.0),
        }
    }
}

/// A conversation (one per contact).
#[derive(Debug, Serialize, ToSchema)]
pub struct Conversation {
    /// The contact's id.
    pub contact: String,
    /// The contact's name.
    pub name: String,
    /// Incoming messages not read yet.
    pub unread: u64,
    /// The vanishing timer of new messages, in seconds; null when off.
    pub timer_seconds: Option<u32>,
    /// The newest message, if any.
    pub last: Option<Message>,
}

/// `POST .../messages`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// The text: 1 to 65536 bytes of UTF-8.
    pub text: String,
}

/// `POST .../messages`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageQueued {
    /// The new message's id.
    pub id: String,
}

/// `PUT .../timer`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Timer)]
pub struct TimerJson {
    /// Seconds until a message vanishes (30 s to 4 weeks), 0 for off.
    pub seconds: u32,
}

/// `POST .../call`'s body: one step of a call's signalling.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewCallSignal)]
pub struct NewCallSignal {
    /// The call's id: 32 lowercase hex digits, drawn by the caller.
    pub call_id: String,
    /// The step.
    pub signal: SignalJson,
}

/// One step of a call's signalling, as the browser's WebRTC makes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = Signal)]
pub enum SignalJson {
    /// The caller's SDP offer (1 to 65536 bytes).
    Offer {
        /// The SDP.
        sdp: String,
    },
    /// The callee's SDP answer (1 to 65536 bytes).
    Answer {
        /// The SDP.
        sdp: String,
    },
    /// An ICE candidate (`RTCIceCandidateInit`); an empty candidate ends them.
    IceCandidate {
        /// The candidate line, at most 1024 bytes.
        candidate: String,
        /// The media stream's tag, 1 to 64 bytes.
        #[serde(default)]
        sdp_mid: Option<String>,
        /// The media description's index.
        #[serde(default)]
        sdp_m_line_index: Option<u16>,
    },
    /// Either side ended the call.
    HangUp {
        /// Why.
        reason: HangUpReasonJson,
    },
    /// The callee did not take the call.
    Reject {
        /// Why.
        reason: RejectReasonJson,
    },
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = HangUpReason)]
pub enum HangUpReasonJson {
    /// The user ended it.
    Normal,
    /// The connection failed or was lost.
    ConnectionFailed,
    /// Nobody answered in time.
    NoAnswer,
    /// Another device of the callee answered.
    AnsweredElsewhere,
}

/// Why a call was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = RejectReason)]
pub enum RejectReasonJson {
    /// The callee is in another call.
    Busy,
    /// The callee declined.
    Declined,
}

impl SignalJson {
    /// The validated signal.
    ///
    /// # Errors
    /// 400 `invalid_sdp` or `invalid_ice_candidate`, naming the limit.
    pub fn to_signal(&self) -> Result<Signal, Problem> {
        let invalid_sdp = || {
            Problem::bad_request("invalid_sdp", format!("an SDP has 1 to {MAX_SDP_BYTES} bytes"))
        };
        Ok(match self {
            Self::Offer { sdp } => Signal::Offer(Sdp::new(sdp.clone()).map_err(|_| invalid_sdp())?),
            Self::Answer { sdp } => {
                Signal::Answer(Sdp::new(sdp.clone()).map_err(|_| invalid_sdp())?)
            }
            Self::IceCandidate { candidate, sdp_mid, sdp_m_line_index } => Signal::IceCandidate(
                IceCandidate::new(candidate.clone(), sdp_mid.clone(), *sdp_m_line_index).map_err(
                    |_| {
                        Problem::bad_request(
                            "invalid_ice_candidate",
                            format!(
                                "a candidate has at most {MAX_ICE_CANDIDATE_BYTES} bytes, \
                                     its sdp_mid 1 to {MAX_SDP_MID_BYTES}"
                            ),
                        )
                    },
                )?,
            ),
            Self::HangUp { reason } => Signal::HangUp(match reason {
                HangUpReasonJson::Normal => HangUpReason::Normal,
                HangUpReasonJson::ConnectionFailed => HangUpReason::ConnectionFailed,
                HangUpReasonJson::NoAnswer => HangUpReason::NoAnswer,
                HangUpReasonJson::AnsweredElsewhere => HangUpReason::AnsweredElsewhere,
            }),
            Self::Reject { reason } => Signal::Reject(match reason {
                RejectReasonJson::Busy => RejectReason::Busy,
                RejectReasonJson::Declined => RejectReason::Declined,
            }),
        })
    }
}

impl From<&Signal> for SignalJson {
    fn from(signal: &Signal) -> Self {
        match signal {
            Signal::Offer(sdp) => Self::Offer { sdp: sdp.as_str().to_owned() },
            Signal::Answer(sdp) => Self::Answer { sdp: sdp.as_str().to_owned() },
            Signal::IceCandidate(ice) => Self::IceCandidate {
                candidate: ice.candidate().to_owned(),
                sdp_mid: ice.sdp_mid().map(str::to_owned),
                sdp_m_line_index: ice.sdp_m_line_index(),
            },
            Signal::HangUp(reason) => Self::HangUp {
                reason: match reason {
                    HangUpReason::Normal => HangUpReasonJson::Normal,
                    HangUpReason::ConnectionFailed => HangUpReasonJson::ConnectionFailed,
                    HangUpReason::NoAnswer => HangUpReasonJson::NoAnswer,
                    HangUpReason::AnsweredElsewhere => HangUpReasonJson::AnsweredElsewhere,
                },
            },
            Signal::Reject(reason) => Self::Reject {
                reason: match reason {
                    RejectReason::Busy => RejectReasonJson::Busy,
                    RejectReason::Declined => RejectReasonJson::Declined,
                },
            },
        }
    }
}

/// Parses a call id.
///
/// # Errors
/// 400 `invalid_call_id`.
pub fn call_id(text: &str) -> Result<CallId, Problem> {
    parse_id(text).map(CallId::from_bytes).map_err(|_| {
        Problem::bad_request("invalid_call_id", "a call id is 32 lowercase hex digits")
    })
}

// Call ids are as long as message ids: the same parser.
const _: () = assert!(CALL_ID_BYTES == MESSAGE_ID_BYTES);

impl NewCallSignal {
    /// The validated signal.
    ///
    /// # Errors
    /// 400 `invalid_call_id`, `invalid_sdp` or `invalid_ice_candidate`.
    pub fn to_call_signal(&self) -> Result<CallSignal, Problem> {
        Ok(CallSignal { call_id: call_id(&self.call_id)?, signal: self.signal.to_signal()? })
    }
}

/// `POST .../read`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReadMessages)]
pub struct ReadJson {
    /// The incoming messages the user read (at most 1000).
    pub ids: Vec<String>,
}

/// `GET .../messages`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Most messages returned: 1 to 1000, 50 by default.
    pub limit: Option<u32>,
    /// Only messages older than this message (its id): the next page.
    pub before: Option<String>,
}

/// A file transfer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = TransferState)]
pub enum TransferStateJson {
    /// Offered; nothing moved yet.
    Offered,
    /// Accepted; the node is to fetch it.
    Accepted,
    /// Bytes are moving.
    Transferring,
    /// Every chunk arrived and verified.
    Complete,
    /// Stopped; it may be accepted again.
    Failed,
}

impl From<TransferState> for TransferStateJson {
    fn from(state: TransferState) -> Self {
        match state {
            TransferState::Offered => Self::Offered,
            TransferState::Accepted => Self::Accepted,
            TransferState::Transferring => Self::Transferring,
            TransferState::Complete => Self::Complete,
            TransferState::Failed(_) => Self::Failed,
        }
    }
}

/// One file offered in a conversation, and how far it moved.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Transfer)]
pub struct TransferJson {
    /// The file's id.
    pub file: String,
    /// The message that offered it.
    pub message: String,
    /// Sent by the user (`out`) or received (`in`).
    pub direction: DirectionJson,
    /// Its name, as the sender gave it (no path separators, no control
    /// characters, no `..`).
    pub name: String,
    /// Its media type (`type/subtype`).
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where it stands.
    pub state: TransferStateJson,
    /// Chunks (64 KiB) moved and verified so far.
    pub chunks_done: u64,
    /// Chunks in the whole file.
    pub chunks_total: u64,
}

impl From<&TransferRecord> for TransferJson {
    fn from(transfer: &TransferRecord) -> Self {
        let descriptor = &transfer.descriptor;
        Self {
            file: hex::encode(transfer.file().as_bytes()),
            message: hex::encode(transfer.message.as_bytes()),
            direction: match transfer.direction {
                Direction::Incoming => DirectionJson::In,
                Direction::Outgoing => DirectionJson::Out,
            },
            name: descriptor.name().as_str().to_owned(),
            media_type: descriptor.media_type().as_str().to_owned(),
            size: descriptor.size(),
            state: transfer.state.into(),
            chunks_done: transfer.chunks_done,
            chunks_total: transfer.chunk_count(),
        }
    }
}

/// `POST .../files`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name as the contact will see it: 1 to 255 bytes, no `/`,
    /// `\`, `..`, control or bidirectional characters.
    pub name: String,
}

/// A file's raw bytes, as a request or answer body (never JSON).
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct FileBytes(pub Vec<u8>);

/// `POST .../files`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileQueued {
    /// The message that offers the file.
    pub message: String,
    /// The file's id.
    pub file: String,
}

/// `POST /api/v1/backup`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBackup {
    /// Where to write it: an absolute path that does not exist yet, in a
    /// directory that does.
    pub path: String,
}

/// `POST /api/v1/backup`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupWritten {
    /// Where it was written.
    pub path: String,
    /// Contacts in it.
    pub contacts: u64,
    /// Messages of the history in it.
    pub messages: u64,
    /// Vanishing messages left out.
    pub vanishing_left_out: u64,
    /// Bytes of the database image (before encryption).
    pub image_bytes: u64,
}

/// One event on `/api/v1/events`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[schema(as = Event)]
pub enum EventJson {
    /// A message arrived.
    MessageReceived {
        /// The message.
        message: Message,
    },
    /// A message's status changed.
    StatusChanged {
        /// The message's id.
        id: String,
        /// The conversation's contact id.
        contact: String,
        /// The new status.
        status: StatusJson,
    },
    /// A message vanished.
    MessageExpired {
        /// The message's id.
        id: String,
    },
    /// The contact set the conversation's vanishing timer.
    TimerChanged {
        /// The conversation's contact id.
        contact: String,
        /// The timer in seconds; null when off.
        timer_seconds: Option<u32>,
    },
    /// The contact's key changed: compare safety numbers again.
    ContactKeyChanged {
        /// The contact's id.
        contact: String,
    },
    /// A file transfer changed.
    TransferChanged {
        /// The file's id.
        file: String,
        /// The conversation's contact id.
        contact: String,
        /// Where it stands.
        state: TransferStateJson,
        /// Chunks done so far.
        chunks_done: u64,
    },
    /// The contact's call sent a signal. Warn unless `verified` is true
    /// and `key_changed` false: the call's encryption keys are bound to
    /// the contact's identity, which the user has not checked.
    CallSignal {
        /// The conversation's contact id.
        contact: String,
        /// The contact's device that sent it.
        device: String,
        /// The call's id.
        call_id: String,
        /// The step.
        signal: SignalJson,
        /// The user verified the contact's safety number.
        verified: bool,
        /// The contact's key changed and the user has not acknowledged it.
        key_changed: bool,
    },
    /// An incoming call was not taken (the caller hung up first, or it
    /// rang out). Not kept in the history: show it from this event.
    CallMissed {
        /// The conversation's contact id.
        contact: String,
        /// The call's id.
        call_id: String,
        /// When the offer arrived (ms since the epoch).
        at: u64,
    },
    /// A call signal this client sent reached none of the contact's
    /// devices within 30 s and was dropped.
    CallSignalFailed {
        /// The conversation's contact id.
        contact: String,
        /// The call's id.
        call_id: String,
    },
    /// The contact sent something this version cannot show.
    Unsupported {
        /// The conversation's contact id.
        contact: String,
        /// What it was.
        what: String,
    },
    /// Events were lost because this client read too slowly: reload.
    Lagged,
}

impl EventJson {
    /// The JSON form of `event`; `None` for events no client is told
    /// (refusals of what peers sent, which are only counted).
    pub fn from_event(event: &Event) -> Option<Self> {
        Some(match event {
            Event::MessageReceived(message) => Self::MessageReceived { message: message.into() },
            Event::StatusChanged { id, contact, status } => Self::StatusChanged {
                id: hex::encode(id.as_bytes()),
                contact: hex::encode(contact.0),
                status: (*status).into(),
            },
            Event::MessageExpired { id } => Self::MessageExpired { id: hex::encode(id.as_bytes()) },
            Event::TimerChanged { contact, timer } => Self::TimerChanged {
                contact: hex::encode(contact.0),
                timer_seconds: timer_seconds(*timer),
            },
            Event::ContactKeyChanged { contact } => {
                Self::ContactKeyChanged { contact: hex::encode(contact.0) }
            }
            Event::TransferChanged { file, contact, state, chunks_done } => Self::TransferChanged {
                file: hex::encode(file.as_bytes()),
                contact: hex::encode(contact.0),
                state: (*state).into(),
                chunks_done: *chunks_done,
            },
            Event::CallSignal { contact, device, signal, verified, key_changed } => {
                Self::CallSignal {
                    contact: hex::encode(contact.0),
                    device: hex::encode(device.as_bytes()),
                    call_id: hex::encode(signal.call_id.as_bytes()),
                    signal: (&signal.signal).into(),
                    verified: *verified,
                    key_changed: *key_changed,
                }
            }
            Event::CallMissed { contact, call_id, at } => Self::CallMissed {
                contact: hex::encode(contact.0),
                call_id: hex::encode(call_id.as_bytes()),
                at: at.0,
            },
            Event::CallSignalFailed { contact, call_id } => Self::CallSignalFailed {
                contact: hex::encode(contact.0),
                call_id: hex::encode(call_id.as_bytes()),
            },
            Event::Unsupported { contact, what } => {
                Self::Unsupported { contact: hex::encode(contact.0), what: (*what).to_owned() }
            }
            Event::Refused(_) => return None,
        })
    }
}

/// A timer's seconds, `None` when off.
pub fn timer_seconds(timer: VanishingTimer) -> Option<u32> {
    if timer.is_off() { None } else { Some(timer.as_secs()) }
}

/// Parses a contact id from the path.
///
/// # Errors
/// 400 `invalid_id`.
pub fn contact_id(text: &str) -> Result<ContactId, Problem> {
    parse_id(text).map(ContactId)
}

/// Parses a file id.
///
/// # Errors
/// 400 `invalid_id`.
pub fn file_id(text: &str) -> Result<FileId, Problem> {
    parse_id(text).map(FileId::from_bytes)
}

/// Parses a message id.
///
/// # Errors
/// 400 `invalid_id`.
pub fn message_id(text: &str) -> Result<MessageId, Problem> {
    parse_id(text).map(MessageId::from_bytes)
}

// File ids are as long as message and contact ids: one parser for all.
const _: () = assert!(FILE_ID_BYTES == MESSAGE_ID_BYTES);

fn parse_id(text: &str) -> Result<[u8; MESSAGE_ID_BYTES], Problem> {
    let invalid = || Problem::bad_request("invalid_id", "an id is 32 lowercase hex digits");
    // Lowercase only: one spelling per id, as the API writes them.
    if text.len() != 2 * MESSAGE_ID_BYTES
        || !text.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(invalid());
    }
    let bytes = hex::decode(text).map_err(|_| invalid())?;
    bytes.try_into().map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_lowercase_hex_digits() {
        let id = "00112233445566778899aabbccddeeff";
        assert_eq!(hex::encode(contact_id(id).unwrap().0), id);
        for bad in
            ["", "0011", "00112233445566778899AABBCCDDEEFF", "g0112233445566778899aabbccddeeff"]
        {
            assert_eq!(contact_id(bad).unwrap_err().code, "invalid_id", "{bad}");
        }
    }

    #[test]
    fn events_have_a_snake_case_type_tag() {
        let event = Event::MessageExpired { id: MessageId::from_bytes([1; 16]) };
        let json = serde_json::to_value(EventJson::from_event(&event).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "message_expired", "id": "01010101010101010101010101010101"})
        );
        assert_eq!(
            serde_json::to_value(EventJson::Lagged).unwrap(),
            serde_json::json!({"type": "lagged"})
        );
    }
}
