//! Real nodes and relays on loopback, for the browser tests (`tests/web.rs`)
//! and the web UI's benchmark (`benches/web.rs`): each node in a profile of
//! its own, with its API serving the web UI. `tests/api.rs` and
//! `tests/node.rs` take their relays and network settings from here too.

use std::time::Duration;

use futures::StreamExt as _;
use rand_core::{OsRng, UnwrapErr};
use xchat_core::contact::{Added, ContactId};
use xchat_core::io::{Done, Input};
use xchat_crypto::address::Address;
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_crypto::signature::SigningKey;
use xchat_node::api::{self, Api, ApiConfig};
use xchat_node::{NodeConfig, Profile, ProfileDir, Relay, RunningNode, Unlock};

/// Generous: a loaded 2-core machine compiles other crates meanwhile.
const PUBLISH_WAIT: Duration = Duration::from_secs(90);
/// Cheap stamps, still checked by the relays.
pub(crate) const BITS: u8 = 8;

pub(crate) fn network(bootstrap: &[Relay]) -> xchat_net::Config {
    xchat_net::Config {
        listen_addresses: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap_peers: bootstrap.iter().flat_map(|r| r.addresses.clone()).collect(),
        enable_mdns: false,
        mailbox: Some(xchat_net::mailbox::Config {
            min_difficulty_bits: BITS,
            ..xchat_net::mailbox::Config::default()
        }),
        ..xchat_net::Config::default()
    }
}

pub(crate) async fn relays(count: usize) -> Vec<Relay> {
    let mut relays: Vec<Relay> = Vec::new();
    for _ in 0..count {
        relays.push(xchat_node::start_relay(network(&relays)).await.unwrap());
    }
    relays
}

/// A node with its API, in a profile of its own.
pub(crate) struct User {
    pub(crate) _home: tempfile::TempDir,
    pub(crate) dir: ProfileDir,
    pub(crate) node: RunningNode,
    pub(crate) api: Api,
}

pub(crate) async fn user(relays: &[Relay]) -> User {
    let home = tempfile::tempdir().unwrap();
    let dir = ProfileDir::new(home.path().join("profile"));
    let phrase = RecoveryPhrase::generate(&mut UnwrapErr(OsRng));
    let profile = Profile::create(
        dir.clone(),
        &phrase,
        &Unlock::KeyFile,
        xchat_node::now_ms(),
        &mut UnwrapErr(OsRng),
    )
    .unwrap();
    let node =
        xchat_node::start(profile, NodeConfig { network: network(relays), stamp_bits: BITS })
            .unwrap();
    let api = api::serve(node.handle.clone(), &dir, ApiConfig::default()).await.unwrap();
    User { _home: home, dir, node, api }
}

/// Two users whose nodes are on the network.
pub(crate) async fn two_users() -> (Vec<Relay>, User, User) {
    let relays = relays(3).await;
    let alice = user(&relays).await;
    let bob = user(&relays).await;
    tokio::time::timeout(PUBLISH_WAIT, alice.node.handle.published()).await.unwrap().unwrap();
    tokio::time::timeout(PUBLISH_WAIT, bob.node.handle.published()).await.unwrap().unwrap();
    (relays, alice, bob)
}

/// An address that is no one's here.
pub(crate) fn stranger() -> String {
    Address::from_key(SigningKey::generate(&mut UnwrapErr(OsRng)).verifying_key()).to_string()
}

/// Gives `user` a conversation with "Dave", a stranger's address, holding
/// `messages` texts sent by `user` ("message 0" to "message {messages-1}").
/// No one holds the address: they all stay in the outbox.
pub(crate) async fn long_conversation(user: &User, messages: usize) -> ContactId {
    let handle = user.node.handle.clone();
    let address = Address::parse(&stranger()).unwrap();
    let added = handle.command(Input::ContactAdded { name: "Dave".into(), address }).await.unwrap();
    let Done::Contact(Added::New(contact)) = added else { panic!("{added:?}") };
    // Many commands in flight: the node commits them in groups.
    let sends = (0..messages).map(|i| {
        let handle = handle.clone();
        async move {
            handle
                .command(Input::TextSent { contact, text: format!("message {i}") })
                .await
                .unwrap();
        }
    });
    futures::stream::iter(sends).buffer_unordered(64).collect::<Vec<()>>().await;
    contact
}

/// Messages in the long conversation (issue 6's speed target is for
/// opening one of 10,000 in under 200 ms).
pub(crate) const LONG_CONVERSATION: usize = 10_000;
