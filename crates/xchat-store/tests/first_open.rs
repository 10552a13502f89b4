//! The first stores of a process, opened at once on several threads.
//!
//! A file of its own, so that the test's process has not used SQLite before:
//! SQLite marks itself initialised before SQLCipher's own initialisation has
//! run, and a keyed connection made in that window failed with "SQL logic
//! error" (`Store` now finishes the initialisation before any keyed open).
//! The profiles are made by a child process (this test binary again), then
//! opened by many fresh child processes, in each of which 16 threads meet
//! SQLite for the first time all together.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_store::{DatabaseKey, Store};

const PROFILES: usize = 16;
/// Without the fix, one process in 30 or more lost the race; runs of 60
/// processes failed 7 times in 10 (900 processes passed with it).
const PROCESSES: usize = 60;
const MAKE_PROFILES_IN: &str = "XCHAT_TEST_MAKE_PROFILES_IN";
const OPEN_PROFILES_IN: &str = "XCHAT_TEST_OPEN_PROFILES_IN";
const TEST: &str = "the_first_stores_of_a_process_opened_at_once_all_open";

fn key_path(root: &Path, i: usize) -> PathBuf {
    root.join(format!("key-{i}"))
}

fn profile_path(root: &Path, i: usize) -> PathBuf {
    root.join(format!("profile-{i}"))
}

/// This test binary again, as a child that does what `mode` says in `root`.
fn child(mode: &str, root: &Path) {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--test-threads", "1", "--nocapture"])
        .env(mode, root)
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "{}{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
}

#[test]
fn the_first_stores_of_a_process_opened_at_once_all_open() {
    if let Some(root) = std::env::var_os(MAKE_PROFILES_IN) {
        let root = Path::new(&root);
        for i in 0..PROFILES {
            let mut rng = ChaCha20Rng::seed_from_u64(i as u64);
            let key = DatabaseKey::create_key_file(&key_path(root, i), &mut rng).unwrap();
            Store::create(&profile_path(root, i), &key).unwrap();
        }
        return;
    }
    if let Some(root) = std::env::var_os(OPEN_PROFILES_IN) {
        open_all_at_once(Path::new(&root));
        return;
    }
    let root = tempfile::tempdir().unwrap();
    child(MAKE_PROFILES_IN, root.path());
    for _ in 0..PROCESSES {
        child(OPEN_PROFILES_IN, root.path());
    }
}

/// Opens every profile in `root`, each on a thread of its own, all at once.
fn open_all_at_once(root: &Path) {
    // Keys from key files: no Argon2id, so the threads reach SQLite together.
    let start = Arc::new(Barrier::new(PROFILES));
    let threads: Vec<_> = (0..PROFILES)
        .map(|i| {
            let key = DatabaseKey::from_key_file(&key_path(root, i)).unwrap();
            let dir = profile_path(root, i);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                Store::open(&dir, &key).map(drop)
            })
        })
        .collect();
    for (i, thread) in threads.into_iter().enumerate() {
        let result = thread.join().unwrap();
        assert!(result.is_ok(), "store {i}: {result:?}");
    }
}
