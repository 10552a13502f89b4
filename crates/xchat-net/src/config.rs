//! What a [`Network`](crate::Network) is told at start: where to listen, whom
//! to ask first, and the limits that keep a node's memory and sockets
//! bounded whatever its peers do. Every default is a named constant with its
//! unit, quoted in `docs/network.md`.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};

/// Most established connections other nodes opened to this one.
pub const MAX_ESTABLISHED_INCOMING: u32 = 128;
/// Most established connections this node opened to others.
pub const MAX_ESTABLISHED_OUTGOING: u32 = 128;
/// Most incoming connections still in their handshake (Noise, Yamux) at once.
pub const MAX_PENDING_INCOMING: u32 = 32;
/// Most outgoing dials still in their handshake at once.
pub const MAX_PENDING_OUTGOING: u32 = 32;
/// Most established connections to one peer (one per transport, and room for
/// a simultaneous dial).
pub const MAX_ESTABLISHED_PER_PEER: u32 = 2;
/// How long a connection with no stream open stays up before it is closed.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a delivery may take, from putting it on the wire to the answer
/// (the receiver's consumer must acknowledge within it), and how long a
/// frame may take once its first byte arrived.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Most Yamux streams open at once on one connection, every protocol.
pub const MAX_STREAMS_PER_CONNECTION: usize = 256;
/// Most inbound streams still negotiating their protocol on one connection.
pub const MAX_NEGOTIATING_STREAMS_PER_CONNECTION: usize = 64;
/// Most bytes of inbound envelopes held at once, all peers together, from
/// their first byte read until acknowledged or dropped (64 MiB). A stream
/// that does not fit is refused and its sender retries.
pub const MAX_INBOUND_DELIVERY_BYTES: usize = 64 * 1024 * 1024;
/// Most deliveries this node has queued or sent and awaits an answer for,
/// all peers together.
pub const MAX_PENDING_DELIVERIES: usize = 1024;
/// Most deliveries unanswered on the link to one peer (its window); more
/// wait in this node's queue. A receiver reads no further frame from a link
/// with this many unanswered.
pub const MAX_DELIVERIES_IN_FLIGHT_PER_PEER: usize = 256;
/// Most dials awaited through [`NetworkHandle::dial`](crate::NetworkHandle::dial) at once.
pub const MAX_PENDING_DIALS: usize = 64;
/// Commands queued from the handles to the network task.
pub const COMMAND_QUEUE_LEN: usize = 64;
/// Events queued from the network task to its consumer. When full, the task
/// stops reading the network (backpressure) but still takes commands.
pub const EVENT_QUEUE_LEN: usize = 256;
/// Most records the DHT keeps for others.
pub const MAX_DHT_RECORDS: usize = 4096;
/// Most bytes of one DHT record's value: the largest xchat record
/// ([`crate::record::MAX_RECORD_VALUE_BYTES`]), within Kademlia's 16 KiB
/// message limit.
pub const MAX_DHT_RECORD_BYTES: usize = crate::record::MAX_RECORD_VALUE_BYTES;
/// Most DHT puts and gets awaited at once.
pub const MAX_PENDING_RECORD_QUERIES: usize = 64;
/// Longest a DHT query runs before it reports what it found.
pub const DHT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a node runs a DHT bootstrap again (a lookup of its own id,
/// then one per bucket), to keep its routing table fresh (5 minutes,
/// libp2p-kad's default).
pub const DHT_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Most peers that may hold a reservation on this node's relay at once.
pub const RELAY_MAX_RESERVATIONS: usize = 128;
/// Most circuits this node's relay carries at once.
pub const RELAY_MAX_CIRCUITS: usize = 32;
/// Longest one relayed circuit lasts (10 minutes): long enough for
/// hole punching to replace it, or for a burst of envelopes.
pub const RELAY_MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(10 * 60);
/// Most bytes one relayed circuit carries, both ways (16 MiB): envelopes,
/// not files; a file goes direct.
pub const RELAY_MAX_CIRCUIT_BYTES: u64 = 16 * 1024 * 1024;

/// Whether this node answers other nodes' DHT queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DhtMode {
    /// Answer them: right on a LAN and for a publicly reachable node. The
    /// default, because AutoNAT confirms only global addresses: on a LAN
    /// `Auto` would stay a client.
    #[default]
    Server,
    /// Only ask: a node behind a NAT that others cannot dial back.
    Client,
    /// Server once AutoNAT has confirmed an external address, client
    /// before: for a device that may be behind a NAT.
    Auto,
}

/// The limits of a [`Network`](crate::Network); [`Limits::default`] is the
/// named constants of this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// See [`MAX_ESTABLISHED_INCOMING`].
    pub max_established_incoming: u32,
    /// See [`MAX_ESTABLISHED_OUTGOING`].
    pub max_established_outgoing: u32,
    /// See [`MAX_PENDING_INCOMING`].
    pub max_pending_incoming: u32,
    /// See [`MAX_PENDING_OUTGOING`].
    pub max_pending_outgoing: u32,
    /// See [`MAX_ESTABLISHED_PER_PEER`].
    pub max_established_per_peer: u32,
    /// See [`IDLE_CONNECTION_TIMEOUT`].
    pub idle_connection_timeout: Duration,
    /// See [`DELIVERY_TIMEOUT`].
    pub delivery_timeout: Duration,
    /// See [`MAX_PENDING_DELIVERIES`].
    pub max_pending_deliveries: usize,
    /// See [`MAX_DELIVERIES_IN_FLIGHT_PER_PEER`].
    pub max_deliveries_in_flight_per_peer: usize,
    /// See [`MAX_INBOUND_DELIVERY_BYTES`].
    pub max_inbound_delivery_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_established_incoming: MAX_ESTABLISHED_INCOMING,
            max_established_outgoing: MAX_ESTABLISHED_OUTGOING,
            max_pending_incoming: MAX_PENDING_INCOMING,
            max_pending_outgoing: MAX_PENDING_OUTGOING,
            max_established_per_peer: MAX_ESTABLISHED_PER_PEER,
            idle_connection_timeout: IDLE_CONNECTION_TIMEOUT,
            delivery_timeout: DELIVERY_TIMEOUT,
            max_pending_deliveries: MAX_PENDING_DELIVERIES,
            max_deliveries_in_flight_per_peer: MAX_DELIVERIES_IN_FLIGHT_PER_PEER,
            max_inbound_delivery_bytes: MAX_INBOUND_DELIVERY_BYTES,
        }
    }
}

/// How a [`Network`](crate::Network) starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Addresses to listen on: `/ip4/0.0.0.0/tcp/0`,
    /// `/ip4/0.0.0.0/udp/0/quic-v1`, or `/memory/N` when
    /// [`Config::enable_memory_transport`] is set. Port 0 picks a free port;
    /// [`Event::Listening`](crate::Event::Listening) tells which.
    pub listen_addresses: Vec<Multiaddr>,
    /// Addresses others can reach this node at, known to its operator (a
    /// public server's address and port). A relay serves only once it has
    /// one; without any, AutoNAT finds them.
    pub external_addresses: Vec<Multiaddr>,
    /// Nodes to join the DHT through, each address ending in `/p2p/<peer id>`.
    /// A LAN needs none: mDNS finds its nodes.
    pub bootstrap_peers: Vec<Multiaddr>,
    /// Find and announce nodes on the local network by multicast DNS.
    pub enable_mdns: bool,
    /// Also carry connections over libp2p's in-process memory transport
    /// (`/memory/N` addresses): for tests and simulations of many nodes in
    /// one process.
    pub enable_memory_transport: bool,
    /// Whether this node answers DHT queries.
    pub dht_mode: DhtMode,
    /// How often the DHT bootstrap runs again after the first
    /// ([`DHT_BOOTSTRAP_INTERVAL`]); `None`: only at start and when the
    /// routing table runs low. A simulation of many nodes in one process
    /// turns it off, or every node's refresh swamps the process.
    pub dht_bootstrap_interval: Option<Duration>,
    /// Relay connections for nodes that cannot be dialed (behind a NAT):
    /// for publicly reachable nodes. Every node can *use* relays.
    pub enable_relay_server: bool,
    /// Connection, stream and queue limits.
    pub limits: Limits,
    /// Keep envelopes for other devices' mailboxes with this policy; `None`
    /// only asks other nodes (`/xchat/mailbox/1` outbound only).
    pub mailbox: Option<crate::mailbox::Config>,
    /// How files are served and fetched (`/xchat/file/1`), and where the
    /// direct path listens.
    pub file: crate::file::Config,
}

impl Default for Config {
    /// Listens on every IPv4 interface over TCP and QUIC (ports picked by the
    /// system), no bootstrap peer, mDNS on, default limits, keeping
    /// mailboxes for others with the default policy.
    fn default() -> Self {
        Self {
            listen_addresses: vec![
                Multiaddr::empty().with(Protocol::Ip4([0, 0, 0, 0].into())).with(Protocol::Tcp(0)),
                Multiaddr::empty()
                    .with(Protocol::Ip4([0, 0, 0, 0].into()))
                    .with(Protocol::Udp(0))
                    .with(Protocol::QuicV1),
            ],
            external_addresses: Vec::new(),
            bootstrap_peers: Vec::new(),
            enable_mdns: true,
            enable_memory_transport: false,
            dht_mode: DhtMode::default(),
            dht_bootstrap_interval: Some(DHT_BOOTSTRAP_INTERVAL),
            enable_relay_server: false,
            limits: Limits::default(),
            mailbox: Some(crate::mailbox::Config::default()),
            file: crate::file::Config::default(),
        }
    }
}

/// The peer id an address ends with (`/p2p/<peer id>`), if any.
pub(crate) fn peer_of(address: &Multiaddr) -> Option<PeerId> {
    match address.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_of_reads_a_trailing_p2p_component() {
        let peer = PeerId::random();
        let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}").parse().unwrap();
        assert_eq!(peer_of(&address), Some(peer));
        assert_eq!(peer_of(&"/ip4/127.0.0.1/tcp/4001".parse().unwrap()), None);
    }

    #[test]
    fn default_limits_are_the_named_constants() {
        let limits = Limits::default();
        assert_eq!(limits.max_established_incoming, MAX_ESTABLISHED_INCOMING);
        assert_eq!(limits.delivery_timeout, DELIVERY_TIMEOUT);
        assert_eq!(limits.max_pending_deliveries, MAX_PENDING_DELIVERIES);
    }
}
