//! A deterministic simulator of many xchat messengers (tests only).
//!
//! [`Sim`] drives N [`Messenger`]s the way quinn's `Pair::drive` drives two
//! connections: one fake clock, one seeded ChaCha20 generator for everything
//! (same seed, same run), and an event loop that always does the earliest
//! thing next: a network delivery, an acknowledgement, or a messenger's
//! `next_deadline()` (answered with `Input::TimePassed`).
//!
//! The network loses, delays (so reorders) and duplicates envelopes
//! ([`NetConfig`]), and can be cut by partitions (two sets of nodes that
//! cannot reach each other until a given time). Each node has a mailbox that
//! keeps `Route::Mailbox` envelopes while it is offline and hands them over
//! when it comes back. The sender is told `SendAcknowledged` when an envelope
//! reached the device (direct) or the mailbox, `SendFailed` when it was lost
//! or could not go. Partitions cut mailboxes too: a mailbox lives with its
//! owner's side of the network.
//!
//! Prekeys: every node's publication is kept in a directory (refreshed on
//! `Effect::PublishPreKeys`); `FetchBundles` is answered with one bundle
//! taken from it, so each one-time prekey is handed out once, as a real
//! directory would.
//!
//! Every node records each `Write` it applied and each `Event` it was told,
//! with the time, so tests can check history. The node's commit rule is
//! followed: the writes of one input are applied before its sends and events.
//!
//! Crash and restart: [`Sim::crash`] drops a node's messenger between two
//! inputs (each input's writes are one transaction, so a crash never splits
//! them) together with everything the network had for it but its mailbox;
//! [`Sim::restart`] builds a new messenger from the writes it had applied
//! ([`restore`]), as a store would load it.
//!
//! Real stores: [`Sim::with_stores`] gives every node a SQLCipher store of
//! its own, applies each input's writes to it in one transaction, and
//! restarts a node from what its store loads, after checking that the store
//! loads exactly the state [`restore`] computes from the writes
//! ([`state_digest`]): the reference model and the real store must agree.

#![allow(clippy::expect_used)] // a simulator whose own setup fails has nothing to simulate

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use xchat_core::contact::{Added, ContactId};
use xchat_core::io::{CommandError, Done, Event, Write};
use xchat_core::messenger::State;
use xchat_core::record::{OutboxId, Status, UnreadRecord};
use xchat_core::retry::Route;
use xchat_core::time::UnixMillis;
use xchat_core::{Effect, Input, Messenger};
use xchat_crypto::bundle::PreKeys;
use xchat_crypto::device::Device;
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::Seed;
use xchat_crypto::signature::VerifyingKey;
use xchat_proto::bundle::{PreKeyRecord, UnverifiedPreKeyRecord};
use xchat_proto::content::{MessageId, VanishingTimer};
use xchat_store::{DatabaseKey, Store};

/// When every simulation starts (late 2026).
pub const START: UnixMillis = UnixMillis(1_790_000_000_000);
/// One-time prekeys each node starts with: enough for every contact of a
/// 20-node simulation to get its own.
pub const ONE_TIME_PREKEYS: usize = 32;

/// How the network misbehaves.
#[derive(Debug, Clone, Copy)]
pub struct NetConfig {
    /// Share of envelopes lost (0.0 to 1.0); the sender is told `SendFailed`.
    pub loss: f64,
    /// Share of envelopes delivered twice.
    pub duplication: f64,
    /// Shortest time an envelope takes.
    pub min_delay: Duration,
    /// Longest time an envelope takes (a wide range reorders).
    pub max_delay: Duration,
}

impl NetConfig {
    /// A perfect network: nothing lost or duplicated, 10 ms per envelope.
    pub const PERFECT: Self = Self {
        loss: 0.0,
        duplication: 0.0,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
    };
}

/// One simulated device and what happened to it.
#[derive(Debug)]
pub struct Node {
    /// Its messenger.
    pub messenger: Messenger,
    /// Every write it applied, with when.
    pub writes: Vec<(UnixMillis, Write)>,
    /// Every event it was told, with when.
    pub events: Vec<(UnixMillis, Event)>,
    /// Whether it runs and is connected.
    pub online: bool,
    /// Envelopes kept for it while it is offline: sender, envelope and
    /// the network's order number.
    pub mailbox: Vec<(usize, Vec<u8>, u64)>,
    /// Its contact id for each other node that it added.
    pub contacts: BTreeMap<usize, ContactId>,
    /// How often it crashed.
    pub crashes: u32,
    keys: Keys,
    store: Option<NodeStore>,
}

/// A node's real store, and where it lives.
#[derive(Debug)]
struct NodeStore {
    store: Store,
    dir: PathBuf,
    key_file: PathBuf,
}

/// What a node keeps outside its store of writes: its seed, device and
/// first prekeys (the core never writes those).
struct Keys {
    seed: [u8; 64],
    device: zeroize::Zeroizing<Vec<u8>>,
    prekeys: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// Something scheduled on the network.
#[derive(Debug)]
enum Item {
    Deliver { from: usize, to: usize, route: Route, envelope: Vec<u8>, seq: u64 },
    Acknowledged { node: usize, entry: OutboxId, route: Route },
    Failed { node: usize, entry: OutboxId, route: Route },
    Bundles { node: usize, identity: VerifyingKey, records: Vec<Vec<u8>> },
    Heal,
}

#[derive(Debug, Clone)]
struct Partition {
    side_a: Vec<usize>,
    side_b: Vec<usize>,
    until: UnixMillis,
}

/// Counts of what the network did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Envelopes handed to the network.
    pub sent: u64,
    /// Envelopes lost on purpose.
    pub lost: u64,
    /// Envelopes delivered twice on purpose.
    pub duplicated: u64,
    /// Sends refused because the recipient could not be reached.
    pub unreachable: u64,
    /// Envelopes delivered to a node.
    pub delivered: u64,
    /// Envelopes delivered after a later one between the same two nodes.
    pub reordered: u64,
}

/// N messengers, a fake clock and a misbehaving network.
#[derive(Debug)]
pub struct Sim {
    now: UnixMillis,
    rng: ChaCha20Rng,
    config: NetConfig,
    nodes: Vec<Node>,
    directory: Vec<Option<xchat_crypto::bundle::PreKeyPublication>>,
    queue: BinaryHeap<Reverse<(UnixMillis, u64)>>,
    items: BTreeMap<u64, Item>,
    next_item: u64,
    partitions: Vec<Partition>,
    stats: NetStats,
    /// Per (from, to): the order number of the latest envelope delivered.
    delivered_seq: BTreeMap<(usize, usize), u64>,
}

impl Sim {
    /// `n` fresh nodes at [`START`], all online, from `seed`.
    pub fn new(seed: u64, n: usize, config: NetConfig) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut nodes = Vec::with_capacity(n);
        let mut directory = Vec::with_capacity(n);
        for _ in 0..n {
            let mut seed = [0u8; 64];
            rng.fill_bytes(&mut seed);
            let identity = identity_of(&seed);
            let device = Device::new(&identity, START.0, &mut rng);
            let mut prekeys = PreKeys::new(&device, START.0, &mut rng);
            prekeys
                .generate_one_time_prekeys(&device, ONE_TIME_PREKEYS, &mut rng)
                .expect("room for the first prekeys");
            let keys = Keys { seed, device: device.to_record(), prekeys: prekeys.to_record() };
            let messenger = Messenger::new(identity, device, prekeys, State::default())
                .expect("an empty state does not clash");
            let record = messenger.prekey_record(START).expect("own prekeys publish");
            directory.push(publication(&record, messenger.identity().signing_key()));
            nodes.push(Node {
                messenger,
                writes: Vec::new(),
                events: Vec::new(),
                online: true,
                mailbox: Vec::new(),
                contacts: BTreeMap::new(),
                crashes: 0,
                keys,
                store: None,
            });
        }
        Self {
            now: START,
            rng,
            config,
            nodes,
            directory,
            queue: BinaryHeap::new(),
            items: BTreeMap::new(),
            next_item: 0,
            partitions: Vec::new(),
            stats: NetStats::default(),
            delivered_seq: BTreeMap::new(),
        }
    }

    /// As [`Sim::new`], with a real SQLCipher store for every node in a
    /// directory of its own under `dir` (keyed by a key file: the tests are
    /// about the data, not the passphrase).
    pub fn with_stores(seed: u64, n: usize, config: NetConfig, dir: &Path) -> Self {
        let mut sim = Self::new(seed, n, config);
        for (index, node) in sim.nodes.iter_mut().enumerate() {
            let key_file = dir.join(format!("node-{index}.key"));
            let key =
                DatabaseKey::create_key_file(&key_file, &mut sim.rng).expect("a new key file");
            let dir = dir.join(format!("node-{index}"));
            let mut store = Store::create(&dir, &key).expect("a new store");
            let identity = identity_of(&node.keys.seed);
            let device = Device::from_record(&node.keys.device, identity.public().signing_key())
                .expect("its own device record");
            let prekeys = PreKeys::from_record(&node.keys.prekeys).expect("its own prekeys");
            store
                .apply(|batch| {
                    batch.put_identity(&identity)?;
                    batch.put_device(&device)?;
                    batch.put_prekeys(&prekeys)
                })
                .expect("the first records are saved");
            node.store = Some(NodeStore { store, dir, key_file });
        }
        sim
    }

    /// The simulated time.
    pub fn now(&self) -> UnixMillis {
        self.now
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `index`.
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// How the network misbehaves now.
    pub fn config(&self) -> NetConfig {
        self.config
    }

    /// Changes how the network misbehaves from now on.
    pub fn set_config(&mut self, config: NetConfig) {
        self.config = config;
    }

    /// Feeds `input` to node `at` now and carries out its effects; returns
    /// the command's answer, if it was a command.
    pub fn input(&mut self, at: usize, input: Input) -> Option<Result<Done, CommandError>> {
        let now = self.now;
        let effects = self.nodes[at].messenger.handle(now, input, &mut self.rng);
        // The commit rule: every write of the input first, then the rest.
        let (writes, rest): (Vec<_>, Vec<_>) =
            effects.into_iter().partition(|e| matches!(e, Effect::Write(_)));
        let writes: Vec<Write> = writes
            .into_iter()
            .filter_map(|effect| match effect {
                Effect::Write(write) => Some(write),
                _ => None,
            })
            .collect();
        let node = &mut self.nodes[at];
        if let Some(store) = &mut node.store {
            store
                .store
                .apply(|batch| batch.write_all(&writes))
                .expect("the store takes the writes");
        }
        node.writes.extend(writes.into_iter().map(|write| (now, write)));
        let mut answer = None;
        for effect in rest {
            match effect {
                Effect::Write(_) => {}
                Effect::Send(send) => self.send(at, send),
                Effect::FetchBundles { identity } => {
                    let records = self.take_bundle(&identity).into_iter().collect();
                    self.schedule(now, Item::Bundles { node: at, identity, records });
                }
                Effect::PublishPreKeys { record } => {
                    let key = *self.nodes[at].messenger.identity().signing_key();
                    if let Some(publication) = publication(&record, &key) {
                        self.directory[at] = Some(publication);
                    }
                }
                Effect::Notify(event) => self.nodes[at].events.push((now, event)),
                Effect::Answer(result) => answer = Some(result),
                // Files' bytes move outside the simulated network, and
                // mailboxes are the simulator's own (`Node::mailbox`).
                Effect::FetchFile(_)
                | Effect::DeleteFile { .. }
                | Effect::FetchMailbox(_)
                | Effect::DeleteFromMailbox { .. } => {}
            }
        }
        answer
    }

    /// Every node adds every other, and the network runs until quiet.
    pub fn add_all_contacts(&mut self) {
        let n = self.nodes.len();
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    self.add_contact(a, b);
                }
            }
        }
        self.run_for(Duration::from_secs(1));
        self.announce_reachability();
    }

    /// Node `a` adds node `b` as a contact; returns its contact id.
    pub fn add_contact(&mut self, a: usize, b: usize) -> ContactId {
        let address = self.nodes[b].messenger.address();
        let answer = self.input(a, Input::ContactAdded { name: format!("node {b}"), address });
        let Some(Ok(Done::Contact(Added::New(id) | Added::Unchanged(id) | Added::KeyChanged(id)))) =
            answer
        else {
            unreachable!("adding another node's address is accepted: {answer:?}")
        };
        self.nodes[a].contacts.insert(b, id);
        id
    }

    /// Node `from` sends `text` to node `to` (a contact); returns the id.
    pub fn send_text(&mut self, from: usize, to: usize, text: &str) -> MessageId {
        let contact = self.nodes[from].contacts[&to];
        match self.input(from, Input::TextSent { contact, text: text.to_owned() }) {
            Some(Ok(Done::MessageQueued(id))) => id,
            other => unreachable!("a text to a contact is queued: {other:?}"),
        }
    }

    /// Node `from` sets the vanishing timer of its conversation with `to`.
    pub fn set_timer(&mut self, from: usize, to: usize, timer: VanishingTimer) {
        let contact = self.nodes[from].contacts[&to];
        let answer = self.input(from, Input::TimerSet { contact, timer });
        assert!(matches!(answer, Some(Ok(Done::Ok))), "timer set: {answer:?}");
    }

    /// Node `at`'s user reads every message received from `from` so far.
    pub fn read_all_from(&mut self, at: usize, from: usize) {
        let contact = self.nodes[at].contacts[&from];
        let ids: Vec<MessageId> = self
            .received(at)
            .into_iter()
            .filter(|(c, _)| *c == contact)
            .map(|(_, id)| id)
            .collect();
        self.input(at, Input::MessagesRead { contact, ids });
    }

    /// The (contact, id) of every `MessageReceived` event at node `at`.
    pub fn received(&self, at: usize) -> Vec<(ContactId, MessageId)> {
        self.nodes[at]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::MessageReceived(m) => Some((m.contact, m.id)),
                _ => None,
            })
            .collect()
    }

    /// The latest status node `at` was told for message `id`.
    pub fn status(&self, at: usize, id: MessageId) -> Option<Status> {
        self.nodes[at].events.iter().rev().find_map(|(_, e)| match e {
            Event::StatusChanged { id: i, status, .. } if *i == id => Some(*status),
            _ => None,
        })
    }

    /// When node `at` was told message `id` expired.
    pub fn expired_at(&self, at: usize, id: MessageId) -> Option<UnixMillis> {
        self.nodes[at].events.iter().find_map(|(t, e)| match e {
            Event::MessageExpired { id: i } if *i == id => Some(*t),
            _ => None,
        })
    }

    /// Nodes in `side_a` and `side_b` cannot reach each other for `duration`.
    pub fn partition(&mut self, side_a: &[usize], side_b: &[usize], duration: Duration) {
        let until = self.now.saturating_add(duration);
        self.partitions.push(Partition { side_a: side_a.to_vec(), side_b: side_b.to_vec(), until });
        self.schedule(until, Item::Heal);
        self.announce_reachability();
    }

    /// Takes node `at` offline, or brings it back (it then fetches its
    /// mailbox and catches up on its deadlines).
    pub fn set_online(&mut self, at: usize, online: bool) {
        self.nodes[at].online = online;
        self.announce_reachability();
        if online {
            for (from, envelope, seq) in std::mem::take(&mut self.nodes[at].mailbox) {
                let at_time = self.delay();
                let item = Item::Deliver { from, to: at, route: Route::Mailbox, envelope, seq };
                self.schedule(at_time, item);
            }
            self.input(at, Input::TimePassed);
        }
    }

    /// Node `at` crashes: its messenger stops between two inputs, and what
    /// the network was bringing it is lost (but for its mailbox).
    pub fn crash(&mut self, at: usize) {
        self.nodes[at].crashes += 1;
        let dropped: Vec<u64> = self
            .items
            .iter()
            .filter(|(_, item)| match item {
                Item::Acknowledged { node, .. }
                | Item::Failed { node, .. }
                | Item::Bundles { node, .. } => *node == at,
                Item::Deliver { .. } | Item::Heal => false,
            })
            .map(|(key, _)| *key)
            .collect();
        for key in dropped {
            self.items.remove(&key);
        }
        self.set_online(at, false);
    }

    /// Node `at` starts again from the writes it applied, and comes online.
    /// With a real store, it is reopened and the node starts from what it
    /// loads, which must be what the writes make ([`restore`]).
    pub fn restart(&mut self, at: usize) {
        let node = &mut self.nodes[at];
        let expected = restore(&node.writes);
        let (identity, device, prekeys, state) = if let Some(old) = node.store.take() {
            drop(old.store);
            let key = DatabaseKey::from_key_file(&old.key_file).expect("its key file");
            let store = Store::open(&old.dir, &key).expect("the store opens again");
            let identity = store.load_identity().expect("identity loads").expect("saved");
            let key = *identity.public().signing_key();
            let device = store.load_device(&key).expect("device loads").expect("saved");
            let prekeys = store.load_prekeys().expect("prekeys load").expect("saved");
            let state = store.load_state().expect("the state loads");
            assert_eq!(
                state_digest(&state),
                state_digest(&expected),
                "node {at}: the store and the writes disagree"
            );
            node.store = Some(NodeStore { store, ..old });
            (identity, device, prekeys, state)
        } else {
            let identity = identity_of(&node.keys.seed);
            let key = *identity.public().signing_key();
            let device =
                Device::from_record(&node.keys.device, &key).expect("its own device record");
            let prekeys = node
                .writes
                .iter()
                .rev()
                .find_map(|(_, w)| match w {
                    Write::PreKeys(record) => Some(record),
                    _ => None,
                })
                .unwrap_or(&node.keys.prekeys);
            let prekeys = PreKeys::from_record(prekeys).expect("its own prekeys record");
            (identity, device, prekeys, expected)
        };
        node.messenger =
            Messenger::new(identity, device, prekeys, state).expect("restored contacts agree");
        self.set_online(at, true);
    }

    /// Whether `from` can reach `to` now.
    pub fn can_reach(&self, from: usize, to: usize) -> bool {
        self.nodes[from].online
            && self.nodes[to].online
            && !self.partitions.iter().any(|p| {
                p.until > self.now
                    && ((p.side_a.contains(&from) && p.side_b.contains(&to))
                        || (p.side_b.contains(&from) && p.side_a.contains(&to)))
            })
    }

    /// Whether `from` can leave an envelope in `to`'s mailbox now.
    fn can_reach_mailbox(&self, from: usize, to: usize) -> bool {
        self.nodes[from].online
            && !self.partitions.iter().any(|p| {
                p.until > self.now
                    && ((p.side_a.contains(&from) && p.side_b.contains(&to))
                        || (p.side_b.contains(&from) && p.side_a.contains(&to)))
            })
    }

    /// Tells every online node which of its contacts' devices it can reach
    /// (done on every change of the topology; callable to refresh).
    pub fn announce_reachability(&mut self) {
        let n = self.nodes.len();
        for a in 0..n {
            if !self.nodes[a].online {
                continue;
            }
            for b in 0..n {
                if a == b || !self.nodes[a].contacts.contains_key(&b) {
                    continue;
                }
                let identity = *self.nodes[b].messenger.identity().signing_key();
                let device = self.nodes[b].messenger.device().device_id();
                let reachable = self.can_reach(a, b);
                self.input(a, Input::DeviceReachable { identity, device, reachable });
            }
        }
    }

    /// Runs the event loop for `duration` of simulated time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now.saturating_add(duration);
        self.run_until(until);
    }

    /// Runs the event loop up to `until`: always the earliest of the next
    /// network item and the online nodes' deadlines.
    pub fn run_until(&mut self, until: UnixMillis) {
        loop {
            let item_at = self.queue.peek().map(|Reverse((at, _))| *at);
            let deadline = self
                .nodes
                .iter()
                .filter(|n| n.online)
                .filter_map(|n| n.messenger.next_deadline())
                .min();
            let next = match (item_at, deadline) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(next) => next,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if item_at == Some(next) {
                if let Some(Reverse((_, key))) = self.queue.pop()
                    && let Some(item) = self.items.remove(&key)
                {
                    self.process(item);
                }
            } else {
                for at in 0..self.nodes.len() {
                    let node = &self.nodes[at];
                    if node.online && node.messenger.next_deadline().is_some_and(|d| d <= self.now)
                    {
                        self.input(at, Input::TimePassed);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs until no envelope is in flight and every outbox is empty, or
    /// `limit` of simulated time passed; returns whether it got quiet.
    pub fn run_until_quiet(&mut self, limit: Duration) -> bool {
        let end = self.now.saturating_add(limit);
        while self.now < end {
            if self.is_quiet() {
                return true;
            }
            let step = self.now.saturating_add(Duration::from_secs(1)).min(end);
            self.run_until(step);
        }
        self.is_quiet()
    }

    /// Whether no envelope is in flight or in a mailbox and every outbox is empty.
    pub fn is_quiet(&self) -> bool {
        self.items.values().all(|i| matches!(i, Item::Heal))
            && self.nodes.iter().all(|n| n.messenger.outbox_len() == 0 && n.mailbox.is_empty())
    }

    fn process(&mut self, item: Item) {
        match item {
            Item::Deliver { from, to, route, envelope, seq } => {
                if self.nodes[to].online {
                    self.stats.delivered += 1;
                    let latest = self.delivered_seq.entry((from, to)).or_insert(0);
                    if seq < *latest {
                        self.stats.reordered += 1;
                    }
                    *latest = (*latest).max(seq);
                    self.input(to, Input::EnvelopeReceived { envelope });
                } else if route == Route::Mailbox {
                    self.nodes[to].mailbox.push((from, envelope, seq));
                }
            }
            Item::Acknowledged { node, entry, route } => {
                if self.nodes[node].online {
                    self.input(node, Input::SendAcknowledged { entry, route });
                }
            }
            Item::Failed { node, entry, route } => {
                if self.nodes[node].online {
                    self.input(node, Input::SendFailed { entry, route });
                }
            }
            Item::Bundles { node, identity, records } => {
                if self.nodes[node].online {
                    self.input(node, Input::BundlesFetched { identity, records });
                }
            }
            Item::Heal => {
                let now = self.now;
                self.partitions.retain(|p| p.until > now);
                self.announce_reachability();
            }
        }
    }

    fn send(&mut self, from: usize, send: xchat_core::io::Send) {
        self.stats.sent += 1;
        let Some(to) = self.index_of(&send.identity) else {
            return self.fail(from, send.entry, send.route);
        };
        let reachable = match send.route {
            Route::Direct => self.can_reach(from, to),
            Route::Mailbox => self.can_reach_mailbox(from, to),
        };
        if !reachable {
            self.stats.unreachable += 1;
            return self.fail(from, send.entry, send.route);
        }
        if self.chance(self.config.loss) {
            self.stats.lost += 1;
            return self.fail(from, send.entry, send.route);
        }
        let arrives = self.delay();
        let seq = self.stats.sent;
        let route = send.route;
        if self.chance(self.config.duplication) {
            self.stats.duplicated += 1;
            let again = self.delay();
            let envelope = send.envelope.clone();
            self.schedule(again, Item::Deliver { from, to, route, envelope, seq });
        }
        self.schedule(arrives, Item::Deliver { from, to, route, envelope: send.envelope, seq });
        self.schedule(
            arrives,
            Item::Acknowledged { node: from, entry: send.entry, route: send.route },
        );
    }

    fn fail(&mut self, from: usize, entry: OutboxId, route: Route) {
        let at = self.delay();
        self.schedule(at, Item::Failed { node: from, entry, route });
    }

    fn index_of(&self, identity: &VerifyingKey) -> Option<usize> {
        self.nodes.iter().position(|n| n.messenger.identity().signing_key() == identity)
    }

    /// One bundle from `identity`'s publication, encoded as a record; each
    /// one-time prekey is handed out once.
    fn take_bundle(&mut self, identity: &VerifyingKey) -> Option<Vec<u8>> {
        let at = self.index_of(identity)?;
        let publication = self.directory[at].as_mut()?;
        let bundle = publication.take_bundle();
        let record = PreKeyRecord {
            published_at_ms: self.now.0,
            prekeys: xchat_proto::bundle::PreKeys::Bundle(bundle),
        };
        Some(record.encode())
    }

    fn schedule(&mut self, at: UnixMillis, item: Item) {
        let key = self.next_item;
        self.next_item += 1;
        self.items.insert(key, item);
        self.queue.push(Reverse((at, key)));
    }

    /// Now plus a random delay in the configured range.
    fn delay(&mut self) -> UnixMillis {
        let min = u64::try_from(self.config.min_delay.as_millis()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.config.max_delay.as_millis()).unwrap_or(u64::MAX).max(min);
        let span = max - min + 1;
        UnixMillis(self.now.0.saturating_add(min + self.rng.next_u64() % span))
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        // 53 random bits make an f64 in [0, 1).
        #[allow(clippy::cast_precision_loss)]
        let x = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }
}

/// The verified publication inside an encoded prekey record of `identity`.
fn publication(
    record: &[u8],
    identity: &VerifyingKey,
) -> Option<xchat_crypto::bundle::PreKeyPublication> {
    let record = UnverifiedPreKeyRecord::decode(record).ok()?.verify(Some(identity)).ok()?;
    match record.prekeys {
        xchat_proto::bundle::PreKeys::Publication(publication) => Some(publication),
        xchat_proto::bundle::PreKeys::Bundle(_) => None,
    }
}

fn identity_of(seed: &[u8; 64]) -> Identity {
    let seed = Seed::from_bytes(seed).expect("64 bytes are a seed");
    Identity::from_seed(&seed).expect("a seed gives an identity")
}

/// The `State` a store would load after applying `writes` in order: the
/// last version of each record, without what was deleted.
///
/// Message ids received are all incoming messages ever written (a store
/// keeps them to drop duplicates even after the message vanished).
pub fn restore(writes: &[(UnixMillis, Write)]) -> State {
    use xchat_core::record::Direction;
    let mut contacts = BTreeMap::new();
    let mut peers = BTreeMap::new();
    let mut conversations = BTreeMap::new();
    let mut outbox = BTreeMap::new();
    let mut waiting = BTreeMap::new();
    // The messages not deleted, with their latest status.
    let mut messages: BTreeMap<MessageId, (xchat_core::record::MessageRecord, Status)> =
        BTreeMap::new();
    let mut received = Vec::new();
    let mut envelopes = Vec::new();
    let mut settings = xchat_core::record::Settings::default();
    let mut transfers = BTreeMap::new();
    for (_, write) in writes {
        match write {
            Write::PreKeys(_) => {}
            Write::Contact(contact) => {
                contacts.insert(contact.id, contact.clone());
            }
            Write::Peer(peer) => {
                peers.insert((peer.identity.to_bytes(), peer.certificate.clone()), peer.clone());
            }
            Write::Message(record) => {
                if record.direction == Direction::Incoming {
                    received.push(record.id);
                }
                messages.insert(record.id, (record.clone(), record.status));
            }
            Write::Status { id, status } => {
                if let Some(message) = messages.get_mut(id) {
                    message.1 = *status;
                }
            }
            Write::Expiry { id, expires_at } => {
                if let Some(message) = messages.get_mut(id) {
                    message.0.expires_at = Some(*expires_at);
                }
            }
            Write::DeleteMessage(id) => {
                messages.remove(id);
            }
            Write::Conversation(conversation) => {
                conversations.insert(conversation.contact, *conversation);
            }
            Write::Waiting(w) => {
                waiting.insert(w.message, w.clone());
            }
            Write::DeleteWaiting(id) => {
                waiting.remove(id);
            }
            Write::Outbox(entry) => {
                outbox.insert(entry.id, entry.clone());
            }
            Write::DeleteOutbox(id) => {
                outbox.remove(id);
            }
            Write::Settings(s) => settings = *s,
            Write::SeenEnvelope { hash, contact, message } => {
                envelopes.push((*hash, *contact, *message));
            }
            Write::Transfer(transfer) => {
                transfers.insert(transfer.file(), (**transfer).clone());
            }
            Write::DeleteTransfer(file) => {
                transfers.remove(file);
            }
        }
    }
    let peers = peers
        .into_values()
        .map(|peer| {
            let certificate =
                xchat_crypto::device::UnverifiedDeviceCertificate::from_bytes(&peer.certificate)
                    .ok()
                    .and_then(|c| c.verify(&peer.identity).ok())
                    .expect("a certificate the messenger verified");
            let session = peer.session.as_ref().map(|record| {
                xchat_crypto::ratchet::Session::from_record(record).expect("a session it wrote")
            });
            let archived = peer
                .archived
                .iter()
                .map(|record| {
                    xchat_crypto::ratchet::Session::from_record(record).expect("a session it wrote")
                })
                .collect();
            let device = xchat_core::messenger::PeerDevice {
                certificate,
                session,
                archived,
                initiation: peer.initiation.clone(),
                accepted_initiations: peer.accepted_initiations.clone(),
                reachable: false,
            };
            (peer.identity, device)
        })
        .collect();
    let mut sent = Vec::new();
    let mut unread = Vec::new();
    let mut expiring = Vec::new();
    for (id, (record, status)) in &messages {
        match record.direction {
            Direction::Outgoing => {
                if !matches!(status, Status::Read | Status::Failed(_)) {
                    sent.push((*id, record.contact));
                }
            }
            Direction::Incoming => {
                if *status == Status::Unread {
                    unread.push(UnreadRecord {
                        id: *id,
                        contact: record.contact,
                        timer: record.timer,
                        receipt: record.call.is_none(),
                    });
                }
            }
        }
        if let Some(at) = record.expires_at {
            expiring.push((*id, at));
        }
    }
    let attachments = messages
        .iter()
        .filter_map(|(id, (record, _))| {
            Some((*id, record.file?)).filter(|_| !record.timer.is_off())
        })
        .collect();
    State {
        transfers: transfers.into_values().filter(|t| t.state.is_open()).collect(),
        attachments,
        contacts: contacts.into_values().collect(),
        peers,
        conversations: conversations.into_values().collect(),
        outbox: outbox.into_values().collect(),
        waiting: waiting.into_values().collect(),
        sent,
        unread,
        expiring,
        received,
        envelopes,
        settings,
    }
}

/// A canonical text of everything in `state` (records re-encoded, lists
/// sorted where their order carries no meaning), to compare two states.
pub fn state_digest(state: &State) -> String {
    use std::fmt::Write as _;
    fn hex(bytes: &[u8]) -> String {
        bytes.iter().fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
    }
    let mut contacts: Vec<String> = state.contacts.iter().map(|c| format!("{c:?}")).collect();
    contacts.sort();
    let mut peers: Vec<String> = state
        .peers
        .iter()
        .map(|(identity, device)| {
            let archived: Vec<String> =
                device.archived.iter().map(|s| hex(&s.to_record())).collect();
            format!(
                "{} {} session={:?} archived={archived:?} initiation={:?} accepted={:?}",
                hex(&identity.to_bytes()),
                hex(&device.certificate.to_bytes()),
                device.session.as_ref().map(|s| hex(&s.to_record())),
                device.initiation.as_deref().map(hex),
                device.accepted_initiations,
            )
        })
        .collect();
    peers.sort();
    let sorted = |items: Vec<String>| {
        let mut items = items;
        items.sort();
        items
    };
    let conversations = sorted(state.conversations.iter().map(|c| format!("{c:?}")).collect());
    let outbox = sorted(state.outbox.iter().map(|e| format!("{e:?}")).collect());
    let waiting = sorted(
        state
            .waiting
            .iter()
            .map(|w| format!("{:?} {:?} {} {:?}", w.message, w.contact, hex(&w.content), w.awaits))
            .collect(),
    );
    let sent = sorted(state.sent.iter().map(|x| format!("{x:?}")).collect());
    let unread = sorted(state.unread.iter().map(|x| format!("{x:?}")).collect());
    let expiring = sorted(state.expiring.iter().map(|x| format!("{x:?}")).collect());
    let transfers = sorted(
        state
            .transfers
            .iter()
            .map(|t| format!("{t:?} key={}", hex(&t.descriptor.key().to_bytes()[..])))
            .collect(),
    );
    let attachments = sorted(state.attachments.iter().map(|x| format!("{x:?}")).collect());
    format!(
        "contacts {contacts:#?}\npeers {peers:#?}\nconversations {conversations:#?}\n\
         outbox {outbox:#?}\nwaiting {waiting:#?}\nsent {sent:#?}\nunread {unread:#?}\n\
         expiring {expiring:#?}\ntransfers {transfers:#?}\nattachments {attachments:#?}\n\
         received {:?}\nenvelopes {:?}\nsettings {:?}",
        state.received, state.envelopes, state.settings
    )
}
