//! Many nodes in one process (memory transport): prekey bundles published and
//! found through the DHT, envelopes stored in mailboxes and fetched back, on
//! the whole network and again after a share of the nodes left.
//!
//! `cargo run --release -p xchat-net --example dht_scale -- [nodes] [churn %]`
//! (defaults 500 and 20). Prints success rates and times; `docs/network.md`
//! quotes a run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use xchat_crypto::bundle::PreKeys as DevicePreKeys;
use xchat_crypto::device::Device;
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_crypto::signature::SigningKey;
use xchat_net::identity::Keypair;
use xchat_net::multiaddr::Protocol;
use xchat_net::{Config, Event, Multiaddr, Network, NetworkHandle, PeerId, mailbox, record};
use xchat_proto::bundle::{PreKeyRecord, PreKeys};
use xchat_proto::envelope::{Envelope, MIN_SEALED_BYTES};
use xchat_proto::mailbox::{FetchRequest, Request, Response, StoreRequest};

const OPERATIONS: usize = 50;

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

struct Node {
    handle: NetworkHandle,
    peer: PeerId,
    address: Multiaddr,
}

async fn start(index: usize, bootstrap: Option<&Node>) -> Node {
    let address: Multiaddr = format!("/memory/{}", 40_000 + index).parse().unwrap();
    let config = Config {
        listen_addresses: vec![address.clone()],
        bootstrap_peers: bootstrap
            .map(|node| node.address.clone().with(Protocol::P2p(node.peer)))
            .into_iter()
            .collect(),
        enable_mdns: false,
        enable_memory_transport: true,
        mailbox: Some(mailbox::Config { min_difficulty_bits: 4, ..mailbox::Config::default() }),
        ..Config::default()
    };
    let (network, handle, mut events) = Network::new(Keypair::generate_ed25519(), config).unwrap();
    tokio::spawn(network.run());
    loop {
        if let Some(Event::Listening { .. }) = events.recv().await {
            break;
        }
    }
    // Nobody reads the rest: dropping the receiver lets the task skip them.
    drop(events);
    Node { peer: handle.local_peer_id(), handle, address }
}

fn bundle_record(entropy: u32, rng: &mut ChaCha20Rng) -> (Vec<u8>, Vec<u8>) {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&entropy.to_be_bytes());
    let identity = Identity::from_seed(&RecoveryPhrase::from_entropy(&bytes).to_seed("")).unwrap();
    let device = Device::new(&identity, now_ms(), rng);
    let prekeys = DevicePreKeys::new(&device, now_ms(), rng);
    let publication = prekeys.publication(&identity.public(), &device).unwrap();
    let value = PreKeyRecord {
        published_at_ms: now_ms(),
        prekeys: PreKeys::Bundle(publication.last_resort_bundle()),
    }
    .encode();
    (record::prekey_key(&identity.signing_key().verifying_key(), &device.id()), value)
}

fn pick<'a>(nodes: &'a [Node], rng: &mut ChaCha20Rng) -> &'a Node {
    let index = usize::try_from(rng.next_u64() % nodes.len() as u64).unwrap();
    &nodes[index]
}

struct Rates {
    found: usize,
    fetched: usize,
    lookup: Duration,
    fetch: Duration,
}

async fn measure(
    nodes: &[Node],
    bundles: &[(Vec<u8>, Vec<u8>)],
    mailboxes: &[(SigningKey, xchat_proto::mailbox::ItemId)],
    rng: &mut ChaCha20Rng,
) -> Rates {
    let mut rates = Rates { found: 0, fetched: 0, lookup: Duration::ZERO, fetch: Duration::ZERO };
    for (key, value) in bundles {
        let start = Instant::now();
        let found = pick(nodes, rng).handle.find_record(key.clone()).await;
        rates.lookup += start.elapsed();
        rates.found += usize::from(found.as_ref() == Ok(value));
    }
    for (owner, id) in mailboxes {
        let start = Instant::now();
        let handle = &pick(nodes, rng).handle;
        let holders = handle.mailbox_nodes(&owner.verifying_key().to_bytes()).await.unwrap();
        let mut found = false;
        for peer in holders.into_iter().take(mailbox::REPLICAS * 2) {
            let fetch = Request::Fetch(FetchRequest::new(owner, now_ms(), rng));
            if let Ok(Response::Fetched(page)) = handle.mailbox_request(peer, fetch).await
                && page.items().iter().any(|item| item.id() == *id)
            {
                found = true;
                break;
            }
        }
        rates.fetch += start.elapsed();
        rates.fetched += usize::from(found);
    }
    rates
}

fn report(label: &str, rates: &Rates, bundles: usize, mailboxes: usize) {
    println!(
        "{label}: bundle lookups {}/{} found (mean {:.0} ms); mailbox fetches {}/{} found (mean {:.0} ms)",
        rates.found,
        bundles,
        rates.lookup.as_secs_f64() * 1000.0 / bundles as f64,
        rates.fetched,
        mailboxes,
        rates.fetch.as_secs_f64() * 1000.0 / mailboxes as f64,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(500, |arg| arg.parse().unwrap());
    let churn: usize = args.next().map_or(20, |arg| arg.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let mut rng = ChaCha20Rng::seed_from_u64(500);
        let started = Instant::now();
        let mut nodes: Vec<Node> = Vec::with_capacity(count);
        for index in 0..count {
            // Each node joins through an earlier one: a tree, so no node
            // takes every first connection.
            let bootstrap = (index > 0).then(|| &nodes[(index - 1) / 2]);
            let node = start(index, bootstrap).await;
            nodes.push(node);
            if (index + 1) % 50 == 0 {
                println!("{} nodes started after {:.1} s", index + 1, started.elapsed().as_secs_f64());
            }
        }
        // Let routing tables fill: a second bootstrap everywhere.
        for node in &nodes {
            node.handle.bootstrap().await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        println!("{count} nodes up in {:.1} s", started.elapsed().as_secs_f64());

        let mut bundles = Vec::new();
        let mut published = 0;
        for entropy in 0..u32::try_from(OPERATIONS).unwrap() {
            let (key, value) = bundle_record(entropy + 1, &mut rng);
            published += usize::from(
                pick(&nodes, &mut rng).handle.publish_record(key.clone(), value.clone()).await.is_ok(),
            );
            bundles.push((key, value));
        }
        let mut mailboxes = Vec::new();
        let mut stored = 0;
        for i in 0..OPERATIONS {
            let owner = SigningKey::generate(&mut rng);
            let sealed = Envelope::new(vec![u8::try_from(i % 256).unwrap(); MIN_SEALED_BYTES]).unwrap();
            let store =
                StoreRequest::new(owner.verifying_key(), sealed.encode(), 3600, 4).unwrap();
            let id = store.item_id();
            let outcomes =
                pick(&nodes, &mut rng).handle.store_in_mailbox(store, mailbox::REPLICAS).await.unwrap();
            let copies =
                outcomes.iter().filter(|(_, outcome)| *outcome == Ok(Response::Stored(id))).count();
            stored += usize::from(copies == mailbox::REPLICAS);
            mailboxes.push((owner, id));
        }
        println!(
            "published {published}/{OPERATIONS} bundles; stored {stored}/{OPERATIONS} envelopes on {} nodes each",
            mailbox::REPLICAS
        );

        let rates = measure(&nodes, &bundles, &mailboxes, &mut rng).await;
        report("no churn", &rates, bundles.len(), mailboxes.len());

        // A share of the nodes leaves for good (their tasks end).
        let leaving = count * churn / 100;
        for _ in 0..leaving {
            let index = usize::try_from(rng.next_u64() % nodes.len() as u64).unwrap();
            drop(nodes.swap_remove(index));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rates = measure(&nodes, &bundles, &mailboxes, &mut rng).await;
        report(&format!("{churn}% of nodes gone"), &rates, bundles.len(), mailboxes.len());
    });
}
