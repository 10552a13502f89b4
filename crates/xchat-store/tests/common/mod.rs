//! Crypto state as a real profile holds it, for the store's tests.

// Test helpers: a failure here is a broken test setup, and should stop the test.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_core::Messenger;
use xchat_core::io::Write;
use xchat_core::record::PeerRecord;
use xchat_crypto::bundle::PreKeys;
use xchat_crypto::device::Device;
use xchat_crypto::handshake::{self, UnverifiedInitiation};
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::Seed;
use xchat_crypto::ratchet::Session;
use xchat_store::{DatabaseKey, KdfParams, Store};

/// Cheap Argon2id parameters: tests exercise the code, not the cost.
pub fn fast_params() -> KdfParams {
    KdfParams::new(256, 1, 1).unwrap()
}

pub const PASSPHRASE: &str = "correct horse battery staple";

/// A passphrase key for a new profile.
pub fn new_key(seed: u64) -> DatabaseKey {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    DatabaseKey::new_from_passphrase(PASSPHRASE, fast_params(), &mut rng).unwrap()
}

/// A new profile in `dir`.
pub fn create(dir: &Path, seed: u64) -> Store {
    Store::create(dir, &new_key(seed)).unwrap()
}

pub fn identity(byte: u8) -> Identity {
    Identity::from_seed(&Seed::from_bytes(&[byte; 64]).unwrap()).unwrap()
}

/// Our identity, device and prekeys, a peer's identity and device, and our
/// session with that device after a real PQXDH handshake.
pub struct Profile {
    pub identity: Identity,
    pub device: Device,
    pub prekeys: PreKeys,
    pub peer: Identity,
    pub peer_device: Device,
    pub session: Session,
}

pub fn profile(seed: u64) -> Profile {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let peer = identity(2);
    let identity = identity(1);
    let device = Device::new(&identity, 1_700_000_000_000, &mut rng);
    let peer_device = Device::new(&peer, 1_700_000_000_001, &mut rng);
    let mut prekeys = PreKeys::new(&device, 1_700_000_000_002, &mut rng);
    prekeys.generate_one_time_prekeys(&device, 2, &mut rng).unwrap();
    let peer_prekeys = PreKeys::new(&peer_device, 0, &mut rng);
    let bundle = peer_prekeys.bundle(&peer.public(), &peer_device, None, None).unwrap();
    let initiated = handshake::initiate(&identity, &device, &bundle, &mut rng).unwrap();
    let initiation = UnverifiedInitiation::from_bytes(&initiated.initiation.to_bytes()).unwrap();
    handshake::respond(&peer, &peer_device, &peer_prekeys, initiation, None).unwrap();
    let session =
        Session::new_initiator(initiated.keys, initiated.their_ratchet_key, &mut rng).unwrap();
    Profile { identity, device, prekeys, peer, peer_device, session }
}

/// The core's write of `profile`'s peer device with `session` (and
/// `archived` sessions).
pub fn peer_write(profile: &Profile, session: Option<&Session>, archived: &[&Session]) -> Write {
    Write::Peer(PeerRecord {
        identity: profile.peer.signing_key().verifying_key(),
        device: profile.peer_device.id(),
        certificate: profile.peer_device.certificate().to_bytes(),
        session: session.map(Session::to_record),
        archived: archived.iter().map(|s| s.to_record()).collect(),
        initiation: None,
        accepted_initiations: Vec::new(),
    })
}

/// Saves all of `profile` in one batch.
pub fn save(store: &mut Store, profile: &Profile) {
    store
        .apply(|batch| {
            batch.put_identity(&profile.identity)?;
            batch.put_device(&profile.device)?;
            batch.put_prekeys(&profile.prekeys)?;
            batch.write(&peer_write(profile, Some(&profile.session), &[]))
        })
        .unwrap();
}

/// The session records the store holds for `profile`'s peer device:
/// current, then archived.
pub fn stored_sessions(store: &Store, profile: &Profile) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
    let peer = profile.peer.signing_key().verifying_key();
    let state = store.load_state().unwrap();
    let (_, device) = state
        .peers
        .iter()
        .find(|(identity, device)| {
            *identity == peer && device.certificate.device_id() == profile.peer_device.id()
        })
        .expect("peer device saved");
    (
        device.session.as_ref().map(|s| s.to_record().to_vec()),
        device.archived.iter().map(|s| s.to_record().to_vec()).collect(),
    )
}

/// Checks that `store` holds exactly `profile`'s records.
pub fn assert_holds(store: &Store, profile: &Profile) {
    let identity = store.load_identity().unwrap().expect("identity saved");
    assert_eq!(*identity.to_record(), *profile.identity.to_record());
    let our_key = identity.signing_key().verifying_key();
    let device = store.load_device(&our_key).unwrap().expect("device saved");
    assert_eq!(*device.to_record(), *profile.device.to_record());
    let prekeys = store.load_prekeys().unwrap().expect("prekeys saved");
    assert_eq!(*prekeys.to_record(), *profile.prekeys.to_record());
    let (session, archived) = stored_sessions(store, profile);
    assert_eq!(session.as_deref(), Some(&profile.session.to_record()[..]));
    assert!(archived.is_empty());
    let peer_key = profile.peer.signing_key().verifying_key();
    let peer_device = store
        .load_peer_device(&peer_key, profile.peer_device.id())
        .unwrap()
        .expect("peer device saved");
    assert_eq!(peer_device.certificate(), profile.peer_device.certificate());
    assert_eq!(peer_device.revoked_at_ms(), None);
}

/// Every file of `dir`, by name, with its bytes.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (entry.file_name().into_string().unwrap(), std::fs::read(entry.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// A short conversation between two messengers of the identities
/// [`identity`]`(1)` ("us", whose every write goes to `store`) and
/// [`identity`]`(2)` ("bob"), through a perfect in-process network: contacts
/// added both ways, texts both ways, receipts, and our reading of bob's
/// texts. A text `timer <secs>` sets the sender's vanishing timer instead.
/// Returns our messenger and bob's.
pub fn conversation(store: &mut Store, texts: &[(bool, &str)]) -> (Messenger, Messenger) {
    use xchat_core::Effect;
    use xchat_core::io::{Event, Input};
    use xchat_core::messenger::State;
    use xchat_core::time::UnixMillis;

    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let mut now = UnixMillis(1_790_000_000_000);
    let mut nodes: Vec<Messenger> = (1..=2)
        .map(|seed| {
            let identity = identity(seed);
            let device = Device::new(&identity, now.0, &mut rng);
            let mut prekeys = PreKeys::new(&device, now.0, &mut rng);
            prekeys.generate_one_time_prekeys(&device, 4, &mut rng).unwrap();
            if seed == 1 {
                store
                    .apply(|batch| {
                        batch.put_identity(&identity)?;
                        batch.put_device(&device)?;
                        batch.put_prekeys(&prekeys)
                    })
                    .unwrap();
            }
            Messenger::new(identity, device, prekeys, State::default()).unwrap()
        })
        .collect();
    let records: Vec<Vec<u8>> = nodes.iter().map(|m| m.prekey_record(now).unwrap()).collect();
    let keys: Vec<_> = nodes.iter().map(|m| *m.identity().signing_key()).collect();
    let mut queue: std::collections::VecDeque<(usize, Input)> = [
        (0, Input::ContactAdded { name: "bob".into(), address: nodes[1].address() }),
        (1, Input::ContactAdded { name: "us".into(), address: nodes[0].address() }),
    ]
    .into();
    let mut contacts = [None, None];
    let mut pending_texts: std::collections::VecDeque<_> = texts.iter().copied().collect();
    while let Some((at, input)) = queue.pop_front().or_else(|| {
        let (ours, text) = pending_texts.pop_front()?;
        let at = usize::from(!ours);
        let contact = contacts[at]?;
        Some((
            at,
            match text.strip_prefix("timer ") {
                Some(secs) => Input::TimerSet {
                    contact,
                    timer: xchat_proto::content::VanishingTimer::from_secs(secs.parse().unwrap())
                        .unwrap(),
                },
                None => Input::TextSent { contact, text: text.into() },
            },
        ))
    }) {
        // A second per input: texts are ordered by when they were sent.
        now = UnixMillis(now.0 + 1000);
        let is_tick = matches!(input, Input::TimePassed);
        let effects = nodes[at].handle(now, input, &mut rng);
        let writes: Vec<_> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Write(w) => Some(w),
                _ => None,
            })
            .collect();
        if at == 0 {
            store.apply(|batch| batch.write_all(writes.iter().copied())).unwrap();
        }
        for effect in effects {
            match effect {
                Effect::Send(send) => {
                    let to = usize::from(send.identity == keys[1]);
                    queue.push_back((
                        at,
                        Input::SendAcknowledged { entry: send.entry, route: send.route },
                    ));
                    queue.push_back((to, Input::EnvelopeReceived { envelope: send.envelope }));
                }
                Effect::FetchBundles { identity } => {
                    let owner = usize::from(identity == keys[1]);
                    let records = vec![records[owner].clone()];
                    queue.push_back((at, Input::BundlesFetched { identity, records }));
                }
                Effect::Answer(Ok(xchat_core::io::Done::Contact(added))) => {
                    contacts[at] = Some(match added {
                        xchat_core::contact::Added::New(id)
                        | xchat_core::contact::Added::Unchanged(id)
                        | xchat_core::contact::Added::KeyChanged(id) => id,
                    });
                }
                Effect::Notify(Event::MessageReceived(message)) if at == 0 => {
                    queue.push_back((
                        0,
                        Input::MessagesRead { contact: message.contact, ids: vec![message.id] },
                    ));
                }
                _ => {}
            }
        }
        // As a node does: what is due (receipts, at once) goes next.
        if !is_tick && nodes[at].next_deadline().is_some_and(|d| d <= now) {
            queue.push_front((at, Input::TimePassed));
        }
    }
    let bob = nodes.pop().expect("two nodes");
    let us = nodes.pop().expect("two nodes");
    (us, bob)
}
