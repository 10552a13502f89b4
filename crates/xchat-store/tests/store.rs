//! The store on real SQLCipher files in temporary directories: round trips,
//! keys, corruption, locks, atomicity and what the files reveal.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    PASSPHRASE, assert_holds, create, new_key, peer_write, profile, save, snapshot, stored_sessions,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_crypto::device::Device;
use xchat_store::{
    CorruptPart, DATABASE_FILE, DatabaseKey, HEADER_FILE, KeyKind, MAX_SETTING_VALUE_BYTES,
    SCHEMA_VERSION, Store, StoreError,
};

const NOW_MS: u64 = 1_700_000_100_000;

#[test]
fn created_store_round_trips_crypto_state_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let profile = profile(1);
    let mut store = create(dir.path(), 1);
    assert!(store.load_identity().unwrap().is_none());
    save(&mut store, &profile);
    store.apply(|batch| batch.put_setting("read-receipts", b"off")).unwrap();
    assert_holds(&store, &profile);
    store.close().unwrap();
    let names: Vec<_> = snapshot(dir.path()).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, [DATABASE_FILE, HEADER_FILE], "closing folds the WAL in");

    let store = Store::open_with_passphrase(dir.path(), PASSPHRASE).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_holds(&store, &profile);
    assert_eq!(store.load_setting("read-receipts").unwrap().as_deref(), Some(&b"off"[..]));
    assert_eq!(store.load_setting("unset").unwrap(), None);
    store.integrity_check().unwrap();
}

#[test]
fn writes_replace_earlier_values() {
    let dir = tempfile::tempdir().unwrap();
    let first = profile(1);
    let second = profile(2);
    let mut store = create(dir.path(), 1);
    save(&mut store, &first);
    save(&mut store, &second);
    assert_holds(&store, &second);
    let peers = store.load_state().unwrap().peers;
    assert_eq!(peers.len(), 2, "one record per peer device");
    assert!(peers.iter().all(|(_, device)| device.session.is_some()));
    store
        .apply(|batch| {
            batch.put_setting("k", b"1")?;
            batch.put_setting("k", b"2")
        })
        .unwrap();
    assert_eq!(store.load_setting("k").unwrap().as_deref(), Some(&b"2"[..]));
}

#[test]
fn sessions_are_kept_per_slot_and_forgotten_when_the_record_drops_them() {
    let dir = tempfile::tempdir().unwrap();
    let profile = profile(1);
    let mut store = create(dir.path(), 1);
    save(&mut store, &profile);
    let older = common::profile(3).session;
    let oldest = common::profile(4).session;
    let record = |s: &xchat_crypto::ratchet::Session| s.to_record().to_vec();

    let write = peer_write(&profile, Some(&profile.session), &[&older, &oldest]);
    store.apply(|batch| batch.write(&write)).unwrap();
    let (current, archived) = stored_sessions(&store, &profile);
    assert_eq!(current, Some(record(&profile.session)));
    assert_eq!(archived, [record(&older), record(&oldest)], "newest first");

    // The current session ends (a crossed handshake archived it) and one
    // archived session is dropped: the slots follow the record.
    let write = peer_write(&profile, None, &[&profile.session]);
    store.apply(|batch| batch.write(&write)).unwrap();
    let (current, archived) = stored_sessions(&store, &profile);
    assert_eq!(current, None);
    assert_eq!(archived, [record(&profile.session)]);
    // Another peer device is untouched by this one's writes.
    assert_eq!(store.load_state().unwrap().peers.len(), 1);
}

#[test]
fn writes_a_later_write_replaces_leave_in_one_call_what_they_leave_one_by_one() {
    use xchat_core::contact::{Contact, ContactId};
    use xchat_core::io::Write;
    use xchat_core::record::{Awaits, Direction, MessageRecord, OutboxEntry, OutboxId, Status};
    use xchat_core::retry::Route;
    use xchat_core::time::UnixMillis;
    use xchat_proto::content::{MessageId, VanishingTimer};

    let profile = profile(1);
    let older = common::profile(3).session;
    let peer = profile.peer.signing_key().verifying_key();
    let contact = Contact {
        id: ContactId([2; 16]),
        name: "peer".into(),
        identity: peer,
        verified: false,
        unacknowledged_change: None,
        added_at: UnixMillis(1_000),
    };
    let message = |byte: u8| MessageRecord {
        id: MessageId::from_bytes([byte; 16]),
        contact: contact.id,
        direction: Direction::Outgoing,
        sent_at: UnixMillis(2_000),
        received_at: UnixMillis(2_000),
        text: format!("text {byte}"),
        status: Status::Pending,
        timer: VanishingTimer::OFF,
        expires_at: None,
        file: None,
        call: None,
    };
    let (kept, delivered) = (message(1), message(2));
    let entry = |id: u64, reached: Option<Route>| OutboxEntry {
        id: OutboxId(id),
        message: kept.id,
        more: Vec::new(),
        identity: peer,
        device: profile.peer_device.id(),
        envelope: vec![id as u8; 100],
        awaits: Awaits::Receipt,
        attempts: 1,
        next_attempt_at: UnixMillis(3_000),
        queued_at: UnixMillis(2_000),
        reached,
        mailbox_at: None,
    };
    let writes = [
        Write::Contact(contact.clone()),
        peer_write(&profile, Some(&profile.session), &[]),
        Write::Message(kept.clone()),
        Write::Message(delivered.clone()),
        Write::Outbox(entry(1, None)),
        Write::Outbox(entry(2, None)),
        Write::Status { id: kept.id, status: Status::Sent },
        Write::Status { id: delivered.id, status: Status::Sent },
        peer_write(&profile, Some(&older), &[&profile.session]),
        Write::Outbox(entry(1, Some(Route::Direct))),
        Write::Status { id: delivered.id, status: Status::Delivered },
        Write::DeleteOutbox(OutboxId(2)),
        peer_write(&profile, None, &[&older, &profile.session]),
    ];

    let one_call = tempfile::tempdir().unwrap();
    let mut together = create(one_call.path(), 1);
    save(&mut together, &profile);
    together.apply(|batch| batch.write_all(&writes)).unwrap();
    let one_by_one = tempfile::tempdir().unwrap();
    let mut apart = create(one_by_one.path(), 1);
    save(&mut apart, &profile);
    for write in &writes {
        apart.apply(|batch| batch.write(write)).unwrap();
    }

    for store in [&together, &apart] {
        let record = |s: &xchat_crypto::ratchet::Session| s.to_record().to_vec();
        assert_eq!(
            stored_sessions(store, &profile),
            (None, vec![record(&older), record(&profile.session)]),
            "the last record of the device"
        );
        let state = store.load_state().unwrap();
        assert_eq!(state.outbox, [entry(1, Some(Route::Direct))]);
        assert_eq!(store.message(kept.id).unwrap().unwrap().status, Status::Sent);
        assert_eq!(store.message(delivered.id).unwrap().unwrap().status, Status::Delivered);
    }
}

#[test]
fn revoked_device_stays_revoked_from_its_earliest_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let profile = profile(1);
    let mut store = create(dir.path(), 1);
    save(&mut store, &profile);
    let peer = profile.peer.signing_key().verifying_key();
    let device = profile.peer_device.id();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let later = Device::revoke(&profile.peer, device, NOW_MS + 2_000, &mut rng);
    let earlier = Device::revoke(&profile.peer, device, NOW_MS + 1_000, &mut rng);
    assert!(store.apply(|batch| batch.revoke_peer_device(&later)).unwrap());
    assert!(store.apply(|batch| batch.revoke_peer_device(&earlier)).unwrap());
    assert!(store.apply(|batch| batch.revoke_peer_device(&later)).unwrap());
    // Saving the certificate again does not bring the device back.
    store.apply(|batch| batch.put_peer_device(profile.peer_device.certificate())).unwrap();
    let stored = store.load_peer_device(&peer, device).unwrap().unwrap();
    assert_eq!(stored.revoked_at_ms(), Some(NOW_MS + 1_000));

    let unknown = Device::new(&profile.peer, NOW_MS, &mut rng);
    let revocation = Device::revoke(&profile.peer, unknown.id(), NOW_MS, &mut rng);
    assert!(!store.apply(|batch| batch.revoke_peer_device(&revocation)).unwrap());
}

#[test]
fn batch_that_fails_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let profile = profile(1);
    let mut store = create(dir.path(), 1);
    store.apply(|batch| batch.put_setting("before", b"1")).unwrap();
    let result: Result<(), StoreError> = store.apply(|batch| {
        batch.put_identity(&profile.identity)?;
        batch.put_setting("before", b"2")?;
        // The closure's own failure (here: a value too large) aborts all.
        batch.put_setting("big", &vec![0; MAX_SETTING_VALUE_BYTES + 1])
    });
    assert!(matches!(result, Err(StoreError::TooLarge { .. })), "{result:?}");
    assert!(store.load_identity().unwrap().is_none());
    assert_eq!(store.load_setting("before").unwrap().as_deref(), Some(&b"1"[..]));
}

#[test]
fn batch_that_panics_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = create(dir.path(), 1);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store
            .apply(|batch| {
                batch.put_setting("half", b"done")?;
                panic!("a bug half-way through an input");
                #[allow(unreachable_code)]
                Ok::<(), StoreError>(())
            })
            .ok();
    }));
    assert!(outcome.is_err());
    assert_eq!(store.load_setting("half").unwrap(), None);
    store.apply(|batch| batch.put_setting("after", b"ok")).unwrap();
    assert_eq!(store.load_setting("after").unwrap().as_deref(), Some(&b"ok"[..]));
}

#[test]
fn wrong_passphrase_is_wrong_key_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = create(dir.path(), 1);
    store.apply(|batch| batch.put_setting("k", b"v")).unwrap();
    drop(store);
    let before = snapshot(dir.path());
    let names: Vec<_> = before.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, [DATABASE_FILE, HEADER_FILE], "a closed store leaves no WAL");

    let err = Store::open_with_passphrase(dir.path(), "correct horse battery stapler").unwrap_err();
    assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    assert_eq!(err.to_string(), "wrong passphrase or key file");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn key_of_another_kind_is_refused_with_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    drop(create(dir.path(), 1));
    let key_dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let key_file = key_dir.path().join("key");
    let key = DatabaseKey::create_key_file(&key_file, &mut rng).unwrap();
    let err = Store::open(dir.path(), &key).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::WrongKeyKind { expected: KeyKind::Passphrase, given: KeyKind::KeyFile }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "this profile is opened with a passphrase, not a key file");
    assert_eq!(Store::key_kind(dir.path()).unwrap(), KeyKind::Passphrase);
}

#[test]
fn key_file_store_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("profile.key");
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let key = DatabaseKey::create_key_file(&key_file, &mut rng).unwrap();
    let profile_dir = dir.path().join("profile");
    let mut store = Store::create(&profile_dir, &key).unwrap();
    store.apply(|batch| batch.put_setting("k", b"v")).unwrap();
    drop(store);
    assert_eq!(Store::key_kind(&profile_dir).unwrap(), KeyKind::KeyFile);
    let store = Store::open(&profile_dir, &DatabaseKey::from_key_file(&key_file).unwrap()).unwrap();
    assert_eq!(store.load_setting("k").unwrap().as_deref(), Some(&b"v"[..]));

    // Another key file of the right form is the wrong key.
    let other = DatabaseKey::create_key_file(&dir.path().join("other.key"), &mut rng).unwrap();
    assert!(matches!(Store::open(&profile_dir, &other), Err(StoreError::WrongKey)));
    // A passphrase for a key-file profile is refused by kind.
    assert!(matches!(
        DatabaseKey::from_passphrase(&profile_dir, PASSPHRASE),
        Err(StoreError::WrongKeyKind { expected: KeyKind::KeyFile, given: KeyKind::Passphrase })
    ));
}

#[cfg(unix)]
#[test]
fn key_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    drop(DatabaseKey::create_key_file(&path, &mut rng).unwrap());
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    for mode in [0o640, 0o604, 0o620, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = DatabaseKey::from_key_file(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::KeyFilePermissions { mode: found } if found == mode),
            "{err:?}"
        );
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert!(DatabaseKey::from_key_file(&path).is_ok());
}

#[test]
fn key_file_of_another_length_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for len in [0, 31, 33, 64] {
        let path = dir.path().join(format!("key{len}"));
        std::fs::write(&path, vec![7u8; len]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let err = DatabaseKey::from_key_file(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::KeyFileLength { len: found, expected: 32 } if found == len as u64),
            "{err:?}"
        );
    }
}

#[cfg(unix)]
#[test]
fn profile_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("new-profile");
    let mut store = create(&dir, 1);
    store.apply(|batch| batch.put_setting("k", b"v")).unwrap();
    let mode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(mode(HEADER_FILE), 0o600);
    assert_eq!(mode(DATABASE_FILE), 0o600);
    assert_eq!(mode(&format!("{DATABASE_FILE}-wal")), 0o600);
}

#[test]
fn open_without_a_profile_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path(), &new_key(1)).unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(matches!(
        Store::open_with_passphrase(dir.path(), PASSPHRASE),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(Store::key_kind(dir.path()), Err(StoreError::NotFound)));
    assert!(snapshot(dir.path()).is_empty(), "open creates nothing");
}

#[test]
fn create_refuses_an_existing_profile() {
    let dir = tempfile::tempdir().unwrap();
    drop(create(dir.path(), 1));
    let before = snapshot(dir.path());
    let err = Store::create(dir.path(), &new_key(2)).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    assert_eq!(snapshot(dir.path()), before);
    // The profile still opens with its own passphrase.
    Store::open_with_passphrase(dir.path(), PASSPHRASE).unwrap();
}

#[test]
fn create_completes_after_a_crash_before_the_header() {
    // A crash after the empty database file was made, before the header.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DATABASE_FILE), b"").unwrap();
    let mut store = create(dir.path(), 1);
    store.apply(|batch| batch.put_setting("k", b"v")).unwrap();
    drop(store);
    Store::open_with_passphrase(dir.path(), PASSPHRASE).unwrap();
}

#[test]
fn open_completes_after_a_crash_before_the_schema() {
    // A crash after the header was written, before the schema committed:
    // the database file is still empty.
    let dir = tempfile::tempdir().unwrap();
    drop(create(dir.path(), 1));
    std::fs::write(dir.path().join(DATABASE_FILE), b"").unwrap();
    let store = Store::open_with_passphrase(dir.path(), PASSPHRASE).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

/// A profile holding `profile(1)` and a setting, closed (so its WAL is
/// checkpointed into the database file and removed).
#[allow(clippy::unwrap_used)] // test setup
fn closed_profile(dir: &Path) {
    let mut store = create(dir, 1);
    save(&mut store, &profile(1));
    store
        .apply(|batch| {
            for i in 0..40 {
                batch.put_setting(&format!("filler-{i}"), &[i; 1000])?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[allow(clippy::unwrap_used)] // test setup
fn overwrite(path: &Path, offset: usize, bytes: &[u8]) {
    let mut file = std::fs::read(path).unwrap();
    file[offset..offset + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, file).unwrap();
}

#[test]
fn corrupted_first_page_is_corrupt_not_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    closed_profile(dir.path());
    overwrite(&dir.path().join(DATABASE_FILE), 200, &[0x55; 64]);
    let err = Store::open_with_passphrase(dir.path(), PASSPHRASE).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(CorruptPart::DatabaseHeader)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the profile's database (its first page does not open with the profile's key) is corrupt"
    );
}

#[test]
fn corrupted_later_pages_are_corrupt_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    closed_profile(dir.path());
    let path = dir.path().join(DATABASE_FILE);
    let pages = std::fs::metadata(&path).unwrap().len() as usize / 4096;
    assert!(pages > 10, "{pages} pages");
    for page in 1..pages {
        overwrite(&path, page * 4096 + 100, &[0xAA; 16]);
    }
    // Opening reads the first page only; every read after it meets a page
    // whose HMAC fails.
    let outcome = Store::open_with_passphrase(dir.path(), PASSPHRASE);
    let err = match outcome {
        Err(err) => err,
        Ok(store) => {
            let loads = [
                store.load_identity().map(|_| ()),
                store.load_prekeys().map(|_| ()),
                store.load_setting("filler-3").map(|_| ()),
                store.integrity_check(),
            ];
            let errors: Vec<_> = loads.into_iter().filter_map(Result::err).collect();
            assert_eq!(errors.len(), 4, "every read of a damaged page fails");
            errors.into_iter().next().unwrap()
        }
    };
    assert!(matches!(err, StoreError::Corrupt(CorruptPart::Database)), "{err:?}");
    assert_eq!(err.to_string(), "the profile's database is corrupt");
}

#[test]
fn corrupted_key_header_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    closed_profile(dir.path());
    let header = dir.path().join(HEADER_FILE);
    let bytes = std::fs::read(&header).unwrap();
    for damaged in [&bytes[..bytes.len() - 1], &[bytes.as_slice(), b"x"].concat(), b"" as &[u8]] {
        std::fs::write(&header, damaged).unwrap();
        let err = Store::open_with_passphrase(dir.path(), PASSPHRASE).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(CorruptPart::KeyHeader)), "{err:?}");
    }
    // A changed tag no longer admits the right passphrase.
    let mut wrong_tag = bytes.clone();
    let last = wrong_tag.len() - 1;
    wrong_tag[last] ^= 1;
    std::fs::write(&header, &wrong_tag).unwrap();
    assert!(matches!(
        Store::open_with_passphrase(dir.path(), PASSPHRASE),
        Err(StoreError::WrongKey)
    ));
    // A huge file is refused without being read whole.
    std::fs::write(&header, vec![0u8; 1 << 20]).unwrap();
    assert!(matches!(
        Store::open_with_passphrase(dir.path(), PASSPHRASE),
        Err(StoreError::Corrupt(CorruptPart::KeyHeader))
    ));
}

#[test]
fn database_of_another_profile_is_corrupt_not_wrong_key() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    drop(create(one.path(), 1));
    drop(create(two.path(), 2));
    std::fs::copy(two.path().join(DATABASE_FILE), one.path().join(DATABASE_FILE)).unwrap();
    // SQLCipher refuses the first page (SQLITE_NOTADB); the header vouched
    // for the key, so the file is the problem.
    let err = Store::open_with_passphrase(one.path(), PASSPHRASE).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(CorruptPart::DatabaseHeader)), "{err:?}");
}

#[test]
fn missing_database_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    closed_profile(dir.path());
    std::fs::remove_file(dir.path().join(DATABASE_FILE)).unwrap();
    let err = Store::open_with_passphrase(dir.path(), PASSPHRASE).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(CorruptPart::MissingDatabase)), "{err:?}");
    assert!(!dir.path().join(DATABASE_FILE).exists(), "open does not make an empty profile");
}

#[test]
fn writer_waiting_past_the_busy_timeout_gets_busy_and_readers_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = create(dir.path(), 1);
    first.apply(|batch| batch.put_setting("k", b"before")).unwrap();
    let mut second = Store::open_with_passphrase(dir.path(), PASSPHRASE).unwrap();
    second.set_busy_timeout(Duration::from_millis(50)).unwrap();

    first
        .apply(|batch| {
            batch.put_setting("k", b"first")?;
            // `first` holds the write lock until this closure returns.
            let err = second.apply(|batch| batch.put_setting("k", b"second")).unwrap_err();
            assert!(matches!(err, StoreError::Busy), "{err:?}");
            assert_eq!(err.to_string(), "the database is in use by another process");
            // WAL: a reader sees the last commit, not blocked by the writer.
            assert_eq!(second.load_setting("k").unwrap().as_deref(), Some(&b"before"[..]));
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(second.load_setting("k").unwrap().as_deref(), Some(&b"first"[..]));
    second.apply(|batch| batch.put_setting("k", b"second")).unwrap();
    assert_eq!(first.load_setting("k").unwrap().as_deref(), Some(&b"second"[..]));
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn database_files_hold_no_plaintext_and_no_secret() {
    const CANARY: &[u8] = b"xchat-plaintext-canary: meet at the old mill at noon";
    let dir = tempfile::tempdir().unwrap();
    let profile = profile(1);
    let mut store = create(dir.path(), 1);
    save(&mut store, &profile);
    store.apply(|batch| batch.put_setting("note", CANARY)).unwrap();

    let identity_secret = profile.identity.signing_key().to_bytes();
    let identity_record = profile.identity.to_record();
    let session_record = profile.session.to_record();
    let device_record = profile.device.to_record();
    let mut needles: Vec<(&str, Vec<u8>)> = vec![
        ("setting plaintext", CANARY.to_vec()),
        ("setting plaintext prefix", CANARY[..16].to_vec()),
        ("identity signing secret", identity_secret.to_vec()),
        ("identity backup key", profile.identity.backup_key().to_vec()),
        ("identity record", identity_record.to_vec()),
        ("device record", device_record.to_vec()),
        ("session record", session_record.to_vec()),
    ];
    // Any 16 bytes of the session record (its root key, chain keys).
    for window in session_record.chunks_exact(16) {
        needles.push(("session record window", window.to_vec()));
    }
    // The check is not blind: the canary is found where it is plain.
    assert!(contains(&[b"..".as_slice(), CANARY, b".."].concat(), CANARY));

    let scan = |moment: &str| {
        let mut scanned = 0;
        for (name, bytes) in snapshot(dir.path()) {
            scanned += bytes.len();
            for (what, needle) in &needles {
                assert!(!contains(&bytes, needle), "{what} found in {name} {moment}");
            }
        }
        scanned
    };
    let wal = dir.path().join(format!("{DATABASE_FILE}-wal"));
    let wal_len = std::fs::metadata(&wal).unwrap().len();
    assert!(wal_len > 4096, "the writes are in the WAL, {wal_len} bytes");
    assert!(scan("before the checkpoint") > 0);
    store.checkpoint().unwrap();
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0, "TRUNCATE empties the WAL");
    scan("after the checkpoint");
    // Deleted and rewritten values leave nothing behind either.
    store.apply(|batch| batch.delete_setting("note")).unwrap();
    drop(store);
    scan("after close");
}

#[test]
fn messages_never_reach_the_files_in_plaintext() {
    const TEXTS: [(bool, &str); 3] = [
        (true, "xchat-canary: the eagle lands at dawn"),
        (false, "xchat-canary: bring the blue folder"),
        (true, "xchat-canary: the password is swordfish"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut store = create(dir.path(), 1);
    let (messenger, _) = common::conversation(&mut store, &TEXTS);
    // The texts are there, for the one who holds the key.
    let state = store.load_state().unwrap();
    let history = store.history(state.contacts[0].id, None, 10).unwrap();
    assert_eq!(history.len(), TEXTS.len());
    let scan = |moment: &str| {
        let files = snapshot(dir.path());
        assert!(!files.is_empty());
        for (name, bytes) in files {
            for (_, text) in TEXTS {
                assert!(!contains(&bytes, text.as_bytes()), "{text:?} found in {name} {moment}");
            }
            assert!(!contains(&bytes, b"xchat-canary"), "a text's prefix in {name} {moment}");
            let address = messenger.address().to_string();
            assert!(!contains(&bytes, address.as_bytes()), "our address in {name} {moment}");
        }
    };
    scan("with the WAL");
    store.checkpoint().unwrap();
    drop(store);
    scan("after close");
}

#[test]
fn settings_refuse_oversized_names_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = create(dir.path(), 1);
    let long_name = "n".repeat(xchat_store::MAX_SETTING_KEY_BYTES + 1);
    assert!(matches!(
        store.apply(|batch| batch.put_setting(&long_name, b"v")),
        Err(StoreError::TooLarge { what: "setting name", .. })
    ));
    assert!(matches!(store.load_setting(&long_name), Err(StoreError::TooLarge { .. })));
    let largest = vec![1u8; MAX_SETTING_VALUE_BYTES];
    store.apply(|batch| batch.put_setting("large", &largest)).unwrap();
    assert_eq!(store.load_setting("large").unwrap().unwrap(), largest);
    assert!(store.apply(|batch| batch.delete_setting("large")).unwrap());
    assert_eq!(store.load_setting("large").unwrap(), None);
}

#[test]
fn sqlcipher_writes_nothing_to_stderr_on_a_damaged_page() {
    // SQLCipher writes to the process's stderr, which the test harness does
    // not capture: run the corruption test in a child and read its stderr.
    let test = "corrupted_later_pages_are_corrupt_never_a_panic";
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child ran the test: {stdout}");
    assert!(!stderr.to_ascii_lowercase().contains("hmac"), "SQLCipher logged: {stderr}");
    assert!(!stderr.contains("ERROR"), "SQLCipher logged: {stderr}");
}
