//! The network-wide promises of the messenger, shown on the simulator:
//! exactly-once delivery through loss, reordering and duplication; vanishing
//! messages gone on every device on time; a healed partition delivers all.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed setup is a failed test

use std::collections::BTreeMap;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use xchat_core::io::{Event, Write};
use xchat_core::record::Status;
use xchat_core::time::UnixMillis;
use xchat_proto::content::{MessageId, VanishingTimer};
use xchat_testkit::{NetConfig, Sim};

const LOSSY: NetConfig = NetConfig {
    loss: 0.10,
    duplication: 0.05,
    min_delay: Duration::from_millis(5),
    max_delay: Duration::from_millis(400),
};

/// Checks that every message in `sent` (id -> (from, to)) was received
/// exactly once by its recipient, from the right contact, and nowhere else,
/// and that its sender saw it delivered.
fn assert_exactly_once(sim: &Sim, sent: &BTreeMap<MessageId, (usize, usize)>) {
    let mut seen: BTreeMap<MessageId, Vec<usize>> = BTreeMap::new();
    for at in 0..sim.nodes().len() {
        for (contact, id) in sim.received(at) {
            let (from, to) = sent.get(&id).copied().expect("only sent messages arrive");
            assert_eq!(to, at, "message arrived at the wrong node");
            assert_eq!(sim.node(at).contacts[&from], contact, "shown from the wrong contact");
            seen.entry(id).or_default().push(at);
        }
    }
    for (id, (from, _)) in sent {
        assert_eq!(seen.get(id).map(Vec::len), Some(1), "message {id:?} not received exactly once");
        assert_eq!(sim.status(*from, *id), Some(Status::Delivered), "sender sees it delivered");
    }
}

/// Every pair's sessions are set up by one first message, from the lower
/// node to the higher, before anything else, on a perfect network: the tests
/// that use it look at something else than first contact.
fn greet_all(sim: &mut Sim) -> BTreeMap<MessageId, (usize, usize)> {
    let config = sim.config();
    sim.set_config(NetConfig::PERFECT);
    let n = sim.nodes().len();
    let mut sent = BTreeMap::new();
    for a in 0..n {
        for b in a + 1..n {
            sent.insert(sim.send_text(a, b, "hello"), (a, b));
        }
    }
    assert!(sim.run_until_quiet(Duration::from_secs(60)), "greetings settle");
    assert_exactly_once(sim, &sent);
    sim.set_config(config);
    sent
}

/// A directory for the nodes' stores: in memory where the system offers
/// it, since thousands of synced commits are not what these tests measure.
fn store_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap()
}

#[test]
fn lossy_network_and_restarts_deliver_every_text_exactly_once_through_real_stores() {
    const USERS: usize = 20;
    const TEXTS: usize = 10_000;
    let dir = store_dir();
    let mut sim = Sim::with_stores(1, USERS, LOSSY, dir.path());
    sim.add_all_contacts();
    // No greetings first: the first messages of many pairs cross.
    let mut sent = BTreeMap::new();
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut down: Vec<(usize, UnixMillis)> = Vec::new();
    for i in 0..TEXTS {
        let from = (rng.next_u64() % USERS as u64) as usize;
        let mut to = (rng.next_u64() % (USERS as u64 - 1)) as usize;
        if to >= from {
            to += 1;
        }
        // A node that is down does not write; its contacts still do.
        if down.iter().all(|(node, _)| *node != from) {
            let id = sim.send_text(from, to, &format!("text {i}"));
            sent.insert(id, (from, to));
        }
        // About ten texts a second over the whole network.
        sim.run_for(Duration::from_millis(rng.next_u64() % 200));
        // Now and then a node crashes, and comes back up to a minute later
        // from what its store loads.
        if rng.next_u64() % 100 == 0 {
            let node = (rng.next_u64() % USERS as u64) as usize;
            if down.iter().all(|(n, _)| *n != node) {
                sim.crash(node);
                let back = sim.now().saturating_add(Duration::from_millis(rng.next_u64() % 60_000));
                down.push((node, back));
            }
        }
        let now = sim.now();
        down.retain(|&(node, back)| {
            let up = back <= now;
            if up {
                sim.restart(node);
            }
            !up
        });
    }
    for (node, _) in down {
        sim.restart(node);
    }
    assert!(sim.run_until_quiet(Duration::from_secs(24 * 60 * 60)), "the network settles");
    assert_exactly_once(&sim, &sent);
    let crashes: u32 = sim.nodes().iter().map(|n| n.crashes).sum();
    assert!(crashes >= 50, "nodes crashed and restarted: {crashes}");
    let stats = sim.stats();
    assert!(
        stats.lost > 0 && stats.duplicated > 0 && stats.reordered > 0,
        "the network misbehaved: {stats:?}"
    );
    // Every store agrees with the writes its node applied, at the end too.
    for at in 0..USERS {
        sim.restart(at);
    }
}

#[test]
fn first_messages_that_cross_converge_on_one_session() {
    let mut sim = Sim::new(1, 2, NetConfig::PERFECT);
    sim.add_all_contacts();
    let mut sent = BTreeMap::new();
    // Both write before either first message arrives: two handshakes cross.
    sent.insert(sim.send_text(0, 1, "from 0"), (0, 1));
    sent.insert(sim.send_text(1, 0, "from 1"), (1, 0));
    assert!(sim.run_until_quiet(Duration::from_secs(3600)), "the network settles");
    for round in 0..3 {
        sent.insert(sim.send_text(0, 1, &format!("0:{round}")), (0, 1));
        sent.insert(sim.send_text(1, 0, &format!("1:{round}")), (1, 0));
        assert!(sim.run_until_quiet(Duration::from_secs(3600)), "the network settles");
    }
    assert_exactly_once(&sim, &sent);
}

#[test]
fn vanishing_messages_disappear_on_every_device_at_their_deadline() {
    const USERS: usize = 4;
    const TEXTS: usize = 200;
    let timer = VanishingTimer::from_secs(60).unwrap();
    let duration = timer.duration().unwrap();
    let mut sim = Sim::new(3, USERS, LOSSY);
    sim.add_all_contacts();
    greet_all(&mut sim);
    // Node 0 sets a timer with everyone; they learn it and use it back.
    for to in 1..USERS {
        sim.set_timer(0, to, timer);
    }
    assert!(sim.run_until_quiet(Duration::from_secs(3600)), "timers settle");
    for at in 1..USERS {
        let changed =
            sim.node(at).events.iter().filter(|(_, e)| matches!(e, Event::TimerChanged { .. }));
        assert_eq!(changed.count(), 1, "node {at} learnt the timer once");
    }
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    // id -> (from, to, sent at)
    let mut sent = BTreeMap::new();
    for i in 0..TEXTS {
        let from = (rng.next_u64() % USERS as u64) as usize;
        let to = if from == 0 { 1 + (rng.next_u64() % (USERS as u64 - 1)) as usize } else { 0 };
        let at = sim.now();
        sent.insert(sim.send_text(from, to, &format!("vanishing {i}")), (from, to, at));
        sim.run_for(Duration::from_millis(rng.next_u64() % 2_000));
    }
    // Every user reads what arrived, at different times; node 3 never reads.
    let mut read_at = BTreeMap::new();
    for at in 0..USERS - 1 {
        sim.run_for(Duration::from_secs(rng.next_u64() % 30));
        for from in 0..USERS {
            if from != at && sim.node(at).contacts.contains_key(&from) {
                for (_, id) in sim.received(at) {
                    read_at.entry(id).or_insert(sim.now());
                }
                sim.read_all_from(at, from);
            }
        }
    }
    sim.run_for(duration * 3);
    for (id, (from, to, at)) in &sent {
        // The sender's copy goes at sent_at + timer, received or not.
        assert_eq!(sim.expired_at(*from, *id), Some(at.saturating_add(duration)), "sender's copy");
        // The recipient's copy goes at read time + timer, and never unread.
        let received = sim.received(*to).iter().any(|(_, r)| r == id);
        match read_at.get(id) {
            Some(read) => {
                assert!(received);
                assert_eq!(
                    sim.expired_at(*to, *id),
                    Some(read.saturating_add(duration)),
                    "recipient's copy"
                );
            }
            None => {
                assert_eq!(sim.expired_at(*to, *id), None, "an unread message waits for its reader")
            }
        }
        // Each expiry deleted the message from the store at that moment.
        for node in [*from, *to] {
            if let Some(when) = sim.expired_at(node, *id) {
                let deleted = sim.node(node).writes.iter().find_map(|(t, w)| match w {
                    Write::DeleteMessage(d) if d == id => Some(*t),
                    _ => None,
                });
                assert_eq!(deleted, Some(when), "deleted when it expired");
            }
        }
    }
    assert!(sent.values().any(|(_, to, _)| *to == USERS - 1), "node 3 got messages it never read");
}

#[test]
fn an_hour_long_partition_heals_and_every_queued_message_arrives() {
    const USERS: usize = 8;
    let (west, east): (Vec<usize>, Vec<usize>) = (0..USERS).partition(|i| *i < USERS / 2);
    let mut sim = Sim::new(5, USERS, LOSSY);
    sim.add_all_contacts();
    let mut sent = greet_all(&mut sim);
    let hour = Duration::from_secs(60 * 60);
    sim.partition(&west, &east, hour);
    let heals = sim.now().saturating_add(hour);
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let mut across = Vec::new();
    while sim.now() < UnixMillis(heals.0 - 60_000) {
        let from = (rng.next_u64() % USERS as u64) as usize;
        let mut to = (rng.next_u64() % (USERS as u64 - 1)) as usize;
        if to >= from {
            to += 1;
        }
        let id = sim.send_text(from, to, "during the partition");
        sent.insert(id, (from, to));
        if west.contains(&from) != west.contains(&to) {
            across.push(id);
        }
        sim.run_for(Duration::from_secs(rng.next_u64() % 20));
    }
    sim.run_until(heals);
    // Nothing crossed the partition; everything within a side arrived.
    for at in 0..USERS {
        for (_, id) in sim.received(at) {
            assert!(!across.contains(&id), "a message crossed the partition");
        }
    }
    assert!(across.len() > 50, "messages queued across: {}", across.len());
    // Every queued envelope is due at once on the heal; one lost again
    // waits up to MAX_BACKOFF (plus jitter) per loss.
    assert!(sim.run_until_quiet(hour), "everything queued goes within an hour of the heal");
    assert_exactly_once(&sim, &sent);
}

#[test]
fn restarted_node_resumes_from_its_writes_and_gets_what_it_missed() {
    const USERS: usize = 3;
    let dir = store_dir();
    let mut sim = Sim::with_stores(7, USERS, NetConfig::PERFECT, dir.path());
    sim.add_all_contacts();
    let mut sent = greet_all(&mut sim);
    for i in 0..20 {
        sent.insert(
            sim.send_text(i % USERS, (i + 1) % USERS, "before"),
            (i % USERS, (i + 1) % USERS),
        );
        sim.run_for(Duration::from_millis(100));
    }
    assert!(sim.run_until_quiet(Duration::from_secs(600)));
    // Node 1 crashes with a text in its outbox (node 0 and its mailbox are
    // unreachable) and a vanishing timer set.
    sim.partition(&[0], &[1, 2], Duration::from_secs(90));
    sent.insert(sim.send_text(1, 0, "queued before the crash"), (1, 0));
    sim.set_timer(1, 0, VanishingTimer::from_secs(3600).unwrap());
    sim.run_for(Duration::from_secs(1));
    let outbox = sim.node(1).messenger.outbox_len();
    assert!(outbox > 0);
    sim.crash(1);
    // While node 1 is down, texts for it wait in the outbox, then its mailbox.
    for from in [0, 2] {
        sent.insert(sim.send_text(from, 1, "while down"), (from, 1));
    }
    sim.run_for(Duration::from_secs(120));
    sim.restart(1);
    // Every entry is back, with the receipts owed for its unread messages,
    // which a restart sends again.
    assert!(sim.node(1).messenger.outbox_len() >= outbox, "the outbox is restored");
    assert_eq!(sim.node(1).messenger.contacts().len(), USERS - 1, "the contacts are restored");
    for i in 0..20 {
        sent.insert(
            sim.send_text(i % USERS, (i + 2) % USERS, "after"),
            (i % USERS, (i + 2) % USERS),
        );
        sim.run_for(Duration::from_millis(100));
    }
    assert!(sim.run_until_quiet(Duration::from_secs(3600)), "the network settles");
    assert_exactly_once(&sim, &sent);
    assert_eq!(sim.node(1).crashes, 1);
    // The timer set before the crash still applies to node 1's texts.
    let hour = VanishingTimer::from_secs(3600).unwrap();
    let late: Vec<_> = sim
        .node(0)
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::MessageReceived(m)
                if m.text == "after" && m.contact == sim.node(0).contacts[&1] =>
            {
                Some(m.timer)
            }
            _ => None,
        })
        .collect();
    assert!(!late.is_empty() && late.iter().all(|t| *t == hour), "{late:?}");
}

#[test]
fn same_seed_gives_the_same_run_and_another_seed_another() {
    fn run(seed: u64) -> Vec<Vec<(UnixMillis, Event)>> {
        const USERS: usize = 4;
        let mut sim = Sim::new(seed, USERS, LOSSY);
        sim.add_all_contacts();
        greet_all(&mut sim);
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for _ in 0..100 {
            let from = (rng.next_u64() % USERS as u64) as usize;
            let to = (from + 1 + (rng.next_u64() % (USERS as u64 - 1)) as usize) % USERS;
            sim.send_text(from, to, "same");
            sim.run_for(Duration::from_millis(rng.next_u64() % 100));
        }
        assert!(sim.run_until_quiet(Duration::from_secs(3600)));
        sim.nodes().iter().map(|n| n.events.clone()).collect()
    }
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

#[test]
fn a_text_whose_receipt_was_lost_is_acknowledged_after_both_sides_restart() {
    let dir = store_dir();
    let mut sim = Sim::with_stores(5, 2, NetConfig::PERFECT, dir.path());
    sim.add_all_contacts();
    greet_all(&mut sim);
    sim.announce_reachability();
    let id = sim.send_text(0, 1, "T");
    // T reaches node 1 after 10 ms; its receipt would reach node 0 after
    // 20 ms, but node 0 crashes in between: the receipt is lost.
    sim.run_for(Duration::from_millis(15));
    sim.crash(0);
    sim.run_for(Duration::from_secs(1));
    sim.crash(1);
    sim.restart(1);
    sim.restart(0);
    sim.announce_reachability();
    assert!(sim.run_until_quiet(Duration::from_secs(24 * 60 * 60)), "the network settles");
    assert_eq!(sim.received(1).iter().filter(|(_, m)| *m == id).count(), 1, "shown once");
    assert_eq!(sim.status(0, id), Some(Status::Delivered), "the retry was acknowledged again");
}
