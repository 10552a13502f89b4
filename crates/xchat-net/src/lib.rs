//! xchat's peer-to-peer network: the rust-libp2p swarm and xchat's own
//! protocols on it. It moves bytes and tells who is online; it knows no
//! messenger rules (those are `xchat-core`'s) and never looks inside a
//! sealed envelope.
//!
//! Where it sits (`docs/architecture.md`): `xchat-node -> xchat-net ->
//! xchat-proto`. The node owns the runtime and feeds what arrives here to
//! the messenger core.
//!
//! - Transports: TCP and QUIC (and libp2p's in-process memory transport for
//!   tests and simulations), Noise, Yamux.
//! - Protocols: identify, ping, Kademlia on xchat's own name
//!   ([`KAD_PROTOCOL`], never the IPFS DHT), mDNS on the LAN (can be turned
//!   off), connection limits, [`delivery`] (`/xchat/delivery/2`) and
//!   [`mailbox`] (`/xchat/mailbox/1`), [`file`] (`/xchat/file/1`, with a
//!   direct TCP path for the ciphertext).
//! - The peer id is the device's *transport* key, handed in by the caller,
//!   never its identity key.
//!
//! Main types: [`Network`] (the task that owns the swarm), [`NetworkHandle`]
//! (cloneable, bounded commands in), [`Event`] (bounded events out),
//! [`Config`] and [`Limits`]. `docs/network.md` describes the protocols, the
//! frames and every limit.
//!
//! # Example
//!
//! Two devices in one process, over the memory transport: one delivers an
//! envelope, the other acknowledges it once kept.
//!
//! ```
//! use xchat_net::{Config, Event, Network};
//! use xchat_net::identity::Keypair;
//! use xchat_proto::envelope::{Envelope, MIN_SEALED_BYTES};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = |address: &str| Config {
//!     listen_addresses: vec![address.parse().unwrap()],
//!     enable_mdns: false,
//!     enable_memory_transport: true,
//!     ..Config::default()
//! };
//! let (alice, alice_handle, _alice_events) =
//!     Network::new(Keypair::generate_ed25519(), config("/memory/7101"))?;
//! let (bob, bob_handle, mut bob_events) =
//!     Network::new(Keypair::generate_ed25519(), config("/memory/7102"))?;
//! tokio::spawn(alice.run());
//! tokio::spawn(bob.run());
//!
//! let bob_id = bob_handle.local_peer_id();
//! alice_handle.add_address(bob_id, "/memory/7102".parse()?).await?;
//! let envelope = Envelope::new(vec![0x5e; MIN_SEALED_BYTES])?;
//! let sent = tokio::spawn({
//!     let envelope = envelope.clone();
//!     async move { alice_handle.deliver(bob_id, envelope).await }
//! });
//!
//! loop {
//!     if let Some(Event::EnvelopeReceived { envelope: got, delivery, .. }) = bob_events.recv().await {
//!         assert_eq!(got, envelope);
//!         // ... store it, then:
//!         bob_handle.acknowledge(delivery).await?;
//!         break;
//!     }
//! }
//! sent.await??;
//! # Ok(())
//! # }
//! ```

mod behaviour;
pub mod config;
pub mod delivery;
pub mod file;
pub mod frame;
pub mod mailbox;
mod network;
pub mod record;

pub use behaviour::{BuildError, IDENTIFY_PROTOCOL_VERSION, KAD_PROTOCOL};
pub use config::{Config, DhtMode, Limits};
pub use delivery::InboundDelivery;
pub use libp2p::{Multiaddr, PeerId, identity, multiaddr};
pub use network::{
    CommandError, DeliverError, DialError, Event, Events, FindError, ListenError, LookupError,
    MailboxError, Network, NetworkHandle, PublishError,
};
