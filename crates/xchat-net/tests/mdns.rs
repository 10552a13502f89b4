#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Two devices on one LAN find each other by mDNS, with no bootstrap peer and
//! no address handed over, then deliver.
//!
//! mDNS multicasts on every non-loopback interface (libp2p-mdns skips
//! loopback), which on a shared machine reaches its real network. So this
//! test runs only inside a private network namespace with a virtual LAN:
//! `scripts/net-mdns.sh` makes one and runs it there.

mod common;

use common::{envelope, receive_and_acknowledge, start_with, wait_for, within};
use xchat_net::{Config, Event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "multicasts on the LAN: run in a private network namespace with scripts/net-mdns.sh"]
async fn two_devices_discover_each_other_by_mdns_and_deliver() {
    let lan = || Config {
        listen_addresses: vec!["/ip4/0.0.0.0/tcp/0".parse().unwrap()],
        bootstrap_peers: Vec::new(),
        enable_mdns: true,
        ..Config::default()
    };
    let mut alice = start_with(lan()).await;
    let mut bob = start_with(lan()).await;

    let bob_peer = bob.peer;
    wait_for(&mut alice.events, |event| match event {
        Event::PeerDiscovered { peer, .. } if peer == bob_peer => Some(()),
        _ => None,
    })
    .await;

    // No address given: the swarm dials what mDNS found.
    let sending = tokio::spawn({
        let handle = alice.handle.clone();
        async move { handle.deliver(bob_peer, envelope(0x1a)).await }
    });
    let (from, got) = receive_and_acknowledge(&mut bob).await;
    assert_eq!((from, got), (alice.peer, envelope(0x1a)));
    within(sending).await.unwrap().unwrap();
}
