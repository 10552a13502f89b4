//! The messenger core on its store: received messages per second, a page
//! of history in a database of a million messages, and the load of a
//! profile with a thousand contacts.
//!
//! `cargo bench -p xchat-store --bench messenger`. The stores live in the
//! system's temporary directory (a real disk: every commit is synced).

#![allow(clippy::unwrap_used, clippy::expect_used)]
// a bench's setup cannot fail on fixed inputs
// A benchmark measures time: the clock ban of the store is for the library.
#![allow(clippy::disallowed_methods)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_core::contact::{Contact, ContactId};
use xchat_core::io::{Input, Write};
use xchat_core::messenger::State;
use xchat_core::record::{Direction, MessageRecord, PeerRecord, Status};
use xchat_core::time::UnixMillis;
use xchat_core::{Effect, Messenger};
use xchat_crypto::device::Device;
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::Seed;
use xchat_proto::content::{MessageId, VanishingTimer};
use xchat_store::{DatabaseKey, Store};

const NOW: UnixMillis = UnixMillis(1_800_000_000_000);

/// `count` envelopes from `from` to its contact `to`, in the order sent.
fn envelopes(
    from: &mut Messenger,
    to: ContactId,
    count: u64,
    rng: &mut ChaCha20Rng,
) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap());
    for i in 0..count {
        let input =
            Input::TextSent { contact: to, text: format!("message number {i} of the benchmark") };
        for effect in from.handle(NOW, input, rng) {
            if let Effect::Send(send) = effect {
                out.push(send.envelope);
            }
        }
    }
    out
}

fn writes(effects: &[Effect]) -> impl Iterator<Item = &Write> {
    effects.iter().filter_map(|effect| match effect {
        Effect::Write(write) => Some(write),
        _ => None,
    })
}

/// Sends `receipts` (what `us` answered) back to `bob`, so his outbox does
/// not grow without end over a long benchmark (untimed).
fn deliver_receipts(bob: &mut Messenger, answers: Vec<Vec<Effect>>, rng: &mut ChaCha20Rng) {
    for effect in answers.into_iter().flatten() {
        if let Effect::Send(send) = effect {
            bob.handle(NOW, Input::EnvelopeReceived { envelope: send.envelope }, rng);
        }
    }
}

fn receive(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = common::create(dir.path(), 1);
    let (mut us, mut bob) = common::conversation(&mut store, &[(false, "hi"), (true, "hello")]);
    let to_us = bob.contacts().by_name("us").unwrap().id;
    let mut rng = ChaCha20Rng::seed_from_u64(3);

    let mut group = c.benchmark_group("receive");
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    // What the core does for a burst of 256 envelopes: unseal, decrypt,
    // de-duplicate, then (its deadline due at once) one sealed delivery
    // receipt for all of them.
    group.bench_function("core_burst_256", |b| {
        b.iter_custom(|iters| {
            let envelopes = envelopes(&mut bob, to_us, iters, &mut rng);
            let mut answers = Vec::with_capacity(envelopes.len());
            let start = Instant::now();
            for chunk in envelopes.chunks(256) {
                for envelope in chunk {
                    let envelope = envelope.clone();
                    answers.push(us.handle(NOW, Input::EnvelopeReceived { envelope }, &mut rng));
                }
                answers.push(us.handle(NOW, Input::TimePassed, &mut rng));
            }
            let elapsed = start.elapsed();
            deliver_receipts(&mut bob, answers, &mut rng);
            elapsed
        });
    });
    // One message at a time, as at low load: its own synced transaction and
    // its own receipt.
    group.bench_function("core_and_store_one_at_a_time", |b| {
        b.iter_custom(|iters| {
            let envelopes = envelopes(&mut bob, to_us, iters, &mut rng);
            let mut answers = Vec::with_capacity(envelopes.len());
            let start = Instant::now();
            for envelope in envelopes {
                for input in [Input::EnvelopeReceived { envelope }, Input::TimePassed] {
                    let effects = us.handle(NOW, input, &mut rng);
                    store.apply(|batch| batch.write_all(writes(&effects))).unwrap();
                    answers.push(effects);
                }
            }
            let elapsed = start.elapsed();
            deliver_receipts(&mut bob, answers, &mut rng);
            elapsed
        });
    });
    // The node under load: the writes of 256 inputs and of the deadline
    // that follows them in one synced transaction (group commit), in order,
    // before any of their sends.
    group.bench_function("core_and_store_group_commit_256", |b| {
        b.iter_custom(|iters| {
            let envelopes = envelopes(&mut bob, to_us, iters, &mut rng);
            let mut answers = Vec::with_capacity(envelopes.len());
            let start = Instant::now();
            for chunk in envelopes.chunks(256) {
                let mut effects: Vec<Vec<Effect>> = chunk
                    .iter()
                    .map(|envelope| {
                        let envelope = envelope.clone();
                        us.handle(NOW, Input::EnvelopeReceived { envelope }, &mut rng)
                    })
                    .collect();
                effects.push(us.handle(NOW, Input::TimePassed, &mut rng));
                store
                    .apply(|batch| batch.write_all(effects.iter().flat_map(|e| writes(e))))
                    .unwrap();
                answers.extend(effects);
            }
            let elapsed = start.elapsed();
            deliver_receipts(&mut bob, answers, &mut rng);
            elapsed
        });
    });
    group.finish();
}

fn contact_id(index: u32) -> ContactId {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&index.to_be_bytes());
    ContactId(id)
}

/// Contact number `index` (its id; every one has the identity of seed 7,
/// but for the profile bench, which gives each its own).
fn contact(index: u32) -> Contact {
    static IDENTITY: std::sync::OnceLock<xchat_crypto::signature::VerifyingKey> =
        std::sync::OnceLock::new();
    let identity = *IDENTITY.get_or_init(|| common::identity(7).signing_key().verifying_key());
    Contact {
        id: contact_id(index),
        name: format!("contact {index}"),
        identity,
        verified: false,
        unacknowledged_change: None,
        added_at: NOW,
    }
}

fn history(c: &mut Criterion) {
    const CONTACTS: u32 = 100;
    const MESSAGES: u32 = 1_000_000;
    // Written only if one of the history benchmarks runs (a minute or two).
    let setup = std::sync::OnceLock::new();
    let store = || {
        setup.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let mut store = common::create(dir.path(), 1);
            let mut rng = ChaCha20Rng::seed_from_u64(4);
            let started = Instant::now();
            let contacts: Vec<Write> = (0..CONTACTS).map(|i| Write::Contact(contact(i))).collect();
            store.apply(|batch| batch.write_all(&contacts)).unwrap();
            for chunk in 0..MESSAGES / 10_000 {
                let writes: Vec<Write> = (0..10_000)
                    .map(|i| {
                        let n = chunk * 10_000 + i;
                        Write::Message(MessageRecord {
                            id: MessageId::random(&mut rng),
                            contact: contact_id(n % CONTACTS),
                            direction: if n % 2 == 0 {
                                Direction::Outgoing
                            } else {
                                Direction::Incoming
                            },
                            sent_at: UnixMillis(NOW.0 + u64::from(n) * 1000),
                            received_at: UnixMillis(NOW.0 + u64::from(n) * 1000 + 20),
                            text: format!(
                                "a message of an ordinary length, number {n} of the history"
                            ),
                            status: if n % 2 == 0 { Status::Read } else { Status::Seen },
                            timer: VanishingTimer::OFF,
                            expires_at: None,
                            file: None,
                            call: None,
                        })
                    })
                    .collect();
                store.apply(|batch| batch.write_all(&writes)).unwrap();
            }
            store.checkpoint().unwrap();
            eprintln!("history: {MESSAGES} messages written in {:.1?}", started.elapsed());
            (dir, store)
        })
    };
    let conversation = contact_id(17);
    let mut group = c.benchmark_group("history");
    group.bench_function("last_50_of_1M", |b| {
        let (_, store) = store();
        assert_eq!(store.history(conversation, None, 50).unwrap().len(), 50);
        b.iter(|| store.history(black_box(conversation), None, 50).unwrap());
    });
    group.bench_function("page_of_50_1000_back_of_1M", |b| {
        let (_, store) = store();
        let page = store.history(conversation, None, 1000).unwrap();
        let deep = page.last().map(|m| (m.sent_at, m.id));
        b.iter(|| store.history(black_box(conversation), deep, 50).unwrap());
    });
    group.finish();
}

fn profile_load(c: &mut Criterion) {
    let mut group = c.benchmark_group("profile");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    // Made only if the benchmark runs.
    let setup = std::sync::OnceLock::new();
    group.bench_function("load_1000_contacts", |b| {
        let (_dir, key_file, profile_dir) = setup.get_or_init(profile_of_1000_contacts);
        let load = || {
            let key = DatabaseKey::from_key_file(key_file).unwrap();
            let store = Store::open(profile_dir, &key).unwrap();
            let identity = store.load_identity().unwrap().unwrap();
            let device = store.load_device(identity.public().signing_key()).unwrap().unwrap();
            let prekeys = store.load_prekeys().unwrap().unwrap();
            let state: State = store.load_state().unwrap();
            assert_eq!(state.contacts.len(), 1001);
            (store, Messenger::new(identity, device, prekeys, state).unwrap())
        };
        b.iter_batched(|| (), |()| load(), BatchSize::PerIteration);
    });
    group.finish();
}

/// A profile with 1001 contacts, each with a device and a session.
fn profile_of_1000_contacts() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    const CONTACTS: u32 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let key_file = dir.path().join("key");
    let key = DatabaseKey::create_key_file(&key_file, &mut rng).unwrap();
    let profile_dir = dir.path().join("profile");
    let mut store = Store::create(&profile_dir, &key).unwrap();
    let (us, _) = common::conversation(&mut store, &[(false, "hi"), (true, "hello")]);
    drop(us);
    // A session record of a real conversation, as every contact's.
    let session = store.load_state().unwrap().peers[0].1.session.as_ref().unwrap().to_record();
    let mut writes = Vec::new();
    for index in 0..CONTACTS {
        let mut seed = [0u8; 64];
        seed[..4].copy_from_slice(&index.to_be_bytes());
        let identity = Identity::from_seed(&Seed::from_bytes(&seed).unwrap()).unwrap();
        let device = Device::new(&identity, NOW.0, &mut rng);
        let mut contact = contact(index);
        contact.identity = identity.signing_key().verifying_key();
        writes.push(Write::Contact(contact.clone()));
        writes.push(Write::Peer(PeerRecord {
            identity: contact.identity,
            device: device.id(),
            certificate: device.certificate().to_bytes(),
            session: Some(session.clone()),
            archived: Vec::new(),
            initiation: None,
            accepted_initiations: Vec::new(),
        }));
    }
    store.apply(|batch| batch.write_all(&writes)).unwrap();
    drop(store);
    (dir, key_file, profile_dir)
}

criterion_group!(benches, receive, history, profile_load);
criterion_main!(benches);
