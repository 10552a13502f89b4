//! A node that only serves the network: it joins the DHT, keeps mailboxes
//! for others and relays, with no profile. Bootstrap nodes run this
//! (`xchat relay`), and `xchat demo` starts a few.
//!
//! [`start_relay_in`] keeps its transport key and the mailboxes it holds in
//! a directory, so that after a restart it is the same DHT node (the one
//! senders stored envelopes on) and still holds what it was given;
//! [`start_relay`] keeps everything in memory, for a throwaway network.

use std::path::Path;

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
    start_relay_with(Keypair::generate_ed25519(), config, Box::new(MemoryStorage::new())).await
}

/// The relay directory's file holding its transport key (libp2p's protobuf
/// encoding, mode 0600).
pub const RELAY_KEY_FILE: &str = "transport.key";
/// The relay directory's mailbox database.
pub const RELAY_MAILBOXES_FILE: &str = "mailboxes.db";

/// Starts a relay whose transport key and mailboxes live in `dir` (made if
/// missing, mode 0700): a new key the first time, the same one after.
///
/// # Errors
/// [`NodeError::File`] when the directory, key or database cannot be read
/// or made (a key file that does not decode is refused, never replaced:
/// the relay would come back as another node), [`NodeError::Network`] as
/// [`start_relay`].
pub async fn start_relay_in(dir: &Path, config: xchat_net::Config) -> Result<Relay, NodeError> {
    let file_error = |what: &str, error: &dyn std::fmt::Display| {
        NodeError::File(format!("relay {what} in {}: {error}", dir.display()))
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| file_error("directory", &e))?;
    let key_file = dir.join(RELAY_KEY_FILE);
    let transport = match std::fs::read(&key_file) {
        Ok(bytes) => {
            let bytes = zeroize::Zeroizing::new(bytes);
            Keypair::from_protobuf_encoding(&bytes).map_err(|e| file_error("key", &e))?
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let transport = Keypair::generate_ed25519();
            let bytes = transport
                .to_protobuf_encoding()
                .map(zeroize::Zeroizing::new)
                .map_err(|e| file_error("key", &e))?;
            crate::write_private_file(&key_file, &bytes).map_err(|e| file_error("key", &e))?;
            transport
        }
        Err(error) => return Err(file_error("key", &error)),
    };
    let storage = crate::mailboxes::SqliteStorage::open(&dir.join(RELAY_MAILBOXES_FILE))
        .map_err(|e| file_error("mailbox database", &e))?;
    start_relay_with(transport, config, Box::new(storage)).await
}

async fn start_relay_with(
    transport: Keypair,
    config: xchat_net::Config,
    inner: Box<dyn Storage>,
) -> Result<Relay, NodeError> {
    let listens = config.listen_addresses.len();
    let (stored, _) = broadcast::channel(STORED_QUEUE_LEN);
    let storage = Box::new(Observed { inner, stored: stored.clone() });
    let (network, handle, mut events) = Network::with_mailbox_storage(transport, config, storage)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn loopback() -> xchat_net::Config {
        xchat_net::Config {
            listen_addresses: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            enable_mdns: false,
            ..xchat_net::Config::default()
        }
    }

    #[tokio::test]
    async fn a_relay_in_a_directory_comes_back_as_the_same_node() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("relay");
        let first = start_relay_in(&dir, loopback()).await.unwrap();
        let peer = first.peer;
        drop(first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join(RELAY_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
        }
        assert!(dir.join(RELAY_MAILBOXES_FILE).exists());
        let second = start_relay_in(&dir, loopback()).await.unwrap();
        assert_eq!(second.peer, peer);
        assert_ne!(start_relay(loopback()).await.unwrap().peer, peer);
    }

    #[tokio::test]
    async fn a_relay_refuses_a_key_file_it_cannot_read_and_keeps_it() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(RELAY_KEY_FILE), b"not a key").unwrap();
        let refused = start_relay_in(home.path(), loopback()).await.unwrap_err();
        assert!(matches!(refused, NodeError::File(ref m) if m.contains("key")), "{refused}");
        assert_eq!(std::fs::read(home.path().join(RELAY_KEY_FILE)).unwrap(), b"not a key");
    }
}
