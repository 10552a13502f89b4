//! A node that only serves the network: it joins the DHT, keeps mailboxes
//! for others and relays, with no profile. Bootstrap nodes run this, and
//! `xchat demo` starts a few.

use tokio::sync::{broadcast, mpsc};
use xchat_net::identity::Keypair;
use xchat_net::mailbox::{ItemRecord, MailboxKey, MemoryStorage, Storage, StorageError, Usage};
use xchat_net::{Event, Multiaddr, Network, NetworkHandle, PeerId};
use xchat_proto::mailbox::ItemId;

use crate::NodeError;

/// A running network-only node.
#[derive(Debug)]
pub struct Relay {
    /// Its network.
    pub handle: NetworkHandle,
    /// Its peer id.
    pub peer: PeerId,
    /// Where it listens, each ending in `/p2p/<peer id>`.
    pub addresses: Vec<Multiaddr>,
    stored: broadcast::Sender<Vec<u8>>,
}

impl Relay {
    /// The envelopes this relay is asked to keep from now on, as it holds
    /// them: what a node that keeps mailboxes can see of a message.
    pub fn stored(&self) -> broadcast::Receiver<Vec<u8>> {
        self.stored.subscribe()
    }
}

/// Envelopes seen by [`Relay::stored`] subscribers that lag are dropped.
const STORED_QUEUE_LEN: usize = 64;

/// The relay's mailboxes: kept in memory, each new envelope also shown to
/// [`Relay::stored`] subscribers.
struct Observed {
    inner: Box<dyn Storage>,
    stored: broadcast::Sender<Vec<u8>>,
}

impl Storage for Observed {
    fn insert(&mut self, mailbox: &MailboxKey, item: ItemRecord) -> Result<bool, StorageError> {
        let envelope = item.envelope.clone();
        let inserted = self.inner.insert(mailbox, item)?;
        if inserted {
            // No subscriber is the usual case.
            let _ = self.stored.send(envelope);
        }
        Ok(inserted)
    }

    fn list(
        &self,
        mailbox: &MailboxKey,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<ItemRecord>, StorageError> {
        self.inner.list(mailbox, now_ms, limit)
    }

    fn delete(&mut self, mailbox: &MailboxKey, ids: &[ItemId]) -> Result<u32, StorageError> {
        self.inner.delete(mailbox, ids)
    }

    fn purge_expired(&mut self, now_ms: u64) -> Result<u64, StorageError> {
        self.inner.purge_expired(now_ms)
    }

    fn usage(&self, mailbox: &MailboxKey) -> Result<Usage, StorageError> {
        self.inner.usage(mailbox)
    }

    fn total_usage(&self) -> Result<Usage, StorageError> {
        self.inner.total_usage()
    }
}

/// Starts a relay with `config` and returns once it listens on every
/// address `config` names.
///
/// # Errors
/// [`NodeError::Network`] when the network cannot be built or listen.
pub async fn start_relay(config: xchat_net::Config) -> Result<Relay, NodeError> {
    start_relay_with(config, Box::new(MemoryStorage::new())).await
}

async fn start_relay_with(
    config: xchat_net::Config,
    inner: Box<dyn Storage>,
) -> Result<Relay, NodeError> {
    let listens = config.listen_addresses.len();
    let (stored, _) = broadcast::channel(STORED_QUEUE_LEN);
    let storage = Box::new(Observed { inner, stored: stored.clone() });
    let (network, handle, mut events) =
        Network::with_mailbox_storage(Keypair::generate_ed25519(), config, storage)
            .map_err(|e| NodeError::Network(e.to_string()))?;
    tokio::spawn(network.run());
    let peer = handle.local_peer_id();
    let mut addresses = Vec::new();
    while addresses.len() < listens {
        match events.recv().await {
            Some(Event::Listening { address }) => {
                addresses.push(address.with(xchat_net::multiaddr::Protocol::P2p(peer)));
            }
            Some(_) => {}
            None => return Err(NodeError::Network("the network stopped".into())),
        }
    }
    // A relay takes no envelopes for itself: dropping a delivery refuses it.
    tokio::spawn(drain(events));
    Ok(Relay { handle, peer, addresses, stored })
}

async fn drain(mut events: mpsc::Receiver<Event>) {
    while events.recv().await.is_some() {}
}
