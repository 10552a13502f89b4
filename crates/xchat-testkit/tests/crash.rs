//! Crash safety for real: a child process (`xchat-crash-child`) runs two
//! messengers on SQLCipher stores and is killed with SIGKILL at random
//! points, 200 seeded times. After each kill, both stores pass
//! `PRAGMA integrity_check` and hold every text the child had promised (a
//! text alice was told is queued, a text bob was shown); no text is ever
//! shown twice; and a last run without a kill delivers every queued text to
//! bob exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed setup is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use xchat_core::record::Direction;
use xchat_proto::content::MessageId;
use xchat_store::{DatabaseKey, Store};

const RUNS: u64 = 200;
const START_MS: u64 = 1_790_000_000_000;

fn child(dir: &Path, seed: u64, start_ms: u64, texts: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xchat-crash-child"));
    command
        .args([dir.to_str().unwrap(), &seed.to_string(), &start_ms.to_string(), texts])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

fn parse(line: &str) -> (String, MessageId) {
    let (what, id) = line.split_once(' ').expect("a promise and an id");
    let bytes: Vec<u8> =
        (0..id.len()).step_by(2).map(|i| u8::from_str_radix(&id[i..i + 2], 16).unwrap()).collect();
    (what.to_owned(), MessageId::from_bytes(bytes.try_into().unwrap()))
}

fn open(dir: &Path, name: &str) -> Store {
    let key = DatabaseKey::from_key_file(&dir.join(format!("{name}.key"))).unwrap();
    Store::open(&dir.join(name), &key).unwrap()
}

/// Every message of `store`'s history, with how often it is there.
fn history(store: &Store) -> BTreeMap<MessageId, (Direction, usize)> {
    let mut all = BTreeMap::new();
    for contact in store.load_contacts().unwrap() {
        let mut before = None;
        loop {
            let page = store.history(contact.id, before, 500).unwrap();
            let Some(last) = page.last() else { break };
            before = Some((last.sent_at, last.id));
            for message in page {
                all.entry(message.id).or_insert((message.direction, 0)).1 += 1;
            }
        }
    }
    all
}

/// Runs the child; kills it (SIGKILL) after `kill_after` promises and a
/// pause of `pause`, unless it is `None`. Returns every line it printed.
fn run_child(command: &mut Command, kill_after: Option<(u64, Duration)>) -> Vec<String> {
    let mut process = command.spawn().unwrap();
    let stdout = process.stdout.take().unwrap();
    let (progress, promises) = std::sync::mpsc::sync_channel(64);
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // The receiver is gone once the kill is decided: keep reading.
            let _ = progress.try_send(());
            lines.push(line);
        }
        lines
    });
    match kill_after {
        Some((count, pause)) => {
            for _ in 0..count {
                if promises.recv_timeout(Duration::from_secs(60)).is_err() {
                    break;
                }
            }
            std::thread::sleep(pause);
            process.kill().unwrap();
            drop(promises);
            process.wait().unwrap();
        }
        None => {
            drop(promises);
            assert!(process.wait().unwrap().success(), "the child runs to its end");
        }
    }
    reader.join().unwrap()
}

#[test]
fn sigkill_at_random_points_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let mut queued: BTreeSet<MessageId> = BTreeSet::new();
    let mut shown: BTreeSet<MessageId> = BTreeSet::new();
    let mut killed_mid_work = 0;
    for run in 0..RUNS {
        let start_ms = START_MS + run * 3_600_000;
        // Run 0 dies at once, in its first records; the others after a
        // random number of promises, at a random moment of what follows.
        let kill_after = if run == 0 { 0 } else { rng.next_u64() % 40 };
        let pause = Duration::from_micros(rng.next_u64() % 3_000);
        let lines =
            run_child(&mut child(dir.path(), run, start_ms, "100000"), Some((kill_after, pause)));
        if lines.last().is_none_or(|line| line != "done") {
            killed_mid_work += 1;
        }
        for line in lines.iter().filter(|line| *line != "done") {
            let (what, id) = parse(line);
            match what.as_str() {
                "queued" => assert!(queued.insert(id), "an id queued twice"),
                "received" => assert!(shown.insert(id), "run {run}: a text shown twice"),
                _ => panic!("unknown line {line:?}"),
            }
        }
        if !dir.path().join("bob.key").exists() || !dir.path().join("alice.key").exists() {
            continue; // killed before both stores existed
        }
        let (alice, bob) = (open(dir.path(), "alice"), open(dir.path(), "bob"));
        alice.integrity_check().unwrap();
        bob.integrity_check().unwrap();
        let (sent, received) = (history(&alice), history(&bob));
        for id in &queued {
            assert_eq!(
                sent.get(id),
                Some(&(Direction::Outgoing, 1)),
                "run {run}: queued text lost"
            );
        }
        for id in &shown {
            assert_eq!(
                received.get(id),
                Some(&(Direction::Incoming, 1)),
                "run {run}: shown text lost"
            );
        }
    }
    assert!(killed_mid_work >= RUNS - 5, "the kills landed mid-work: {killed_mid_work}");
    assert!(queued.len() > 500, "texts were sent: {}", queued.len());

    println!(
        "{RUNS} runs, {killed_mid_work} killed mid-work: {} texts queued, {} shown",
        queued.len(),
        shown.len()
    );
    // A last run, not killed, lets every retry happen.
    let lines = run_child(&mut child(dir.path(), RUNS, START_MS + RUNS * 3_600_000, "drain"), None);
    for line in lines.iter().filter(|line| *line != "done") {
        let (what, id) = parse(line);
        assert_eq!(what, "received");
        assert!(shown.insert(id), "a text shown twice after the drain");
    }
    let (alice, bob) = (open(dir.path(), "alice"), open(dir.path(), "bob"));
    let sent = history(&alice);
    let received = history(&bob);
    assert_eq!(alice.load_state().unwrap().outbox.len(), 0, "alice's outbox is empty");
    // Every text alice wrote (promised or committed just before a kill)
    // reached bob exactly once, and bob was shown each of them once.
    let written: BTreeSet<MessageId> = sent.keys().copied().collect();
    let arrived: BTreeSet<MessageId> = received.keys().copied().collect();
    assert!(queued.is_subset(&written));
    assert_eq!(arrived, written, "every written text arrived");
    assert!(received.values().all(|&(direction, n)| direction == Direction::Incoming && n == 1));
    // A text can be in bob's history without having been shown: the kill
    // came after its commit's write() calls (the OS keeps them) and before
    // the child printed. That is work done, not a promise broken.
    assert!(shown.is_subset(&arrived), "only arrived texts were shown");
    println!(
        "after the drain: {} texts written, {} arrived, {} shown",
        written.len(),
        arrived.len(),
        shown.len()
    );
}
