#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A device that cannot be dialed (it listens on no address of its own) is
//! reachable through a relay: it listens on a `/p2p-circuit` address of the
//! relay, and a peer that knows only that address delivers to it. Over TCP on
//! 127.0.0.1.

mod common;

use xchat_net::Config;
use xchat_net::multiaddr::Protocol;

use common::{envelope, receive_and_acknowledge, start_with, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_behind_a_relay_is_reachable_through_it() {
    let tcp = || common::config("/ip4/127.0.0.1/tcp/0".parse().unwrap());
    let relay = start_with(Config { enable_relay_server: true, ..tcp() }).await;
    // Its operator knows where it is reachable: a relay serves only then.
    relay.handle.add_external_address(relay.address.clone()).await.unwrap();
    let relay_address = relay.address.clone().with(Protocol::P2p(relay.peer));

    // The device listens only through the relay.
    let mut device = start_with(Config {
        listen_addresses: vec![relay_address.clone().with(Protocol::P2pCircuit)],
        ..tcp()
    })
    .await;
    assert!(device.address.iter().any(|part| part == Protocol::P2pCircuit), "{}", device.address);

    // The sender knows the device only by its relayed address.
    let sender = start_with(tcp()).await;
    let through_relay = relay_address.with(Protocol::P2pCircuit).with(Protocol::P2p(device.peer));
    sender.handle.add_address(device.peer, through_relay).await.unwrap();
    let sending = tokio::spawn({
        let (handle, peer) = (sender.handle.clone(), device.peer);
        async move { handle.deliver(peer, envelope(0x7e)).await }
    });
    let (from, got) = receive_and_acknowledge(&mut device).await;
    assert_eq!((from, got), (sender.peer, envelope(0x7e)));
    within(sending).await.unwrap().unwrap();

    // And back, over the connection the sender opened through the relay.
    let mut sender = sender;
    let back = tokio::spawn({
        let (handle, peer) = (device.handle.clone(), sender.peer);
        async move { handle.deliver(peer, envelope(0x7f)).await }
    });
    let (from, _) = receive_and_acknowledge(&mut sender).await;
    assert_eq!(from, device.peer);
    within(back).await.unwrap().unwrap();
}
