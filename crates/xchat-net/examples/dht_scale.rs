//! Many full xchat nodes in one process, over libp2p's memory transport:
//! prekey bundles published and found through the DHT, envelopes stored in
//! mailboxes and fetched back, on the whole network and again after a share
//! of the nodes left for good.
//!
//! `cargo run --release -p xchat-net --example dht_scale -- [nodes] [churn %] [joins/s]`
//! (defaults 200, 20 and 8). `docs/network.md` ("Scale") quotes runs of 200 and 500 nodes, and
//! why 500 take a quarter of an hour on two cores.
//!
//! Every node is a real [`Network`]: Noise and Yamux on the memory transport,
//! identify, ping, AutoNAT, Kademlia on `/xchat/kad/1`, `/xchat/mailbox/1`
//! with its proof of work (4 bits here, to keep the run short). Only what
//! the simulation cannot use is off: mDNS, TCP, QUIC, the direct file path.
//!
//! **Join.** Nodes start one after another, `joins/s` a second. Each is given
//! [`BOOTSTRAP_PEERS`] random nodes already running as its bootstrap peers
//! and runs Kademlia's bootstrap as any node does (a lookup of its own id,
//! then one of a random key in each bucket farther than its closest
//! neighbour). Connections close after [`IDLE`] without a stream instead of
//! the default 60 s: the join compresses hours of a real network's arrivals
//! into minutes, and with 60 s every node would hold a connection to most
//! others (measured: 170 of 200 nodes each, 4.7 GB at 500 nodes). The
//! periodic DHT refresh is off (`Config::dht_bootstrap_interval`): every
//! node re-running its bootstrap each 5 minutes costs the whole join again.
//!
//! **Measure.** [`OPERATIONS`] bundles are published and as many envelopes
//! stored (3 replicas) from random nodes; then each bundle is looked up and
//! each envelope fetched (closest-peers lookup of its mailbox, then a fetch
//! from the nodes found, closest first) from other random nodes, one
//! operation at a time. Then `churn %` of the nodes, picked at random, stop
//! (their tasks end; nobody is told) and the survivors look up the same
//! bundles, fetch the same envelopes, store new envelopes and fetch those.
//!
//! **Hops.** A probe (a `tracing` layer on libp2p-kad's own trace events,
//! told apart per node by a span around each node's task) follows the
//! querying node's Kademlia query. A peer the query started from (from the
//! node's routing table) is 1 hop away; a peer first learned from an answer
//! of a peer `h` hops away is `h + 1`. The hops of a bundle lookup are those
//! of the first peer that answered with the record (0 when the querying node
//! holds it); of a mailbox lookup, those of the closest peer found. Requests
//! are the Kademlia requests the query had answered (libp2p-kad's
//! `QueryStats::num_successes`); dead peers tried are dials the querying node
//! saw fail during the operation.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use tracing::field::{Field, Visit};
use tracing::{Instrument, Level, Subscriber, span};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use xchat_crypto::bundle::PreKeys as DevicePreKeys;
use xchat_crypto::device::Device;
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_crypto::signature::SigningKey;
use xchat_net::identity::Keypair;
use xchat_net::multiaddr::Protocol;
use xchat_net::{
    Config, Event, Limits, Multiaddr, Network, NetworkHandle, PeerId, file, mailbox, record,
};
use xchat_proto::bundle::{PreKeyRecord, PreKeys};
use xchat_proto::envelope::{Envelope, MIN_SEALED_BYTES};
use xchat_proto::mailbox::{FetchRequest, ItemId, Request, Response, StoreRequest};

/// Bundles published and envelopes stored in each phase.
const OPERATIONS: usize = 50;
/// Running nodes each new node is told of.
const BOOTSTRAP_PEERS: usize = 3;
/// Idle connection lifetime in the simulation (a real node's default: 60 s).
const IDLE: Duration = Duration::from_secs(5);
/// Proof of work asked of a mailbox store here.
const DIFFICULTY_BITS: u8 = 4;

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

struct Node {
    index: usize,
    handle: NetworkHandle,
    address: Multiaddr,
}

async fn start(index: usize, bootstrap: Vec<Multiaddr>) -> Node {
    let address: Multiaddr = format!("/memory/{}", 40_000 + index).parse().unwrap();
    let config = Config {
        listen_addresses: vec![address.clone()],
        bootstrap_peers: bootstrap,
        enable_mdns: false,
        enable_memory_transport: true,
        limits: Limits { idle_connection_timeout: IDLE, ..Limits::default() },
        // Each node's periodic refresh would re-run its bootstrap every 5
        // minutes: in one process, that is the join's whole cost again.
        dht_bootstrap_interval: None,
        mailbox: Some(mailbox::Config {
            min_difficulty_bits: DIFFICULTY_BITS,
            ..mailbox::Config::default()
        }),
        file: file::Config { direct_listen: None, ..file::Config::default() },
        ..Config::default()
    };
    let (network, handle, mut events) = Network::new(Keypair::generate_ed25519(), config).unwrap();
    // The span tells the probe which node an event of libp2p-kad comes from.
    tokio::spawn(network.run().instrument(tracing::info_span!("node", index)));
    loop {
        if let Some(Event::Listening { .. }) = events.recv().await {
            break;
        }
    }
    // Nobody reads the rest: dropping the receiver lets the task skip them.
    drop(events);
    let address = address.with(Protocol::P2p(handle.local_peer_id()));
    Node { index, handle, address }
}

/// One thing the probe saw the watched node's Kademlia do.
enum Step {
    /// `source` answered a request of `query`.
    Answered { query: String, source: String },
    /// `source`'s answer named `peer` as closer.
    Reported { query: String, source: String, peer: String },
    /// `source` answered a record request without the record.
    NotFound { query: String, source: String },
}

#[derive(Default)]
struct Watch {
    node: Option<usize>,
    steps: Vec<Step>,
    dial_failures: usize,
}

/// A `tracing` layer reading libp2p-kad's and libp2p-swarm's own events:
/// every connection made, and the queries of the one node watched.
#[derive(Clone, Default)]
struct Probe {
    watch: Arc<Mutex<Watch>>,
    /// "Connection established", logged by both ends of each connection.
    connection_ends: Arc<AtomicU64>,
}

struct NodeIndex(usize);

#[derive(Default)]
struct Fields {
    index: Option<usize>,
    message: String,
    query: String,
    source: String,
    peer: String,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "index" {
            self.index = usize::try_from(value).ok();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let slot = match field.name() {
            "message" => &mut self.message,
            "query" => &mut self.query,
            "source" => &mut self.source,
            "peer" => &mut self.peer,
            _ => return,
        };
        *slot = format!("{value:?}");
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Probe {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(index), Some(span)) = (fields.index, ctx.span(id)) {
            span.extensions_mut().insert(NodeIndex(index));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let Some(node) = ctx.event_scope(event).and_then(|mut scope| {
            scope.find_map(|span| span.extensions().get::<NodeIndex>().map(|n| n.0))
        }) else {
            return;
        };
        let swarm = event.metadata().target().starts_with("libp2p_swarm");
        let mut watch = self.watch.lock().unwrap();
        if !swarm && watch.node != Some(node) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if swarm {
            if fields.message.starts_with("Connection established") {
                self.connection_ends.fetch_add(1, Ordering::Relaxed);
            } else if watch.node == Some(node)
                && fields.message.starts_with("Connection attempt to peer failed")
            {
                watch.dial_failures += 1;
            }
            return;
        }
        let Fields { query, source, peer, message, .. } = fields;
        let step = match message.as_str() {
            // `peer=%source` there.
            "Request to peer in query succeeded" => Step::Answered { query, source: peer },
            "Peer reported by source in query" => {
                // `KadPeer { node_id: PeerId("12D3..."), .. }`
                let Some(peer) = peer
                    .split_once("node_id: PeerId(\"")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(id, _)| id.to_owned())
                else {
                    return;
                };
                Step::Reported { query, source, peer }
            }
            "Record not found at source" => Step::NotFound { query, source },
            _ => return,
        };
        watch.steps.push(step);
    }
}

impl Probe {
    fn watch(&self, node: usize) {
        *self.watch.lock().unwrap() = Watch { node: Some(node), ..Watch::default() };
    }

    fn take(&self) -> Watch {
        std::mem::take(&mut *self.watch.lock().unwrap())
    }
}

/// One query's path, from the steps the probe saw.
struct Path {
    /// Hops of each peer that answered, by peer id.
    hops: HashMap<String, usize>,
    /// Peers that answered, in order, and whether they had the record.
    answers: Vec<(String, bool)>,
    /// Other queries the node ran meanwhile (a bootstrap), not counted.
    others: usize,
}

fn path(steps: &[Step]) -> Path {
    let query_of = |step: &Step| match step {
        Step::Answered { query, .. }
        | Step::Reported { query, .. }
        | Step::NotFound { query, .. } => query.clone(),
    };
    // The operation's query is the one with the most answers.
    let mut answered: HashMap<String, usize> = HashMap::new();
    for step in steps {
        *answered.entry(query_of(step)).or_default() +=
            usize::from(matches!(step, Step::Answered { .. }));
    }
    // "Record not found" names no query: it counts with every query.
    answered.remove("");
    let others = answered.len().saturating_sub(1);
    let ours = answered.into_iter().max_by_key(|(_, n)| *n).map(|(q, _)| q).unwrap_or_default();
    let mut learned: HashMap<String, usize> = HashMap::new();
    let mut hops: HashMap<String, usize> = HashMap::new();
    let mut without: HashSet<String> = HashSet::new();
    let mut answers = Vec::new();
    for step in steps.iter().filter(|step| {
        let query = query_of(step);
        query == ours || query.is_empty()
    }) {
        match step {
            Step::NotFound { source, .. } => {
                without.insert(source.clone());
            }
            Step::Answered { source, .. } => {
                // Never reported before it answered: it came from the
                // node's own routing table.
                let h = learned.get(source).copied().unwrap_or(1);
                hops.insert(source.clone(), h);
                answers.push((source.clone(), !without.contains(source)));
            }
            Step::Reported { source, peer, .. } => {
                if hops.contains_key(peer) {
                    continue;
                }
                let h = hops.get(source).copied().unwrap_or(1) + 1;
                let entry = learned.entry(peer.clone()).or_insert(h);
                *entry = (*entry).min(h);
            }
        }
    }
    Path { hops, answers, others }
}

/// One operation's outcome.
struct Outcome {
    ok: bool,
    hops: Option<usize>,
    requests: usize,
    dead: usize,
    /// Other queries the querying node ran during the operation.
    others: usize,
    time: Duration,
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

fn random_index(len: usize, rng: &mut ChaCha20Rng) -> usize {
    usize::try_from(rng.next_u64() % len as u64).unwrap()
}

fn pick<'a>(nodes: &'a [Node], rng: &mut ChaCha20Rng) -> &'a Node {
    &nodes[random_index(nodes.len(), rng)]
}

/// Runs `operation` on `node` with the probe watching it.
async fn probed<F, T>(probe: &Probe, node: &Node, operation: F) -> (T, Watch, Duration)
where
    F: Future<Output = T>,
{
    probe.watch(node.index);
    let start = Instant::now();
    let value = operation.await;
    let time = start.elapsed();
    (value, probe.take(), time)
}

async fn find_bundle(probe: &Probe, node: &Node, key: &[u8], value: &[u8]) -> Outcome {
    let (found, watch, time) = probed(probe, node, node.handle.find_record(key.to_vec())).await;
    let path = path(&watch.steps);
    let ok = found.as_deref() == Ok(value);
    let hops = if ok {
        // The first peer that answered with the record; none: this node
        // holds it.
        Some(path.answers.iter().find(|(_, had)| *had).map_or(0, |(peer, _)| path.hops[peer]))
    } else {
        None
    };
    Outcome {
        ok,
        hops,
        requests: path.answers.len(),
        dead: watch.dial_failures,
        others: path.others,
        time,
    }
}

/// The mailbox's nodes from `node`, with the lookup's hops and requests.
async fn mailbox_lookup(
    probe: &Probe,
    node: &Node,
    owner: &SigningKey,
) -> (Vec<PeerId>, Option<usize>, usize, usize, usize) {
    let key = owner.verifying_key().to_bytes();
    let (nodes, watch, _) = probed(probe, node, node.handle.mailbox_nodes(&key)).await;
    let nodes = nodes.unwrap_or_default();
    let path = path(&watch.steps);
    let hops = nodes.first().and_then(|closest| path.hops.get(&closest.to_string()).copied());
    (nodes, hops, path.answers.len(), watch.dial_failures, path.others)
}

async fn store(probe: &Probe, node: &Node, owner: &SigningKey, index: usize) -> (Outcome, ItemId) {
    let start = Instant::now();
    let sealed = Envelope::new(vec![u8::try_from(index % 256).unwrap(); MIN_SEALED_BYTES]).unwrap();
    let request =
        StoreRequest::new(owner.verifying_key(), sealed.encode(), 3600, DIFFICULTY_BITS).unwrap();
    let id = request.item_id();
    // The lookup the store runs, measured on its own; the store repeats it.
    let (_, hops, requests, dead, others) = mailbox_lookup(probe, node, owner).await;
    let outcomes = node.handle.store_in_mailbox(request, mailbox::REPLICAS).await.unwrap();
    let copies =
        outcomes.iter().filter(|(_, outcome)| *outcome == Ok(Response::Stored(id))).count();
    let ok = copies == mailbox::REPLICAS;
    let outcome =
        Outcome { ok, hops: hops.filter(|_| ok), requests, dead, others, time: start.elapsed() };
    (outcome, id)
}

async fn fetch(
    probe: &Probe,
    node: &Node,
    owner: &SigningKey,
    id: ItemId,
    rng: &mut ChaCha20Rng,
) -> Outcome {
    let start = Instant::now();
    let (holders, hops, requests, dead, others) = mailbox_lookup(probe, node, owner).await;
    let mut ok = false;
    for peer in holders.into_iter().take(mailbox::REPLICAS * 2) {
        let request = Request::Fetch(FetchRequest::new(owner, now_ms(), rng));
        if let Ok(Response::Fetched(page)) = node.handle.mailbox_request(peer, request).await
            && page.items().iter().any(|item| item.id() == id)
        {
            ok = true;
            break;
        }
    }
    Outcome { ok, hops: hops.filter(|_| ok), requests, dead, others, time: start.elapsed() }
}

fn percentile<T: Copy + Ord>(sorted: &[T], p: usize) -> T {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn summary(phase: &str, operation: &str, outcomes: &[Outcome]) {
    let n = outcomes.len();
    let ok = outcomes.iter().filter(|o| o.ok).count();
    let mut hops: Vec<usize> = outcomes.iter().filter_map(|o| o.hops).collect();
    hops.sort_unstable();
    let mut times: Vec<Duration> = outcomes.iter().map(|o| o.time).collect();
    times.sort_unstable();
    let mean = |sum: usize| sum as f64 / n as f64;
    let hops = if hops.is_empty() {
        "-".to_owned()
    } else {
        format!(
            "{:.2} / {} / {}",
            hops.iter().sum::<usize>() as f64 / hops.len() as f64,
            percentile(&hops, 50),
            percentile(&hops, 95)
        )
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let others = outcomes.iter().filter(|o| o.others > 0).count();
    if others > 0 {
        println!(
            "({phase}, {operation}: {others} operations overlapped another query of their node)"
        );
    }
    println!(
        "| {phase} | {operation} | {ok}/{n} | {hops} | {:.1} | {:.1} | {:.0} / {:.0} / {:.0} |",
        mean(outcomes.iter().map(|o| o.requests).sum()),
        mean(outcomes.iter().map(|o| o.dead).sum()),
        ms(times.iter().sum::<Duration>()) / n as f64,
        ms(percentile(&times, 50)),
        ms(percentile(&times, 95)),
    );
}

fn table_header() {
    println!(
        "| phase | operation | success | hops mean / p50 / p95 | requests | dead peers tried | time mean / p50 / p95 (ms) |"
    );
    println!("|---|---|---|---|---|---|---|");
}

/// This process's resident memory (`VmRSS`) or its peak (`VmHWM`), in MiB.
fn memory_mib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// CPU time this process used, user and system, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // utime and stime, in clock ticks of 10 ms.
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

async fn progress(label: &str, nodes: &[Node], probe: &Probe, started: Instant) {
    let mut peers = Vec::with_capacity(nodes.len());
    for node in nodes {
        peers.push(node.handle.connected_peers().await.unwrap().len());
    }
    peers.sort_unstable();
    println!(
        "{label}: {} nodes, {:.1} s, CPU {:.1} s, RSS {} MiB (peak {}), {} connections made, \
         connected peers per node mean {:.1} p50 {} max {}",
        nodes.len(),
        started.elapsed().as_secs_f64(),
        cpu_seconds(),
        memory_mib("VmRSS"),
        memory_mib("VmHWM"),
        probe.connection_ends.load(Ordering::Relaxed) / 2,
        peers.iter().sum::<usize>() as f64 / peers.len().max(1) as f64,
        peers.get(peers.len() / 2).copied().unwrap_or(0),
        peers.last().copied().unwrap_or(0),
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(200, |arg| arg.parse().unwrap());
    let churn: usize = args.next().map_or(20, |arg| arg.parse().unwrap());
    let joins_per_second: f64 = args.next().map_or(8.0, |arg| arg.parse().unwrap());

    let probe = Probe::default();
    let filter = Targets::new()
        .with_target("libp2p_kad::behaviour", Level::TRACE)
        .with_target("libp2p_swarm", Level::DEBUG)
        .with_target("dht_scale", Level::INFO);
    let subscriber = tracing_subscriber::registry().with(probe.clone().with_filter(filter));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let mut rng = ChaCha20Rng::seed_from_u64(500);
        let started = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / joins_per_second);
        let mut next = tokio::time::Instant::now();
        let mut nodes: Vec<Node> = Vec::with_capacity(count);
        for index in 0..count {
            let mut bootstrap = Vec::new();
            while bootstrap.len() < BOOTSTRAP_PEERS.min(nodes.len()) {
                let address = pick(&nodes, &mut rng).address.clone();
                if !bootstrap.contains(&address) {
                    bootstrap.push(address);
                }
            }
            nodes.push(start(index, bootstrap).await);
            next += interval;
            tokio::time::sleep_until(next).await;
            if (index + 1) % 100 == 0 {
                progress("joining", &nodes, &probe, started).await;
            }
        }
        // Let the last joins finish and their connections go idle.
        tokio::time::sleep(IDLE * 2).await;
        progress("joined", &nodes, &probe, started).await;

        let measured = Instant::now();
        let mut bundles = Vec::new();
        let mut published = 0;
        for entropy in 0..u32::try_from(OPERATIONS).unwrap() {
            let (key, value) = bundle_record(entropy + 1, &mut rng);
            let node = pick(&nodes, &mut rng);
            published +=
                usize::from(node.handle.publish_record(key.clone(), value.clone()).await.is_ok());
            bundles.push((key, value));
        }
        println!("published {published}/{OPERATIONS} bundles");
        let mut mailboxes = Vec::new();
        let mut stores = Vec::new();
        for index in 0..OPERATIONS {
            let owner = SigningKey::generate(&mut rng);
            let (outcome, id) = store(&probe, pick(&nodes, &mut rng), &owner, index).await;
            stores.push(outcome);
            mailboxes.push((owner, id));
        }
        let mut lookups = Vec::new();
        for (key, value) in &bundles {
            lookups.push(find_bundle(&probe, pick(&nodes, &mut rng), key, value).await);
        }
        let mut fetches = Vec::new();
        for (owner, id) in &mailboxes {
            let node = pick(&nodes, &mut rng);
            fetches.push(fetch(&probe, node, owner, *id, &mut rng).await);
        }
        let whole = format!("{count} nodes");
        let mut rows = vec![
            (whole.clone(), "bundle lookup", lookups),
            (whole.clone(), "mailbox store", stores),
            (whole.clone(), "mailbox fetch", fetches),
        ];
        progress("measured", &nodes, &probe, measured).await;

        // A share of the nodes stops for good: their tasks end, their
        // connections close, the others' routing tables still list them.
        let leaving = count * churn / 100;
        for _ in 0..leaving {
            let index = random_index(nodes.len(), &mut rng);
            drop(nodes.swap_remove(index));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let churned = Instant::now();
        let mut lookups = Vec::new();
        for (key, value) in &bundles {
            lookups.push(find_bundle(&probe, pick(&nodes, &mut rng), key, value).await);
        }
        let mut old_fetches = Vec::new();
        for (owner, id) in &mailboxes {
            let node = pick(&nodes, &mut rng);
            old_fetches.push(fetch(&probe, node, owner, *id, &mut rng).await);
        }
        let mut stores = Vec::new();
        let mut new_mailboxes = Vec::new();
        for index in 0..OPERATIONS {
            let owner = SigningKey::generate(&mut rng);
            let (outcome, id) = store(&probe, pick(&nodes, &mut rng), &owner, index).await;
            stores.push(outcome);
            new_mailboxes.push((owner, id));
        }
        let mut new_fetches = Vec::new();
        for (owner, id) in &new_mailboxes {
            let node = pick(&nodes, &mut rng);
            new_fetches.push(fetch(&probe, node, owner, *id, &mut rng).await);
        }
        progress("measured after churn", &nodes, &probe, churned).await;
        let gone = format!("{count} nodes, {churn}% gone");
        rows.push((gone.clone(), "bundle lookup (published before)", lookups));
        rows.push((gone.clone(), "mailbox fetch (stored before)", old_fetches));
        rows.push((gone.clone(), "mailbox store", stores));
        rows.push((gone, "mailbox fetch (stored after)", new_fetches));

        println!();
        table_header();
        for (phase, operation, outcomes) in &rows {
            summary(phase, operation, outcomes);
        }
    });
}
