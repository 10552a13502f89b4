//! The swarm: which transports carry connections, and which protocols run on
//! them. Built once by [`build`]; driven only by the network task.

use libp2p::core::transport::{MemoryTransport, OptionalTransport, Transport, upgrade};
use libp2p::identity::Keypair;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::swarm::{NetworkBehaviour, behaviour::toggle::Toggle};
use libp2p::{
    StreamProtocol, Swarm, SwarmBuilder, autonat, connection_limits, dcutr, identify, kad, mdns,
    noise, ping, relay, request_response, tcp, yamux,
};

use crate::config::{
    Config, DHT_QUERY_TIMEOUT, DhtMode, MAX_DHT_RECORD_BYTES, MAX_DHT_RECORDS,
    MAX_NEGOTIATING_STREAMS_PER_CONNECTION, MAX_STREAMS_PER_CONNECTION, RELAY_MAX_CIRCUIT_BYTES,
    RELAY_MAX_CIRCUIT_DURATION, RELAY_MAX_CIRCUITS, RELAY_MAX_RESERVATIONS,
};
use crate::frame::InboundBudget;
use crate::mailbox;

/// Kademlia's protocol name: xchat's own DHT, never the public IPFS one
/// (`/ipfs/kad/1.0.0`), so xchat nodes only ever route among themselves.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/xchat/kad/1");

/// What identify announces as the protocol family of this node; a peer of
/// another family is not added to the DHT.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/xchat/1";

/// Why a network could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Noise handshake could not be set up with the transport key.
    #[error("noise setup failed")]
    Noise(#[from] noise::Error),
    /// The mDNS socket could not be opened.
    #[error("mdns setup failed")]
    Mdns(#[source] std::io::Error),
    /// The transport key is not an ed25519 key.
    #[error("the transport key must be ed25519")]
    NotEd25519,
    /// A bootstrap address does not end in `/p2p/<peer id>`.
    #[error("bootstrap address without a peer id")]
    BootstrapWithoutPeerId,
    /// A configured limit is zero where at least one is needed.
    #[error("limit {name} must be at least 1")]
    ZeroLimit {
        /// The limit's field in [`crate::config::Limits`].
        name: &'static str,
    },
}

impl From<std::convert::Infallible> for BuildError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// Every protocol a node runs, composed. Field order is poll order: limits
/// first, so a connection over a limit is refused before anything else sees
/// it.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<MemoryStore>,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) mailbox: request_response::Behaviour<mailbox::Codec>,
    /// Raw streams for `/xchat/delivery/2` and `/xchat/file/1`: their links,
    /// the file service and fetches read and write them outside the
    /// network task.
    pub(crate) streams: libp2p_stream::Behaviour,
    /// Listens through relays (`/p2p-circuit` addresses) and dials through
    /// them.
    pub(crate) relay_client: relay::client::Behaviour,
    /// Relays for others, when [`Config::enable_relay_server`].
    pub(crate) relay_server: Toggle<relay::Behaviour>,
    /// Upgrades a relayed connection to a direct one by hole punching.
    pub(crate) dcutr: dcutr::Behaviour,
    /// Asks peers to dial back, to learn whether this node is reachable
    /// (and so whether [`DhtMode::Auto`] makes it a DHT server).
    pub(crate) autonat: autonat::Behaviour,
}

fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(MAX_STREAMS_PER_CONNECTION);
    config
}

/// Builds the swarm for `keypair` (the device's transport key: the peer id
/// is derived from it) and `config`, listening on nothing yet.
pub(crate) fn build(keypair: Keypair, config: &Config) -> Result<Swarm<Behaviour>, BuildError> {
    if keypair.clone().try_into_ed25519().is_err() {
        return Err(BuildError::NotEd25519);
    }
    let limits = &config.limits;
    for (name, value) in [
        ("max_pending_deliveries", limits.max_pending_deliveries),
        ("max_deliveries_in_flight_per_peer", limits.max_deliveries_in_flight_per_peer),
        ("max_inbound_delivery_bytes", limits.max_inbound_delivery_bytes),
    ] {
        if value == 0 {
            return Err(BuildError::ZeroLimit { name });
        }
    }
    // Everything that can fail is made before the builder, whose closures
    // then cannot.
    let behaviour = behaviour(&keypair, config)?;
    let memory = if config.enable_memory_transport {
        OptionalTransport::some(
            MemoryTransport::default()
                .upgrade(upgrade::Version::V1)
                .authenticate(noise::Config::new(&keypair)?)
                .multiplex(yamux_config()),
        )
    } else {
        OptionalTransport::none()
    };
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux_config)?
        .with_quic_config(|mut quic| {
            quic.max_concurrent_stream_limit =
                u32::try_from(MAX_STREAMS_PER_CONNECTION).unwrap_or(u32::MAX);
            quic
        })
        .with_other_transport(|_| memory)?
        .with_relay_client(noise::Config::new, yamux_config)?
        .with_behaviour(|_, relay_client| behaviour(relay_client))?
        .with_swarm_config(|swarm| {
            swarm
                .with_idle_connection_timeout(limits.idle_connection_timeout)
                .with_max_negotiating_inbound_streams(MAX_NEGOTIATING_STREAMS_PER_CONNECTION)
        })
        .build();
    Ok(swarm)
}

/// Everything of the [`Behaviour`] but the relay client, which the swarm
/// builder makes with the relay transport.
fn behaviour(
    key: &Keypair,
    config: &Config,
) -> Result<impl FnOnce(relay::client::Behaviour) -> Behaviour + use<>, BuildError> {
    let local = key.public().to_peer_id();
    let limits = &config.limits;

    let connection_limits = connection_limits::ConnectionLimits::default()
        .with_max_established_incoming(Some(limits.max_established_incoming))
        .with_max_established_outgoing(Some(limits.max_established_outgoing))
        .with_max_pending_incoming(Some(limits.max_pending_incoming))
        .with_max_pending_outgoing(Some(limits.max_pending_outgoing))
        .with_max_established_per_peer(Some(limits.max_established_per_peer));

    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config.set_query_timeout(DHT_QUERY_TIMEOUT);
    kad_config.set_periodic_bootstrap_interval(config.dht_bootstrap_interval);
    // Every record a peer sends is checked (`record::validate`) before the
    // network task stores it.
    kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
    let store = MemoryStore::with_config(
        local,
        MemoryStoreConfig {
            max_records: MAX_DHT_RECORDS,
            max_value_bytes: MAX_DHT_RECORD_BYTES,
            ..MemoryStoreConfig::default()
        },
    );
    let mut kad = kad::Behaviour::with_config(local, store, kad_config);
    kad.set_mode(match config.dht_mode {
        DhtMode::Server => Some(kad::Mode::Server),
        DhtMode::Client => Some(kad::Mode::Client),
        DhtMode::Auto => None,
    });
    for address in &config.bootstrap_peers {
        let peer = crate::config::peer_of(address).ok_or(BuildError::BootstrapWithoutPeerId)?;
        kad.add_address(&peer, address.clone());
    }

    let mdns = if config.enable_mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), local)
                .map_err(BuildError::Mdns)?,
        )
    } else {
        None
    };

    // A node that keeps no mailboxes does not offer the protocol, so
    // senders never pick it.
    let mailbox_support = if config.mailbox.is_some() {
        request_response::ProtocolSupport::Full
    } else {
        request_response::ProtocolSupport::Outbound
    };
    let mailbox = request_response::Behaviour::with_codec(
        mailbox::Codec { budget: InboundBudget::new(mailbox::MAX_INBOUND_MAILBOX_BYTES) },
        [(mailbox::PROTOCOL, mailbox_support)],
        request_response::Config::default()
            .with_request_timeout(limits.delivery_timeout)
            .with_max_concurrent_streams(mailbox::MAX_MAILBOX_STREAMS_PER_CONNECTION),
    );

    let relay_server = config.enable_relay_server.then(|| {
        relay::Behaviour::new(
            local,
            relay::Config {
                max_reservations: RELAY_MAX_RESERVATIONS,
                max_circuits: RELAY_MAX_CIRCUITS,
                max_circuit_duration: RELAY_MAX_CIRCUIT_DURATION,
                max_circuit_bytes: RELAY_MAX_CIRCUIT_BYTES,
                ..relay::Config::default()
            },
        )
    });
    let identify = identify::Behaviour::new(identify::Config::new(
        IDENTIFY_PROTOCOL_VERSION.to_owned(),
        key.public(),
    ));
    let limits = connection_limits::Behaviour::new(connection_limits);
    Ok(move |relay_client| Behaviour {
        limits,
        identify,
        ping: ping::Behaviour::new(ping::Config::default()),
        kad,
        mdns: mdns.into(),
        mailbox,
        streams: libp2p_stream::Behaviour::new(),
        relay_client,
        relay_server: relay_server.into(),
        dcutr: dcutr::Behaviour::new(local),
        autonat: autonat::Behaviour::new(local, autonat::Config::default()),
    })
}

/// Whether `peer` speaks xchat's DHT, from what identify told.
pub(crate) fn speaks_kad(protocols: &[StreamProtocol]) -> bool {
    protocols.contains(&KAD_PROTOCOL)
}
