//! The process that `tests/crash.rs` kills with SIGKILL: two messengers,
//! "alice" and "bob", each on its own SQLCipher store in `<dir>`, alice
//! sending texts to bob in a loop, as a node does it: every input's writes
//! are committed in one transaction before its sends and notifications.
//!
//! It prints one line per promise made to a user, after the commit that
//! keeps it: `queued <id>` when alice's text is written (the user was told
//! it is sent), `received <id>` when bob is shown a text. Whatever point the
//! kill lands on, the next run must find every promised text.
//!
//! Usage: `xchat-crash-child <dir> <seed> <start-ms> <texts>` sends up to
//! `<texts>` texts with a clock starting at `<start-ms>` and advancing one
//! second per input; `xchat-crash-child <dir> <seed> <start-ms> drain` sends
//! nothing and lets time pass until alice's outbox is empty.

#![allow(clippy::expect_used, clippy::panic)] // a test helper: any failure fails the test

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_core::contact::{Added, ContactId};
use xchat_core::io::{Done, Event, Input};
use xchat_core::time::UnixMillis;
use xchat_core::{Effect, Messenger};
use xchat_crypto::bundle::PreKeys;
use xchat_crypto::device::Device;
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::Seed;
use xchat_store::{DatabaseKey, Store};

const NAMES: [&str; 2] = ["alice", "bob"];
const ALICE: usize = 0;
const BOB: usize = 1;

struct Node {
    messenger: Messenger,
    store: Store,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, seed, start, texts] = &args[..] else {
        panic!("usage: xchat-crash-child <dir> <seed> <start-ms> <texts|drain>");
    };
    let dir = Path::new(dir);
    let mut rng = ChaCha20Rng::seed_from_u64(seed.parse().expect("a seed"));
    let mut now = UnixMillis(start.parse().expect("a start time"));
    let drain = texts == "drain";
    let texts: u64 = if drain { 0 } else { texts.parse().expect("a number of texts") };

    let mut nodes = [open(dir, ALICE, now, &mut rng), open(dir, BOB, now, &mut rng)];
    let addresses = nodes.each_ref().map(|node| node.messenger.address());
    let records = nodes.each_ref().map(|node| node.messenger.prekey_record(now).expect("prekeys"));
    let keys = nodes.each_ref().map(|node| *node.messenger.identity().signing_key());
    let mut contacts: [Option<ContactId>; 2] = [None, None];

    let mut queue: VecDeque<(usize, Input)> = VecDeque::new();
    // Adding a contact is idempotent: a restart adds it again, unchanged.
    for at in [ALICE, BOB] {
        let input = Input::ContactAdded { name: NAMES[1 - at].into(), address: addresses[1 - at] };
        queue.push_back((at, input));
    }
    // After a restart, what was due is due at once.
    queue.push_back((ALICE, Input::TimePassed));
    queue.push_back((BOB, Input::TimePassed));
    let mut sent = 0;
    let mut stdout = std::io::stdout().lock();
    loop {
        let next = queue.pop_front().or_else(|| {
            if drain {
                if nodes[ALICE].messenger.outbox_len() == 0 {
                    return None;
                }
                now = now.saturating_add(Duration::from_secs(10 * 60));
                return Some((ALICE, Input::TimePassed));
            }
            (sent < texts).then(|| {
                sent += 1;
                let contact = contacts[ALICE].expect("bob was added");
                (ALICE, Input::TextSent { contact, text: format!("text {sent} at {}", now.0) })
            })
        });
        let Some((at, input)) = next else { break };
        now = now.saturating_add(Duration::from_secs(1));
        let node = &mut nodes[at];
        let is_tick = matches!(input, Input::TimePassed);
        let effects = node.messenger.handle(now, input, &mut rng);
        commit(&mut node.store, &effects);
        // Committed: now the promises, the sends and the follow-ups.
        for effect in effects {
            match effect {
                Effect::Write(_)
                | Effect::PublishPreKeys { .. }
                | Effect::FetchFile(_)
                | Effect::DeleteFile { .. }
                | Effect::FetchMailbox(_)
                | Effect::DeleteFromMailbox { .. } => {}
                Effect::Answer(Ok(Done::Contact(
                    Added::New(id) | Added::Unchanged(id) | Added::KeyChanged(id),
                ))) => contacts[at] = Some(id),
                Effect::Answer(Ok(Done::MessageQueued(id))) => {
                    writeln!(stdout, "queued {}", hex(id.as_bytes())).expect("stdout");
                }
                Effect::Answer(other) => panic!("refused: {other:?}"),
                Effect::Notify(Event::MessageReceived(message)) => {
                    writeln!(stdout, "received {}", hex(message.id.as_bytes())).expect("stdout");
                }
                Effect::Notify(_) => {}
                Effect::Send(send) => {
                    let to = usize::from(send.identity == keys[BOB]);
                    queue.push_back((to, Input::EnvelopeReceived { envelope: send.envelope }));
                    let acknowledged =
                        Input::SendAcknowledged { entry: send.entry, route: send.route };
                    queue.push_back((at, acknowledged));
                }
                Effect::FetchBundles { identity } => {
                    let owner = usize::from(identity == keys[BOB]);
                    let records = vec![records[owner].clone()];
                    queue.push_back((at, Input::BundlesFetched { identity, records }));
                }
            }
        }
        stdout.flush().expect("stdout");
        // As a node does: what is due (receipts, at once) goes next.
        if !is_tick && nodes[at].messenger.next_deadline().is_some_and(|d| d <= now) {
            queue.push_front((at, Input::TimePassed));
        }
    }
    writeln!(stdout, "done").expect("stdout");
}

/// Opens (or first creates) the store of node `index` and its messenger.
fn open(dir: &Path, index: usize, now: UnixMillis, rng: &mut ChaCha20Rng) -> Node {
    let name = NAMES[index];
    let key_file = dir.join(format!("{name}.key"));
    let key = if key_file.exists() {
        DatabaseKey::from_key_file(&key_file).expect("the key file")
    } else {
        DatabaseKey::create_key_file(&key_file, rng).expect("a new key file")
    };
    let profile = dir.join(name);
    let mut store = match Store::open(&profile, &key) {
        Ok(store) => store,
        Err(xchat_store::StoreError::NotFound) => {
            Store::create(&profile, &key).expect("a new store")
        }
        Err(err) => panic!("{name}'s store does not open: {err}"),
    };
    let seed = [u8::try_from(index).expect("two nodes") + 1; 64];
    let identity = Identity::from_seed(&Seed::from_bytes(&seed).expect("a seed")).expect("keys");
    let key = *identity.public().signing_key();
    let device = store.load_device(&key).expect("the device loads");
    let prekeys = store.load_prekeys().expect("the prekeys load");
    let (device, prekeys) = match (device, prekeys) {
        (Some(device), Some(prekeys)) => (device, prekeys),
        // First run, or killed before the first records were committed.
        _ => {
            let device = Device::new(&identity, now.0, rng);
            let mut prekeys = PreKeys::new(&device, now.0, rng);
            prekeys.generate_one_time_prekeys(&device, 8, rng).expect("prekeys");
            store
                .apply(|batch| {
                    batch.put_identity(&identity)?;
                    batch.put_device(&device)?;
                    batch.put_prekeys(&prekeys)
                })
                .expect("the first records are saved");
            (device, prekeys)
        }
    };
    let state = store.load_state().expect("the state loads");
    let messenger = Messenger::new(identity, device, prekeys, state).expect("a messenger");
    Node { messenger, store }
}

/// Commits every write of one input in one transaction.
fn commit(store: &mut Store, effects: &[Effect]) {
    let writes = effects.iter().filter_map(|effect| match effect {
        Effect::Write(write) => Some(write),
        _ => None,
    });
    store.apply(|batch| batch.write_all(writes)).expect("the writes commit");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
