#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `/xchat/mailbox/1` on a real network of nodes (memory transport): an
//! envelope left while its recipient is offline lands on the nodes closest to
//! the mailbox, survives one of them going away, and is fetched and deleted
//! by the mailbox's owner only. A loaded node asks more proof of work, the
//! sender pays it, and the node asks less once the load stops; a forged
//! difficulty is not paid.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use xchat_crypto::signature::SigningKey;
use xchat_net::multiaddr::Protocol;
use xchat_net::{Config, DhtMode, NetworkHandle, PeerId, mailbox};
use xchat_proto::mailbox::{
    DeleteRequest, ErrorCode, FetchRequest, ItemId, Request, Response, StoreRequest,
};

use common::{Node, Transport, envelope, memory_address, start, start_with, within};

/// Stamps in tests: cheap, and still checked.
const BITS: u8 = 8;
const MAILBOX_NODES: usize = 6;

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn mailbox_config() -> mailbox::Config {
    mailbox::Config { min_difficulty_bits: BITS, ..mailbox::Config::default() }
}

async fn node(bootstrap: Option<&Node>, mailbox: Option<mailbox::Config>, dht: DhtMode) -> Node {
    start_with(Config {
        bootstrap_peers: bootstrap
            .map(|boot| boot.address.clone().with(Protocol::P2p(boot.peer)))
            .into_iter()
            .collect(),
        mailbox,
        dht_mode: dht,
        ..common::config(memory_address())
    })
    .await
}

/// Waits until a lookup from `handle` finds at least `count` mailbox nodes
/// for `key` (the DHT fills as nodes bootstrap); retries a lookup at a time.
async fn nodes_for(handle: &NetworkHandle, key: &mailbox::MailboxKey, count: usize) -> Vec<PeerId> {
    within(async {
        loop {
            let nodes = handle.mailbox_nodes(key).await.unwrap();
            if nodes.len() >= count {
                return nodes;
            }
            handle.bootstrap().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

async fn fetch_from(
    handle: &NetworkHandle,
    peer: PeerId,
    owner: &SigningKey,
    rng: &mut ChaCha20Rng,
) -> Option<Vec<ItemId>> {
    let fetch = Request::Fetch(FetchRequest::new(owner, now_ms(), rng));
    match handle.mailbox_request(peer, fetch).await {
        Ok(Response::Fetched(page)) => Some(page.items().iter().map(|item| item.id()).collect()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_left_for_an_offline_device_is_fetched_after_a_mailbox_node_left() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let owner = SigningKey::generate(&mut rng);
    let key = owner.verifying_key().to_bytes();

    let first = node(None, Some(mailbox_config()), DhtMode::Server).await;
    let mut mailbox_nodes = vec![first];
    for _ in 1..MAILBOX_NODES {
        let next = node(Some(&mailbox_nodes[0]), Some(mailbox_config()), DhtMode::Server).await;
        mailbox_nodes.push(next);
    }
    // Devices ask the DHT and keep no mailboxes.
    let sender = node(Some(&mailbox_nodes[0]), None, DhtMode::Client).await;
    nodes_for(&sender.handle, &key, mailbox::REPLICAS).await;

    let sealed = envelope(0xE1);
    let store = StoreRequest::new(owner.verifying_key(), sealed.encode(), 3600, BITS).unwrap();
    let id = store.item_id();
    let outcomes = within(sender.handle.store_in_mailbox(store, mailbox::REPLICAS)).await.unwrap();
    let holders: Vec<PeerId> = outcomes
        .iter()
        .filter(|(_, outcome)| *outcome == Ok(Response::Stored(id)))
        .map(|(peer, _)| *peer)
        .collect();
    assert_eq!(holders.len(), mailbox::REPLICAS, "{outcomes:?}");

    // One holder leaves for good.
    let gone = mailbox_nodes.iter().position(|node| node.peer == holders[0]).unwrap();
    drop(mailbox_nodes.remove(gone));

    // The recipient comes online afterwards and asks its mailbox's nodes.
    let recipient = node(Some(&mailbox_nodes[0]), None, DhtMode::Client).await;
    let nodes = nodes_for(&recipient.handle, &key, mailbox::REPLICAS).await;
    let mut found = Vec::new();
    for peer in &nodes {
        let ids = fetch_from(&recipient.handle, *peer, &owner, &mut rng).await;
        if ids.is_some_and(|ids| ids.contains(&id)) {
            found.push(*peer);
        }
    }
    assert!(found.len() >= mailbox::REPLICAS - 1, "found on {found:?} of {nodes:?}");

    // Another key's signed fetch lists its own mailbox, which is empty: a
    // mailbox is only ever read with its own key (a forged signature is
    // refused: `mailbox::server` tests).
    let stranger = SigningKey::generate(&mut rng);
    for peer in &found {
        let fetch = Request::Fetch(FetchRequest::new(&stranger, now_ms(), &mut rng));
        let response = recipient.handle.mailbox_request(*peer, fetch).await.unwrap();
        assert_eq!(
            response,
            Response::Fetched(xchat_proto::mailbox::Fetched::new()),
            "other mailbox is empty"
        );
    }

    // The owner deletes it everywhere; it is gone.
    for peer in &found {
        let delete = DeleteRequest::new(&owner, now_ms(), vec![id], &mut rng).unwrap();
        let response = recipient.handle.mailbox_request(*peer, Request::Delete(delete)).await;
        assert_eq!(response, Ok(Response::Deleted { count: 1 }));
        assert_eq!(fetch_from(&recipient.handle, *peer, &owner, &mut rng).await, Some(Vec::new()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_to_one_mailbox_node_at_once_wait_their_turn_and_all_succeed() {
    // Far more than the keeper's streams per connection: the sender queues
    // them instead of opening streams the keeper would drop.
    const STORES: u8 = 100;
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let owner = SigningKey::generate(&mut rng);
    // Neither the rate limit nor the load's difficulty in the way.
    let config = mailbox::Config {
        request_burst_per_peer: 10_000,
        busy_stores_per_window: u64::MAX,
        ..mailbox_config()
    };
    let keeper = node(None, Some(config), DhtMode::Server).await;
    let sender = node(None, None, DhtMode::Client).await;
    sender.handle.add_address(keeper.peer, keeper.address.clone()).await.unwrap();
    let stores = (0..STORES).map(|i| {
        let store =
            StoreRequest::new(owner.verifying_key(), envelope(i).encode(), 60, BITS).unwrap();
        let id = store.item_id();
        let handle = sender.handle.clone();
        async move { (id, handle.mailbox_request(keeper.peer, Request::Store(store)).await) }
    });
    for (id, response) in within(futures::future::join_all(stores)).await {
        assert_eq!(response, Ok(Response::Stored(id)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_without_enough_work_is_refused_and_honest_store_flows() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let owner = SigningKey::generate(&mut rng);
    let keeper = node(None, Some(mailbox_config()), DhtMode::Server).await;
    let sender = node(None, None, DhtMode::Client).await;
    sender.handle.add_address(keeper.peer, keeper.address.clone()).await.unwrap();

    let cheap =
        StoreRequest::new(owner.verifying_key(), envelope(1).encode(), 60, BITS - 4).unwrap();
    let response = sender.handle.mailbox_request(keeper.peer, Request::Store(cheap)).await;
    assert_eq!(
        response,
        Ok(Response::Refused(ErrorCode::InsufficientWork { required_bits: Some(BITS) }))
    );

    let honest = StoreRequest::new(owner.verifying_key(), envelope(2).encode(), 60, BITS).unwrap();
    let id = honest.item_id();
    let response = sender.handle.mailbox_request(keeper.peer, Request::Store(honest)).await;
    assert_eq!(response, Ok(Response::Stored(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_keeping_no_mailboxes_does_not_offer_the_protocol() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let owner = SigningKey::generate(&mut rng);
    let device = node(None, None, DhtMode::Client).await;
    let sender = node(None, None, DhtMode::Client).await;
    sender.handle.add_address(device.peer, device.address.clone()).await.unwrap();
    let store = StoreRequest::new(owner.verifying_key(), envelope(3).encode(), 60, BITS).unwrap();
    let response = sender.handle.mailbox_request(device.peer, Request::Store(store)).await;
    assert_eq!(response, Err(xchat_net::MailboxError::UnsupportedProtocol));
}

/// A keeper whose difficulty rises from `BITS` at 8 stores per 3 s window,
/// one bit per doubling, up to `BITS + 4`.
fn loaded_config() -> mailbox::Config {
    mailbox::Config {
        max_difficulty_bits: BITS + 4,
        load_window_ms: 3000,
        busy_stores_per_window: 8,
        request_burst_per_peer: 10_000,
        ..mailbox_config()
    }
}

/// A keeper and a sender that knows it, in the sender's DHT, so that
/// `mailbox::store` finds it.
async fn keeper_and_sender(config: mailbox::Config, key: &mailbox::MailboxKey) -> (Node, Node) {
    let keeper = node(None, Some(config), DhtMode::Server).await;
    let sender = node(Some(&keeper), None, DhtMode::Client).await;
    nodes_for(&sender.handle, key, 1).await;
    (keeper, sender)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loaded_node_asks_more_work_the_sender_pays_and_it_falls_back_after() {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let owner = SigningKey::generate(&mut rng);
    let key = owner.verifying_key();
    let (keeper, sender) = keeper_and_sender(loaded_config(), &key.to_bytes()).await;
    let store_at = |fill: u8, bits: u8| {
        let store = StoreRequest::new(key, envelope(fill).encode(), 60, bits).unwrap();
        sender.handle.mailbox_request(keeper.peer, Request::Store(store))
    };
    let postage = mailbox::Postage { bits: BITS, max_bits: BITS + 4 };

    // Quiet, the keeper asks its minimum.
    let report =
        mailbox::store(&sender.handle, key, envelope(0).encode(), 60, postage, 1).await.unwrap();
    assert_eq!((report.stored(), report.outcomes.len()), (1, 1), "{:?}", report.outcomes);

    // Load: 16 stores at once, paying enough for any load they make.
    let load = (1..=16).map(|fill| store_at(fill, BITS + 2));
    for response in within(futures::future::join_all(load)).await {
        assert!(matches!(response, Ok(Response::Stored(_))), "{response:?}");
    }

    // A store with the old difficulty is refused, and told the new one.
    let response = within(store_at(100, BITS)).await;
    let Ok(Response::Refused(ErrorCode::InsufficientWork { required_bits: Some(asked) })) =
        response
    else {
        panic!("not refused for work: {response:?}");
    };
    assert!(asked > BITS && asked <= BITS + 2, "asked {asked}");

    // The sender pays what the keeper asks and is stored.
    let report =
        within(mailbox::store(&sender.handle, key, envelope(101).encode(), 60, postage, 1))
            .await
            .unwrap();
    let answers: Vec<&Result<Response, _>> =
        report.outcomes.iter().map(|(_, outcome)| outcome).collect();
    assert!(
        matches!(
            answers[..],
            [
                Ok(Response::Refused(ErrorCode::InsufficientWork { required_bits: Some(bits) })),
                Ok(Response::Stored(_)),
            ] if *bits == report.difficulty_bits && *bits > BITS
        ),
        "{answers:?}"
    );

    // Once the load stops the keeper asks its minimum again (within two
    // windows; refused stores do not count as load).
    let mut fill = 102;
    within(async {
        loop {
            match store_at(fill, BITS).await {
                Ok(Response::Stored(_)) => break,
                Ok(Response::Refused(ErrorCode::InsufficientWork { .. })) => {}
                other => panic!("{other:?}"),
            }
            fill += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_does_not_pay_more_than_its_maximum() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let owner = SigningKey::generate(&mut rng);
    let key = owner.verifying_key();
    let config = mailbox::Config { min_difficulty_bits: BITS + 5, ..loaded_config() };
    let (keeper, sender) = keeper_and_sender(config, &key.to_bytes()).await;
    let postage = mailbox::Postage { bits: BITS, max_bits: BITS + 4 };
    let report = within(mailbox::store(&sender.handle, key, envelope(1).encode(), 60, postage, 1))
        .await
        .unwrap();
    // Asked once, refused with more than the sender pays, not paid.
    assert_eq!(report.stored(), 0);
    assert_eq!(report.difficulty_bits, BITS);
    assert_eq!(
        report.outcomes,
        vec![(
            keeper.peer,
            Ok(Response::Refused(ErrorCode::InsufficientWork { required_bits: Some(BITS + 5) }))
        )]
    );
}

/// `MailboxResponse { refused: Refused { code: INSUFFICIENT_WORK (6),
/// required_difficulty_bits: 60 } }`, encoded by hand (field 4, length 4:
/// field 1 = 6, field 2 = 60): more than any node may ask.
const FORGED_DIFFICULTY: [u8; 6] = [0x22, 0x04, 0x08, 0x06, 0x10, 60];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_absurd_difficulty_is_refused_by_the_sender() {
    use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
    use libp2p::swarm::SwarmEvent;

    // A bare libp2p peer that answers every mailbox request with the forgery.
    let mut swarm = common::bare_swarm();
    let forger = *swarm.local_peer_id();
    let mut incoming = swarm.behaviour().new_control().accept(mailbox::PROTOCOL).unwrap();
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let address = within(async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    })
    .await;
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let (asked, mut requests) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            let mut prefix = [0u8; 4];
            let _ = stream.read_exact(&mut prefix).await;
            let mut request = vec![0u8; u32::from_be_bytes(prefix) as usize];
            let _ = stream.read_exact(&mut request).await;
            let _ = asked.send(request).await;
            let frame =
                [&(FORGED_DIFFICULTY.len() as u32).to_be_bytes()[..], &FORGED_DIFFICULTY].concat();
            let _ = stream.write_all(&frame).await;
            let _ = stream.close().await;
        }
    });

    let sender = start(Transport::Tcp).await;
    sender.handle.add_address(forger, address).await.unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let owner = SigningKey::generate(&mut rng);
    let store = StoreRequest::new(owner.verifying_key(), envelope(1).encode(), 60, BITS).unwrap();
    let response = within(sender.handle.mailbox_request(forger, Request::Store(store))).await;
    // The forger got the request, and its answer does not decode: there is
    // no difficulty for the sender to pay.
    assert!(within(requests.recv()).await.is_some());
    assert!(response.is_err(), "{response:?}");
    assert!(
        !matches!(response, Ok(Response::Refused(ErrorCode::InsufficientWork { .. }))),
        "{response:?}"
    );
    // The same bytes decode with a difficulty a node may ask: the refusal
    // above is the limit's, not a broken frame's.
    let mut fair = FORGED_DIFFICULTY;
    fair[5] = xchat_proto::mailbox::MAX_DEMANDED_DIFFICULTY_BITS;
    assert_eq!(
        Response::decode(&fair),
        Ok(Response::Refused(ErrorCode::InsufficientWork {
            required_bits: Some(xchat_proto::mailbox::MAX_DEMANDED_DIFFICULTY_BITS)
        }))
    );
}
