//! Crypto state as a real profile holds it, for the store's tests.

// Test helpers: a failure here is a broken test setup, and should stop the test.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
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

/// Saves all of `profile` in one batch.
pub fn save(store: &mut Store, profile: &Profile, now_ms: u64) {
    store
        .apply(|batch| {
            batch.put_identity(&profile.identity)?;
            batch.put_device(&profile.device)?;
            batch.put_prekeys(&profile.prekeys)?;
            batch.put_peer_device(profile.peer_device.certificate())?;
            batch.put_session(
                &profile.peer.signing_key().verifying_key(),
                profile.peer_device.id(),
                &profile.session,
                now_ms,
            )
        })
        .unwrap();
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
    let peer_key = profile.peer.signing_key().verifying_key();
    let session =
        store.load_session(&peer_key, profile.peer_device.id()).unwrap().expect("session saved");
    assert_eq!(*session.to_record(), *profile.session.to_record());
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
