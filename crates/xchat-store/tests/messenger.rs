//! The messenger core's writes on a real SQLCipher store: each kind of
//! write, read back as the `State` a restarted messenger loads and as the
//! history pages the UI shows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed setup is a failed test

mod common;

use common::create;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use xchat_core::contact::{Contact, ContactId};
use xchat_core::io::Write;
use xchat_core::record::{
    Awaits, CallEntry, CallOutcome, ConversationRecord, Direction, FailReason, MessageRecord,
    OutboxEntry, OutboxId, Settings, Status, UnreadRecord, Waiting,
};
use xchat_core::retry::Route;
use xchat_core::time::UnixMillis;
use xchat_crypto::device::DeviceId;
use xchat_proto::content::{CallId, MessageId, VanishingTimer};
use xchat_store::{MAX_HISTORY_PAGE, Store};

fn contact(byte: u8) -> Contact {
    Contact {
        id: ContactId([byte; 16]),
        name: format!("contact {byte}"),
        identity: common::identity(byte).signing_key().verifying_key(),
        verified: false,
        unacknowledged_change: None,
        added_at: UnixMillis(1_000),
    }
}

fn message(
    rng: &mut ChaCha20Rng,
    contact: ContactId,
    sent_at: u64,
    status: Status,
) -> MessageRecord {
    let direction = match status {
        Status::Unread | Status::Seen => Direction::Incoming,
        _ => Direction::Outgoing,
    };
    MessageRecord {
        id: MessageId::random(rng),
        contact,
        direction,
        sent_at: UnixMillis(sent_at),
        received_at: UnixMillis(sent_at + 5),
        text: format!("text sent at {sent_at}"),
        status,
        timer: VanishingTimer::OFF,
        expires_at: None,
        file: None,
        call: None,
    }
}

fn apply(store: &mut Store, writes: &[Write]) {
    store.apply(|batch| batch.write_all(writes)).unwrap();
}

#[test]
fn history_pages_are_newest_first_with_a_stable_tie_break() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = create(dir.path(), 1);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (alice, bob) = (contact(1), contact(2));
    let mut writes = vec![Write::Contact(alice.clone()), Write::Contact(bob.clone())];
    let mut expected = Vec::new();
    for i in 0..45 {
        // Three messages share each timestamp: the id orders them.
        let record = message(&mut rng, alice.id, 10_000 + i / 3, Status::Seen);
        expected.push(record.clone());
        writes.push(Write::Message(record));
        writes.push(Write::Message(message(&mut rng, bob.id, 10_000 + i, Status::Seen)));
    }
    apply(&mut store, &writes);
    expected.sort_by_key(|m| std::cmp::Reverse(m.order_key()));

    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store.history(alice.id, before, 10).unwrap();
        let Some(last) = page.last() else { break };
        before = Some((last.sent_at, last.id));
        pages.push(page.len());
        expected.drain(..page.len()).zip(page).for_each(|(want, got)| assert_eq!(want, got));
    }
    assert_eq!(pages, [10, 10, 10, 10, 5]);
    assert!(expected.is_empty());
    assert_eq!(store.history(ContactId([9; 16]), None, 10).unwrap(), []);
    assert!(store.history(alice.id, None, usize::MAX).unwrap().len() <= MAX_HISTORY_PAGE);
}

#[test]
fn every_write_reads_back_as_the_state_a_messenger_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = create(dir.path(), 1);
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let alice = contact(1);
    let mut changed = contact(2);
    changed.verified = true;
    changed.unacknowledged_change = Some(common::identity(3).signing_key().verifying_key());
    let timer = VanishingTimer::from_secs(60).unwrap();

    let pending = message(&mut rng, alice.id, 1, Status::Pending);
    let delivered = message(&mut rng, alice.id, 2, Status::Sent);
    let read = message(&mut rng, alice.id, 3, Status::Delivered);
    let failed = message(&mut rng, alice.id, 4, Status::Pending);
    let unread = MessageRecord { timer, ..message(&mut rng, alice.id, 5, Status::Unread) };
    let seen = message(&mut rng, alice.id, 6, Status::Unread);
    let vanished = message(&mut rng, alice.id, 7, Status::Seen);
    let missed = MessageRecord {
        text: String::new(),
        call: Some(CallEntry {
            call_id: CallId::from_bytes([9; 16]),
            outcome: CallOutcome::Missed,
            video: true,
        }),
        ..message(&mut rng, alice.id, 8, Status::Unread)
    };
    let entry = OutboxEntry {
        id: OutboxId(u64::MAX - 7),
        message: pending.id,
        // Texts sent in the same envelope, in order.
        more: vec![MessageId::from_bytes([0x31; 16]), MessageId::from_bytes([0x30; 16])],
        identity: changed.identity,
        device: DeviceId::from_bytes([4; 16]),
        envelope: vec![1, 2, 3],
        awaits: Awaits::Receipt,
        attempts: 3,
        next_attempt_at: UnixMillis(99),
        queued_at: UnixMillis(9),
        reached: Some(Route::Mailbox),
        mailbox_at: Some(UnixMillis(50)),
    };
    let gone = OutboxEntry {
        id: OutboxId(1),
        more: Vec::new(),
        reached: None,
        mailbox_at: None,
        ..entry.clone()
    };
    let mut content = vec![0; 40];
    rng.fill_bytes(&mut content);
    let waiting = Waiting {
        message: MessageId::random(&mut rng),
        contact: alice.id,
        content: content.into(),
        awaits: Awaits::Transport,
    };
    let hash = [7; 32];
    let mut writes = vec![
        Write::Contact(alice.clone()),
        Write::Contact(contact(2)),
        Write::Contact(changed.clone()),
        Write::Conversation(ConversationRecord { contact: alice.id, timer }),
        Write::Settings(Settings { read_receipts: false }),
        Write::Outbox(gone.clone()),
        Write::Outbox(entry.clone()),
        Write::DeleteOutbox(gone.id),
        Write::Waiting(waiting.clone()),
        Write::SeenEnvelope { hash, contact: alice.id, message: unread.id },
    ];
    for record in [&pending, &delivered, &read, &failed, &unread, &seen, &vanished, &missed] {
        writes.push(Write::Message(record.clone()));
    }
    writes.extend([
        Write::Status { id: delivered.id, status: Status::Delivered },
        Write::Status { id: read.id, status: Status::Read },
        Write::Status { id: failed.id, status: Status::Failed(FailReason::NoSession) },
        Write::Status { id: seen.id, status: Status::Seen },
        Write::Expiry { id: seen.id, expires_at: UnixMillis(500) },
        Write::DeleteMessage(vanished.id),
    ]);
    apply(&mut store, &writes);
    drop(store);

    let store = Store::open_with_passphrase(dir.path(), common::PASSPHRASE).unwrap();
    let state = store.load_state().unwrap();
    assert_eq!(state.contacts, [alice.clone(), changed]);
    assert_eq!(state.conversations, [ConversationRecord { contact: alice.id, timer }]);
    assert!(!state.settings.read_receipts);
    assert_eq!(state.outbox, [entry]);
    assert_eq!(state.waiting, [waiting]);
    assert_eq!(state.envelopes, [(hash, alice.id, unread.id)]);
    let mut sent = state.sent.clone();
    sent.sort();
    let mut expected = vec![(pending.id, alice.id), (delivered.id, alice.id)];
    expected.sort();
    assert_eq!(sent, expected, "outgoing messages that may still get a receipt");
    assert_eq!(
        state.unread,
        [
            UnreadRecord { id: unread.id, contact: alice.id, timer, receipt: true },
            UnreadRecord {
                id: missed.id,
                contact: alice.id,
                timer: VanishingTimer::OFF,
                receipt: false,
            },
        ],
        "a missed call's entry is unread, and reading it sends no receipt"
    );
    assert_eq!(store.message(missed.id).unwrap(), Some(missed.clone()));
    assert_eq!(state.expiring, [(seen.id, UnixMillis(500))]);
    // Every received id, also of the message that vanished, oldest first
    // (a call's entry was written here, not received).
    assert_eq!(state.received, [unread.id, seen.id, vanished.id]);
    assert_eq!(store.message(vanished.id).unwrap(), None);
    let failed = store.message(failed.id).unwrap().unwrap();
    assert_eq!(failed.status, Status::Failed(FailReason::NoSession));
    assert_eq!(store.message(seen.id).unwrap().unwrap().expires_at, Some(UnixMillis(500)));
}

#[test]
fn a_batch_that_breaks_a_rule_of_the_schema_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = create(dir.path(), 1);
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let alice = contact(1);
    // A message of a contact the store does not know.
    let orphan = message(&mut rng, ContactId([8; 16]), 1, Status::Pending);
    let result =
        store.apply(|batch| batch.write_all(&[Write::Contact(alice), Write::Message(orphan)]));
    assert!(result.is_err());
    assert!(store.load_state().unwrap().contacts.is_empty(), "the contact was rolled back");
}

#[test]
fn transfers_keep_their_descriptor_and_only_open_ones_load() {
    use xchat_core::transfer::{TransferFailure, TransferRecord, TransferState};
    use xchat_crypto::file::{FileDigest, FileKey};
    use xchat_proto::content::{FileDescriptor, FileId, FileName, MediaType};

    let dir = tempfile::tempdir().unwrap();
    let mut store = create(dir.path(), 1);
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let alice = contact(1);
    let timer = VanishingTimer::from_secs(60).unwrap();
    let transfer = |rng: &mut ChaCha20Rng, state, message: &MessageRecord| TransferRecord {
        descriptor: FileDescriptor::new(
            FileId::random(rng),
            FileName::new("report.pdf".into()).unwrap(),
            MediaType::new("application/pdf".into()).unwrap(),
            FileKey::generate(rng),
            FileDigest::new(123_456, [3; 32]),
        )
        .unwrap(),
        message: message.id,
        contact: message.contact,
        direction: message.direction,
        source: Some(DeviceId::from_bytes([5; 16])),
        state,
        chunks_done: 1,
        updated_at: UnixMillis(77),
    };
    let offer = |rng: &mut ChaCha20Rng, timer| MessageRecord {
        timer,
        ..message(rng, alice.id, 10, Status::Unread)
    };
    let (m1, m2, m3) = (
        offer(&mut rng, VanishingTimer::OFF),
        offer(&mut rng, timer),
        offer(&mut rng, VanishingTimer::OFF),
    );
    let failed = transfer(&mut rng, TransferState::Failed(TransferFailure::Corrupt), &m1);
    let moving = transfer(&mut rng, TransferState::Transferring, &m2);
    let complete = transfer(&mut rng, TransferState::Complete, &m3);
    let with_file = |m: &MessageRecord, t: &TransferRecord| {
        Write::Message(MessageRecord { file: Some(t.file()), ..m.clone() })
    };
    apply(
        &mut store,
        &[
            Write::Contact(alice.clone()),
            with_file(&m1, &failed),
            with_file(&m2, &moving),
            with_file(&m3, &complete),
            Write::Transfer(Box::new(failed.clone())),
            Write::Transfer(Box::new(moving.clone())),
            Write::Transfer(Box::new(complete.clone())),
        ],
    );
    let state = store.load_state().unwrap();
    let mut open: Vec<_> = state.transfers.iter().map(TransferRecord::file).collect();
    open.sort();
    let mut expected = vec![failed.file(), moving.file()];
    expected.sort();
    assert_eq!(open, expected, "a complete transfer is not followed");
    assert_eq!(state.attachments, [(m2.id, moving.file())], "the vanishing message's file");
    assert_eq!(store.transfer(complete.file()).unwrap().unwrap(), complete, "key and all");
    assert_eq!(store.message(m1.id).unwrap().unwrap().file, Some(failed.file()));
    assert_eq!(store.transfers(alice.id).unwrap().len(), 3);
    apply(&mut store, &[Write::DeleteTransfer(moving.file())]);
    assert_eq!(store.transfer(moving.file()).unwrap(), None);
}
