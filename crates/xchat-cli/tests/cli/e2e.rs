//! Whole stories with real processes: three `xchat relay` nodes on
//! loopback, Alice's and Bob's `xchat up`, and what users live through:
//! first contact through the DHT, a peer offline (its messages wait in
//! mailboxes), restarts on both sides, `kill -9` with messages in flight,
//! a 100 MiB file, vanishing messages.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json as value};

use crate::{Node, Running, WAIT, history, init, json, lines_of, ok, wait_for, xchat};

/// A running `xchat relay` and the address others join through.
struct RelayProcess {
    _process: Running,
    listen: String,
}

/// `count` relays in `home`, each joining through the ones before it.
fn relays(home: &Path, count: usize) -> Vec<RelayProcess> {
    let mut relays: Vec<RelayProcess> = Vec::new();
    for i in 0..count {
        let mut command = Command::new(xchat());
        command
            .arg("--profile")
            .arg(home.join(format!("relay{i}")))
            .args(["--json", "relay", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for before in &relays {
            command.args(["--bootstrap", &before.listen]);
        }
        let mut child = command.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let process = Running(child);
        let line = lines_of(out).recv_timeout(WAIT).expect("xchat relay printed nothing");
        let up = json(&line);
        let listen = up["listen"][0].as_str().unwrap().to_owned();
        assert!(listen.contains("/p2p/"), "{listen}");
        relays.push(RelayProcess { _process: process, listen });
    }
    relays
}

fn bootstrap(relays: &[RelayProcess]) -> Vec<String> {
    relays.iter().map(|r| r.listen.clone()).collect()
}

/// The local API of a profile's running node, called directly: faster than
/// a process per call when a test sends a thousand messages.
struct Api {
    agent: ureq::Agent,
    base: String,
    authorization: String,
}

impl Api {
    fn of(profile: &Path) -> Self {
        let base = std::fs::read_to_string(profile.join("api.url")).unwrap().trim().to_owned();
        let token = std::fs::read_to_string(profile.join("api.token")).unwrap();
        let agent = ureq::Agent::config_builder().timeout_global(Some(WAIT)).build().into();
        Self { agent, base, authorization: format!("Bearer {}", token.trim()) }
    }

    fn get(&self, path: &str) -> Value {
        let mut answer = self
            .agent
            .get(format!("{}/api/v1{path}", self.base))
            .header("Authorization", &self.authorization)
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        answer.body_mut().read_json().unwrap()
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let mut answer = self
            .agent
            .post(format!("{}/api/v1{path}", self.base))
            .header("Authorization", &self.authorization)
            .send_json(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let text = answer.body_mut().read_to_string().unwrap();
        if text.is_empty() { Value::Null } else { json(&text) }
    }

    /// The contact id of `name`.
    fn contact(&self, name: &str) -> String {
        let contacts = self.get("/contacts");
        let found = contacts.as_array().unwrap().iter().find(|c| c["name"] == name);
        found.unwrap_or_else(|| panic!("no contact {name}"))["id"].as_str().unwrap().to_owned()
    }

    /// Every message with `contact`, newest first, however many pages.
    fn all_messages(&self, contact: &str) -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        loop {
            let mut path = format!("/conversations/{contact}/messages?limit=1000");
            if let Some(oldest) = all.last() {
                path.push_str(&format!("&before={}", oldest["id"].as_str().unwrap()));
            }
            let page = self.get(&path).as_array().unwrap().clone();
            if page.is_empty() {
                return all;
            }
            all.extend(page);
        }
    }
}

/// The texts of `messages` going `direction`, with how often each appears.
fn counted(messages: &[Value], direction: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for message in messages.iter().filter(|m| m["direction"] == direction) {
        *counts.entry(message["text"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Waits until `profile`'s history with `name` holds `text` coming in;
/// that message.
fn arrives(profile: &Path, name: &str, text: &str) -> Value {
    wait_for(&format!("{text:?} at {}", profile.display()), || {
        history(profile, name).into_iter().find(|m| m["text"] == text && m["direction"] == "in")
    })
    .unwrap()
}

/// Deterministic bytes that do not compress: a file no transport layer can
/// shrink.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

#[test]
fn a_conversation_survives_offline_peers_restarts_a_large_file_and_vanishes_on_time() {
    let home = tempfile::tempdir().unwrap();
    let relays = relays(home.path(), 3);
    let (alice_dir, bob_dir) = (home.path().join("alice"), home.path().join("bob"));
    let (alice_address, bob_address) = (init(&alice_dir), init(&bob_dir));
    let mut alice = Node::start(&alice_dir, &bootstrap(&relays));
    let mut bob = Node::start(&bob_dir, &bootstrap(&relays));
    ok(&alice_dir, &["contact", "add", "bob", &bob_address]);
    ok(&bob_dir, &["contact", "add", "alice", &alice_address]);

    // First contact: Alice has never talked to Bob; his prekey bundle comes
    // from the DHT. Then direct messages both ways.
    ok(&alice_dir, &["send", "bob", "hello bob"]);
    arrives(&bob_dir, "alice", "hello bob");
    ok(&bob_dir, &["send", "alice", "hello alice"]);
    arrives(&alice_dir, "bob", "hello alice");

    // Bob goes offline: Alice's message waits in the relays' mailboxes.
    assert!(bob.terminate().success());
    let sent = json(&ok(&alice_dir, &["--json", "send", "bob", "while you were away"]));
    let id = sent["id"].as_str().unwrap().to_owned();
    wait_for("alice's message in mailboxes", || {
        let mine = history(&alice_dir, "bob");
        mine.iter().any(|m| m["id"] == id.as_str() && m["status"] == "in_mailbox").then_some(())
    })
    .unwrap();
    // Bob comes back, fetches it, and has it once.
    bob = Node::start(&bob_dir, &bootstrap(&relays));
    arrives(&bob_dir, "alice", "while you were away");
    let copies = history(&bob_dir, "alice").iter().filter(|m| m["id"] == id.as_str()).count();
    assert_eq!(copies, 1);

    // Alice restarts in the middle of the conversation: what Bob sends
    // meanwhile reaches her, and the sessions go on after it.
    assert!(alice.terminate().success());
    ok(&bob_dir, &["send", "alice", "one first while alice restarts"]);
    alice = Node::start(&alice_dir, &bootstrap(&relays));
    arrives(&alice_dir, "bob", "one first while alice restarts");
    ok(&alice_dir, &["send", "bob", "back again"]);
    arrives(&bob_dir, "alice", "back again");

    // A vanishing message: 30 s, the shortest timer, from its sending at
    // Alice's, from its reading at Bob's. Its end is checked after the
    // file, which takes about as long.
    ok(&alice_dir, &["send", "bob", "this vanishes", "--expire", "30s"]);
    let sent = history(&alice_dir, "bob").into_iter().find(|m| m["text"] == "this vanishes");
    let alice_expiry = sent.unwrap()["expires_at"].as_u64().expect("no expiry at alice");
    let vanishing = arrives(&bob_dir, "alice", "this vanishes");
    assert!(vanishing["expires_at"].is_null(), "the timer ran before bob read it");
    let bob_api = Api::of(&bob_dir);
    let from_alice = bob_api.contact("alice");
    bob_api
        .post(&format!("/conversations/{from_alice}/read"), &value!({ "ids": [vanishing["id"]] }));
    let read = history(&bob_dir, "alice").into_iter().find(|m| m["id"] == vanishing["id"]);
    let bob_expiry = read.unwrap()["expires_at"].as_u64().expect("no expiry at bob once read");

    // A 100 MiB file, byte for byte.
    let original = noise(100 * 1024 * 1024);
    let path = home.path().join("big.bin");
    std::fs::write(&path, &original).unwrap();
    ok(&alice_dir, &["file", "send", "bob", path.to_str().unwrap()]);
    let file = wait_for("the offer at bob", || {
        let files = json(&ok(&bob_dir, &["--json", "file", "list", "alice"]));
        let offer = files.as_array().unwrap().iter().find(|f| f["name"] == "big.bin").cloned();
        offer.map(|f| f["file"].as_str().unwrap().to_owned())
    })
    .unwrap();
    ok(&bob_dir, &["file", "accept", &file]);
    wait_for("the file complete at bob", || {
        let files = json(&ok(&bob_dir, &["--json", "file", "list", "alice"]));
        let state = files.as_array().unwrap().iter().find(|f| f["file"] == file.as_str()).cloned();
        assert_ne!(state.as_ref().map(|f| f["state"].clone()), Some(value!("failed")));
        state.filter(|f| f["state"] == "complete").map(|_| ())
    })
    .unwrap();
    let saved = home.path().join("big.copy");
    ok(&bob_dir, &["file", "get", &file, "--out", saved.to_str().unwrap()]);
    assert!(std::fs::read(&saved).unwrap() == original, "bob's copy differs");

    // The vanishing message is gone from both sides, on time.
    for (profile, name, expires_at) in
        [(&bob_dir, "alice", bob_expiry), (&alice_dir, "bob", alice_expiry)]
    {
        wait_for("the vanishing message gone", || {
            let left = history(profile, name);
            (!left.iter().any(|m| m["text"] == "this vanishes")).then_some(())
        })
        .unwrap();
        let now = xchat_node::now_ms();
        // The node sweeps expired messages as their deadline comes: gone
        // no earlier than due, and within a few seconds of it.
        assert!(now >= expires_at, "gone {} ms early", expires_at - now);
        assert!(now < expires_at + 15_000, "gone {} ms late", now - expires_at);
    }
    drop((alice, bob));
}

#[test]
fn kill_9_of_the_recipient_with_1000_messages_in_flight_loses_none_and_repeats_none() {
    const MESSAGES: usize = 1_000;
    const KILLED_AFTER: usize = 300;
    let home = tempfile::tempdir().unwrap();
    let relays = relays(home.path(), 3);
    let (alice_dir, bob_dir) = (home.path().join("alice"), home.path().join("bob"));
    let (alice_address, bob_address) = (init(&alice_dir), init(&bob_dir));
    let alice = Node::start(&alice_dir, &bootstrap(&relays));
    let mut bob = Node::start(&bob_dir, &bootstrap(&relays));
    ok(&alice_dir, &["contact", "add", "bob", &bob_address]);
    ok(&bob_dir, &["contact", "add", "alice", &alice_address]);
    ok(&alice_dir, &["send", "bob", "hello"]);
    arrives(&bob_dir, "alice", "hello");

    let api = Api::of(&alice_dir);
    let to_bob = api.contact("bob");
    let texts: Vec<String> = (0..MESSAGES).map(|i| format!("m{i:04}")).collect();
    for (i, text) in texts.iter().enumerate() {
        if i == KILLED_AFTER {
            // SIGKILL: no shutdown, no checkpoint, whatever was in flight
            // on Bob's side is cut.
            bob.process.0.kill().unwrap();
            bob.process.0.wait().unwrap();
        }
        let sent =
            api.post(&format!("/conversations/{to_bob}/messages"), &value!({ "text": text }));
        assert!(sent["id"].is_string(), "{sent}");
    }
    bob = Node::start(&bob_dir, &bootstrap(&relays));

    let bob_api = Api::of(&bob_dir);
    let from_alice = bob_api.contact("alice");
    let received = wait_for("all 1,000 at bob", || {
        let counts = counted(&bob_api.all_messages(&from_alice), "in");
        texts.iter().all(|t| counts.contains_key(t)).then_some(counts)
    })
    .unwrap();
    let repeated: Vec<_> = received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "received more than once: {repeated:?}");
    assert_eq!(received.len(), MESSAGES + 1, "texts at bob besides alice's 1,001");
    // At Alice, every one ends delivered (or read), none failed.
    wait_for("every message delivered at alice", || {
        let mine = api.all_messages(&to_bob);
        let out: Vec<_> = mine.iter().filter(|m| m["direction"] == "out").collect();
        assert_eq!(out.len(), MESSAGES + 1);
        assert!(out.iter().all(|m| m["status"] != "failed"), "a message failed");
        out.iter().all(|m| m["status"] == "delivered" || m["status"] == "read").then_some(())
    })
    .unwrap_or_else(|error| {
        // Which ones, and whether Bob has them (a receipt lost) or not.
        let at_bob = counted(&bob_api.all_messages(&from_alice), "in");
        let stuck: Vec<String> = api
            .all_messages(&to_bob)
            .iter()
            .filter(|m| m["direction"] == "out" && m["status"] != "delivered")
            .map(|m| {
                let text = m["text"].as_str().unwrap_or_default();
                format!("{text} {} (at bob: {})", m["status"], at_bob.contains_key(text))
            })
            .collect();
        panic!("{error}: {} not delivered: {stuck:?}", stuck.len());
    });
    drop((alice, bob));
}
