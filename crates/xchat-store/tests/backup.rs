//! Encrypted backups of a whole profile: export, restore on a fresh
//! profile from the same recovery phrase, and what a backup never holds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed setup is a failed test

mod common;

use common::{PASSPHRASE, create, new_key};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_core::record::MessageRecord;
use xchat_store::{Store, StoreError};

const TEXTS: [(bool, &str); 6] = [
    (true, "kept: hello bob"),
    (false, "kept: hi"),
    (true, "timer 60"),
    (true, "vanishing: burn after reading"),
    (false, "vanishing: gone in a minute"),
    (false, "timer 0"),
];

fn history(store: &Store) -> Vec<MessageRecord> {
    let contact = store.load_contacts().unwrap()[0].id;
    store.history(contact, None, 100).unwrap()
}

#[test]
fn backup_restores_the_profile_from_the_phrase_without_vanishing_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = create(&dir.path().join("profile"), 1);
    let (messenger, _) = common::conversation(&mut store, &TEXTS);
    let before = history(&store);
    assert_eq!(before.len(), 4, "the texts, timer changes are not history");
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let path = dir.path().join("profile.xchatbak");
    let summary = store.export_backup(&path, &mut rng).unwrap();
    assert_eq!((summary.contacts, summary.messages, summary.vanishing_left_out), (1, 2, 2));
    let file = std::fs::read(&path).unwrap();
    for text in ["kept: hello bob", "vanishing: burn", "bob"] {
        assert!(!file.windows(text.len()).any(|w| w == text.as_bytes()), "{text} in the file");
    }
    assert!(matches!(store.export_backup(&path, &mut rng), Err(StoreError::AlreadyExists)));

    // A new device: the phrase gives the identity again, and a new passphrase.
    let phrase_identity = common::identity(1);
    let restored_dir = dir.path().join("restored");
    let restored = Store::import_backup(
        &restored_dir,
        &new_key(2),
        &phrase_identity,
        std::fs::File::open(&path).unwrap(),
    )
    .unwrap();
    let after = history(&restored);
    let kept: Vec<_> = before.iter().filter(|m| m.timer.is_off()).cloned().collect();
    assert_eq!(after, kept, "every message but the vanishing ones, as they were");
    let (original, copy) = (store.load_state().unwrap(), restored.load_state().unwrap());
    assert_eq!(copy.contacts, original.contacts);
    assert_eq!(copy.conversations, original.conversations);
    assert_eq!(copy.received, original.received, "ids only: duplicates are still refused");
    assert_eq!(copy.peers.len(), 1);
    let session = |state: &xchat_core::messenger::State| {
        state.peers[0].1.session.as_ref().unwrap().to_record().to_vec()
    };
    assert_eq!(session(&copy), session(&original), "the session goes on");
    let identity = restored.load_identity().unwrap().unwrap();
    assert_eq!(identity.public(), phrase_identity.public());
    let key = *identity.public().signing_key();
    assert!(restored.load_device(&key).unwrap().is_some());
    assert!(restored.load_prekeys().unwrap().is_some());
    restored.integrity_check().unwrap();
    drop(restored);
    // The restored profile opens with its own key (a new salt), and holds
    // the same messages.
    let reopened = Store::open_with_passphrase(&restored_dir, PASSPHRASE).unwrap();
    assert_eq!(history(&reopened), kept);
    assert_eq!(messenger.address(), xchat_crypto::address::Address::from_key(key));
}

#[test]
fn backup_does_not_open_with_another_phrase_and_never_overwrites_a_profile() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = create(&dir.path().join("profile"), 1);
    common::conversation(&mut store, &TEXTS[..2]);
    let path = dir.path().join("backup");
    store.export_backup(&path, &mut ChaCha20Rng::seed_from_u64(5)).unwrap();
    let open = || std::fs::File::open(&path).unwrap();

    let other = dir.path().join("other");
    let result = Store::import_backup(&other, &new_key(2), &common::identity(2), open());
    assert!(matches!(result, Err(StoreError::Backup(_))), "{result:?}");
    assert!(!other.exists(), "nothing is created for a backup that does not open");

    let result = Store::import_backup(
        &dir.path().join("profile"),
        &new_key(2),
        &common::identity(1),
        open(),
    );
    assert!(matches!(result, Err(StoreError::AlreadyExists)), "{result:?}");

    let garbage = Store::import_backup(&other, &new_key(2), &common::identity(1), &b"junk"[..]);
    assert!(matches!(garbage, Err(StoreError::Backup(_))), "{garbage:?}");
}
