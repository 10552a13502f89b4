//! A node that only serves the network: it joins the DHT, keeps mailboxes
//! for others and relays, with no profile. Bootstrap nodes run this, and
//! `xchat demo` starts a few.

use tokio::sync::mpsc;
use xchat_net::identity::Keypair;
use xchat_net::{Event, Multiaddr, Network, NetworkHandle, PeerId};

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
}

/// Starts a relay with `config` and returns once it listens on every
/// address `config` names.
///
/// # Errors
/// [`NodeError::Network`] when the network cannot be built or listen.
pub async fn start_relay(config: xchat_net::Config) -> Result<Relay, NodeError> {
    let listens = config.listen_addresses.len();
    let (network, handle, mut events) = Network::new(Keypair::generate_ed25519(), config)
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
    Ok(Relay { handle, peer, addresses })
}

async fn drain(mut events: mpsc::Receiver<Event>) {
    while events.recv().await.is_some() {}
}
