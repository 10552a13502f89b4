#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Prekey bundles in a 20-node DHT (memory transport): one device publishes,
//! another finds it; a hostile DHT peer's forged record and its replay of
//! an older copy are refused by every node.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::core::transport::{MemoryTransport, Transport, upgrade};
use libp2p::kad::{self, store::MemoryStore};
use libp2p::swarm::SwarmEvent;
use libp2p::{SwarmBuilder, noise, yamux};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use xchat_crypto::bundle::PreKeys as DevicePreKeys;
use xchat_crypto::device::Device;
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_net::multiaddr::Protocol;
use xchat_net::{Config, FindError, NetworkHandle, record};
use xchat_proto::bundle::{PreKeyRecord, PreKeys, UnverifiedPreKeyRecord};

use common::{Node, memory_address, start_with, within};

const NODES: usize = 20;

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// A device of identity `entropy`: its identity key, the key of its bundle
/// record, and a record of its bundle published at `at_ms`.
struct Publisher {
    identity: xchat_crypto::signature::VerifyingKey,
    key: Vec<u8>,
    device: Device,
    prekeys: DevicePreKeys,
    public: xchat_crypto::identity::PublicIdentity,
}

impl Publisher {
    fn new(entropy: u8) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(entropy.into());
        let seed = RecoveryPhrase::from_entropy(&[entropy; 32]).to_seed("");
        let identity = Identity::from_seed(&seed).unwrap();
        let device = Device::new(&identity, now_ms(), &mut rng);
        let prekeys = DevicePreKeys::new(&device, now_ms(), &mut rng);
        let key = record::prekey_key(&identity.signing_key().verifying_key(), &device.id());
        Self {
            identity: identity.signing_key().verifying_key(),
            key,
            device,
            prekeys,
            public: identity.public(),
        }
    }

    fn record(&self, at_ms: u64) -> Vec<u8> {
        let publication = self.prekeys.publication(&self.public, &self.device).unwrap();
        PreKeyRecord {
            published_at_ms: at_ms,
            prekeys: PreKeys::Bundle(publication.last_resort_bundle()),
        }
        .encode()
    }
}

async fn dht(count: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for _ in 0..count {
        let bootstrap =
            nodes.first().map(|first| first.address.clone().with(Protocol::P2p(first.peer)));
        let node = start_with(Config {
            bootstrap_peers: bootstrap.into_iter().collect(),
            mailbox: None,
            ..common::config(memory_address())
        })
        .await;
        nodes.push(node);
    }
    nodes
}

/// Publishes until some node stores it (the DHT fills as nodes bootstrap).
async fn publish(handle: &NetworkHandle, key: &[u8], value: &[u8]) {
    within(async {
        while let Err(error) = handle.publish_record(key.to_vec(), value.to_vec()).await {
            assert!(matches!(error, xchat_net::PublishError::NotStored), "{error:?}");
            handle.bootstrap().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// A bare Kademlia peer on xchat's DHT that keeps whatever it is given,
/// checks nothing and knows every node.
fn bare_kad_peer(nodes: &[Node]) -> libp2p::Swarm<kad::Behaviour<MemoryStore>> {
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            MemoryTransport::default()
                .upgrade(upgrade::Version::V1)
                .authenticate(noise::Config::new(key).unwrap())
                .multiplex(yamux::Config::default())
        })
        .unwrap()
        .with_behaviour(|key| {
            let mut config = kad::Config::new(xchat_net::KAD_PROTOCOL);
            config.set_record_filtering(kad::StoreInserts::Unfiltered);
            let local = key.public().to_peer_id();
            let mut kad = kad::Behaviour::with_config(local, MemoryStore::new(local), config);
            kad.set_mode(Some(kad::Mode::Server));
            kad
        })
        .unwrap()
        .build();
    for node in nodes {
        swarm.behaviour_mut().add_address(&node.peer, node.address.clone());
    }
    swarm
}

/// Pushes `value` under `key` to the nodes closest to it, unchecked.
async fn hostile_put(nodes: &[Node], key: &[u8], value: Vec<u8>) {
    let mut swarm = bare_kad_peer(nodes);
    let record = kad::Record::new(kad::RecordKey::new(&key), value);
    let put = swarm.behaviour_mut().put_record(record, kad::Quorum::All).unwrap();
    within(async {
        loop {
            if let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed { id, .. }) =
                swarm.select_next_some().await
                && id == put
            {
                return;
            }
        }
    })
    .await;
}

/// Every value the nodes hold under `key`, asked with no check of ours in
/// the way: what the nodes' stores hold.
async fn held_by_nodes(nodes: &[Node], key: &[u8]) -> Vec<Vec<u8>> {
    let mut swarm = bare_kad_peer(nodes);
    let get = swarm.behaviour_mut().get_record(kad::RecordKey::new(&key));
    let mut held = Vec::new();
    within(async {
        loop {
            if let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetRecord(result),
                step,
                ..
            }) = swarm.select_next_some().await
                && id == get
            {
                if let Ok(kad::GetRecordOk::FoundRecord(found)) = result {
                    held.push(found.record.value);
                }
                if step.last {
                    return;
                }
            }
        }
    })
    .await;
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_published_by_one_device_is_found_by_another_through_twenty_nodes() {
    let nodes = dht(NODES).await;
    let alice = Publisher::new(1);
    let published = alice.record(now_ms());
    publish(&nodes[5].handle, &alice.key, &published).await;

    let found = within(nodes[NODES - 1].handle.find_record(alice.key.clone())).await.unwrap();
    assert_eq!(found, published);
    // What the finder does next: check it is the identity it expects.
    let record = UnverifiedPreKeyRecord::decode(&found).unwrap().verify(Some(&alice.identity));
    assert!(record.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_records_are_refused_by_every_node() {
    let nodes = dht(8).await;
    let (alice, bob) = (Publisher::new(1), Publisher::new(2));

    // Bob's valid bundle under Alice's key: no node keeps it.
    hostile_put(&nodes, &alice.key, bob.record(now_ms())).await;
    assert!(held_by_nodes(&nodes, &alice.key).await.is_empty());
    let found = within(nodes[7].handle.find_record(alice.key.clone())).await;
    assert_eq!(found, Err(FindError::NotFound));

    // Alice publishes twice; a replay of the first copy does not win.
    let older = alice.record(now_ms() - 60_000);
    let newer = alice.record(now_ms());
    publish(&nodes[1].handle, &alice.key, &older).await;
    publish(&nodes[1].handle, &alice.key, &newer).await;
    hostile_put(&nodes, &alice.key, older.clone()).await;
    let held = held_by_nodes(&nodes, &alice.key).await;
    assert!(!held.is_empty() && !held.contains(&older), "a node kept the older copy");
    let found = within(nodes[6].handle.find_record(alice.key.clone())).await.unwrap();
    assert_eq!(found, newer);
}
