//! Two messengers talking through an in-process network that the test
//! controls: first contact through published prekeys, texts both ways,
//! receipts, vanishing messages, an offline recipient, retries, duplicates
//! and hostile envelopes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed setup is a failed test

use std::collections::VecDeque;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_core::call::{CALL_SIGNAL_TTL, RING_TIMEOUT};
use xchat_core::contact::ContactId;
use xchat_core::io::{CommandError, Done, Event, FetchFile, Refusal, Write};
use xchat_core::messenger::{RECEIPT_INTERVAL, State};
use xchat_core::record::{CallEntry, CallOutcome, Direction, Status};
use xchat_core::retry::{self, Route};
use xchat_core::time::UnixMillis;
use xchat_core::transfer::{TransferFailure, TransferState};
use xchat_core::{Effect, Input, Messenger};
use xchat_crypto::bundle::PreKeys;
use xchat_crypto::device::Device;
use xchat_crypto::file::{FileDigest, FileKey};
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::Seed;
use xchat_proto::content::{
    CALL_ID_BYTES, CallId, CallSignal, FileDescriptor, FileId, FileName, HangUpReason, MediaType,
    MessageId, RejectReason, Sdp, Signal, VanishingTimer,
};
use xchat_proto::mailbox::ItemId;

const START: UnixMillis = UnixMillis(1_790_000_000_000);

struct Node {
    messenger: Messenger,
    events: Vec<Event>,
    writes: Vec<Write>,
    /// Files the node was asked to fetch.
    fetches: Vec<FetchFile>,
    /// Files the node was asked to delete.
    deleted_files: Vec<FileId>,
}

/// Mailbox nodes' contents: items by mailbox key.
type Mailboxes = std::collections::BTreeMap<[u8; 32], Vec<(ItemId, Vec<u8>)>>;

/// Two nodes, 0 and 1, and a network that is up or down.
struct Net {
    nodes: [Node; 2],
    now: UnixMillis,
    up: bool,
    /// Envelopes in flight: (to, envelope).
    wire: VecDeque<(usize, Vec<u8>)>,
    /// Every envelope ever sent, to replay.
    sent: Vec<(usize, Vec<u8>)>,
    /// Mailbox nodes, reachable when the two devices cannot reach each
    /// other (off unless a test turns them on): items by mailbox key.
    mailboxes: Option<Mailboxes>,
    rng: ChaCha20Rng,
}

fn node(seed: u8, rng: &mut ChaCha20Rng) -> Node {
    let identity = Identity::from_seed(&Seed::from_bytes(&[seed; 64]).unwrap()).unwrap();
    let device = Device::new(&identity, START.0, rng);
    let mut prekeys = PreKeys::new(&device, START.0, rng);
    prekeys.generate_one_time_prekeys(&device, 10, rng).unwrap();
    let messenger = Messenger::new(identity, device, prekeys, State::default()).unwrap();
    Node {
        messenger,
        events: Vec::new(),
        writes: Vec::new(),
        fetches: Vec::new(),
        deleted_files: Vec::new(),
    }
}

impl Net {
    fn new() -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let nodes = [node(1, &mut rng), node(2, &mut rng)];
        Self {
            nodes,
            now: START,
            up: true,
            wire: VecDeque::new(),
            sent: Vec::new(),
            mailboxes: None,
            rng,
        }
    }

    /// Feeds `input` to node `at` and carries out its effects; returns the answer.
    fn input(
        &mut self,
        at: usize,
        input: Input,
    ) -> Option<Result<Done, xchat_core::io::CommandError>> {
        let is_tick = matches!(input, Input::TimePassed);
        let effects = self.nodes[at].messenger.handle(self.now, input, &mut self.rng);
        self.carry_out(at, effects, is_tick)
    }

    /// Sends `texts` from node `at` as one batch of a node (`hold` each,
    /// then `flush`); returns their ids.
    fn send_batch(&mut self, at: usize, contact: ContactId, texts: &[&str]) -> Vec<MessageId> {
        let mut effects = Vec::new();
        for text in texts {
            let input = Input::TextSent { contact, text: (*text).to_owned() };
            effects.extend(self.nodes[at].messenger.hold(self.now, input, &mut self.rng));
        }
        effects.extend(self.nodes[at].messenger.flush(self.now, &mut self.rng));
        let ids = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Answer(Ok(Done::MessageQueued(id))) => Some(*id),
                _ => None,
            })
            .collect();
        self.carry_out(at, effects, false);
        ids
    }

    /// Carries out the effects of one input (or batch) of node `at`; returns
    /// the last answer.
    fn carry_out(
        &mut self,
        at: usize,
        effects: Vec<Effect>,
        is_tick: bool,
    ) -> Option<Result<Done, xchat_core::io::CommandError>> {
        let mut answer = None;
        let mut follow_ups = Vec::new();
        // The commit rule: every write first, then the rest.
        let (writes, rest): (Vec<_>, Vec<_>) =
            effects.into_iter().partition(|e| matches!(e, Effect::Write(_)));
        for effect in writes {
            if let Effect::Write(write) = effect {
                self.nodes[at].writes.push(write);
            }
        }
        for effect in rest {
            match effect {
                Effect::Write(_) => unreachable!("writes were applied first"),
                Effect::Send(send) => {
                    let to = self.index_of(&send.identity);
                    self.sent.push((to, send.envelope.clone()));
                    if let (Some(mailboxes), Some(key)) = (&mut self.mailboxes, send.mailbox) {
                        let item = ItemId::of_envelope(&send.envelope);
                        mailboxes.entry(key.to_bytes()).or_default().push((item, send.envelope));
                        follow_ups
                            .push(Input::SendAcknowledged { entry: send.entry, route: send.route });
                    } else if self.up {
                        self.wire.push_back((to, send.envelope));
                        follow_ups
                            .push(Input::SendAcknowledged { entry: send.entry, route: send.route });
                    } else {
                        follow_ups.push(Input::SendFailed { entry: send.entry, route: send.route });
                    }
                }
                Effect::FetchBundles { identity } => {
                    let owner = self
                        .nodes
                        .iter()
                        .find(|n| n.messenger.identity().signing_key() == &identity);
                    let records = owner
                        .map(|n| vec![n.messenger.prekey_record(self.now).unwrap()])
                        .unwrap_or_default();
                    follow_ups.push(Input::BundlesFetched { identity, records });
                }
                Effect::PublishPreKeys { .. } => {}
                Effect::FetchMailbox(keys) => {
                    if let Some(mailboxes) = &self.mailboxes {
                        for key in keys {
                            let items = mailboxes
                                .get(&key.key.verifying_key().to_bytes())
                                .cloned()
                                .unwrap_or_default();
                            if !items.is_empty() {
                                follow_ups.push(Input::MailboxFetched { epoch: key.epoch, items });
                            }
                        }
                    }
                }
                Effect::DeleteFromMailbox { key, items } => {
                    if let Some(mailbox) = self
                        .mailboxes
                        .as_mut()
                        .and_then(|m| m.get_mut(&key.key.verifying_key().to_bytes()))
                    {
                        mailbox.retain(|(item, _)| !items.contains(item));
                    }
                }
                Effect::FetchFile(fetch) => self.nodes[at].fetches.push(*fetch),
                Effect::DeleteFile { file } => self.nodes[at].deleted_files.push(file),
                Effect::Notify(event) => self.nodes[at].events.push(event),
                Effect::Answer(result) => answer = Some(result),
            }
        }
        for input in follow_ups {
            self.input(at, input);
        }
        // As a node does: what is due (receipts, at once) goes when the
        // input is done.
        if !is_tick && self.nodes[at].messenger.next_deadline().is_some_and(|d| d <= self.now) {
            self.input(at, Input::TimePassed);
        }
        answer
    }

    fn index_of(&self, identity: &xchat_crypto::signature::VerifyingKey) -> usize {
        self.nodes
            .iter()
            .position(|n| n.messenger.identity().signing_key() == identity)
            .expect("a node of this network")
    }

    /// Delivers everything in flight, and what that causes, until quiet.
    fn deliver_all(&mut self) {
        while let Some((to, envelope)) = self.wire.pop_front() {
            self.input(to, Input::EnvelopeReceived { envelope });
        }
    }

    /// Moves the clock and lets both nodes handle their deadlines.
    fn advance(&mut self, by: Duration) {
        let until = self.now.saturating_add(by);
        loop {
            let next = self.nodes.iter().filter_map(|n| n.messenger.next_deadline()).min();
            match next {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    for index in 0..2 {
                        if self.nodes[index]
                            .messenger
                            .next_deadline()
                            .is_some_and(|d| d <= self.now)
                        {
                            self.input(index, Input::TimePassed);
                        }
                    }
                    self.deliver_all();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn add_each_other(&mut self) -> (ContactId, ContactId) {
        let bob = self.nodes[1].messenger.address();
        let alice = self.nodes[0].messenger.address();
        let Some(Ok(Done::Contact(added))) =
            self.input(0, Input::ContactAdded { name: "Bob".into(), address: bob })
        else {
            panic!("alice adds bob");
        };
        let bob_id = match added {
            xchat_core::contact::Added::New(id) => id,
            other => panic!("{other:?}"),
        };
        self.input(1, Input::ContactAdded { name: "Alice".into(), address: alice });
        let alice_id = self.nodes[1].messenger.contacts().by_name("Alice").unwrap().id;
        self.deliver_all();
        (bob_id, alice_id)
    }

    fn send(&mut self, from: usize, contact: ContactId, text: &str) -> MessageId {
        match self.input(from, Input::TextSent { contact, text: text.into() }) {
            Some(Ok(Done::MessageQueued(id))) => id,
            other => panic!("send refused: {other:?}"),
        }
    }

    fn received_texts(&self, at: usize) -> Vec<String> {
        self.nodes[at]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::MessageReceived(m) => Some(m.text.clone()),
                _ => None,
            })
            .collect()
    }

    fn status_of(&self, at: usize, id: MessageId) -> Option<Status> {
        self.nodes[at].events.iter().rev().find_map(|e| match e {
            Event::StatusChanged { id: i, status, .. } if *i == id => Some(*status),
            _ => None,
        })
    }

    fn refusals(&self, at: usize, kind: Refusal) -> usize {
        self.nodes[at].events.iter().filter(|e| **e == Event::Refused(kind)).count()
    }
}

#[test]
fn first_contact_texts_both_ways_and_receipts() {
    let mut net = Net::new();
    let (bob, alice) = net.add_each_other();

    let hello = net.send(0, bob, "hello bob");
    net.deliver_all();
    assert_eq!(net.received_texts(1), ["hello bob"]);
    assert_eq!(net.status_of(0, hello), Some(Status::Delivered));
    assert_eq!(net.nodes[0].messenger.outbox_len(), 0, "delivered messages leave the outbox");

    let reply = net.send(1, alice, "hi alice");
    net.deliver_all();
    assert_eq!(net.received_texts(0), ["hi alice"]);
    assert_eq!(net.status_of(1, reply), Some(Status::Delivered));

    net.input(1, Input::MessagesRead { contact: alice, ids: vec![hello] });
    net.deliver_all();
    assert_eq!(net.status_of(0, hello), Some(Status::Read));
    assert_eq!(net.nodes[1].messenger.outbox_len(), 0);
    assert_eq!(net.nodes[0].messenger.outbox_len(), 0);
}

#[test]
fn texts_of_one_batch_share_an_envelope_and_each_gets_its_status() {
    let mut net = Net::new();
    let (bob, _) = net.add_each_other();
    let first = net.send(0, bob, "first");
    net.deliver_all();
    assert_eq!(net.status_of(0, first), Some(Status::Delivered));
    let sent_before = net.sent.len();

    let texts: Vec<String> = (0..5).map(|i| format!("batch {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ids = net.send_batch(0, bob, &refs);
    assert_eq!(ids.len(), 5);
    assert_eq!(net.sent.len(), sent_before + 1, "one envelope for the five texts");
    assert_eq!(net.nodes[0].messenger.outbox_len(), 1);
    assert!(ids.iter().all(|id| net.status_of(0, *id) == Some(Status::Sent)));

    net.deliver_all();
    net.advance(RECEIPT_INTERVAL);
    let received = net.received_texts(1);
    assert_eq!(received[1..], texts[..], "every text, in order");
    assert!(ids.iter().all(|id| net.status_of(0, *id) == Some(Status::Delivered)));
    assert_eq!(net.nodes[0].messenger.outbox_len(), 0, "the last receipt takes the entry out");

    // The envelope again (its acknowledgement lost): nothing is shown twice,
    // and every text of it is acknowledged again.
    let envelope = net.sent[sent_before].1.clone();
    let receipts_before = net.sent.iter().filter(|(to, _)| *to == 0).count();
    net.input(1, Input::EnvelopeReceived { envelope });
    net.advance(RECEIPT_INTERVAL);
    assert_eq!(net.received_texts(1).len(), 6);
    assert!(net.refusals(1, Refusal::Duplicate) >= 1);
    assert_eq!(net.sent.iter().filter(|(to, _)| *to == 0).count(), receipts_before + 1);
}

#[test]
fn a_batch_is_cut_into_envelopes_by_count_and_by_size_and_by_other_inputs() {
    use xchat_core::messenger::{MAX_TEXT_BYTES_PER_ENVELOPE, MAX_TEXTS_PER_ENVELOPE};
    let mut net = Net::new();
    let (bob, _) = net.add_each_other();
    let envelopes = |net: &Net| net.sent.iter().filter(|(to, _)| *to == 1).count();

    let many: Vec<String> = (0..MAX_TEXTS_PER_ENVELOPE + 1).map(|i| format!("many {i}")).collect();
    let before = envelopes(&net);
    net.send_batch(0, bob, &many.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(envelopes(&net), before + 2, "64 texts, then one more");

    let long = "x".repeat(MAX_TEXT_BYTES_PER_ENVELOPE / 2 + 1);
    let before = envelopes(&net);
    net.send_batch(0, bob, &[&long, &long, "short"]);
    assert_eq!(envelopes(&net), before + 2, "two halves and a bit do not fit one envelope");

    // An input other than a text sent closes the run: its texts go first.
    let before = envelopes(&net);
    let mut effects = Vec::new();
    for input in [
        Input::TextSent { contact: bob, text: "one".to_owned() },
        Input::MessagesRead { contact: bob, ids: Vec::new() },
        Input::TextSent { contact: bob, text: "two".to_owned() },
    ] {
        effects.extend(net.nodes[0].messenger.hold(net.now, input, &mut net.rng));
    }
    effects.extend(net.nodes[0].messenger.flush(net.now, &mut net.rng));
    net.carry_out(0, effects, false);
    assert_eq!(envelopes(&net), before + 2);

    net.deliver_all();
    net.advance(RECEIPT_INTERVAL);
    let received = net.received_texts(1);
    assert_eq!(received.len(), many.len() + 5);
    assert_eq!(received[received.len() - 2..], ["one", "two"]);
    assert_eq!(net.nodes[0].messenger.outbox_len(), 0);
}

#[test]
fn a_burst_gets_one_receipt_per_interval_and_a_quiet_conversation_one_at_once() {
    let mut net = Net::new();
    let (bob, _) = net.add_each_other();
    let to_alice = |net: &Net| net.sent.iter().filter(|(to, _)| *to == 0).count();

    let first = net.send(0, bob, "first");
    net.deliver_all();
    assert_eq!(net.status_of(0, first), Some(Status::Delivered), "acknowledged at once");

    let receipts = to_alice(&net);
    let burst: Vec<MessageId> = (0..20).map(|i| net.send(0, bob, &format!("burst {i}"))).collect();
    net.deliver_all();
    assert_eq!(net.received_texts(1).len(), 21);
    assert_eq!(to_alice(&net), receipts, "no receipt within the interval of the last one");
    assert!(burst.iter().all(|id| net.status_of(0, *id) != Some(Status::Delivered)));

    net.advance(RECEIPT_INTERVAL);
    assert_eq!(to_alice(&net), receipts + 1, "one receipt for the whole burst");
    assert!(burst.iter().all(|id| net.status_of(0, *id) == Some(Status::Delivered)));
    assert_eq!(net.nodes[0].messenger.outbox_len(), 0);

    // A quiet interval later, the next message is acknowledged at once again.
    net.advance(RECEIPT_INTERVAL);
    let later = net.send(0, bob, "later");
    net.deliver_all();
    assert_eq!(net.status_of(0, later), Some(Status::Delivered));
    assert_eq!(to_alice(&net), receipts + 2);
}

#[test]
fn a_device_heard_from_over_a_connection_is_answered_directly() {
    let mut net = Net::new();
    let (bob, alice) = net.add_each_other();
    // Nobody reported Alice's device reachable: Bob's text goes to her mailbox.
    let before = net.send(1, alice, "before");
    assert_eq!(net.status_of(1, before), Some(Status::InMailbox));
    net.deliver_all();
    let hello = net.send(0, bob, "hello");
    net.deliver_all();
    assert_eq!(net.status_of(0, hello), Some(Status::Delivered));
    // Alice's envelopes came over a connection: she is online, and Bob's
    // next text goes straight to her device.
    let after = net.send(1, alice, "after");
    assert_eq!(net.status_of(1, after), Some(Status::Sent));
}

#[test]
fn a_second_delivery_receipt_changes_nothing() {
    let mut net = Net::new();
    let (bob, _) = net.add_each_other();
    let id = net.send(0, bob, "once delivered");
    let (to, envelope) = net.wire.pop_front().unwrap();
    net.input(to, Input::EnvelopeReceived { envelope: envelope.clone() });
    net.deliver_all();
    let delivered = |net: &Net| {
        net.nodes[0]
            .events
            .iter()
            .filter(|e| matches!(e, Event::StatusChanged { id: i, status: Status::Delivered, .. } if *i == id))
            .count()
    };
    assert_eq!(delivered(&net), 1);
    // The same envelope again (a retry, or a copy from a mailbox): Bob
    // acknowledges it again, and Alice's message stays delivered, once.
    net.input(1, Input::EnvelopeReceived { envelope });
    net.advance(RECEIPT_INTERVAL);
    assert!(net.refusals(1, Refusal::Duplicate) >= 1);
    assert_eq!(delivered(&net), 1, "no second event for a second receipt");
    assert_eq!(net.status_of(0, id), Some(Status::Delivered));
}

#[test]
fn read_receipts_can_be_turned_off() {
    let mut net = Net::new();
    let (bob, alice) = net.add_each_other();
    net.input(1, Input::ReadReceiptsSet { enabled: false });
    let hello = net.send(0, bob, "hello");
    net.deliver_all();
    net.input(1, Input::MessagesRead { contact: alice, ids: vec![hello] });
    net.deliver_all();
    assert_eq!(net.status_of(0, hello), Some(Status::Delivered));
}

#[test]
fn an_offline_recipient_gets_every_message_exactly_once_after_retries() {
    let mut net = Net::new();
    let (bob, _) = net.add_each_other();
    net.send(0, bob, "warm-up");
    net.deliver_all();

    net.up = false;
    let ids: Vec<MessageId> = (0..5).map(|i| net.send(0, bob, &format!("offline {i}"))).collect();
    net.advance(Duration::from_secs(60));
    assert_eq!(net.received_texts(1).len(), 1, "nothing got through while down");

    net.up = true;
    net.advance(Duration::from_secs(15 * 60));
    let texts = net.received_texts(1);
    assert_eq!(texts.len(), 6, "{texts:?}");
    for i in 0..5 {
        assert_eq!(texts.iter().filter(|t| **t == format!("offline {i}")).count(), 1);
    }
    for id in ids {
        assert_eq!(net.status_of(0, id), Some(Status::Delivered));
    }
    assert_eq!(net.nodes[0].messenger.outbox_len(), 0);
}

#[test]
fn only_a_failed_direct_send_makes_a_device_unreachable_directly() {
    let mut net = Net::new();
    let (bob, _) = net.add_each_other();
    net.send(0, bob, "warm-up");
    net.deliver_all();
    let (identity, device) = net.bob_reachable(true);
    let reachable = |net: &Net| {
        let mut devices = net.nodes[0].messenger.peer_devices();
        devices.find(|(i, d, _)| *i == identity && *d == device).unwrap().2
    };
    let effects = net.nodes[0].messenger.handle(
        net.now,
        Input::TextSent { contact: bob, text: "hello".into() },
        &mut net.rng,
    );
    let entry = effects
        .iter()
        .find_map(|e| if let Effect::Send(send) = e { Some(send.entry) } else { None })
        .unwrap();
    // Mailbox nodes that fail say nothing about the device itself.
    let failed = Input::SendFailed { entry, route: Route::Mailbox };
    net.nodes[0].messenger.handle(net.now, failed, &mut net.rng);
    assert!(reachable(&net), "a mailbox failure made the device unreachable");
    let failed = Input::SendFailed { entry, route: Route::Direct };
    net.nodes[0].messenger.handle(net.now, failed, &mut net.rng);
    assert!(!reachable(&net));
}

#[test]
fn after_a_failed_mailbox_store_the_retry_goes_direct() {
    // No mailbox node anywhere (two devices on a LAN): a device believed
    // unreachable is still tried directly after its mailbox store fails.
    let mut net = Net::new();
    let (bob, _) = net.add_each_other();
    net.send(0, bob, "warm-up");
    net.deliver_all();
    net.bob_reachable(false);
    let effects = net.nodes[0].messenger.handle(
        net.now,
        Input::TextSent { contact: bob, text: "over the LAN".into() },
        &mut net.rng,
    );
    let send = effects
        .into_iter()
        .find_map(|e| if let Effect::Send(send) = e { Some(send) } else { None })
        .unwrap();
    assert_eq!(send.route, Route::Mailbox);
    let failed = Input::SendFailed { entry: send.entry, route: Route::Mailbox };
    net.nodes[0].messenger.handle(net.now, failed, &mut net.rng);
    net.now = net.now.saturating_add(Duration::from_secs(60));
    let effects = net.nodes[0].messenger.handle(net.now, Input::TimePassed, &mut net.rng);
    let retry = effects
        .into_iter()
        .find_map(|e| if let Effect::Send(send) = e { Some(send) } else { None })
        .expect("a retry");
    assert_eq!((retry.entry, retry.route), (send.entry, Route::Direct));
}

#[test]
fn an_attempt_is_not_doubled_while_it_waits_in_the_node_and_the_backoff_runs_from_its_end() {
    let mut net = Net::new();
    let (bob, _) = net.add_each_other();
    net.bob_reachable(true);
    let sends = |effects: Vec<Effect>| -> Vec<xchat_core::io::Send> {
        effects
            .into_iter()
            .filter_map(|e| if let Effect::Send(s) = e { Some(s) } else { None })
            .collect()
    };
    let at = |net: &mut Net, by: Duration, input: Input| {
        net.now = net.now.saturating_add(by);
        sends(net.nodes[0].messenger.handle(net.now, input, &mut net.rng))
    };
    let first = at(&mut net, Duration::ZERO, Input::TextSent { contact: bob, text: "busy".into() });
    let [first] = first.as_slice() else { panic!("one attempt, got {first:?}") };
    assert_eq!(first.route, Route::Direct);

    // The node is slow to carry it out (queued behind others): long past
    // the first backoff, no second attempt joins it.
    for _ in 0..10 {
        assert_eq!(at(&mut net, Duration::from_secs(5), Input::TimePassed), []);
    }
    // It fails at last: the next attempt waits its backoff from now.
    let failed = Input::SendFailed { entry: first.entry, route: Route::Direct };
    assert_eq!(at(&mut net, Duration::ZERO, failed), []);
    assert_eq!(at(&mut net, Duration::from_millis(1_900), Input::TimePassed), []);
    let retry = at(&mut net, Duration::from_millis(400), Input::TimePassed);
    assert_eq!(retry.iter().map(|s| s.entry).collect::<Vec<_>>(), [first.entry]);

    // An attempt whose outcome never comes is waited for at most
    // ATTEMPT_TIMEOUT.
    let deadline = net.nodes[0].messenger.next_deadline().unwrap();
    assert!(deadline.since(net.now) >= retry::ATTEMPT_TIMEOUT - Duration::from_secs(1));
    assert_eq!(
        at(&mut net, retry::ATTEMPT_TIMEOUT - Duration::from_secs(1), Input::TimePassed),
        []
    );
    let again = at(&mut net, Duration::from_secs(2), Input::TimePassed);
    assert_eq!(again.iter().map(|s| s.entry).collect::<Vec<_>>(), [first.entry]);
}

#[test]
fn a_retried_envelope_is_shown_once_and_acknowledged_again() {
    let mut net = Net::new();
    let (bob, _) = net.add_each_other();
    // Alice is connected to Bob's device: her retries go straight to it.
    let identity = *net.nodes[1].messenger.identity().signing_key();
    let device = net.nodes[1].messenger.device().device_id();
    net.input(0, Input::DeviceReachable { identity, device, reachable: true });
    let id = net.send(0, bob, "only once");
    // Deliver it, but lose every receipt Bob sends back.
    let (to, envelope) = net.wire.pop_front().unwrap();
    net.input(to, Input::EnvelopeReceived { envelope: envelope.clone() });
    net.wire.clear();
    assert_ne!(net.status_of(0, id), Some(Status::Delivered));

    // Bob's device acknowledged it: Alice waits for the receipt, without
    // sending it again for a while.
    let sent = net.sent.len();
    net.advance(Duration::from_secs(5 * 60));
    assert_eq!(net.sent.len(), sent, "resent before the receipt patience ran out");
    // Then her retry carries the same envelope: Bob shows nothing new, but
    // acknowledges it again, and Alice's message is delivered.
    net.advance(xchat_core::retry::RECEIPT_PATIENCE);
    assert_eq!(net.received_texts(1), ["only once"]);
    assert!(net.refusals(1, Refusal::Duplicate) >= 1);
    assert_eq!(net.status_of(0, id), Some(Status::Delivered));
    assert_eq!(net.nodes[0].messenger.outbox_len(), 0);
}

#[test]
fn vanishing_messages_disappear_on_both_sides_on_time() {
    let mut net = Net::new();
    let (bob, alice) = net.add_each_other();
    let timer = VanishingTimer::from_secs(30).unwrap();
    net.input(0, Input::TimerSet { contact: bob, timer });
    net.deliver_all();
    assert!(net.nodes[1].events.contains(&Event::TimerChanged { contact: alice, timer }));

    let sent_at = net.now;
    let id = net.send(0, bob, "this will vanish");
    net.deliver_all();
    // Bob reads it ten seconds later: his copy's timer starts then.
    net.advance(Duration::from_secs(10));
    net.input(1, Input::MessagesRead { contact: alice, ids: vec![id] });
    let read_at = net.now;

    let expired = |net: &Net, at: usize| {
        net.nodes[at].events.contains(&Event::MessageExpired { id })
            && net.nodes[at].writes.iter().any(|w| matches!(w, Write::DeleteMessage(i) if *i == id))
    };
    net.advance(
        sent_at.saturating_add(Duration::from_secs(30)).since(net.now) - Duration::from_millis(1),
    );
    assert!(!expired(&net, 0), "not before its time");
    net.advance(Duration::from_millis(1));
    assert!(expired(&net, 0), "the sender's copy goes 30 s after sending");
    assert!(!expired(&net, 1));
    net.advance(read_at.saturating_add(Duration::from_secs(30)).since(net.now));
    assert!(expired(&net, 1), "the reader's copy goes 30 s after reading");
}

#[test]
fn hostile_envelopes_are_refused_and_counted() {
    let mut net = Net::new();
    let (bob, _) = net.add_each_other();
    net.send(0, bob, "genuine");
    let (to, envelope) = net.wire.pop_front().unwrap();

    net.input(to, Input::EnvelopeReceived { envelope: b"garbage".to_vec() });
    let mut tampered = envelope.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    net.input(to, Input::EnvelopeReceived { envelope: tampered });
    assert_eq!(net.refusals(1, Refusal::Malformed), 1);
    assert_eq!(net.refusals(1, Refusal::Undecryptable), 1);
    assert!(net.received_texts(1).is_empty());

    // The genuine envelope still opens afterwards.
    net.input(to, Input::EnvelopeReceived { envelope });
    assert_eq!(net.received_texts(1), ["genuine"]);
}

#[test]
fn a_stranger_is_refused_and_a_key_change_blocks_sending() {
    let mut net = Net::new();
    // Only Alice adds Bob: Bob does not know Alice.
    let bob_address = net.nodes[1].messenger.address();
    net.input(0, Input::ContactAdded { name: "Bob".into(), address: bob_address });
    let bob = net.nodes[0].messenger.contacts().by_name("Bob").unwrap().id;
    net.send(0, bob, "hi, stranger");
    net.deliver_all();
    assert_eq!(net.refusals(1, Refusal::UnknownSender), 1);
    assert!(net.received_texts(1).is_empty());

    // A new address under Bob's name blocks sending until acknowledged.
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let other = node(3, &mut rng).messenger.address();
    net.input(0, Input::ContactAdded { name: "Bob".into(), address: other });
    assert!(net.nodes[0].events.contains(&Event::ContactKeyChanged { contact: bob }));
    let refused = net.input(0, Input::TextSent { contact: bob, text: "still you?".into() });
    assert!(matches!(refused, Some(Err(_))), "{refused:?}");
    net.input(0, Input::KeyChangeAcknowledged { contact: bob });
    assert!(net.nodes[0].messenger.contacts().check_can_send(bob).is_ok());

    // Adding yourself is refused.
    let own = net.nodes[0].messenger.address();
    let answer = net.input(0, Input::ContactAdded { name: "Me".into(), address: own });
    assert!(matches!(answer, Some(Err(_))));
}

#[test]
fn both_sides_starting_a_session_at_once_converge() {
    let mut net = Net::new();
    let (bob, alice) = net.add_each_other();
    // Both write before either hears from the other: two handshakes cross.
    let first_a = net.send(0, bob, "alice first");
    let first_b = net.send(1, alice, "bob first");
    net.deliver_all();
    assert_eq!(net.received_texts(1), ["alice first"]);
    assert_eq!(net.received_texts(0), ["bob first"]);
    for round in 0..3 {
        net.send(0, bob, &format!("a{round}"));
        net.deliver_all();
        net.send(1, alice, &format!("b{round}"));
        net.deliver_all();
    }
    assert_eq!(net.received_texts(1), ["alice first", "a0", "a1", "a2"]);
    assert_eq!(net.received_texts(0), ["bob first", "b0", "b1", "b2"]);
    assert_eq!(net.status_of(0, first_a), Some(Status::Delivered));
    assert_eq!(net.status_of(1, first_b), Some(Status::Delivered));
    assert_eq!(
        net.refusals(0, Refusal::Undecryptable) + net.refusals(1, Refusal::Undecryptable),
        0
    );
}

/// A descriptor of a 1 MiB file, as the node makes it after encrypting.
fn descriptor(rng: &mut ChaCha20Rng) -> FileDescriptor {
    FileDescriptor::new(
        FileId::random(rng),
        FileName::new("holiday.jpg".into()).unwrap(),
        MediaType::new("image/jpeg".into()).unwrap(),
        FileKey::generate(rng),
        FileDigest::new(1 << 20, [9; 32]),
    )
    .unwrap()
}

fn transfer_events(net: &Net, at: usize, file: FileId) -> Vec<(TransferState, u64)> {
    net.nodes[at]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::TransferChanged { file: f, state, chunks_done, .. } if *f == file => {
                Some((*state, *chunks_done))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_file_is_offered_accepted_fetched_resumed_and_completed() {
    let mut net = Net::new();
    let (bob, alice) = net.add_each_other();
    let offered = descriptor(&mut net.rng);
    let file = offered.id();
    let answer = net.input(0, Input::FileSent { contact: bob, descriptor: offered.clone() });
    let Some(Ok(Done::FileQueued { message, file: queued })) = answer else { panic!("{answer:?}") };
    assert_eq!(queued, file);
    net.deliver_all();
    assert_eq!(net.status_of(0, message), Some(Status::Delivered));

    // Bob sees a message that offers the file, with its name.
    let shown = net.nodes[1].events.iter().find_map(|e| match e {
        Event::MessageReceived(m) => Some(m.clone()),
        _ => None,
    });
    let shown = shown.unwrap();
    assert_eq!((shown.text.as_str(), shown.file), ("holiday.jpg", Some(file)));
    assert_eq!(net.nodes[1].messenger.transfer(file).unwrap().state, TransferState::Offered);
    // Only Bob may fetch it from Alice, and only Alice's outgoing file.
    let bob_key = *net.nodes[1].messenger.identity().signing_key();
    let alice_key = *net.nodes[0].messenger.identity().signing_key();
    assert_eq!(net.nodes[0].messenger.may_fetch(file, &bob_key), Some(&offered));
    assert_eq!(net.nodes[0].messenger.may_fetch(file, &alice_key), None);
    assert_eq!(net.nodes[1].messenger.may_fetch(file, &alice_key), None, "not bob's to serve");

    assert_eq!(net.input(1, Input::FileAccepted { file }), Some(Ok(Done::Ok)));
    let fetch = net.nodes[1].fetches.pop().unwrap();
    assert_eq!(fetch.descriptor, offered, "with the key and the hash");
    assert_eq!(fetch.identity, alice_key);
    assert_eq!(fetch.device, net.nodes[0].messenger.device().device_id());
    assert_eq!(fetch.from_chunk, 0);
    net.input(1, Input::FileProgress { file, chunks_done: 5 });
    net.input(1, Input::FileFailed { file, reason: TransferFailure::Unreachable });
    // Accepting again resumes after the verified chunks.
    net.input(1, Input::FileAccepted { file });
    assert_eq!(net.nodes[1].fetches.pop().unwrap().from_chunk, 5);
    // A progress report that goes backwards or past the end is ignored.
    net.input(1, Input::FileProgress { file, chunks_done: 2 });
    net.input(1, Input::FileProgress { file, chunks_done: 17 });
    net.input(1, Input::FileCompleted { file });
    assert_eq!(
        transfer_events(&net, 1, file),
        [
            (TransferState::Accepted, 0),
            (TransferState::Transferring, 5),
            (TransferState::Failed(TransferFailure::Unreachable), 5),
            (TransferState::Accepted, 5),
            (TransferState::Complete, 16),
        ]
    );
    assert!(net.nodes[1].messenger.transfer(file).is_none(), "done: only the store keeps it");
    assert_eq!(net.input(1, Input::FileAccepted { file }), Some(Err(CommandError::UnknownFile)));
    assert_eq!(
        net.input(0, Input::FileAccepted { file }),
        Some(Err(CommandError::TransferState(TransferState::Offered))),
        "the sender does not download its own file"
    );
    let _ = alice;
}

#[test]
fn a_vanishing_file_is_deleted_with_its_message_on_both_sides() {
    let mut net = Net::new();
    let (bob, alice) = net.add_each_other();
    let timer = VanishingTimer::from_secs(60).unwrap();
    net.input(0, Input::TimerSet { contact: bob, timer });
    net.deliver_all();
    let offered = descriptor(&mut net.rng);
    let file = offered.id();
    let answer = net.input(0, Input::FileSent { contact: bob, descriptor: offered });
    let Some(Ok(Done::FileQueued { message, .. })) = answer else { panic!("{answer:?}") };
    net.deliver_all();
    net.input(1, Input::MessagesRead { contact: alice, ids: vec![message] });
    net.deliver_all();
    assert!(net.nodes[0].deleted_files.is_empty() && net.nodes[1].deleted_files.is_empty());
    net.advance(Duration::from_secs(61));
    assert_eq!(net.nodes[0].deleted_files, [file]);
    assert_eq!(net.nodes[1].deleted_files, [file]);
    for node in &net.nodes {
        assert!(node.writes.iter().any(|w| matches!(w, Write::DeleteTransfer(f) if *f == file)));
        assert!(node.messenger.transfer(file).is_none());
    }
}

#[test]
fn an_offline_device_gets_its_texts_from_its_rotating_mailbox_which_is_then_emptied() {
    let mut net = Net::new();
    let (bob, _alice) = net.add_each_other();
    net.send(0, bob, "first, direct");
    net.deliver_all();
    // Bob's device goes away; mailbox nodes are there.
    net.up = false;
    net.mailboxes = Some(Default::default());
    let texts: Vec<MessageId> =
        (0..3).map(|i| net.send(0, bob, &format!("while away {i}"))).collect();
    // Direct attempts fail, then the retries go to Bob's mailbox.
    net.advance(Duration::from_secs(60));
    let epoch = xchat_crypto::mailbox::epoch_of(net.now.0);
    let bob_key = *net.nodes[1].messenger.identity().signing_key();
    let bob_device = net.nodes[1].messenger.device().device_id();
    let expected = xchat_crypto::mailbox::mailbox_key(&bob_key, bob_device, epoch).unwrap();
    let mailboxes = net.mailboxes.as_ref().unwrap();
    assert_eq!(mailboxes.keys().copied().collect::<Vec<_>>(), [expected.to_bytes()]);
    assert_eq!(mailboxes[&expected.to_bytes()].len(), 3, "one envelope per text");
    for id in &texts {
        assert_eq!(net.status_of(0, *id), Some(Status::InMailbox));
    }
    // Bob comes back: his next poll fetches and empties the mailbox.
    net.up = true;
    net.advance(xchat_core::messenger::MAILBOX_POLL);
    // In the order the mailbox took them: the first went direct (Bob had
    // just answered) and reached the mailbox after the failure's backoff.
    // The history orders them by when they were sent.
    assert_eq!(
        net.received_texts(1),
        ["first, direct", "while away 1", "while away 2", "while away 0"]
    );
    assert!(net.mailboxes.as_ref().unwrap()[&expected.to_bytes()].is_empty(), "deleted once read");
    // Bob's receipts wait in Alice's mailbox until her next poll.
    net.advance(xchat_core::messenger::MAILBOX_POLL);
    for id in texts {
        assert_eq!(net.status_of(0, id), Some(Status::Delivered));
    }
}

// Calls: live signals, never history.

fn call_id(byte: u8) -> CallId {
    CallId::from_bytes([byte; CALL_ID_BYTES])
}

fn offer(id: CallId) -> CallSignal {
    let sdp = Sdp::new("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\na=fingerprint:sha-256 AB:CD\r\n".into());
    CallSignal { call_id: id, signal: Signal::Offer(sdp.unwrap()) }
}

fn signal(id: CallId, signal: Signal) -> CallSignal {
    CallSignal { call_id: id, signal }
}

impl Net {
    fn call(
        &mut self,
        from: usize,
        contact: ContactId,
        signal: CallSignal,
    ) -> Result<Done, CommandError> {
        self.input(from, Input::CallSignalSent { contact, signal }).expect("a command is answered")
    }

    /// The call signals node `at` was shown: (contact, signal, verified, key changed).
    fn call_signals(&self, at: usize) -> Vec<(ContactId, CallSignal, bool, bool)> {
        self.nodes[at]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::CallSignal { contact, signal, verified, key_changed, .. } => {
                    Some((*contact, signal.clone(), *verified, *key_changed))
                }
                _ => None,
            })
            .collect()
    }

    /// Tells Alice's node (0) whether Bob's device is reachable; returns it.
    fn bob_reachable(
        &mut self,
        reachable: bool,
    ) -> (xchat_crypto::signature::VerifyingKey, xchat_crypto::device::DeviceId) {
        let identity = *self.nodes[1].messenger.identity().signing_key();
        let device = self.nodes[1].messenger.device().device_id();
        self.input(0, Input::DeviceReachable { identity, device, reachable });
        (identity, device)
    }

    fn missed_calls(&self, at: usize) -> Vec<CallId> {
        self.nodes[at]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::CallMissed { call_id, .. } => Some(*call_id),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_call_offer_and_answer_go_across_live_and_stay_out_of_the_history() {
    let mut net = Net::new();
    let (bob, alice) = net.add_each_other();
    net.deliver_all();
    let writes_before = net.nodes[0].writes.len();
    assert_eq!(net.call(0, bob, offer(call_id(1))), Ok(Done::Ok));
    net.deliver_all();

    let shown = net.call_signals(1);
    assert_eq!(shown, [(alice, offer(call_id(1)), false, false)]);
    let alice_device = net.nodes[0].messenger.device().device_id();
    assert!(net.nodes[1].events.iter().any(|e| matches!(
        e,
        Event::CallSignal { device, .. } if *device == alice_device
    )));
    // Nothing of the call is kept: no message, no outbox entry, no receipt.
    let kept = net.nodes[0].writes[writes_before..]
        .iter()
        .filter(|w| !matches!(w, Write::Peer(_)))
        .count();
    assert_eq!(kept, 0, "only the advanced ratchet is written");
    assert_eq!(net.nodes[0].messenger.outbox_len(), 0);
    assert_eq!(net.nodes[1].messenger.outbox_len(), 0, "no delivery receipt for a signal");
    assert!(net.received_texts(1).is_empty());
    assert_eq!(net.nodes[1].messenger.ringing().collect::<Vec<_>>(), [(call_id(1), alice)]);

    // Bob answers: it rings no more, and Alice gets the answer.
    let answer = Sdp::new("v=0\r\nanswer\r\n".into()).unwrap();
    assert_eq!(
        net.call(1, alice, signal(call_id(1), Signal::Answer(answer.clone()))),
        Ok(Done::Ok)
    );
    net.deliver_all();
    assert_eq!(
        net.call_signals(0),
        [(bob, signal(call_id(1), Signal::Answer(answer)), false, false)]
    );
    assert_eq!(net.nodes[1].messenger.ringing().count(), 0);

    // A verified contact's signal says so.
    net.input(1, Input::ContactVerified { contact: alice });
    net.call(0, bob, signal(call_id(1), Signal::HangUp(HangUpReason::Normal))).unwrap();
    net.deliver_all();
    let last = net.call_signals(1).pop().unwrap();
    assert_eq!((last.2, last.3), (true, false));
    assert!(net.missed_calls(1).is_empty(), "an answered call is not missed");
}

#[test]
fn a_call_signal_goes_direct_only_and_is_dropped_and_reported_after_its_lifetime() {
    let mut net = Net::new();
    let (bob, _) = net.add_each_other();
    net.deliver_all();
    net.mailboxes = Some(Mailboxes::new());
    net.up = false;
    let sent_before = net.sent.len();
    net.call(0, bob, offer(call_id(2))).unwrap();
    net.advance(CALL_SIGNAL_TTL - Duration::from_secs(1));
    assert!(!net.nodes[0].events.iter().any(|e| matches!(e, Event::CallSignalFailed { .. })));
    let attempts = net.sent.len() - sent_before;
    // 0.5 s doubling to 4 s: about 10 attempts in 30 s, never a flood.
    assert!((5..=15).contains(&attempts), "{attempts} attempts");
    net.advance(Duration::from_secs(2));
    let failed: Vec<_> = net.nodes[0]
        .events
        .iter()
        .filter(|e| matches!(e, Event::CallSignalFailed { call_id: c, contact } if *c == call_id(2) && *contact == bob))
        .collect();
    assert_eq!(failed.len(), 1, "reported once");
    assert!(net.mailboxes.as_ref().unwrap().values().all(Vec::is_empty), "never to a mailbox");
    let after = net.sent.len();
    net.advance(Duration::from_secs(60));
    assert_eq!(net.sent.len(), after, "dropped: no more attempts");

    // Back up: a new signal goes at once.
    net.up = true;
    net.call(0, bob, offer(call_id(3))).unwrap();
    net.deliver_all();
    assert_eq!(net.call_signals(1).len(), 1);
}

#[test]
fn a_call_from_an_unverified_or_key_changed_contact_is_flagged() {
    let mut net = Net::new();
    let alice_address = net.nodes[0].messenger.address();
    let bob_address = net.nodes[1].messenger.address();
    // Bob first knew "Alice" under another key: the real one is a change he
    // has not acknowledged.
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let other = node(3, &mut rng).messenger.address();
    net.input(1, Input::ContactAdded { name: "Alice".into(), address: other });
    net.input(1, Input::ContactAdded { name: "Alice".into(), address: alice_address });
    let alice = net.nodes[1].messenger.contacts().by_name("Alice").unwrap().id;
    net.input(0, Input::ContactAdded { name: "Bob".into(), address: bob_address });
    let bob = net.nodes[0].messenger.contacts().by_name("Bob").unwrap().id;
    net.deliver_all();

    net.call(0, bob, offer(call_id(4))).unwrap();
    net.deliver_all();
    assert_eq!(net.call_signals(1), [(alice, offer(call_id(4)), false, true)]);
    // Bob cannot answer a key he has not accepted, but he can decline.
    let answer = Sdp::new("v=0\r\n".into()).unwrap();
    assert_eq!(
        net.call(1, alice, signal(call_id(4), Signal::Answer(answer))),
        Err(CommandError::Contact(xchat_core::contact::ContactError::KeyChangeNotAcknowledged))
    );
    let declined = signal(call_id(4), Signal::Reject(RejectReason::Declined));
    assert_eq!(net.call(1, alice, declined.clone()), Ok(Done::Ok));
    net.deliver_all();
    assert_eq!(net.call_signals(0), [(bob, declined, false, false)]);
    assert!(net.missed_calls(1).is_empty(), "declined, not missed");

    // Acknowledged: unverified, but no longer a key change.
    net.input(1, Input::KeyChangeAcknowledged { contact: alice });
    net.call(0, bob, offer(call_id(5))).unwrap();
    net.deliver_all();
    assert_eq!(net.call_signals(1).pop().unwrap(), (alice, offer(call_id(5)), false, false));
}

#[test]
fn a_tampered_or_foreign_call_signal_is_refused_and_never_shown() {
    let mut net = Net::new();
    let (bob, _) = net.add_each_other();
    net.deliver_all();
    net.call(0, bob, offer(call_id(6))).unwrap();
    let (to, envelope) = net.wire.pop_front().unwrap();
    assert_eq!(to, 1);

    // Any bit flipped in the sealed envelope: refused, nothing rings.
    for index in [envelope.len() / 2, envelope.len() - 1] {
        let mut tampered = envelope.clone();
        tampered[index] ^= 0x20;
        net.input(1, Input::EnvelopeReceived { envelope: tampered });
    }
    assert_eq!(net.refusals(1, Refusal::Undecryptable), 2);
    assert!(net.call_signals(1).is_empty());
    assert_eq!(net.nodes[1].messenger.ringing().count(), 0);

    // A well-formed offer from an identity that is not Bob's contact (Carol
    // has a real session with Bob, from his published prekeys).
    let mut carol = node(3, &mut net.rng);
    let bob_address = net.nodes[1].messenger.address();
    let now = net.now;
    carol.messenger.handle(
        now,
        Input::ContactAdded { name: "Bob".into(), address: bob_address },
        &mut net.rng,
    );
    let bob_at_carol = carol.messenger.contacts().by_name("Bob").unwrap().id;
    let bob_key = *net.nodes[1].messenger.identity().signing_key();
    let records = vec![net.nodes[1].messenger.prekey_record(now).unwrap()];
    carol.messenger.handle(now, Input::BundlesFetched { identity: bob_key, records }, &mut net.rng);
    let effects = carol.messenger.handle(
        now,
        Input::CallSignalSent { contact: bob_at_carol, signal: offer(call_id(7)) },
        &mut net.rng,
    );
    let forged: Vec<Vec<u8>> = effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Send(send) => Some(send.envelope),
            _ => None,
        })
        .collect();
    assert_eq!(forged.len(), 1);
    net.input(1, Input::EnvelopeReceived { envelope: forged[0].clone() });
    assert_eq!(net.refusals(1, Refusal::UnknownSender), 1);
    assert!(net.call_signals(1).is_empty());

    // Replayed: the ratchet refuses it, and it does not ring twice.
    net.input(1, Input::EnvelopeReceived { envelope: envelope.clone() });
    net.input(1, Input::EnvelopeReceived { envelope });
    assert_eq!(net.call_signals(1).len(), 1, "the genuine offer, once");
    assert_eq!(net.refusals(1, Refusal::Undecryptable), 3);
}

#[test]
fn a_missed_call_is_an_unread_entry_of_the_history_that_vanishes_and_sends_no_receipt() {
    let mut net = Net::new();
    let (bob, alice) = net.add_each_other();
    let timer = VanishingTimer::from_secs(30).unwrap();
    net.input(1, Input::TimerSet { contact: alice, timer });
    net.deliver_all();
    let video = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n";
    let video = signal(call_id(8), Signal::Offer(Sdp::new(video.into()).unwrap()));
    net.call(0, bob, video).unwrap();
    net.deliver_all();
    net.call(0, bob, signal(call_id(8), Signal::HangUp(HangUpReason::NoAnswer))).unwrap();
    net.deliver_all();

    let entries: Vec<_> = net.nodes[1]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::MessageReceived(m) if m.call.is_some() => Some(m.clone()),
            _ => None,
        })
        .collect();
    let [entry] = entries.as_slice() else { panic!("one entry, got {entries:?}") };
    let missed = CallEntry { call_id: call_id(8), outcome: CallOutcome::Missed, video: true };
    assert_eq!(entry.call, Some(missed));
    assert_eq!(
        (entry.contact, entry.direction, entry.status, entry.text.as_str(), entry.timer),
        (alice, Direction::Incoming, Status::Unread, "", timer)
    );
    assert!(
        net.nodes[1].writes.iter().any(|w| matches!(w, Write::Message(m) if m == entry)),
        "kept in the store"
    );
    assert!(net.nodes[0].events.iter().all(|e| !matches!(e, Event::MessageReceived(_))));

    // Read with a text: the text's read receipt is queued, none for the
    // entry (Alice never sent its id).
    let hello = net.send(0, bob, "hello");
    net.deliver_all();
    net.input(1, Input::MessagesRead { contact: alice, ids: vec![entry.id] });
    assert!(
        net.nodes[1]
            .writes
            .iter()
            .any(|w| matches!(w, Write::Status { id, status: Status::Seen } if *id == entry.id))
    );
    assert!(net.wire.is_empty(), "no receipt for a missed call");
    net.input(1, Input::MessagesRead { contact: alice, ids: vec![hello] });
    assert_eq!(net.wire.len(), 1, "the text's read receipt");
    net.deliver_all();
    assert_eq!(net.status_of(0, hello), Some(Status::Read));

    // Its timer started when it was read.
    net.advance(Duration::from_secs(31));
    assert!(net.nodes[1].events.contains(&Event::MessageExpired { id: entry.id }));

    // Refused as busy by Bob's page (he is in another call): missed too.
    // Declined by Bob himself: not.
    net.call(0, bob, offer(call_id(9))).unwrap();
    net.call(0, bob, offer(call_id(10))).unwrap();
    net.deliver_all();
    net.call(1, alice, signal(call_id(9), Signal::Reject(RejectReason::Busy))).unwrap();
    net.call(1, alice, signal(call_id(10), Signal::Reject(RejectReason::Declined))).unwrap();
    let missed = net.nodes[1].events.iter().filter_map(|e| match e {
        Event::MessageReceived(m) => m.call.map(|c| (c.call_id, c.video)),
        _ => None,
    });
    assert_eq!(missed.collect::<Vec<_>>(), [(call_id(8), true), (call_id(9), false)]);
    assert_eq!(net.nodes[1].messenger.ringing().count(), 0);
}

#[test]
fn a_call_the_caller_ends_before_an_answer_or_that_rings_out_is_missed() {
    let mut net = Net::new();
    let (bob, alice) = net.add_each_other();
    net.deliver_all();
    // Hung up before an answer (the caller's UI says "no answer" or the
    // caller gave up): missed.
    net.call(0, bob, offer(call_id(8))).unwrap();
    net.deliver_all();
    net.call(0, bob, signal(call_id(8), Signal::HangUp(HangUpReason::NoAnswer))).unwrap();
    net.deliver_all();
    assert_eq!(net.missed_calls(1), [call_id(8)]);
    assert!(net.nodes[1].events.iter().any(|e| matches!(
        e,
        Event::CallMissed { contact, .. } if *contact == alice
    )));
    // Declined by the callee's hang-up: not missed.
    net.call(0, bob, offer(call_id(9))).unwrap();
    net.deliver_all();
    net.call(1, alice, signal(call_id(9), Signal::HangUp(HangUpReason::Normal))).unwrap();
    net.call(0, bob, signal(call_id(9), Signal::HangUp(HangUpReason::Normal))).unwrap();
    net.deliver_all();
    assert_eq!(net.missed_calls(1), [call_id(8)]);
    // The caller vanished: it rings out.
    net.call(0, bob, offer(call_id(10))).unwrap();
    net.deliver_all();
    net.advance(RING_TIMEOUT + Duration::from_secs(1));
    assert_eq!(net.missed_calls(1), [call_id(8), call_id(10)]);
    assert_eq!(net.nodes[1].messenger.ringing().count(), 0);
    // A hang-up that overtook its offer: the late offer is a missed call
    // and never rings.
    net.call(0, bob, offer(call_id(11))).unwrap();
    let late_offer = net.wire.pop_front().unwrap();
    net.call(0, bob, signal(call_id(11), Signal::HangUp(HangUpReason::Normal))).unwrap();
    net.deliver_all();
    assert_eq!(net.missed_calls(1).len(), 2, "a hang-up alone makes nothing missed");
    net.wire.push_back(late_offer);
    net.deliver_all();
    assert_eq!(net.missed_calls(1), [call_id(8), call_id(10), call_id(11)]);
    assert_eq!(net.nodes[1].messenger.ringing().count(), 0);
    assert!(!net.call_signals(1).contains(&(alice, offer(call_id(11)), false, false)), "not shown");
}
