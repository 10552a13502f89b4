//! The messenger: one state machine per profile.
//!
//! `Messenger::handle(now, input, rng)` applies one [`Input`] and returns the
//! [`Effect`]s it calls for; `next_deadline()` says when `Input::TimePassed`
//! is next due. Nothing here reads a clock, a file or a socket.
//!
//! Data flow of a text, end to end:
//! 1. `TextSent`: the message is written to the history (`Write::Message`,
//!    status `Pending`), then, for each known device of the contact, encrypted
//!    with that device's ratchet, sealed, and written to the outbox together
//!    with the advanced ratchet (`Write::Session`, `Write::Outbox`), then sent
//!    (`Effect::Send`). Without a session yet, it waits (`Write::Waiting`)
//!    and the contact's prekey bundles are fetched.
//! 2. `EnvelopeReceived` on the other side: unsealed, the sender checked
//!    against the contact book, decrypted, de-duplicated by message id,
//!    written, shown, and answered with an encrypted delivery receipt.
//! 3. The receipt takes the message's outbox entries out and marks it
//!    `Delivered`; until then `TimePassed` resends the very same envelopes,
//!    direct first, then to the mailbox, with backoff.

use std::collections::{BTreeMap, BTreeSet};

use rand_core::CryptoRng;
use xchat_crypto::address::Address;
use xchat_crypto::bundle::PreKeys;
use xchat_crypto::device::{Device, DeviceCertificate, DeviceId};
use xchat_crypto::handshake::{self, UnverifiedInitiation};
use xchat_crypto::identity::{Identity, PublicIdentity};
use xchat_crypto::mailbox;
use xchat_crypto::ratchet::Session;
use xchat_crypto::sealed;
use xchat_crypto::signature::VerifyingKey;
use xchat_proto::bundle::{self as proto_bundle, UnverifiedPreKeyRecord};
use xchat_proto::content::{
    Body, CallId, CallSignal, Content, FileDescriptor, FileId, MessageId, Receipt, ReceiptKind,
    RejectReason, Signal, Text, VanishingTimer,
};
use xchat_proto::envelope::{DeviceMessage, Envelope};
use zeroize::Zeroizing;

use crate::call::{
    CALL_SIGNAL_TTL, CallSend, CallWaiting, MAX_CALL_SENDS, MAX_ENDED_CALLS, MAX_RINGING,
    RING_TIMEOUT, Ringing, offers_video,
};
use crate::contact::{Added, Contact, ContactBook, ContactId};
use crate::io::{
    CommandError, Done, Effect, Event, FetchFile, Input, MailboxKey, Refusal, Send, Write,
};
use crate::outbox::Outbox;
use crate::record::{
    Awaits, CallEntry, CallOutcome, ConversationRecord, Direction, FailReason, MessageRecord,
    OutboxEntry, OutboxId, PeerRecord, Settings, Status, UnreadRecord, Waiting,
};
use crate::retry::{self, Route};
use crate::time::UnixMillis;
use crate::transfer::{MAX_OPEN_TRANSFERS, TransferFailure, TransferRecord, TransferState};

/// Message ids remembered to drop duplicates (a retry whose first copy
/// arrived): the newest are kept.
pub const MAX_REMEMBERED_IDS: usize = 200_000;
/// Initiation ephemeral keys remembered per device, to refuse a replayed
/// first message (one that used only reusable prekeys).
pub const MAX_REMEMBERED_INITIATIONS: usize = 64;
/// Replaced sessions kept per device (see [`PeerDevice::archived`]).
pub const MAX_ARCHIVED_SESSIONS: usize = 3;
/// How often the device fetches its mailboxes while it runs.
pub const MAILBOX_POLL: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// Mailbox epochs fetched at each poll: the current one, the one after (a
/// sender whose clock runs ahead), and as many before as a mailbox keeps an
/// envelope (`xchat_proto::mailbox::MAX_TTL_SECONDS`).
pub const MAILBOX_EPOCHS_BEHIND: u64 =
    (xchat_proto::mailbox::MAX_TTL_SECONDS as u64 * 1000).div_ceil(mailbox::EPOCH_MS);
/// Contacts' devices whose mailbox key of the current epoch is kept.
pub const MAX_CACHED_MAILBOX_KEYS: usize = 4096;
/// How long to wait before asking again for the bundles of a contact that
/// messages are waiting for.
pub const BUNDLE_REFETCH: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// Least time between two delivery receipts to one contact. A message to a
/// quiet conversation is acknowledged at once; during a burst, one receipt
/// answers every message of the interval. Each receipt costs both sides a
/// sealed envelope and a turn of the ratchet (three X25519 agreements
/// each), so one receipt per handful of messages would cost more than the
/// messages themselves.
pub const RECEIPT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// A contact's device as the messenger knows it.
#[derive(Debug)]
pub struct PeerDevice {
    /// Its certificate, verified against the contact's identity.
    pub certificate: DeviceCertificate,
    /// The session with it, once a handshake happened.
    pub session: Option<Session>,
    /// Sessions this one replaced, newest first (at most
    /// [`MAX_ARCHIVED_SESSIONS`]). When both sides start a session at the
    /// same time, each answers the other's initiation and replaces its own;
    /// the first message that decrypts only under an archived session makes
    /// it current again, and both sides converge on one session.
    pub archived: Vec<Session>,
    /// Our initiation, sent with every message until the device answers.
    pub initiation: Option<Vec<u8>>,
    /// Ephemeral keys of the initiations from it that we accepted.
    pub accepted_initiations: Vec<[u8; 32]>,
    /// Whether it can be reached directly now (not persisted).
    pub reachable: bool,
}

/// Everything a messenger is made of, as the store loads it.
#[derive(Debug, Default)]
pub struct State {
    /// The contacts.
    pub contacts: Vec<Contact>,
    /// Contacts' devices, by identity.
    pub peers: Vec<(VerifyingKey, PeerDevice)>,
    /// Conversations whose timer is set.
    pub conversations: Vec<ConversationRecord>,
    /// The outbox.
    pub outbox: Vec<OutboxEntry>,
    /// Messages waiting for a session.
    pub waiting: Vec<Waiting>,
    /// Outgoing messages that may still get receipts: id and contact.
    pub sent: Vec<(MessageId, ContactId)>,
    /// Incoming messages not read yet, in the order they arrived (the
    /// newest are acknowledged again once the contact is online).
    pub unread: Vec<UnreadRecord>,
    /// Messages whose timer runs: id and when they go.
    pub expiring: Vec<(MessageId, UnixMillis)>,
    /// Recently received message ids, oldest first.
    pub received: Vec<MessageId>,
    /// Hashes of recently processed envelopes that carried a text, oldest
    /// first, with their conversation and message.
    pub envelopes: Vec<([u8; 32], ContactId, MessageId)>,
    /// The settings.
    pub settings: Settings,
    /// File transfers the messenger follows ([`TransferState::is_open`]).
    pub transfers: Vec<TransferRecord>,
    /// Messages with a vanishing timer that offer a file, and the file.
    pub attachments: Vec<(MessageId, FileId)>,
}

/// The messenger of one profile on one device.
pub struct Messenger {
    identity: Identity,
    public: PublicIdentity,
    device: Device,
    prekeys: PreKeys,
    contacts: ContactBook,
    peers: BTreeMap<[u8; 32], BTreeMap<DeviceId, PeerDevice>>,
    timers: BTreeMap<ContactId, VanishingTimer>,
    outbox: Outbox,
    /// Outbox entries whose last attempt was a mailbox store that failed:
    /// their next attempt goes direct, whatever is believed about the
    /// device (with no mailbox node around, on a LAN say, direct is the
    /// only way left). Not persisted: a restart starts from the usual
    /// routes.
    mailbox_failed: BTreeSet<OutboxId>,
    waiting: BTreeMap<MessageId, Waiting>,
    refetch_at: BTreeMap<ContactId, UnixMillis>,
    sent: BTreeMap<MessageId, ContactId>,
    unread: BTreeMap<MessageId, UnreadRecord>,
    expiring: BTreeSet<(UnixMillis, MessageId)>,
    received: BTreeSet<MessageId>,
    received_order: std::collections::VecDeque<MessageId>,
    /// Hashes of envelopes that carried texts, with their ids, to answer a
    /// retry of an envelope already processed (the ratchet refuses to
    /// decrypt it twice) with a new delivery receipt.
    envelopes: BTreeMap<[u8; 32], (ContactId, Vec<MessageId>)>,
    envelope_order: std::collections::VecDeque<[u8; 32]>,
    settings: Settings,
    refusals: BTreeMap<Refusal, u64>,
    transfers: BTreeMap<FileId, TransferRecord>,
    /// The files of vanishing messages, deleted with them.
    attachments: BTreeMap<MessageId, FileId>,
    /// Delivery receipts not sent yet, per conversation: one receipt
    /// answers every message received since the last deadline.
    pending_receipts: BTreeMap<ContactId, Vec<MessageId>>,
    /// When the last delivery receipt went to each contact, for the
    /// contacts sent one within [`RECEIPT_INTERVAL`].
    receipts_sent_at: BTreeMap<ContactId, UnixMillis>,
    /// Receipts owed since before a restart (see [`Messenger::new`]): they
    /// go once a device of the contact is known online, straight to it.
    receipts_owed: BTreeMap<ContactId, Vec<MessageId>>,
    /// Verified senders of recent envelopes (`sealed::Opener`).
    opener: sealed::Opener,
    /// Agreements with recent recipients (`sealed::Sealer`).
    sealer: sealed::Sealer,
    /// When the mailboxes are fetched next (at once after a start).
    mailbox_poll_at: UnixMillis,
    /// Contacts' devices' mailbox keys of one epoch.
    mailbox_keys: (u64, BTreeMap<([u8; 32], DeviceId), VerifyingKey>),
    /// Call signals on their way, one per device (in memory only: see
    /// `crate::call`).
    call_sends: BTreeMap<OutboxId, CallSend>,
    /// Call signals waiting for a session with their contact.
    call_waiting: Vec<CallWaiting>,
    /// Signals of which some device took a copy: their other copies'
    /// expiry tells the user nothing.
    calls_delivered: BTreeSet<MessageId>,
    /// Texts written but not yet encrypted: [`Messenger::hold`] keeps a run
    /// of text sends here so that [`Messenger::flush`] puts those for one
    /// device into one envelope. Empty between batches.
    held: Vec<(ContactId, Content)>,
    /// Incoming calls ringing.
    ringing: BTreeMap<CallId, Ringing>,
    /// Calls whose hang-up or decline came before their offer, newest last.
    ended_calls: std::collections::VecDeque<(CallId, ContactId)>,
}

impl std::fmt::Debug for Messenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messenger")
            .field("identity", self.public.signing_key())
            .field("device", &self.device.id())
            .field("contacts", &self.contacts.len())
            .field("outbox", &self.outbox.len())
            .finish_non_exhaustive()
    }
}

impl Messenger {
    /// A messenger for `identity` on `device`, with `prekeys`, restored from
    /// `state` (empty for a new profile).
    ///
    /// # Errors
    /// [`crate::contact::ContactError`] when the stored contacts clash.
    pub fn new(
        identity: Identity,
        device: Device,
        prekeys: PreKeys,
        state: State,
    ) -> Result<Self, crate::contact::ContactError> {
        let public = identity.public();
        let mut peers: BTreeMap<[u8; 32], BTreeMap<DeviceId, PeerDevice>> = BTreeMap::new();
        for (identity, peer) in state.peers {
            peers
                .entry(identity.to_bytes())
                .or_default()
                .insert(peer.certificate.device_id(), peer);
        }
        // Delivery receipts owed when the device stopped were held in
        // memory only. The newest unread messages of each conversation are
        // acknowledged again once the contact is online (a second receipt
        // changes nothing), so a sender whose device took them does not wait
        // out `retry::RECEIPT_PATIENCE` for receipts a crash lost. Sent at
        // once, they would go to the contact's mailbox, which it reads only
        // every `MAILBOX_POLL`.
        let mut receipts_owed: BTreeMap<ContactId, Vec<MessageId>> = BTreeMap::new();
        for unread in state.unread.iter().rev().filter(|u| u.receipt) {
            let ids = receipts_owed.entry(unread.contact).or_default();
            if ids.len() < xchat_proto::content::MAX_RECEIPT_IDS {
                ids.push(unread.id);
            }
        }
        let mut messenger = Self {
            identity,
            public,
            device,
            prekeys,
            contacts: ContactBook::from_records(state.contacts)?,
            peers,
            timers: state.conversations.iter().map(|c| (c.contact, c.timer)).collect(),
            outbox: Outbox::new(state.outbox),
            mailbox_failed: BTreeSet::new(),
            waiting: state.waiting.into_iter().map(|w| (w.message, w)).collect(),
            refetch_at: BTreeMap::new(),
            sent: state.sent.into_iter().collect(),
            unread: state.unread.into_iter().map(|u| (u.id, u)).collect(),
            expiring: state.expiring.into_iter().map(|(id, at)| (at, id)).collect(),
            received: BTreeSet::new(),
            received_order: std::collections::VecDeque::new(),
            envelopes: BTreeMap::new(),
            envelope_order: std::collections::VecDeque::new(),
            settings: state.settings,
            refusals: BTreeMap::new(),
            transfers: state.transfers.into_iter().map(|t| (t.file(), t)).collect(),
            attachments: state.attachments.into_iter().collect(),
            pending_receipts: BTreeMap::new(),
            receipts_sent_at: BTreeMap::new(),
            receipts_owed,
            opener: sealed::Opener::new(),
            sealer: sealed::Sealer::new(),
            mailbox_poll_at: UnixMillis(0),
            mailbox_keys: (0, BTreeMap::new()),
            held: Vec::new(),
            call_sends: BTreeMap::new(),
            call_waiting: Vec::new(),
            calls_delivered: BTreeSet::new(),
            ringing: BTreeMap::new(),
            ended_calls: std::collections::VecDeque::new(),
        };
        for id in state.received {
            messenger.remember_received(id);
        }
        for (hash, contact, id) in state.envelopes {
            messenger.remember_envelope(hash, contact, id);
        }
        // Messages that were waiting for a session: ask for bundles at once.
        let contacts: BTreeSet<ContactId> = messenger.waiting.values().map(|w| w.contact).collect();
        for contact in contacts {
            messenger.refetch_at.insert(contact, UnixMillis(0));
        }
        Ok(messenger)
    }

    /// This profile's public identity.
    pub fn identity(&self) -> &PublicIdentity {
        &self.public
    }

    /// This profile's address.
    pub fn address(&self) -> Address {
        Address::from_key(*self.public.signing_key())
    }

    /// This device's certificate.
    pub fn device(&self) -> &DeviceCertificate {
        self.device.certificate()
    }

    /// The contact book.
    pub fn contacts(&self) -> &ContactBook {
        &self.contacts
    }

    /// How often each kind of refusal happened since start.
    pub fn refusals(&self) -> &BTreeMap<Refusal, u64> {
        &self.refusals
    }

    /// Every device of a contact this messenger knows (it has or had a
    /// session with it), and whether it is believed reachable directly.
    pub fn peer_devices(&self) -> impl Iterator<Item = (VerifyingKey, DeviceId, bool)> + '_ {
        self.peers.values().flat_map(|devices| {
            devices.values().map(|peer| {
                (*peer.certificate.identity(), peer.certificate.device_id(), peer.reachable)
            })
        })
    }

    /// Envelopes waiting in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// This device's prekeys as a record to publish (an encoded
    /// `xchat_proto::bundle::PreKeyRecord` holding the whole publication).
    ///
    /// # Errors
    /// Never for a consistent messenger (the prekeys are this device's).
    pub fn prekey_record(
        &self,
        now: UnixMillis,
    ) -> Result<Vec<u8>, xchat_crypto::bundle::PreKeyError> {
        let publication = self.prekeys.publication(&self.public, &self.device)?;
        let record = proto_bundle::PreKeyRecord {
            published_at_ms: now.0,
            prekeys: proto_bundle::PreKeys::Publication(publication),
        };
        Ok(record.encode())
    }

    /// When `Input::TimePassed` is next due: the earliest vanishing message,
    /// outbox retry or bundle refetch.
    pub fn next_deadline(&self) -> Option<UnixMillis> {
        let expiry = self.expiring.first().map(|(at, _)| *at);
        let retry = self.outbox.next_due();
        let refetch = self.refetch_at.values().min().copied();
        // Receipts are due at once (whenever the node has no input
        // waiting), or when their contact's interval ends.
        let receipts =
            self.pending_receipts.keys().map(|contact| self.receipt_due_at(*contact)).min();
        let calls = self
            .call_sends
            .values()
            .map(|c| if c.in_flight { c.expires_at } else { c.next_attempt_at.min(c.expires_at) })
            .chain(self.call_waiting.iter().map(|w| w.expires_at))
            .chain(self.ringing.values().map(|r| r.since.saturating_add(RING_TIMEOUT)))
            .min();
        [expiry, retry, refetch, receipts, calls, Some(self.mailbox_poll_at)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Applies `input` at `now` and returns what to do, in order. See the
    /// crate doc for the commit rule the node follows.
    pub fn handle(
        &mut self,
        now: UnixMillis,
        input: Input,
        rng: &mut impl CryptoRng,
    ) -> Vec<Effect> {
        let mut out = self.hold(now, input, rng);
        self.flush_held(now, rng, &mut out);
        out
    }

    /// [`Messenger::handle`] for one input of a batch: a text the user
    /// sends is written and answered at once, but encrypted and sent only
    /// by [`Messenger::flush`] or by the next input that is not a text sent,
    /// so that the texts of one batch to one device share an envelope
    /// ([`MAX_TEXTS_PER_ENVELOPE`]). The caller flushes before it commits:
    /// the envelopes and their outbox entries belong to the same batch.
    pub fn hold(&mut self, now: UnixMillis, input: Input, rng: &mut impl CryptoRng) -> Vec<Effect> {
        let mut out = Vec::new();
        if !matches!(input, Input::TextSent { .. }) {
            // Nothing else sees a text between its write and its envelope.
            self.flush_held(now, rng, &mut out);
        }
        match input {
            Input::ContactAdded { name, address } => {
                let answer = self.add_contact(&name, &address, now, rng, &mut out);
                out.push(Effect::Answer(answer));
            }
            Input::ContactVerified { contact } => {
                let result = self.contacts.verify(contact).cloned();
                contact_command(result, &mut out);
            }
            Input::KeyChangeAcknowledged { contact } => {
                let result = self.contacts.acknowledge_key_change(contact).cloned();
                let acknowledged = result.is_ok();
                contact_command(result, &mut out);
                if acknowledged {
                    self.flush_waiting(contact, now, rng, &mut out);
                }
            }
            Input::TextSent { contact, text } => {
                let answer = self.send_text(contact, text, now, rng, &mut out);
                out.push(Effect::Answer(answer));
            }
            Input::CallSignalSent { contact, signal } => {
                let answer = self.send_call_signal(contact, signal, now, rng, &mut out);
                out.push(Effect::Answer(answer));
            }
            Input::FileSent { contact, descriptor } => {
                let answer = self.send_file(contact, descriptor, now, rng, &mut out);
                out.push(Effect::Answer(answer));
            }
            Input::FileAccepted { file } => {
                let answer = self.accept_file(file, now, &mut out);
                out.push(Effect::Answer(answer));
            }
            Input::FileCancelled { file } => {
                let answer = self.update_transfer(file, now, &mut out, |t| {
                    t.state.is_moving().then_some(())?;
                    t.state = TransferState::Failed(TransferFailure::Cancelled);
                    Some(())
                });
                out.push(Effect::Answer(answer));
            }
            Input::FileProgress { file, chunks_done } => {
                let _ = self.update_transfer(file, now, &mut out, |t| {
                    (t.state.is_moving()
                        && chunks_done >= t.chunks_done
                        && chunks_done <= t.chunk_count())
                    .then_some(())?;
                    t.state = TransferState::Transferring;
                    t.chunks_done = chunks_done;
                    Some(())
                });
            }
            Input::FileCompleted { file } => {
                let _ = self.update_transfer(file, now, &mut out, |t| {
                    t.state.is_moving().then_some(())?;
                    t.state = TransferState::Complete;
                    t.chunks_done = t.chunk_count();
                    Some(())
                });
            }
            Input::FileFailed { file, reason } => {
                let _ = self.update_transfer(file, now, &mut out, |t| {
                    t.state.is_moving().then_some(())?;
                    t.state = TransferState::Failed(reason);
                    Some(())
                });
            }
            Input::MessagesRead { contact, ids } => {
                self.mark_read(contact, &ids, now, rng, &mut out);
                out.push(Effect::Answer(Ok(Done::Ok)));
            }
            Input::TimerSet { contact, timer } => {
                let answer = self.set_timer(contact, timer, now, rng, &mut out);
                out.push(Effect::Answer(answer));
            }
            Input::ReadReceiptsSet { enabled } => {
                self.settings.read_receipts = enabled;
                out.push(Effect::Write(Write::Settings(self.settings)));
                out.push(Effect::Answer(Ok(Done::Ok)));
            }
            Input::BundlesFetched { identity, records } => {
                self.bundles_fetched(&identity, &records, now, rng, &mut out);
            }
            Input::EnvelopeReceived { envelope } => {
                if let Some((identity, device)) = self.receive(&envelope, now, rng, &mut out)
                    && let Some(peer) =
                        self.peers.get_mut(&identity.to_bytes()).and_then(|d| d.get_mut(&device))
                {
                    // It came over a live connection: the device is online,
                    // and what goes back to it (its receipt first) goes
                    // straight there rather than to its mailbox.
                    peer.reachable = true;
                    self.online(&identity);
                }
            }
            Input::SendAcknowledged { entry, route } => {
                self.outbox.attempt_ended(entry);
                if let Some(call) = self.call_sends.remove(&entry) {
                    self.calls_delivered.insert(call.signal);
                } else {
                    self.acknowledged(entry, route, now, &mut out);
                }
            }
            Input::SendFailed { entry, route } => {
                // The next attempt waits its backoff from now: the failed one
                // may have waited long in the node's queues. A mailbox that
                // failed says nothing about the device; a device that failed
                // directly is not reachable directly.
                if self.outbox.attempt_ended(entry)
                    && let Some(outbox) = self.outbox.update(entry, |outbox| {
                        let attempt = outbox.attempts.saturating_sub(1);
                        outbox.next_attempt_at = retry::next_attempt(attempt, now, rng);
                        outbox.clone()
                    })
                {
                    out.push(Effect::Write(Write::Outbox(outbox)));
                }
                if route == Route::Mailbox && self.outbox.contains(entry) {
                    self.mailbox_failed.insert(entry);
                }
                let target = match (self.outbox.get(entry), self.call_sends.get_mut(&entry)) {
                    (Some(entry), _) => Some((entry.identity, entry.device)),
                    (None, Some(call)) => {
                        call.in_flight = false;
                        Some((call.identity, call.device))
                    }
                    (None, None) => None,
                };
                if route == Route::Direct
                    && let Some((identity, device)) = target
                    && let Some(peer) = self.peer_mut(&identity, device)
                {
                    peer.reachable = false;
                }
            }
            Input::DeviceReachable { identity, device, reachable } => {
                if let Some(peer) = self.peer_mut(&identity, device) {
                    peer.reachable = reachable;
                }
                if reachable {
                    self.online(&identity);
                    // Whatever waits for that device goes now.
                    for entry in self.outbox.to_device(&identity, device) {
                        self.outbox
                            .update(entry, |e| e.next_attempt_at = e.next_attempt_at.min(now));
                    }
                    for call in self.call_sends.values_mut() {
                        if call.identity == identity && call.device == device {
                            call.next_attempt_at = call.next_attempt_at.min(now);
                        }
                    }
                    self.retry_due(now, rng, &mut out);
                    self.calls_due(now, rng, &mut out);
                }
            }
            Input::TimePassed => self.time_passed(now, rng, &mut out),
            Input::MailboxFetched { epoch, items } => {
                let mut processed = Vec::with_capacity(items.len());
                for (item, envelope) in items {
                    let _ = self.receive(&envelope, now, rng, &mut out);
                    processed.push(item);
                }
                // Refused items too: they would only come back.
                if !processed.is_empty()
                    && let Ok(key) =
                        mailbox::mailbox_signing_key(&self.identity, self.device.id(), epoch)
                {
                    out.push(Effect::DeleteFromMailbox {
                        key: MailboxKey { epoch, key },
                        items: processed,
                    });
                }
            }
        }
        out
    }

    /// Encrypts and sends the texts [`Messenger::hold`] kept back: those of
    /// one contact's device go in as few envelopes as the limits allow.
    pub fn flush(&mut self, now: UnixMillis, rng: &mut impl CryptoRng) -> Vec<Effect> {
        let mut out = Vec::new();
        self.flush_held(now, rng, &mut out);
        out
    }
}

/// Most texts one envelope carries: the first and
/// [`xchat_proto::content::MAX_MORE_CONTENTS`] more.
pub const MAX_TEXTS_PER_ENVELOPE: usize = 1 + xchat_proto::content::MAX_MORE_CONTENTS;
/// Most bytes of text in an envelope of several texts (a longer text goes
/// alone): envelopes stay in the small padding buckets, and a retry resends
/// little.
pub const MAX_TEXT_BYTES_PER_ENVELOPE: usize = 16 * 1024;

/// `contents` cut, in order, into the runs that share an envelope: at most
/// [`MAX_TEXTS_PER_ENVELOPE`] texts and [`MAX_TEXT_BYTES_PER_ENVELOPE`]
/// bytes of text each, a longer text alone.
fn envelope_runs(contents: &[Content]) -> Vec<&[Content]> {
    let text_len = |content: &Content| match &content.body {
        Body::Text(text) => text.as_str().len(),
        _ => MAX_TEXT_BYTES_PER_ENVELOPE,
    };
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (at, content) in contents.iter().enumerate() {
        let len = text_len(content);
        if at > start
            && (at - start == MAX_TEXTS_PER_ENVELOPE || bytes + len > MAX_TEXT_BYTES_PER_ENVELOPE)
        {
            runs.push(&contents[start..at]);
            (start, bytes) = (at, 0);
        }
        bytes += len;
    }
    if start < contents.len() {
        runs.push(&contents[start..]);
    }
    runs
}

/// The effects of a contact command: its write, then its answer.
fn contact_command(result: Result<Contact, crate::contact::ContactError>, out: &mut Vec<Effect>) {
    match result {
        Ok(contact) => {
            out.push(Effect::Write(Write::Contact(contact)));
            out.push(Effect::Answer(Ok(Done::Ok)));
        }
        Err(error) => out.push(Effect::Answer(Err(error.into()))),
    }
}

// Commands from the user.
impl Messenger {
    fn add_contact(
        &mut self,
        name: &str,
        address: &Address,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) -> Result<Done, CommandError> {
        if address.key() == self.public.signing_key() {
            return Err(CommandError::OwnAddress);
        }
        let added = self.contacts.add(name, address, now, rng)?;
        let (Added::New(id) | Added::Unchanged(id) | Added::KeyChanged(id)) = added;
        if let Some(contact) = self.contacts.get(id) {
            out.push(Effect::Write(Write::Contact(contact.clone())));
            if !matches!(added, Added::Unchanged(_)) {
                out.push(Effect::FetchBundles { identity: contact.identity });
            }
        }
        if matches!(added, Added::KeyChanged(_)) {
            out.push(Effect::Notify(Event::ContactKeyChanged { contact: id }));
        }
        Ok(Done::Contact(added))
    }

    fn send_text(
        &mut self,
        contact: ContactId,
        text: String,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) -> Result<Done, CommandError> {
        self.contacts.check_can_send(contact)?;
        let text = Text::new(text)
            .map_err(|_| CommandError::InvalidText { max: xchat_proto::content::MAX_TEXT_BYTES })?;
        let (id, timer) = self.write_outgoing(contact, text.as_str(), None, now, rng, out);
        let content = Content { id, sent_at_ms: now.0, timer, body: Body::Text(text) };
        self.held.push((contact, content));
        Ok(Done::MessageQueued(id))
    }

    /// Writes a new outgoing message (`Pending`, its timer started at once)
    /// and follows it for receipts; returns its id and timer.
    fn write_outgoing(
        &mut self,
        contact: ContactId,
        text: &str,
        file: Option<FileId>,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) -> (MessageId, VanishingTimer) {
        let id = MessageId::new(now.0, rng);
        let timer = self.timer(contact);
        let record = MessageRecord {
            id,
            contact,
            direction: Direction::Outgoing,
            sent_at: now,
            received_at: now,
            text: text.to_owned(),
            file,
            call: None,
            status: Status::Pending,
            timer,
            expires_at: timer.duration().map(|d| now.saturating_add(d)),
        };
        if let Some(at) = record.expires_at {
            self.expiring.insert((at, id));
            if let Some(file) = file {
                self.attachments.insert(id, file);
            }
        }
        out.push(Effect::Write(Write::Message(record)));
        self.sent.insert(id, contact);
        (id, timer)
    }

    fn set_timer(
        &mut self,
        contact: ContactId,
        timer: VanishingTimer,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) -> Result<Done, CommandError> {
        self.contacts.check_can_send(contact)?;
        self.timers.insert(contact, timer);
        out.push(Effect::Write(Write::Conversation(ConversationRecord { contact, timer })));
        let content = Content {
            id: MessageId::new(now.0, rng),
            sent_at_ms: now.0,
            timer,
            body: Body::TimerChange(timer),
        };
        self.send_content(contact, &content, Awaits::Transport, now, rng, out);
        Ok(Done::Ok)
    }

    fn mark_read(
        &mut self,
        contact: ContactId,
        ids: &[MessageId],
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) {
        let mut read = Vec::new();
        for id in ids {
            // Only unread messages of this conversation: the UI may repeat itself.
            match self.unread.get(id) {
                Some(unread) if unread.contact == contact => {}
                _ => continue,
            }
            let Some(unread) = self.unread.remove(id) else { continue };
            out.push(Effect::Write(Write::Status { id: *id, status: Status::Seen }));
            if let Some(duration) = unread.timer.duration() {
                // The timer of a received message starts when it is read.
                let expires_at = now.saturating_add(duration);
                self.expiring.insert((expires_at, *id));
                out.push(Effect::Write(Write::Expiry { id: *id, expires_at }));
            }
            if unread.receipt {
                read.push(*id);
            }
        }
        if self.settings.read_receipts && !read.is_empty() {
            for chunk in read.chunks(xchat_proto::content::MAX_RECEIPT_IDS) {
                self.send_receipt(contact, ReceiptKind::Read, chunk.to_vec(), now, rng, out);
            }
        }
    }

    fn timer(&self, contact: ContactId) -> VanishingTimer {
        self.timers.get(&contact).copied().unwrap_or(VanishingTimer::OFF)
    }
}

// File transfers (see `transfer.rs`).
impl Messenger {
    /// A transfer the messenger follows (any but a complete one).
    pub fn transfer(&self, file: FileId) -> Option<&TransferRecord> {
        self.transfers.get(&file)
    }

    /// The file the user sent as `file`, if `identity` (a device asking the
    /// node for its chunks) is the contact it was offered to: what the node
    /// checks before it serves a single byte.
    pub fn may_fetch(&self, file: FileId, identity: &VerifyingKey) -> Option<&FileDescriptor> {
        let transfer = self.transfers.get(&file)?;
        let contact = self.contacts.get(transfer.contact)?;
        (transfer.direction == Direction::Outgoing && contact.identity == *identity)
            .then_some(&transfer.descriptor)
    }

    fn send_file(
        &mut self,
        contact: ContactId,
        descriptor: FileDescriptor,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) -> Result<Done, CommandError> {
        self.contacts.check_can_send(contact)?;
        if self.transfers.len() >= MAX_OPEN_TRANSFERS {
            return Err(CommandError::TooManyTransfers { max: MAX_OPEN_TRANSFERS });
        }
        let file = descriptor.id();
        if self.transfers.contains_key(&file) {
            return Err(CommandError::TransferState(TransferState::Offered));
        }
        let name = descriptor.name().as_str();
        let (id, timer) = self.write_outgoing(contact, name, Some(file), now, rng, out);
        let transfer = TransferRecord {
            descriptor: descriptor.clone(),
            message: id,
            contact,
            direction: Direction::Outgoing,
            source: None,
            state: TransferState::Offered,
            chunks_done: 0,
            updated_at: now,
        };
        out.push(Effect::Write(Write::Transfer(Box::new(transfer.clone()))));
        self.transfers.insert(file, transfer);
        let content = Content { id, sent_at_ms: now.0, timer, body: Body::File(descriptor) };
        self.send_content(contact, &content, Awaits::Receipt, now, rng, out);
        Ok(Done::FileQueued { message: id, file })
    }

    /// A contact offered a file: its message goes into the history and the
    /// transfer waits for the user to accept it.
    fn received_file(
        &mut self,
        contact: ContactId,
        device: DeviceId,
        (id, sent_at, timer): (MessageId, UnixMillis, VanishingTimer),
        descriptor: FileDescriptor,
        now: UnixMillis,
        out: &mut Vec<Effect>,
    ) {
        let file = descriptor.id();
        let record = MessageRecord {
            id,
            contact,
            direction: Direction::Incoming,
            sent_at,
            received_at: now,
            text: descriptor.name().as_str().to_owned(),
            file: Some(file),
            call: None,
            status: Status::Unread,
            timer,
            expires_at: None,
        };
        self.unread.insert(id, UnreadRecord { id, contact, timer, receipt: true });
        if !timer.is_off() {
            self.attachments.insert(id, file);
        }
        // A file id is the sender's random choice: one already known (from
        // this or another contact) is not followed twice.
        let state = if self.transfers.contains_key(&file) {
            None
        } else if self.transfers.len() >= MAX_OPEN_TRANSFERS {
            Some(TransferState::Failed(TransferFailure::NoSpace))
        } else {
            Some(TransferState::Offered)
        };
        out.push(Effect::Write(Write::Message(record.clone())));
        if let Some(state) = state {
            let transfer = TransferRecord {
                descriptor,
                message: id,
                contact,
                direction: Direction::Incoming,
                source: Some(device),
                state,
                chunks_done: 0,
                updated_at: now,
            };
            out.push(Effect::Write(Write::Transfer(Box::new(transfer.clone()))));
            if state.is_open() {
                self.transfers.insert(file, transfer);
            }
        }
        out.push(Effect::Notify(Event::MessageReceived(record)));
    }

    fn accept_file(
        &mut self,
        file: FileId,
        now: UnixMillis,
        out: &mut Vec<Effect>,
    ) -> Result<Done, CommandError> {
        let transfer = self.transfers.get(&file).ok_or(CommandError::UnknownFile)?;
        let acceptable = transfer.direction == Direction::Incoming
            && matches!(transfer.state, TransferState::Offered | TransferState::Failed(_));
        if !acceptable {
            return Err(CommandError::TransferState(transfer.state));
        }
        let contact = self.contacts.get(transfer.contact).ok_or(CommandError::UnknownFile)?;
        let identity = contact.identity;
        let device = transfer.source.ok_or(CommandError::UnknownFile)?;
        let fetch = FetchFile {
            descriptor: transfer.descriptor.clone(),
            identity,
            device,
            from_chunk: transfer.chunks_done,
        };
        self.update_transfer(file, now, out, |t| {
            t.state = TransferState::Accepted;
            Some(())
        })?;
        out.push(Effect::FetchFile(Box::new(fetch)));
        Ok(Done::Ok)
    }

    /// Applies `change` to the transfer of `file` (it returns `None` to
    /// refuse), writes it and tells the user; a complete transfer leaves the
    /// messenger's memory (the store keeps it).
    fn update_transfer(
        &mut self,
        file: FileId,
        now: UnixMillis,
        out: &mut Vec<Effect>,
        change: impl FnOnce(&mut TransferRecord) -> Option<()>,
    ) -> Result<Done, CommandError> {
        let transfer = self.transfers.get_mut(&file).ok_or(CommandError::UnknownFile)?;
        let before = transfer.state;
        change(transfer).ok_or(CommandError::TransferState(before))?;
        transfer.updated_at = now;
        let transfer = transfer.clone();
        if !transfer.state.is_open() {
            self.transfers.remove(&file);
        }
        let event = Event::TransferChanged {
            file,
            contact: transfer.contact,
            state: transfer.state,
            chunks_done: transfer.chunks_done,
        };
        out.push(Effect::Write(Write::Transfer(Box::new(transfer))));
        out.push(Effect::Notify(event));
        Ok(Done::Ok)
    }
}

// Calls (see `crate::call`).
impl Messenger {
    /// Incoming calls ringing now: the call and who calls.
    pub fn ringing(&self) -> impl Iterator<Item = (CallId, ContactId)> + '_ {
        self.ringing.iter().map(|(id, r)| (*id, r.contact))
    }

    fn send_call_signal(
        &mut self,
        contact: ContactId,
        call: CallSignal,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) -> Result<Done, CommandError> {
        // An offer, an answer or a candidate sets up media with whoever
        // holds the contact's key: not with a key the user has not accepted.
        // Ending or declining a call tells that key nothing worth keeping.
        match &call.signal {
            Signal::HangUp(_) | Signal::Reject(_) => {
                self.contacts.get(contact).ok_or(crate::contact::ContactError::Unknown)?;
            }
            Signal::Offer(_) | Signal::Answer(_) | Signal::IceCandidate(_) => {
                self.contacts.check_can_send(contact)?;
            }
        }
        if self.call_sends.len() + self.call_waiting.len() >= MAX_CALL_SENDS {
            return Err(CommandError::TooManyCallSignals { max: MAX_CALL_SENDS });
        }
        // The user answered, declined or ended a ringing call: it is not
        // missed. Unless the UI refused it as busy: the user, in another
        // call, never saw it ring.
        if !matches!(call.signal, Signal::IceCandidate(_) | Signal::Offer(_))
            && self.ringing.get(&call.call_id).is_some_and(|r| r.contact == contact)
            && let Some(ringing) = self.ringing.remove(&call.call_id)
            && call.signal == Signal::Reject(RejectReason::Busy)
        {
            self.missed(call.call_id, ringing, now, rng, out);
        }
        let call_id = call.call_id;
        let content = Content {
            id: MessageId::new(now.0, rng),
            sent_at_ms: now.0,
            timer: VanishingTimer::OFF,
            body: Body::Call(call),
        };
        let plaintext = Zeroizing::new(content.encode());
        let expires_at = now.saturating_add(CALL_SIGNAL_TTL);
        self.send_call_content(
            (contact, call_id, content.id),
            &plaintext,
            expires_at,
            now,
            rng,
            out,
        );
        Ok(Done::Ok)
    }

    /// Encrypts a call signal's content to every device of the contact with
    /// a session and sends it direct; with none, keeps it waiting (until it
    /// expires) and asks for the contact's bundles.
    fn send_call_content(
        &mut self,
        (contact, call_id, signal): (ContactId, CallId, MessageId),
        plaintext: &Zeroizing<Vec<u8>>,
        expires_at: UnixMillis,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) {
        let Some(identity) = self.contacts.get(contact).map(|c| c.identity) else { return };
        let devices: Vec<DeviceId> = self
            .peers
            .get(&identity.to_bytes())
            .map(|d| d.iter().filter(|(_, p)| p.session.is_some()).map(|(id, _)| *id).collect())
            .unwrap_or_default();
        if devices.is_empty() {
            self.call_waiting.push(CallWaiting {
                contact,
                call_id,
                signal,
                content: plaintext.clone(),
                expires_at,
            });
            if let std::collections::btree_map::Entry::Vacant(refetch) =
                self.refetch_at.entry(contact)
            {
                refetch.insert(now.saturating_add(BUNDLE_REFETCH));
                out.push(Effect::FetchBundles { identity });
            }
            return;
        }
        for device in devices {
            let Some((envelope, _)) = self.seal_for(&identity, device, plaintext, rng, out) else {
                continue;
            };
            let mut id = OutboxId(rng.next_u64());
            while self.outbox.contains(id) || self.call_sends.contains_key(&id) {
                id = OutboxId(rng.next_u64());
            }
            let send = CallSend {
                contact,
                call_id,
                signal,
                identity,
                device,
                envelope: envelope.encode(),
                attempts: 0,
                next_attempt_at: now,
                expires_at,
                in_flight: false,
            };
            self.call_sends.insert(id, send);
        }
        self.calls_due(now, rng, out);
    }

    /// Sends every call signal whose attempt is due, and drops those whose
    /// time ran out (telling the user when no device took the signal), and
    /// counts as missed the calls that rang too long.
    fn calls_due(&mut self, now: UnixMillis, rng: &mut impl CryptoRng, out: &mut Vec<Effect>) {
        let expired: Vec<OutboxId> = self
            .call_sends
            .iter()
            .filter(|(_, c)| c.expires_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(call) = self.call_sends.remove(&id) else { continue };
            let others = self.call_sends.values().any(|c| c.signal == call.signal);
            if !others && !self.calls_delivered.remove(&call.signal) {
                out.push(Effect::Notify(Event::CallSignalFailed {
                    contact: call.contact,
                    call_id: call.call_id,
                }));
            }
        }
        let (expired, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.call_waiting).into_iter().partition(|w| w.expires_at <= now);
        self.call_waiting = waiting;
        for call in expired {
            let event = Event::CallSignalFailed { contact: call.contact, call_id: call.call_id };
            out.push(Effect::Notify(event));
        }
        // What was delivered and has no copy left needs no remembering.
        let live: BTreeSet<MessageId> = self.call_sends.values().map(|c| c.signal).collect();
        self.calls_delivered.retain(|signal| live.contains(signal));
        for (id, call) in &mut self.call_sends {
            if call.in_flight || call.next_attempt_at > now {
                continue;
            }
            call.in_flight = true;
            call.next_attempt_at = crate::call::next_attempt(call.attempts, now);
            call.attempts = call.attempts.saturating_add(1);
            out.push(Effect::Send(Send {
                entry: *id,
                identity: call.identity,
                device: call.device,
                route: Route::Direct,
                mailbox: None,
                envelope: call.envelope.clone(),
            }));
        }
        let rang_out: Vec<CallId> = self
            .ringing
            .iter()
            .filter(|(_, r)| r.since.saturating_add(RING_TIMEOUT) <= now)
            .map(|(id, _)| *id)
            .collect();
        for call_id in rang_out {
            if let Some(ringing) = self.ringing.remove(&call_id) {
                self.missed(call_id, ringing, now, rng, out);
            }
        }
    }

    /// A contact's call signal, decrypted and not a duplicate: shown with how
    /// far the contact is trusted; an offer starts ringing, and the caller's
    /// hang-up before an answer makes the call missed.
    fn received_call(
        &mut self,
        contact: ContactId,
        device: DeviceId,
        call: CallSignal,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) {
        let (verified, key_changed) = self
            .contacts
            .get(contact)
            .map_or((false, false), |c| (c.verified, c.unacknowledged_change.is_some()));
        let call_id = call.call_id;
        let ours = self.ringing.get(&call_id).is_some_and(|r| r.contact == contact);
        match &call.signal {
            // The caller hung up before its offer got here: missed, no ringing.
            Signal::Offer(sdp) if self.ended_calls.contains(&(call_id, contact)) => {
                self.ended_calls.retain(|ended| *ended != (call_id, contact));
                let ringing = Ringing { contact, since: now, video: offers_video(sdp) };
                self.missed(call_id, ringing, now, rng, out);
                return;
            }
            Signal::Offer(sdp) if !self.ringing.contains_key(&call_id) => {
                if self.ringing.len() >= MAX_RINGING
                    && let Some((&oldest, _)) = self.ringing.iter().min_by_key(|(_, r)| r.since)
                    && let Some(ringing) = self.ringing.remove(&oldest)
                {
                    self.missed(oldest, ringing, now, rng, out);
                }
                let ringing = Ringing { contact, since: now, video: offers_video(sdp) };
                self.ringing.insert(call_id, ringing);
            }
            // The caller gave up, or another device of the user's answered.
            Signal::HangUp(_) if ours => {
                out.push(Effect::Notify(Event::CallSignal {
                    contact,
                    device,
                    signal: call,
                    verified,
                    key_changed,
                }));
                if let Some(ringing) = self.ringing.remove(&call_id) {
                    self.missed(call_id, ringing, now, rng, out);
                }
                return;
            }
            Signal::HangUp(_) => {
                if self.ended_calls.len() >= MAX_ENDED_CALLS {
                    self.ended_calls.pop_front();
                }
                self.ended_calls.push_back((call_id, contact));
            }
            _ => {}
        }
        out.push(Effect::Notify(Event::CallSignal {
            contact,
            device,
            signal: call,
            verified,
            key_changed,
        }));
    }
}

impl Messenger {
    /// A call the user did not take: an entry in the conversation's history
    /// (unread, under the conversation's vanishing timer; no receipt goes
    /// for it), and the event that stops the ringing.
    fn missed(
        &mut self,
        call_id: CallId,
        ringing: Ringing,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) {
        let contact = ringing.contact;
        let id = MessageId::new(now.0, rng);
        let timer = self.timer(contact);
        let record = MessageRecord {
            id,
            contact,
            direction: Direction::Incoming,
            sent_at: ringing.since,
            received_at: now,
            text: String::new(),
            file: None,
            call: Some(CallEntry { call_id, outcome: CallOutcome::Missed, video: ringing.video }),
            status: Status::Unread,
            timer,
            expires_at: None,
        };
        self.unread.insert(id, UnreadRecord { id, contact, timer, receipt: false });
        out.push(Effect::Write(Write::Message(record.clone())));
        out.push(Effect::Notify(Event::MessageReceived(record)));
        out.push(Effect::Notify(Event::CallMissed { contact, call_id, at: ringing.since }));
    }
}

// Sessions and the outbox.
impl Messenger {
    fn peer_mut(&mut self, identity: &VerifyingKey, device: DeviceId) -> Option<&mut PeerDevice> {
        self.peers.get_mut(&identity.to_bytes())?.get_mut(&device)
    }

    /// The devices of `identity` this device has a session with.
    fn session_devices(&self, identity: &VerifyingKey) -> Vec<DeviceId> {
        self.peers
            .get(&identity.to_bytes())
            .map(|devices| {
                devices.iter().filter(|(_, p)| p.session.is_some()).map(|(id, _)| *id).collect()
            })
            .unwrap_or_default()
    }

    /// Encrypts and sends the texts [`Messenger::hold`] kept back, per
    /// contact in the order of their first text: to each device of the
    /// contact, several texts in one envelope ([`envelope_runs`]). A contact
    /// without a session yet gets them one by one into its waiting list, as
    /// [`Messenger::send_content`] does.
    fn flush_held(&mut self, now: UnixMillis, rng: &mut impl CryptoRng, out: &mut Vec<Effect>) {
        if self.held.is_empty() {
            return;
        }
        let mut by_contact: Vec<(ContactId, Vec<Content>)> = Vec::new();
        for (contact, content) in std::mem::take(&mut self.held) {
            match by_contact.iter_mut().find(|(c, _)| *c == contact) {
                Some((_, contents)) => contents.push(content),
                None => by_contact.push((contact, vec![content])),
            }
        }
        for (contact, contents) in by_contact {
            let Some(identity) = self.contacts.get(contact).map(|c| c.identity) else { continue };
            let devices = self.session_devices(&identity);
            if devices.is_empty() {
                for content in &contents {
                    self.send_content(contact, content, Awaits::Receipt, now, rng, out);
                }
                continue;
            }
            for run in envelope_runs(&contents) {
                let ids: Vec<MessageId> = run.iter().map(|c| c.id).collect();
                let plaintext = match Content::encode_all(run) {
                    Ok(plaintext) => plaintext,
                    // Texts within their limits always encode; were one
                    // refused, each goes alone rather than not at all.
                    Err(_) => {
                        for content in run {
                            self.send_content(contact, content, Awaits::Receipt, now, rng, out);
                        }
                        continue;
                    }
                };
                for &device in &devices {
                    let messages = (ids[0], &ids[1..]);
                    self.encrypt_to(
                        &identity,
                        device,
                        messages,
                        &plaintext,
                        Awaits::Receipt,
                        now,
                        rng,
                        out,
                    );
                }
            }
        }
    }

    /// Encrypts `content` to every device of `contact` that has a session; if
    /// none has, keeps it waiting and asks for the contact's bundles.
    fn send_content(
        &mut self,
        contact: ContactId,
        content: &Content,
        awaits: Awaits,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) {
        let Some(identity) = self.contacts.get(contact).map(|c| c.identity) else { return };
        let plaintext = content.encode();
        let devices = self.session_devices(&identity);
        if devices.is_empty() {
            let waiting = Waiting { message: content.id, contact, content: plaintext, awaits };
            out.push(Effect::Write(Write::Waiting(waiting.clone())));
            self.waiting.insert(content.id, waiting);
            self.refetch_at.insert(contact, now.saturating_add(BUNDLE_REFETCH));
            out.push(Effect::FetchBundles { identity });
            return;
        }
        for device in devices {
            self.encrypt_to(
                &identity,
                device,
                (content.id, &[]),
                &plaintext,
                awaits,
                now,
                rng,
                out,
            );
        }
    }

    /// Notes that `id` is to be acknowledged to `contact`: the receipt goes
    /// at the first `TimePassed` from [`Self::receipt_due_at`] on (at once
    /// when no receipt went to `contact` within [`RECEIPT_INTERVAL`]), so a
    /// burst of envelopes gets one receipt for all of them (one encryption
    /// and one envelope instead of one per message).
    fn receipt_due(&mut self, contact: ContactId, id: MessageId) {
        self.pending_receipts.entry(contact).or_default().push(id);
    }

    /// A device of `identity` is online: the receipts owed to it since
    /// before a restart are due.
    fn online(&mut self, identity: &VerifyingKey) {
        let Some(contact) = self.contacts.by_identity(identity).map(|c| c.id) else { return };
        if let Some(ids) = self.receipts_owed.remove(&contact) {
            self.pending_receipts.entry(contact).or_default().extend(ids);
        }
    }

    /// When `contact`'s pending receipt may go: at once, or at the end of
    /// the [`RECEIPT_INTERVAL`] that began with the last one sent.
    fn receipt_due_at(&self, contact: ContactId) -> UnixMillis {
        self.receipts_sent_at
            .get(&contact)
            .map_or(UnixMillis(0), |at| at.saturating_add(RECEIPT_INTERVAL))
    }

    fn send_receipt(
        &mut self,
        contact: ContactId,
        kind: ReceiptKind,
        ids: Vec<MessageId>,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) {
        let Ok(receipt) = Receipt::new(kind, ids) else { return };
        let content = Content {
            id: MessageId::new(now.0, rng),
            sent_at_ms: now.0,
            timer: VanishingTimer::OFF,
            body: Body::Receipt(receipt),
        };
        self.send_content(contact, &content, Awaits::Transport, now, rng, out);
    }

    /// Encrypts, seals and queues one envelope for one device, and sends its
    /// first attempt. The advanced ratchet and the outbox entry are written
    /// together, so a retry after a crash sends the same bytes.
    #[allow(clippy::too_many_arguments)]
    fn encrypt_to(
        &mut self,
        identity: &VerifyingKey,
        device: DeviceId,
        (message, more): (MessageId, &[MessageId]),
        plaintext: &[u8],
        awaits: Awaits,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) {
        let Some((envelope, reachable)) = self.seal_for(identity, device, plaintext, rng, out)
        else {
            return;
        };
        let route = retry::route(0, reachable);
        // Random, not a counter: an acknowledgement still in flight from
        // before a restart must never match a new entry.
        let mut id = OutboxId(rng.next_u64());
        while self.outbox.contains(id) {
            id = OutboxId(rng.next_u64());
        }
        let entry = OutboxEntry {
            id,
            message,
            more: more.to_vec(),
            identity: *identity,
            device,
            envelope: envelope.encode(),
            awaits,
            attempts: 1,
            next_attempt_at: retry::next_attempt(0, now, rng),
            queued_at: now,
            reached: None,
            mailbox_at: None,
        };
        out.push(Effect::Write(Write::Outbox(entry.clone())));
        out.push(Effect::Send(Send {
            entry: id,
            identity: *identity,
            device,
            route,
            mailbox: self.mailbox_of(route, identity, device, now),
            envelope: entry.envelope.clone(),
        }));
        self.outbox.insert(entry);
        self.outbox.attempt_started(id, now);
    }

    /// Encrypts `plaintext` with the session of one device and seals it:
    /// the envelope and whether the device is believed reachable. Writes the
    /// advanced ratchet (`out`) so that the envelope's key is never reused.
    fn seal_for(
        &mut self,
        identity: &VerifyingKey,
        device: DeviceId,
        plaintext: &[u8],
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) -> Option<(Envelope, bool)> {
        let public = self.public;
        let peer = self.peers.get_mut(&identity.to_bytes()).and_then(|d| d.get_mut(&device))?;
        let session = peer.session.as_mut()?;
        let ratchet = session.encrypt(plaintext, rng).ok()?;
        let device_message = match &peer.initiation {
            Some(initiation) => DeviceMessage::first(initiation.clone(), ratchet),
            None => DeviceMessage::ratchet(ratchet),
        };
        let device_message = device_message.ok()?;
        let recipient = *peer.certificate.agreement_key();
        let sealed = self
            .sealer
            .seal(&public, &self.device, &recipient, &device_message.encode(), rng)
            .ok()?;
        let envelope = Envelope::new(sealed).ok()?;
        let reachable = peer.reachable;
        out.push(Effect::Write(peer_write(identity, peer)));
        Some((envelope, reachable))
    }

    /// Where an envelope sent by `route` goes: for the mailbox, the
    /// recipient device's mailbox key of the current epoch (derived once per
    /// device and epoch: a tweak costs an elliptic-curve multiplication).
    fn mailbox_of(
        &mut self,
        route: Route,
        identity: &VerifyingKey,
        device: DeviceId,
        now: UnixMillis,
    ) -> Option<VerifyingKey> {
        if route == Route::Direct {
            return None;
        }
        let epoch = mailbox::epoch_of(now.0);
        if self.mailbox_keys.0 != epoch {
            self.mailbox_keys = (epoch, BTreeMap::new());
        }
        let cache = &mut self.mailbox_keys.1;
        if let Some(key) = cache.get(&(identity.to_bytes(), device)) {
            return Some(*key);
        }
        let key = mailbox::mailbox_key(identity, device, epoch).ok()?;
        if cache.len() < MAX_CACHED_MAILBOX_KEYS {
            cache.insert((identity.to_bytes(), device), key);
        }
        Some(key)
    }

    /// Sends every outbox entry whose retry is due.
    fn retry_due(&mut self, now: UnixMillis, rng: &mut impl CryptoRng, out: &mut Vec<Effect>) {
        for id in self.outbox.due(now) {
            let Some(mut entry) = self.outbox.remove(id) else { continue };
            if retry::expired(entry.queued_at, now) {
                self.mailbox_failed.remove(&id);
                out.push(Effect::Write(Write::DeleteOutbox(id)));
                if entry.awaits == Awaits::Receipt && entry.reached.is_none() {
                    for message in entry.messages() {
                        self.fail(message, FailReason::Undeliverable, out);
                    }
                }
                continue;
            }
            let reachable = self
                .peers
                .get(&entry.identity.to_bytes())
                .and_then(|d| d.get(&entry.device))
                .is_some_and(|p| p.reachable);
            let route = if self.mailbox_failed.remove(&id) {
                Some(Route::Direct)
            } else {
                retry::retry_route(entry.attempts, reachable, entry.mailbox_at, now)
            };
            entry.next_attempt_at = retry::next_attempt(entry.attempts, now, rng);
            entry.attempts = entry.attempts.saturating_add(1);
            out.push(Effect::Write(Write::Outbox(entry.clone())));
            // A copy waits in the mailbox and the device is away: wait too.
            let Some(route) = route else {
                self.outbox.insert(entry);
                continue;
            };
            out.push(Effect::Send(Send {
                entry: id,
                identity: entry.identity,
                device: entry.device,
                route,
                mailbox: self.mailbox_of(route, &entry.identity, entry.device, now),
                envelope: entry.envelope.clone(),
            }));
            self.outbox.insert(entry);
            self.outbox.attempt_started(id, now);
        }
    }

    fn fail(&mut self, message: MessageId, reason: FailReason, out: &mut Vec<Effect>) {
        let Some(contact) = self.sent.remove(&message) else { return };
        let status = Status::Failed(reason);
        out.push(Effect::Write(Write::Status { id: message, status }));
        out.push(Effect::Notify(Event::StatusChanged { id: message, contact, status }));
    }

    fn acknowledged(&mut self, id: OutboxId, route: Route, now: UnixMillis, out: &mut Vec<Effect>) {
        let Some(awaits) = self.outbox.get(id).map(|e| e.awaits) else { return };
        self.mailbox_failed.remove(&id);
        if awaits == Awaits::Transport {
            self.outbox.remove(id);
            out.push(Effect::Write(Write::DeleteOutbox(id)));
            return;
        }
        let acknowledged = self.outbox.update(id, |entry| {
            match route {
                Route::Mailbox => entry.mailbox_at = Some(now),
                // The device has it: its receipt will come.
                Route::Direct => {
                    let patience = now.saturating_add(retry::RECEIPT_PATIENCE);
                    entry.next_attempt_at = entry.next_attempt_at.max(patience);
                }
            }
            // A message stays in the outbox until its delivery receipt; the
            // network's acknowledgement only tells the user how far it got.
            let first = entry.reached != Some(Route::Direct);
            if first {
                entry.reached = Some(route);
            }
            (entry.clone(), first)
        });
        let Some((entry, first)) = acknowledged else { return };
        if !first {
            if route == Route::Mailbox {
                out.push(Effect::Write(Write::Outbox(entry)));
            }
            return;
        }
        let messages: Vec<MessageId> = entry.messages().collect();
        out.push(Effect::Write(Write::Outbox(entry)));
        for message in messages {
            let Some(contact) = self.sent.get(&message).copied() else { continue };
            let status = match route {
                Route::Direct => Status::Sent,
                Route::Mailbox => Status::InMailbox,
            };
            out.push(Effect::Write(Write::Status { id: message, status }));
            out.push(Effect::Notify(Event::StatusChanged { id: message, contact, status }));
        }
    }

    /// Starts sessions with the devices of `identity` from fetched bundles,
    /// then sends what was waiting for them.
    fn bundles_fetched(
        &mut self,
        identity: &VerifyingKey,
        records: &[Vec<u8>],
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) {
        let Some(contact) = self.contacts.by_identity(identity).map(|c| c.id) else { return };
        for bytes in records {
            let bundle = UnverifiedPreKeyRecord::decode(bytes)
                .ok()
                .and_then(|record| record.verify(Some(identity)).ok())
                .map(|record| match record.prekeys {
                    proto_bundle::PreKeys::Bundle(bundle) => bundle,
                    proto_bundle::PreKeys::Publication(mut publication) => {
                        publication.take_bundle()
                    }
                });
            let Some(bundle) = bundle else {
                self.refuse(Refusal::InvalidBundle, out);
                continue;
            };
            let device = bundle.device().device_id();
            let known = self.peers.get(&identity.to_bytes()).and_then(|d| d.get(&device));
            if known.is_some_and(|p| p.session.is_some()) {
                continue;
            }
            let Ok(initiated) = handshake::initiate(&self.identity, &self.device, &bundle, rng)
            else {
                self.refuse(Refusal::InvalidBundle, out);
                continue;
            };
            let Ok(session) =
                Session::new_initiator(initiated.keys, initiated.their_ratchet_key, rng)
            else {
                self.refuse(Refusal::InvalidBundle, out);
                continue;
            };
            let peer = PeerDevice {
                certificate: *bundle.device(),
                session: Some(session),
                archived: Vec::new(),
                initiation: Some(initiated.initiation.to_bytes()),
                accepted_initiations: Vec::new(),
                reachable: false,
            };
            out.push(Effect::Write(peer_write(identity, &peer)));
            self.peers.entry(identity.to_bytes()).or_default().insert(device, peer);
        }
        self.flush_waiting(contact, now, rng, out);
    }

    /// Sends the messages waiting for a session with `contact`, if one exists
    /// now and sending is allowed.
    fn flush_waiting(
        &mut self,
        contact: ContactId,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) {
        let Some(identity) = self.contacts.get(contact).map(|c| c.identity) else { return };
        if self.contacts.check_can_send(contact).is_err() {
            return;
        }
        let has_session = self
            .peers
            .get(&identity.to_bytes())
            .is_some_and(|d| d.values().any(|p| p.session.is_some()));
        if !has_session {
            return;
        }
        self.refetch_at.remove(&contact);
        let (calls, others): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.call_waiting).into_iter().partition(|w| w.contact == contact);
        self.call_waiting = others;
        for call in calls {
            let signal = (call.contact, call.call_id, call.signal);
            self.send_call_content(signal, &call.content, call.expires_at, now, rng, out);
        }
        let ids: Vec<MessageId> =
            self.waiting.values().filter(|w| w.contact == contact).map(|w| w.message).collect();
        for id in ids {
            let Some(waiting) = self.waiting.remove(&id) else { continue };
            out.push(Effect::Write(Write::DeleteWaiting(id)));
            let devices: Vec<DeviceId> = self
                .peers
                .get(&identity.to_bytes())
                .map(|d| d.iter().filter(|(_, p)| p.session.is_some()).map(|(id, _)| *id).collect())
                .unwrap_or_default();
            for device in devices {
                self.encrypt_to(
                    &identity,
                    device,
                    (id, &[]),
                    &waiting.content,
                    waiting.awaits,
                    now,
                    rng,
                    out,
                );
            }
        }
    }

    fn refuse(&mut self, refusal: Refusal, out: &mut Vec<Effect>) {
        *self.refusals.entry(refusal).or_default() += 1;
        out.push(Effect::Notify(Event::Refused(refusal)));
    }
}

/// The write that keeps a peer device's whole state.
fn peer_write(identity: &VerifyingKey, peer: &PeerDevice) -> Write {
    Write::Peer(PeerRecord {
        identity: *identity,
        device: peer.certificate.device_id(),
        certificate: peer.certificate.to_bytes(),
        session: peer.session.as_ref().map(Session::to_record),
        archived: peer.archived.iter().map(Session::to_record).collect(),
        initiation: peer.initiation.clone(),
        accepted_initiations: peer.accepted_initiations.clone(),
    })
}

// Receiving.
impl Messenger {
    fn receive(
        &mut self,
        bytes: &[u8],
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) -> Option<(VerifyingKey, DeviceId)> {
        let hash = xchat_crypto::kdf::sha256(&[bytes]);
        if let Some((contact, ids)) = self.envelopes.get(&hash).cloned() {
            // A retry of an envelope already read: its receipt was lost.
            self.refuse(Refusal::Duplicate, out);
            for id in ids {
                self.receipt_due(contact, id);
            }
            return None;
        }
        let Ok(envelope) = Envelope::decode(bytes) else {
            self.refuse(Refusal::Malformed, out);
            return None;
        };
        let Ok(opened) = self.opener.open(&self.device, envelope.sealed()) else {
            self.refuse(Refusal::Undecryptable, out);
            return None;
        };
        let identity = *opened.sender().signing_key();
        let certificate = *opened.sender_device();
        let Some(contact) = self.contacts.by_identity(&identity).map(|c| c.id) else {
            self.refuse(Refusal::UnknownSender, out);
            return None;
        };
        let Ok(message) = DeviceMessage::decode(opened.payload()) else {
            self.refuse(Refusal::Malformed, out);
            return None;
        };
        let plaintext = match self.decrypt(&identity, certificate, &message, rng, out) {
            Ok(plaintext) => plaintext,
            Err(refusal) => {
                self.refuse(refusal, out);
                return None;
            }
        };
        let Ok(contents) = Content::decode_all(&plaintext) else {
            self.refuse(Refusal::Malformed, out);
            return None;
        };
        let device = certificate.device_id();
        // Several texts in one envelope: each as if it had come alone.
        for content in contents {
            if matches!(content.body, Body::Text(_) | Body::File(_)) {
                self.remember_envelope(hash, contact, content.id);
                out.push(Effect::Write(Write::SeenEnvelope { hash, contact, message: content.id }));
            }
            self.received_content(contact, &identity, device, content, now, rng, out);
        }
        Some((identity, device))
    }

    /// Decrypts a device message, starting a session if it carries an
    /// initiation. Compute, then commit: nothing changes unless it decrypts.
    fn decrypt(
        &mut self,
        identity: &VerifyingKey,
        certificate: DeviceCertificate,
        message: &DeviceMessage,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) -> Result<Zeroizing<Vec<u8>>, Refusal> {
        let device = certificate.device_id();
        let devices = self.peers.entry(identity.to_bytes()).or_default();
        let accepted = message.initiation().and_then(|bytes| {
            let initiation = UnverifiedInitiation::from_bytes(bytes).ok()?;
            let ephemeral = *initiation.ephemeral_key().as_bytes();
            let known = devices.get(&device).is_some_and(|p| {
                p.session.is_some() && p.accepted_initiations.contains(&ephemeral)
            });
            Some((initiation, ephemeral, known))
        });
        if message.initiation().is_some() && accepted.is_none() {
            return Err(Refusal::Malformed);
        }
        let plaintext = match accepted {
            Some((initiation, ephemeral, false)) => {
                // A new session: answer the handshake, decrypt, and only then
                // consume the one-time prekeys and keep the session.
                let responded = handshake::respond(
                    &self.identity,
                    &self.device,
                    &self.prekeys,
                    initiation,
                    Some(identity),
                )
                .map_err(|_| Refusal::Undecryptable)?;
                if responded.their_device != certificate {
                    return Err(Refusal::Undecryptable);
                }
                let mut session = Session::new_responder(responded.keys, responded.our_ratchet_key);
                let plaintext = session
                    .decrypt(message.ratchet_message(), rng)
                    .map_err(|_| Refusal::Undecryptable)?;
                if self.prekeys.consume(responded.prekey_use).is_ok() {
                    out.push(Effect::Write(Write::PreKeys(self.prekeys.to_record())));
                }
                let devices = self.peers.entry(identity.to_bytes()).or_default();
                let reachable = devices.get(&device).is_some_and(|p| p.reachable);
                let (mut archived, mut accepted_initiations) = match devices.remove(&device) {
                    Some(previous) => {
                        let mut archived = previous.archived;
                        // Keep the session this one replaces: if both sides
                        // started a session at once, the other side may go
                        // on with it (see `archived` on PeerDevice).
                        archived.splice(0..0, previous.session);
                        (archived, previous.accepted_initiations)
                    }
                    None => (Vec::new(), Vec::new()),
                };
                archived.truncate(MAX_ARCHIVED_SESSIONS);
                if accepted_initiations.len() >= MAX_REMEMBERED_INITIATIONS {
                    accepted_initiations.remove(0);
                }
                accepted_initiations.push(ephemeral);
                devices.insert(
                    device,
                    PeerDevice {
                        certificate,
                        session: Some(session),
                        archived,
                        initiation: None,
                        accepted_initiations,
                        reachable,
                    },
                );
                plaintext
            }
            // A retry of a first message, or an ordinary message: the
            // session decrypts it (and refuses a replay).
            _ => {
                let devices = self.peers.entry(identity.to_bytes()).or_default();
                let peer = devices.get_mut(&device).ok_or(Refusal::Undecryptable)?;
                if peer.certificate != certificate {
                    return Err(Refusal::Undecryptable);
                }
                let session = peer.session.as_mut().ok_or(Refusal::Undecryptable)?;
                let plaintext = match session.decrypt(message.ratchet_message(), rng) {
                    Ok(plaintext) => plaintext,
                    Err(_) => {
                        // Perhaps the device goes on with a session we
                        // replaced: the one that decrypts becomes current.
                        let (index, plaintext) = peer
                            .archived
                            .iter_mut()
                            .enumerate()
                            .find_map(|(i, s)| {
                                Some((i, s.decrypt(message.ratchet_message(), rng).ok()?))
                            })
                            .ok_or(Refusal::Undecryptable)?;
                        let promoted = peer.archived.remove(index);
                        let replaced = peer.session.replace(promoted);
                        peer.archived.splice(0..0, replaced);
                        plaintext
                    }
                };
                // The device answered on our session: it has it, so our
                // initiation need not travel any more.
                if message.initiation().is_none() {
                    peer.initiation = None;
                }
                plaintext
            }
        };
        if let Some(peer) = self.peers.get(&identity.to_bytes()).and_then(|d| d.get(&device)) {
            out.push(Effect::Write(peer_write(identity, peer)));
        }
        Ok(plaintext)
    }

    #[allow(clippy::too_many_arguments)]
    fn received_content(
        &mut self,
        contact: ContactId,
        identity: &VerifyingKey,
        device: DeviceId,
        content: Content,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) {
        match content.body {
            Body::Text(text) => {
                if !self.remember_received(content.id) {
                    // A retry whose first copy arrived: say so again, once.
                    self.refuse(Refusal::Duplicate, out);
                } else {
                    let record = MessageRecord {
                        id: content.id,
                        contact,
                        direction: Direction::Incoming,
                        sent_at: UnixMillis(content.sent_at_ms),
                        received_at: now,
                        text: text.into_string(),
                        file: None,
                        call: None,
                        status: Status::Unread,
                        timer: content.timer,
                        expires_at: None,
                    };
                    let unread = UnreadRecord {
                        id: content.id,
                        contact,
                        timer: content.timer,
                        receipt: true,
                    };
                    self.unread.insert(content.id, unread);
                    out.push(Effect::Write(Write::Message(record.clone())));
                    out.push(Effect::Notify(Event::MessageReceived(record)));
                }
                self.receipt_due(contact, content.id);
            }
            Body::Receipt(receipt) => {
                self.received_receipt(contact, identity, device, &receipt, out);
            }
            Body::TimerChange(timer) => {
                if self.remember_received(content.id) {
                    self.timers.insert(contact, timer);
                    out.push(Effect::Write(Write::Conversation(ConversationRecord {
                        contact,
                        timer,
                    })));
                    out.push(Effect::Notify(Event::TimerChanged { contact, timer }));
                }
            }
            Body::File(descriptor) => {
                if !self.remember_received(content.id) {
                    self.refuse(Refusal::Duplicate, out);
                } else {
                    let offer = (content.id, UnixMillis(content.sent_at_ms), content.timer);
                    self.received_file(contact, device, offer, descriptor, now, out);
                }
                self.receipt_due(contact, content.id);
            }
            Body::Call(call) => {
                if self.remember_received(content.id) {
                    self.received_call(contact, device, call, now, rng, out);
                } else {
                    self.refuse(Refusal::Duplicate, out);
                }
            }
            Body::Typing(_) => {}
        }
    }

    fn received_receipt(
        &mut self,
        contact: ContactId,
        identity: &VerifyingKey,
        device: DeviceId,
        receipt: &Receipt,
        out: &mut Vec<Effect>,
    ) {
        for id in receipt.message_ids() {
            // Only receipts for our messages to this very contact count.
            if self.sent.get(id) != Some(&contact) {
                continue;
            }
            let mut waited = false;
            for entry in self.outbox.of_message(*id) {
                if self
                    .outbox
                    .get(entry)
                    .is_none_or(|e| e.identity != *identity || e.device != device)
                {
                    continue;
                }
                // An envelope of several texts leaves with the last receipt.
                match self.outbox.update(entry, |e| e.take(*id).map(|last| (last, e.clone()))) {
                    Some(Some((true, _))) => {
                        self.outbox.remove(entry);
                        self.mailbox_failed.remove(&entry);
                        out.push(Effect::Write(Write::DeleteOutbox(entry)));
                    }
                    Some(Some((false, rest))) => out.push(Effect::Write(Write::Outbox(rest))),
                    Some(None) | None => continue,
                }
                waited = true;
            }
            let status = match receipt.kind() {
                // A second delivery receipt from that device (it acknowledges
                // again after a restart, or a retry) changes nothing.
                ReceiptKind::Delivered if !waited => continue,
                ReceiptKind::Delivered => Status::Delivered,
                ReceiptKind::Read => {
                    // Nothing after "read": stop listening for this message.
                    self.sent.remove(id);
                    Status::Read
                }
            };
            out.push(Effect::Write(Write::Status { id: *id, status }));
            out.push(Effect::Notify(Event::StatusChanged { id: *id, contact, status }));
        }
    }

    /// Remembers the hash of an envelope that carried a text.
    fn remember_envelope(&mut self, hash: [u8; 32], contact: ContactId, id: MessageId) {
        match self.envelopes.get_mut(&hash) {
            Some((_, ids)) => ids.push(id),
            None => {
                self.envelopes.insert(hash, (contact, vec![id]));
                self.envelope_order.push_back(hash);
            }
        }
        if self.envelope_order.len() > MAX_REMEMBERED_IDS
            && let Some(oldest) = self.envelope_order.pop_front()
        {
            self.envelopes.remove(&oldest);
        }
    }

    /// Remembers a received message id; false if it was already known.
    fn remember_received(&mut self, id: MessageId) -> bool {
        if !self.received.insert(id) {
            return false;
        }
        self.received_order.push_back(id);
        if self.received_order.len() > MAX_REMEMBERED_IDS
            && let Some(oldest) = self.received_order.pop_front()
        {
            self.received.remove(&oldest);
        }
        true
    }
}

// Time.
impl Messenger {
    fn time_passed(&mut self, now: UnixMillis, rng: &mut impl CryptoRng, out: &mut Vec<Effect>) {
        if self.mailbox_poll_at <= now {
            self.mailbox_poll_at = now.saturating_add(MAILBOX_POLL);
            let current = mailbox::epoch_of(now.0);
            let keys: Vec<MailboxKey> = (current.saturating_sub(MAILBOX_EPOCHS_BEHIND)
                ..=current + 1)
                .filter_map(|epoch| {
                    let key = mailbox::mailbox_signing_key(&self.identity, self.device.id(), epoch);
                    key.ok().map(|key| MailboxKey { epoch, key })
                })
                .collect();
            out.push(Effect::FetchMailbox(keys));
        }
        self.receipts_sent_at.retain(|_, at| at.saturating_add(RECEIPT_INTERVAL) > now);
        let due: Vec<ContactId> = self
            .pending_receipts
            .keys()
            .copied()
            .filter(|contact| self.receipt_due_at(*contact) <= now)
            .collect();
        for contact in due {
            let Some(mut ids) = self.pending_receipts.remove(&contact) else { continue };
            ids.sort_unstable();
            ids.dedup();
            for chunk in ids.chunks(xchat_proto::content::MAX_RECEIPT_IDS) {
                self.send_receipt(contact, ReceiptKind::Delivered, chunk.to_vec(), now, rng, out);
            }
            self.receipts_sent_at.insert(contact, now);
        }
        while let Some(&(at, id)) = self.expiring.first() {
            if at > now {
                break;
            }
            self.expiring.pop_first();
            self.unread.remove(&id);
            self.sent.remove(&id);
            out.push(Effect::Write(Write::DeleteMessage(id)));
            if let Some(file) = self.attachments.remove(&id) {
                self.transfers.remove(&file);
                out.push(Effect::Write(Write::DeleteTransfer(file)));
                out.push(Effect::DeleteFile { file });
            }
            out.push(Effect::Notify(Event::MessageExpired { id }));
        }
        self.retry_due(now, rng, out);
        self.calls_due(now, rng, out);
        let due: Vec<ContactId> =
            self.refetch_at.iter().filter(|(_, at)| **at <= now).map(|(c, _)| *c).collect();
        for contact in due {
            let waiting = self.waiting.values().any(|w| w.contact == contact)
                || self.call_waiting.iter().any(|w| w.contact == contact);
            match self.contacts.get(contact).map(|c| c.identity) {
                Some(identity) if waiting => {
                    self.refetch_at.insert(contact, now.saturating_add(BUNDLE_REFETCH));
                    out.push(Effect::FetchBundles { identity });
                }
                _ => {
                    self.refetch_at.remove(&contact);
                }
            }
        }
        self.maintain_prekeys(now, rng, out);
    }

    /// Rotates the signed prekey on schedule and tops up one-time prekeys,
    /// then asks for the new set to be published.
    fn maintain_prekeys(
        &mut self,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
        out: &mut Vec<Effect>,
    ) {
        let mut changed = false;
        if self.prekeys.needs_rotation(now.0) {
            changed |= self.prekeys.rotate_signed_prekey(&self.device, now.0, rng).is_ok();
        }
        if self.prekeys.needs_replenishment() {
            let room = self.prekeys.one_time_prekey_room();
            changed |= self.prekeys.generate_one_time_prekeys(&self.device, room, rng).is_ok();
        }
        self.prekeys.forget_retired_prekeys(now.0);
        if changed {
            out.push(Effect::Write(Write::PreKeys(self.prekeys.to_record())));
            if let Ok(record) = self.prekey_record(now) {
                out.push(Effect::PublishPreKeys { record });
            }
        }
    }
}
