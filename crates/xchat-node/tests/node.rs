#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Two real nodes, each with its own profile on disk, and three relays
//! keeping mailboxes, on loopback TCP: the first contact found through the
//! DHT, messages both ways, and a message left in mailboxes while its
//! recipient is stopped, read when it starts again.

// The relays and the network settings the browser tests use too.
#[allow(dead_code, reason = "this file uses a part of it")]
#[path = "support/nodes.rs"]
mod nodes;

use std::time::Duration;

use nodes::{BITS, network, relays};
use rand_core::{OsRng, UnwrapErr};
use tokio::sync::broadcast;
use xchat_core::contact::{Added, ContactId};
use xchat_core::io::{Done, Event, Input};
use xchat_core::record::{MessageRecord, Status};
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_node::{NodeConfig, NodeHandle, Profile, ProfileDir, Relay, RunningNode, Unlock};

/// Generous: a loaded 2-core machine compiles other crates while this runs.
const WAIT: Duration = Duration::from_secs(120);

fn start(dir: &ProfileDir, relays: &[Relay]) -> RunningNode {
    let profile = if dir.exists() {
        Profile::open(dir.clone(), None).unwrap()
    } else {
        let phrase = RecoveryPhrase::generate(&mut UnwrapErr(OsRng));
        let now = xchat_node::now_ms();
        Profile::create(dir.clone(), &phrase, &Unlock::KeyFile, now, &mut UnwrapErr(OsRng)).unwrap()
    };
    xchat_node::start(profile, NodeConfig { network: network(relays), stamp_bits: BITS }).unwrap()
}

async fn add(node: &NodeHandle, name: &str, other: &NodeHandle) -> ContactId {
    let input = Input::ContactAdded { name: name.into(), address: other.address() };
    match node.command(input).await.unwrap() {
        Done::Contact(Added::New(id) | Added::Unchanged(id)) => id,
        other => panic!("{other:?}"),
    }
}

async fn send(node: &NodeHandle, contact: ContactId, text: &str) {
    let input = Input::TextSent { contact, text: text.into() };
    assert!(matches!(node.command(input).await.unwrap(), Done::MessageQueued(_)));
}

async fn received(events: &mut broadcast::Receiver<Event>, text: &str) -> MessageRecord {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Event::MessageReceived(message) = events.recv().await.unwrap()
                && message.text == text
            {
                return message;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{text:?} did not arrive"))
}

async fn status(events: &mut broadcast::Receiver<Event>, wanted: Status) {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Event::StatusChanged { status, .. } = events.recv().await.unwrap()
                && status == wanted
            {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no message became {wanted:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_talk_directly_and_through_mailboxes_while_one_is_stopped() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let relays = relays(3).await;
    let home = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) =
        (ProfileDir::new(home.path().join("alice")), ProfileDir::new(home.path().join("bob")));
    let alice = start(&alice_dir, &relays);
    let bob = start(&bob_dir, &relays);
    let (a, b) = (&alice.handle, &bob.handle);
    let mut alice_events = a.subscribe();
    // Statuses on a subscription of their own: waiting for a text reads
    // past every other event.
    let mut alice_statuses = a.subscribe();
    let mut bob_events = b.subscribe();
    tokio::time::timeout(WAIT, a.published()).await.unwrap().unwrap();
    tokio::time::timeout(WAIT, b.published()).await.unwrap().unwrap();

    // First contact: each finds the other's bundle and presence in the DHT.
    let bob_at_alice = add(a, "bob", b).await;
    let alice_at_bob = add(b, "alice", a).await;
    send(a, bob_at_alice, "hello bob").await;
    let message = received(&mut bob_events, "hello bob").await;
    assert_eq!(message.contact, alice_at_bob);
    send(b, alice_at_bob, "hello alice").await;
    received(&mut alice_events, "hello alice").await;
    status(&mut alice_statuses, Status::Delivered).await;

    // Bob stops; alice's next message waits in mailboxes.
    b.shutdown().await;
    bob.task.await.unwrap().unwrap();
    send(a, bob_at_alice, "while you were away").await;
    status(&mut alice_statuses, Status::InMailbox).await;

    // Bob comes back and finds it, once.
    let bob = start(&bob_dir, &relays);
    let mut bob_events = bob.handle.subscribe();
    let message = received(&mut bob_events, "while you were away").await;
    assert_eq!(message.contact, alice_at_bob);
    let history = bob
        .handle
        .read(move |_, store| store.history(alice_at_bob, None, 100).unwrap())
        .await
        .unwrap();
    let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts.iter().filter(|t| **t == "while you were away").count(), 1, "{texts:?}");
    assert!(texts.contains(&"hello bob") && texts.contains(&"hello alice"), "{texts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_sent_accepted_fetched_and_kept_whole() {
    use xchat_core::transfer::TransferState;

    let relays = relays(2).await;
    let home = tempfile::tempdir().unwrap();
    let alice = start(&ProfileDir::new(home.path().join("alice")), &relays);
    let bob = start(&ProfileDir::new(home.path().join("bob")), &relays);
    let (a, b) = (&alice.handle, &bob.handle);
    let mut bob_events = b.subscribe();
    tokio::time::timeout(WAIT, a.published()).await.unwrap().unwrap();
    tokio::time::timeout(WAIT, b.published()).await.unwrap().unwrap();
    let bob_at_alice = add(a, "bob", b).await;
    add(b, "alice", a).await;

    // 5 MiB and a bit: 81 chunks, the last one short.
    let original: Vec<u8> = (0..5 * 1024 * 1024 + 1234).map(|i: u32| (i % 251) as u8).collect();
    let source = home.path().join("holiday.bin");
    std::fs::write(&source, &original).unwrap();
    let sent = a
        .send_file(bob_at_alice, source, "holiday.bin".into(), "application/octet-stream".into())
        .await
        .unwrap();
    assert!(matches!(sent, Done::FileQueued { .. }), "{sent:?}");

    let offered = received(&mut bob_events, "holiday.bin").await;
    let file = offered.file.expect("a file's message names its file");
    b.command(Input::FileAccepted { file }).await.unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            match bob_events.recv().await.unwrap() {
                Event::TransferChanged {
                    file: changed, state: TransferState::Complete, ..
                } if changed == file => {
                    return;
                }
                Event::TransferChanged { state: TransferState::Failed(reason), .. } => {
                    panic!("the transfer failed: {reason:?}")
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the transfer completes");
    let kept = std::fs::read(xchat_node::files::received_path(b.files(), &file)).unwrap();
    assert!(kept == original, "the received file differs from the sent one");
}
