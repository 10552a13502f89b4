//! Real nodes for the integration tests: each runs its own network task on
//! the test's runtime, and the tests wait on events, never on sleeps.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use xchat_net::identity::Keypair;
use xchat_net::{Config, Event, Events, Multiaddr, Network, NetworkHandle, PeerId};
use xchat_proto::envelope::{Envelope, MIN_SEALED_BYTES};

/// Generous: a loaded 2-core machine compiles other crates while these run.
pub const WAIT: Duration = Duration::from_secs(60);

/// A running node.
pub struct Node {
    pub handle: NetworkHandle,
    pub events: Events,
    pub peer: PeerId,
    pub address: Multiaddr,
}

/// The transports the tests run over.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Memory,
    Tcp,
    Quic,
}

/// A memory address no other test in this process uses.
pub fn memory_address() -> Multiaddr {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    // Test binaries run in separate processes, so each may start from 1.
    let port = 10_000 + NEXT.fetch_add(1, Ordering::Relaxed);
    format!("/memory/{port}").parse().unwrap()
}

pub fn listen_address(transport: Transport) -> Multiaddr {
    match transport {
        Transport::Memory => memory_address(),
        Transport::Tcp => "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        Transport::Quic => "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap(),
    }
}

pub fn config(listen: Multiaddr) -> Config {
    Config {
        listen_addresses: vec![listen],
        enable_mdns: false,
        enable_memory_transport: true,
        ..Config::default()
    }
}

/// Starts a node with `config` and waits until it listens.
pub async fn start_with(config: Config) -> Node {
    let (network, handle, mut events) = Network::new(Keypair::generate_ed25519(), config).unwrap();
    tokio::spawn(network.run());
    let address = wait_for(&mut events, |event| match event {
        Event::Listening { address } => Some(address),
        _ => None,
    })
    .await;
    let peer = handle.local_peer_id();
    Node { handle, events, peer, address }
}

pub async fn start(transport: Transport) -> Node {
    start_with(config(listen_address(transport))).await
}

/// Waits for the first event `pick` takes, dropping the others.
pub async fn wait_for<T>(events: &mut Events, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    within(async {
        loop {
            let event = events.recv().await.expect("network task stopped");
            if let Some(found) = pick(event) {
                return found;
            }
        }
    })
    .await
}

pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(WAIT, future).await.expect("timed out waiting")
}

/// An envelope of the smallest sealed size, every byte `fill`.
pub fn envelope(fill: u8) -> Envelope {
    Envelope::new(vec![fill; MIN_SEALED_BYTES]).unwrap()
}

/// Waits for an envelope on `node`, acknowledges it and returns it with its
/// sender.
pub async fn receive_and_acknowledge(node: &mut Node) -> (PeerId, Envelope) {
    let (from, envelope, delivery) = wait_for(&mut node.events, |event| match event {
        Event::EnvelopeReceived { from, envelope, delivery } => Some((from, envelope, delivery)),
        _ => None,
    })
    .await;
    node.handle.acknowledge(delivery).await.unwrap();
    (from, envelope)
}

/// A bare libp2p peer over TCP with raw streams (`libp2p-stream`), for the
/// tests' hostile and forging peers: it writes whatever bytes a test gives
/// it, ignoring xchat's rules. Its connections stay up for the whole test.
pub fn bare_swarm() -> libp2p::Swarm<libp2p_stream::Behaviour> {
    use libp2p::{SwarmBuilder, noise, tcp, yamux};
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|config| config.with_idle_connection_timeout(WAIT))
        .build()
}
