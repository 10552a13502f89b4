//! The network task and its handle.
//!
//! # Who owns what
//!
//! One task, [`Network::run`], owns the libp2p [`Swarm`] and everything
//! the swarm's events change (pending dials, mailbox requests awaiting an
//! answer).
//! Nothing else touches them, so there is no lock. The rest of the node talks
//! to it in two bounded queues (rust-libp2p `examples/file-sharing`):
//!
//! ```text
//!  NetworkHandle (Clone) --Command--> [COMMAND_QUEUE_LEN] --> Network::run
//!       ^ oneshot reply per command <----------------------------'  |
//!  consumer <--Event-- [EVENT_QUEUE_LEN] <-- pending events <-- swarm events
//! ```
//!
//! A command that waits for the network (a dial, a mailbox request) carries
//! a oneshot sender; the task keeps it in a bounded map until the swarm
//! reports the outcome. Deliveries do not cross this task: they go on
//! [`delivery`] links, streams the handle and the links' tasks read and
//! write themselves.
//!
//! When the event queue is full, the task stops polling the swarm (so peers
//! feel backpressure through their streams) but keeps taking commands, so a
//! consumer that sends a command before it drains events cannot deadlock
//! the task. The task ends when every handle is dropped.
//!
//! The task knows no messenger rules: it moves envelopes and tells who is
//! online. Deciding what to send to whom is `xchat-core`'s.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::StreamExt;
use libp2p::kad::store::RecordStore;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError as SwarmDialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, identity::Keypair, kad, mdns};
use tokio::sync::{mpsc, oneshot};
use xchat_proto::envelope::Envelope;
use xchat_proto::mailbox::{Request as MailboxRequest, Response as MailboxResponse, StoreRequest};

use crate::behaviour::{self, Behaviour, BehaviourEvent, BuildError};
use crate::config::{
    COMMAND_QUEUE_LEN, Config, EVENT_QUEUE_LEN, MAX_PENDING_DIALS, MAX_PENDING_RECORD_QUERIES,
};
use crate::delivery::{self, InboundDelivery, LinkLimits, Links};
use crate::file::{self, Fetch, FetchError, FetchRequest, FileSource};
use crate::mailbox::{self, MailboxKey, MemoryStorage, Storage};
use crate::record::{self, RecordError};

/// What the network tells its consumer.
#[derive(Debug)]
pub enum Event {
    /// The node listens on `address` (the port chosen when 0 was asked).
    Listening {
        /// The address others can dial, on this host.
        address: Multiaddr,
    },
    /// A first connection to `peer` is up.
    PeerConnected {
        /// The peer.
        peer: PeerId,
    },
    /// The last connection to `peer` closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// mDNS found `peer` on the local network. Its addresses are known to
    /// the swarm: [`NetworkHandle::deliver`] reaches it with no dial.
    PeerDiscovered {
        /// The peer.
        peer: PeerId,
        /// Where it listens.
        addresses: Vec<Multiaddr>,
    },
    /// A peer delivered an envelope. Acknowledge it with
    /// [`NetworkHandle::acknowledge`] once it is kept (stored): only then
    /// does the sender learn it arrived. Dropping the [`InboundDelivery`]
    /// instead tells the sender it was not taken.
    EnvelopeReceived {
        /// The peer that sent it: a transport key, not an identity.
        from: PeerId,
        /// The envelope, checked for version and length only.
        envelope: Envelope,
        /// The sender awaits its acknowledgement through this.
        delivery: InboundDelivery,
    },
}

/// Why [`NetworkHandle::dial`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// No connection could be made to any address (refused, unreachable,
    /// wrong peer id, over a connection limit).
    #[error("dial failed: {reason}")]
    Unreachable {
        /// What libp2p reported, without user data.
        reason: String,
    },
    /// Too many dials are awaited already ([`MAX_PENDING_DIALS`]).
    #[error("too many dials in flight")]
    Busy,
    /// The network task has stopped.
    #[error("network stopped")]
    Stopped,
}

/// Why [`NetworkHandle::deliver`] did not get an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// The peer could not be reached (no address known, dial failed).
    #[error("peer unreachable")]
    Unreachable,
    /// The connection closed or the stream failed before the answer: the
    /// envelope may or may not have arrived.
    #[error("connection lost before the acknowledgement")]
    ConnectionLost,
    /// No answer within the delivery timeout.
    #[error("no acknowledgement in time")]
    Timeout,
    /// The peer does not speak `/xchat/delivery/2`.
    #[error("peer does not speak the delivery protocol")]
    UnsupportedProtocol,
    /// The peer read the envelope and did not take it (its consumer refused
    /// or is gone); try again later.
    #[error("peer did not take the envelope")]
    NotTaken,
    /// The peer found the envelope malformed: sending it again will not help.
    #[error("peer refused a malformed envelope")]
    Malformed,
    /// Too many deliveries await an answer already.
    #[error("too many deliveries in flight")]
    Busy,
    /// The network task has stopped.
    #[error("network stopped")]
    Stopped,
}

/// Why a mailbox request got no response. A node's refusal is a response:
/// `Ok(Response::Refused(code))`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailboxError {
    /// The node could not be reached.
    #[error("mailbox node unreachable")]
    Unreachable,
    /// The connection closed or the stream failed before the response.
    #[error("connection lost before the response")]
    ConnectionLost,
    /// No response within the timeout.
    #[error("no response in time")]
    Timeout,
    /// The node keeps no mailboxes.
    #[error("node keeps no mailboxes")]
    UnsupportedProtocol,
    /// Too many mailbox requests await a response already.
    #[error("too many mailbox requests in flight")]
    Busy,
    /// The network task has stopped.
    #[error("network stopped")]
    Stopped,
}

/// Why a record was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The record does not pass the checks every node makes.
    #[error("invalid record")]
    Invalid(#[from] RecordError),
    /// No other node stored it (none known, none answered in time).
    #[error("no node stored the record")]
    NotStored,
    /// This node's record store is full.
    #[error("record store full")]
    StoreFull,
    /// Too many DHT queries are awaited already.
    #[error("too many dht queries in flight")]
    Busy,
    /// The network task has stopped.
    #[error("network stopped")]
    Stopped,
}

/// Why no record was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    /// No valid record under the key was found.
    #[error("no valid record found")]
    NotFound,
    /// Too many DHT queries are awaited already.
    #[error("too many dht queries in flight")]
    Busy,
    /// The network task has stopped.
    #[error("network stopped")]
    Stopped,
}

/// Why a DHT lookup could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Too many lookups are awaited already.
    #[error("too many lookups in flight")]
    Busy,
    /// The network task has stopped.
    #[error("network stopped")]
    Stopped,
}

/// Why a command reached no running network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The network task has stopped.
    #[error("network stopped")]
    Stopped,
}

/// Why [`NetworkHandle::listen_on`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    /// No transport can listen on the address, or the OS refused it.
    #[error("cannot listen: {reason}")]
    Refused {
        /// What libp2p reported.
        reason: String,
    },
    /// The network task has stopped.
    #[error("network stopped")]
    Stopped,
}

enum Command {
    ListenOn { address: Multiaddr, reply: oneshot::Sender<Result<(), ListenError>> },
    Dial { peer: PeerId, addresses: Vec<Multiaddr>, reply: oneshot::Sender<Result<(), DialError>> },
    AddAddress { peer: PeerId, address: Multiaddr },
    AddExternalAddress { address: Multiaddr, reply: oneshot::Sender<()> },
    ConnectedPeers { reply: oneshot::Sender<Vec<PeerId>> },
    Mailbox { peer: PeerId, request: MailboxRequest, reply: MailboxReply },
    ClosestPeers { key: Vec<u8>, reply: oneshot::Sender<Result<Vec<PeerId>, LookupError>> },
    Publish { key: Vec<u8>, value: Vec<u8>, reply: oneshot::Sender<Result<(), PublishError>> },
    Find { key: Vec<u8>, reply: FindReply },
    Bootstrap { reply: oneshot::Sender<bool> },
    PeerIp { peer: PeerId, reply: oneshot::Sender<Option<IpAddr>> },
    DirectFileAddress { reply: oneshot::Sender<Option<SocketAddr>> },
}

/// Dials for the delivery links, through the network task: in order with
/// the commands before (an address added first is known to the dial).
#[derive(Debug, Clone)]
pub(crate) struct Dialer {
    commands: mpsc::Sender<Command>,
}

impl Dialer {
    /// Returns once a connection to `peer` is up (at once when one is).
    pub(crate) async fn dial(&self, peer: PeerId) -> Result<(), DialError> {
        let (reply, answer) = oneshot::channel();
        let addresses = Vec::new();
        self.commands
            .send(Command::Dial { peer, addresses, reply })
            .await
            .map_err(|_| DialError::Stopped)?;
        answer.await.map_err(|_| DialError::Stopped)?
    }
}

/// A cloneable handle to a running [`Network`]: every method is a bounded
/// command to the network task.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    fetcher: file::Fetcher,
    links: Links,
}

impl NetworkHandle {
    /// This node's peer id (from its transport key).
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn send(&self, command: Command) -> Result<(), CommandError> {
        self.commands.send(command).await.map_err(|_| CommandError::Stopped)
    }

    /// Listens on one more address.
    ///
    /// # Errors
    /// [`ListenError`].
    pub async fn listen_on(&self, address: Multiaddr) -> Result<(), ListenError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ListenOn { address, reply }).await.map_err(|_| ListenError::Stopped)?;
        answer.await.map_err(|_| ListenError::Stopped)?
    }

    /// Connects to `peer` at `addresses` (or at addresses the swarm knows,
    /// when empty); returns once a connection is up, at once when one is.
    ///
    /// # Errors
    /// [`DialError`].
    pub async fn dial(&self, peer: PeerId, addresses: Vec<Multiaddr>) -> Result<(), DialError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Dial { peer, addresses, reply })
            .await
            .map_err(|_| DialError::Stopped)?;
        answer.await.map_err(|_| DialError::Stopped)?
    }

    /// Tells the swarm where `peer` may be reached (for the DHT and later
    /// dials).
    ///
    /// # Errors
    /// [`CommandError::Stopped`].
    pub async fn add_address(&self, peer: PeerId, address: Multiaddr) -> Result<(), CommandError> {
        self.send(Command::AddAddress { peer, address }).await
    }

    /// Tells the swarm that others can reach this node at `address` (see
    /// [`Config::external_addresses`]); returns once the swarm knows it.
    ///
    /// # Errors
    /// [`CommandError::Stopped`].
    pub async fn add_external_address(&self, address: Multiaddr) -> Result<(), CommandError> {
        let (reply, done) = oneshot::channel();
        self.send(Command::AddExternalAddress { address, reply }).await?;
        done.await.map_err(|_| CommandError::Stopped)
    }

    /// Sends `envelope` to `peer` on its `/xchat/delivery/2` link and waits for the
    /// peer's acknowledgement. Dials the peer if needed, at addresses the
    /// swarm knows (added, discovered by mDNS, or found in the DHT).
    ///
    /// # Errors
    /// [`DeliverError`]; only `Ok` means the peer took the envelope.
    pub async fn deliver(&self, peer: PeerId, envelope: Envelope) -> Result<(), DeliverError> {
        self.links.deliver(peer, &envelope).await
    }

    /// Acknowledges a received envelope to its sender: call it once the
    /// envelope is kept.
    ///
    /// # Errors
    /// None today: the answer goes on the delivery's link, and a link that
    /// is gone leaves its sender to retry.
    pub async fn acknowledge(&self, delivery: InboundDelivery) -> Result<(), CommandError> {
        delivery.answer(delivery::Answer::Accepted);
        Ok(())
    }

    /// The peers with at least one connection up.
    ///
    /// # Errors
    /// [`CommandError::Stopped`].
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ConnectedPeers { reply }).await?;
        answer.await.map_err(|_| CommandError::Stopped)
    }

    /// Sends one mailbox request to `peer` and waits for its response (a
    /// refusal is a response). Dials the peer if needed.
    ///
    /// # Errors
    /// [`MailboxError`].
    pub async fn mailbox_request(
        &self,
        peer: PeerId,
        request: MailboxRequest,
    ) -> Result<MailboxResponse, MailboxError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Mailbox { peer, request, reply })
            .await
            .map_err(|_| MailboxError::Stopped)?;
        answer.await.map_err(|_| MailboxError::Stopped)?
    }

    /// The peers closest to `key` in the DHT (at most
    /// [`kad::K_VALUE`](libp2p::kad::K_VALUE), closest first), found by an
    /// iterative lookup; their addresses are kept for dialing them.
    ///
    /// # Errors
    /// [`LookupError`].
    pub async fn closest_peers(&self, key: Vec<u8>) -> Result<Vec<PeerId>, LookupError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ClosestPeers { key, reply }).await.map_err(|_| LookupError::Stopped)?;
        answer.await.map_err(|_| LookupError::Stopped)?
    }

    /// The nodes that keep `mailbox`: the closest to its
    /// [`dht_key`](mailbox::dht_key), closest first.
    ///
    /// # Errors
    /// [`LookupError`].
    pub async fn mailbox_nodes(&self, mailbox: &MailboxKey) -> Result<Vec<PeerId>, LookupError> {
        self.closest_peers(mailbox::dht_key(mailbox)).await
    }

    /// Leaves `request`'s envelope on the `replicas` nodes closest to its
    /// mailbox that take it: asks that many at once, and for each that does
    /// not store it (unreachable, keeps no mailboxes, refuses) the next
    /// closest, until enough stored it or no node is left. Returns every
    /// node's outcome; the caller decides how many `Stored` are enough.
    ///
    /// # Errors
    /// [`LookupError`] when the lookup could not start.
    pub async fn store_in_mailbox(
        &self,
        request: StoreRequest,
        replicas: usize,
    ) -> Result<Vec<(PeerId, Result<MailboxResponse, MailboxError>)>, LookupError> {
        let nodes = self.mailbox_nodes(&request.mailbox_key().to_bytes()).await?;
        let request = MailboxRequest::Store(request);
        let mut candidates = nodes.into_iter();
        let mut outcomes = Vec::new();
        let mut stored = 0;
        while stored < replicas {
            let wave: Vec<PeerId> = candidates.by_ref().take(replicas - stored).collect();
            if wave.is_empty() {
                break;
            }
            let stores = wave.into_iter().map(|peer| {
                let request = request.clone();
                async move { (peer, self.mailbox_request(peer, request).await) }
            });
            for (peer, outcome) in futures::future::join_all(stores).await {
                if matches!(outcome, Ok(MailboxResponse::Stored(_))) {
                    stored += 1;
                }
                outcomes.push((peer, outcome));
            }
        }
        Ok(outcomes)
    }

    /// Publishes `value` under `key` in the DHT (a key from
    /// [`record::prekey_key`] or [`record::device_list_key`]): checked here
    /// as every node will check it, kept by this node, then stored on the
    /// closest nodes. Kademlia republishes it while this node runs.
    ///
    /// # Errors
    /// [`PublishError`]; `NotStored` leaves the record in this node only.
    pub async fn publish_record(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), PublishError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Publish { key, value, reply })
            .await
            .map_err(|_| PublishError::Stopped)?;
        answer.await.map_err(|_| PublishError::Stopped)?
    }

    /// Finds the record under `key` in the DHT: the latest valid copy found
    /// (records failing [`record::validate`] are dropped). The caller still
    /// checks it is the identity it expects (`UnverifiedPreKeyRecord::verify`).
    ///
    /// # Errors
    /// [`FindError`].
    pub async fn find_record(&self, key: Vec<u8>) -> Result<Vec<u8>, FindError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Find { key, reply }).await.map_err(|_| FindError::Stopped)?;
        answer.await.map_err(|_| FindError::Stopped)?
    }

    /// Fetches a file's ciphertext from `peer` over `/xchat/file/1`
    /// (dialing it at known addresses if needed), from `request.from_chunk`
    /// on: returns once the peer granted the fetch, with a [`Fetch`] that
    /// yields the chunks in order as the caller reads them. Verify each
    /// ([`file::EncryptedChunk::open`]); after a cut, fetch again from the
    /// chunk after the last one verified.
    ///
    /// The bytes take a direct TCP connection to the peer when it offers one
    /// and `request.route` allows it, else the libp2p stream.
    ///
    /// # Errors
    /// [`FetchError`].
    pub async fn fetch_file(
        &self,
        peer: PeerId,
        request: FetchRequest,
    ) -> Result<Fetch, FetchError> {
        self.dial(peer, Vec::new()).await.map_err(|error| match error {
            DialError::Stopped => FetchError::Stopped,
            DialError::Unreachable { .. } | DialError::Busy => FetchError::Unreachable,
        })?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::PeerIp { peer, reply }).await.map_err(|_| FetchError::Stopped)?;
        let peer_ip = answer.await.map_err(|_| FetchError::Stopped)?;
        file::fetch(&self.fetcher, self.local_peer_id, peer, peer_ip, request).await
    }

    /// Where this node's direct file path listens (its port is what
    /// fetchers are told), once [`Network::run`] has bound it; `None` when
    /// there is none ([`file::Config::direct_listen`]).
    ///
    /// # Errors
    /// [`CommandError::Stopped`].
    pub async fn direct_file_address(&self) -> Result<Option<SocketAddr>, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::DirectFileAddress { reply }).await?;
        answer.await.map_err(|_| CommandError::Stopped)
    }

    /// Starts a DHT bootstrap (a lookup of this node's own id, which fills
    /// the routing table). Returns whether any peer was known to start from.
    ///
    /// # Errors
    /// [`CommandError::Stopped`].
    pub async fn bootstrap(&self) -> Result<bool, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Bootstrap { reply }).await?;
        answer.await.map_err(|_| CommandError::Stopped)
    }
}

/// What the task's loop takes next.
// Lives on the stack for one turn of the loop: boxing the large variant
// would cost an allocation per swarm event for nothing.
#[allow(clippy::large_enum_variant)]
enum Next {
    Command(Command),
    Swarm(SwarmEvent<BehaviourEvent>),
}

/// The receiving end of a network's events; bounded at [`EVENT_QUEUE_LEN`].
pub type Events = mpsc::Receiver<Event>;

/// The network task: owns the swarm. Create it with [`Network::new`] and
/// spawn [`Network::run`] on a tokio runtime.
pub struct Network {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// Events made, not yet in the queue. At most [`EVENT_QUEUE_LEN`] plus
    /// what one swarm event makes: the swarm is not polled while full.
    pending_events: VecDeque<Event>,
    pending_dials: HashMap<PeerId, Vec<oneshot::Sender<Result<(), DialError>>>>,
    /// Inbound `/xchat/delivery/2` links, until [`Network::run`] starts
    /// serving them, and what serving them needs.
    delivery_streams: Option<(libp2p_stream::IncomingStreams, delivery::Receiving)>,
    listen_addresses: Vec<Multiaddr>,
    external_addresses: Vec<Multiaddr>,
    /// This node's mailbox service, when it keeps mailboxes.
    mailbox_server: Option<mailbox::Server>,
    /// Mailbox requests on the wire, by request.
    pending_mailbox: HashMap<OutboundRequestId, (PeerId, MailboxReply)>,
    /// Per peer: how many mailbox requests are on the wire, and those
    /// waiting their turn (a peer drops streams beyond its limit).
    mailbox_outboxes: HashMap<PeerId, MailboxOutbox>,
    /// Mailbox requests queued or on the wire, all peers.
    mailbox_requests: usize,
    pending_lookups: HashMap<kad::QueryId, oneshot::Sender<Result<Vec<PeerId>, LookupError>>>,
    pending_puts: HashMap<kad::QueryId, oneshot::Sender<Result<(), PublishError>>>,
    /// Gets awaited, with the latest valid copy found so far.
    pending_finds: HashMap<kad::QueryId, (FindReply, Option<Found>)>,
    /// Remote addresses of the connections up, per peer: a fetch's direct
    /// path goes to the IP of one.
    connections: HashMap<PeerId, Vec<(ConnectionId, Multiaddr)>>,
    /// Inbound `/xchat/file/1` streams, until [`Network::run`] hands them to
    /// the file service.
    file_streams: Option<libp2p_stream::IncomingStreams>,
    file_source: Option<Arc<dyn FileSource>>,
    file_config: file::Config,
    /// Where the direct file path listens, once bound.
    direct_file_address: Option<SocketAddr>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("local_peer_id", self.swarm.local_peer_id())
            .field("pending_dials", &self.pending_dials.len())
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Builds the swarm for the device's transport key (an ed25519 libp2p
    /// keypair, not its identity key) and `config`. Listening starts when
    /// [`Network::run`] does.
    ///
    /// # Errors
    /// [`BuildError`].
    pub fn new(
        keypair: Keypair,
        config: Config,
    ) -> Result<(Self, NetworkHandle, Events), BuildError> {
        Self::with_mailbox_storage(keypair, config, Box::new(MemoryStorage::new()))
    }

    /// As [`Network::new`], keeping mailbox envelopes in `storage` (the
    /// node's database, so they survive a restart) when
    /// [`Config::mailbox`] is set.
    ///
    /// # Errors
    /// [`BuildError`].
    pub fn with_mailbox_storage(
        keypair: Keypair,
        config: Config,
        storage: Box<dyn Storage>,
    ) -> Result<(Self, NetworkHandle, Events), BuildError> {
        let swarm = behaviour::build(keypair, &config)?;
        let (command_sender, commands) = mpsc::channel(COMMAND_QUEUE_LEN);
        let (events, event_receiver) = mpsc::channel(EVENT_QUEUE_LEN);
        let mut control = swarm.behaviour().streams.new_control();
        // A fresh behaviour has no protocol registered yet.
        let file_streams = control.accept(file::PROTOCOL).ok();
        let limits = LinkLimits {
            timeout: config.limits.delivery_timeout,
            window: config.limits.max_deliveries_in_flight_per_peer,
        };
        let receiving = delivery::Receiving {
            events: events.clone(),
            budget: crate::frame::InboundBudget::new(config.limits.max_inbound_delivery_bytes),
            limits,
        };
        let delivery_streams = control.accept(delivery::PROTOCOL).ok().map(|s| (s, receiving));
        let handle = NetworkHandle {
            commands: command_sender.clone(),
            local_peer_id: *swarm.local_peer_id(),
            fetcher: file::Fetcher::new(control.clone(), config.file.stall_timeout),
            links: Links::new(
                Dialer { commands: command_sender.clone() },
                control,
                limits,
                config.limits.max_pending_deliveries,
            ),
        };
        let network = Self {
            swarm,
            commands,
            events,
            pending_events: VecDeque::new(),
            pending_dials: HashMap::new(),
            delivery_streams,
            listen_addresses: config.listen_addresses,
            external_addresses: config.external_addresses,
            mailbox_server: config.mailbox.map(|policy| mailbox::Server::new(policy, storage)),
            pending_mailbox: HashMap::new(),
            mailbox_outboxes: HashMap::new(),
            mailbox_requests: 0,
            pending_lookups: HashMap::new(),
            pending_puts: HashMap::new(),
            pending_finds: HashMap::new(),
            connections: HashMap::new(),
            file_streams,
            file_source: None,
            file_config: config.file,
            direct_file_address: None,
        };
        Ok((network, handle, event_receiver))
    }

    /// Serves the files `source` holds over `/xchat/file/1` (call before
    /// [`Network::run`]). Without a source every fetch is refused.
    pub fn set_file_source(&mut self, source: Arc<dyn FileSource>) {
        self.file_source = Some(source);
    }

    /// Binds the direct file path and spawns the file service; it ends when
    /// the returned guard drops, with the network task.
    async fn start_file_service(&mut self) -> Option<AbortOnDrop> {
        let streams = self.file_streams.take()?;
        let listener = match self.file_config.direct_listen {
            Some(address) => match tokio::net::TcpListener::bind(address).await {
                Ok(listener) => Some(listener),
                Err(error) => {
                    tracing::warn!(%address, %error, "no direct file path: cannot listen");
                    None
                }
            },
            None => None,
        };
        self.direct_file_address = listener.as_ref().and_then(|l| l.local_addr().ok());
        let service = file::serve(
            streams,
            listener,
            self.file_source.clone(),
            *self.swarm.local_peer_id(),
            self.file_config.clone(),
        );
        Some(AbortOnDrop(tokio::spawn(service)))
    }

    /// Drives the swarm until every [`NetworkHandle`] is dropped.
    pub async fn run(mut self) {
        for address in std::mem::take(&mut self.external_addresses) {
            self.swarm.add_external_address(address);
        }
        for address in std::mem::take(&mut self.listen_addresses) {
            if let Err(error) = self.swarm.listen_on(address.clone()) {
                tracing::warn!(%address, %error, "cannot listen");
            }
        }
        if self.swarm.behaviour_mut().kad.bootstrap().is_err() {
            tracing::debug!("no bootstrap peer: the DHT fills from mDNS and incoming peers");
        }
        let _file_service = self.start_file_service().await;
        let _delivery_service = self.delivery_streams.take().map(|(streams, receiving)| {
            AbortOnDrop(tokio::spawn(delivery::accept(streams, receiving)))
        });
        loop {
            let room = self.pending_events.len() < EVENT_QUEUE_LEN;
            let has_events = !self.pending_events.is_empty();
            // Each branch only borrows one field; the work on what came out
            // happens after the select, with all of `self`.
            let next = tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => Next::Command(command),
                    None => break,
                },
                permit = self.events.reserve(), if has_events => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.pending_events.pop_front() {
                            permit.send(event);
                        }
                        continue;
                    }
                    // The consumer is gone: keep serving the handles; events
                    // have nowhere to go.
                    Err(_) => {
                        self.pending_events.clear();
                        continue;
                    }
                },
                event = self.swarm.select_next_some(), if room => Next::Swarm(event),
            };
            match next {
                Next::Command(command) => self.on_command(command),
                Next::Swarm(event) => self.on_swarm_event(event),
            }
        }
        tracing::debug!("network task stopped: every handle dropped");
    }

    fn emit(&mut self, event: Event) {
        if self.events.is_closed() {
            return;
        }
        self.pending_events.push_back(event);
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::ListenOn { address, reply } => {
                let result = self
                    .swarm
                    .listen_on(address)
                    .map(drop)
                    .map_err(|error| ListenError::Refused { reason: error.to_string() });
                let _ = reply.send(result);
            }
            Command::Dial { peer, addresses, reply } => self.dial(peer, addresses, reply),
            Command::AddExternalAddress { address, reply } => {
                self.swarm.add_external_address(address);
                let _ = reply.send(());
            }
            Command::AddAddress { peer, address } => {
                self.swarm.add_peer_address(peer, address.clone());
                self.swarm.behaviour_mut().kad.add_address(&peer, address);
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::Mailbox { peer, request, reply } => {
                if self.mailbox_requests >= mailbox::MAX_PENDING_MAILBOX_REQUESTS {
                    let _ = reply.send(Err(MailboxError::Busy));
                    return;
                }
                self.mailbox_requests += 1;
                let outbox = self.mailbox_outboxes.entry(peer).or_default();
                outbox.queued.push_back((request.encode(), reply));
                self.send_queued_mailbox(peer);
            }
            Command::ClosestPeers { key, reply } => {
                if self.pending_lookups.len() >= mailbox::MAX_PENDING_LOOKUPS {
                    let _ = reply.send(Err(LookupError::Busy));
                    return;
                }
                let id = self.swarm.behaviour_mut().kad.get_closest_peers(key);
                self.pending_lookups.insert(id, reply);
            }
            Command::Publish { key, value, reply } => self.publish(key, value, reply),
            Command::Find { key, reply } => {
                if self.pending_finds.len() >= MAX_PENDING_RECORD_QUERIES {
                    let _ = reply.send(Err(FindError::Busy));
                    return;
                }
                let id = self.swarm.behaviour_mut().kad.get_record(kad::RecordKey::new(&key));
                self.pending_finds.insert(id, (reply, None));
            }
            Command::Bootstrap { reply } => {
                let _ = reply.send(self.swarm.behaviour_mut().kad.bootstrap().is_ok());
            }
            Command::PeerIp { peer, reply } => {
                let ip = self
                    .connections
                    .get(&peer)
                    .and_then(|connections| connections.iter().find_map(|(_, a)| direct_ip(a)));
                let _ = reply.send(ip);
            }
            Command::DirectFileAddress { reply } => {
                let _ = reply.send(self.direct_file_address);
            }
        }
    }

    fn dial(
        &mut self,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<(), DialError>>,
    ) {
        if self.swarm.is_connected(&peer) {
            let _ = reply.send(Ok(()));
            return;
        }
        if let Some(waiting) = self.pending_dials.get_mut(&peer) {
            // A dial to this peer is under way: wait for its outcome too.
            if waiting.len() < MAX_PENDING_DIALS {
                waiting.push(reply);
            } else {
                let _ = reply.send(Err(DialError::Busy));
            }
            return;
        }
        if self.pending_dials.len() >= MAX_PENDING_DIALS {
            let _ = reply.send(Err(DialError::Busy));
            return;
        }
        // Dial even while another dial to the peer (started by a delivery
        // or the DHT) is under way: these addresses may be the ones that work.
        let options = DialOpts::peer_id(peer)
            .condition(PeerCondition::Disconnected)
            .addresses(addresses)
            .extend_addresses_through_behaviour()
            .build();
        match self.swarm.dial(options) {
            Ok(()) => {
                self.pending_dials.insert(peer, vec![reply]);
            }
            Err(error) => {
                let _ = reply.send(Err(DialError::Unreachable { reason: dial_reason(&error) }));
            }
        }
    }

    fn finish_dial(&mut self, peer: PeerId, result: &Result<(), DialError>) {
        if let Some(waiting) = self.pending_dials.remove(&peer) {
            for reply in waiting {
                let _ = reply.send(result.clone());
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.emit(Event::Listening { address });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                connection_id,
                endpoint,
                ..
            } => {
                self.connections
                    .entry(peer_id)
                    .or_default()
                    .push((connection_id, endpoint.get_remote_address().clone()));
                self.finish_dial(peer_id, &Ok(()));
                if num_established.get() == 1 {
                    self.emit(Event::PeerConnected { peer: peer_id });
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, connection_id, .. } => {
                if let Some(connections) = self.connections.get_mut(&peer_id) {
                    connections.retain(|(id, _)| *id != connection_id);
                    if connections.is_empty() {
                        self.connections.remove(&peer_id);
                    }
                }
                if num_established == 0 {
                    self.emit(Event::PeerDisconnected { peer: peer_id });
                }
            }
            // A failed dial matters only while no other connection is up.
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. }
                if !self.swarm.is_connected(&peer) =>
            {
                let reason = dial_reason(&error);
                tracing::debug!(%peer, %reason, "dial failed");
                self.finish_dial(peer, &Err(DialError::Unreachable { reason }));
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Mailbox(event) => self.on_mailbox_event(event),
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetClosestPeers(result),
                ..
            }) => self.on_closest_peers(id, result),
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::PutRecord(result),
                ..
            }) => {
                if let Some(reply) = self.pending_puts.remove(&id) {
                    let _ = reply.send(result.map(drop).map_err(|_| PublishError::NotStored));
                }
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetRecord(result),
                step,
                ..
            }) => self.on_record_found(id, result, step.last),
            BehaviourEvent::Kad(kad::Event::InboundRequest {
                request: kad::InboundRequest::PutRecord { source, record: Some(record), .. },
            }) => self.on_inbound_record(source, record),
            // Only xchat nodes join xchat's routing table.
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })
                if behaviour::speaks_kad(&info.protocols) =>
            {
                for address in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, address);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, address) in found {
                    self.swarm.behaviour_mut().kad.add_address(&peer, address.clone());
                    by_peer.entry(peer).or_default().push(address);
                }
                for (peer, addresses) in by_peer {
                    self.emit(Event::PeerDiscovered { peer, addresses });
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. }) => {
                tracing::trace!(%peer, "dht routing updated");
            }
            _ => {}
        }
    }

    fn on_mailbox_event(
        &mut self,
        event: request_response::Event<mailbox::Request, MailboxResponse>,
    ) {
        use request_response::{Event as E, Message};
        match event {
            E::Message { peer, message: Message::Request { request, channel, .. }, .. } => {
                let Some(server) = self.mailbox_server.as_mut() else { return };
                let replicas = server.config().replicas;
                let local = kad::KBucketKey::from(*self.swarm.local_peer_id());
                let kad = &mut self.swarm.behaviour_mut().kad;
                let response = server.handle(unix_now_ms(), peer, &request.bytes, |mailbox| {
                    keeps(kad, local, mailbox, replicas)
                });
                if let MailboxResponse::Refused(code) = &response {
                    tracing::debug!(%peer, ?code, "mailbox request refused");
                }
                let _ = self.swarm.behaviour_mut().mailbox.send_response(channel, response);
            }
            E::Message { message: Message::Response { request_id, response }, .. } => {
                self.finish_mailbox(request_id, Ok(response));
            }
            E::OutboundFailure { request_id, error, peer, .. } => {
                tracing::debug!(%peer, %error, "mailbox request failed");
                let error = match error {
                    OutboundFailure::DialFailure => MailboxError::Unreachable,
                    OutboundFailure::Timeout => MailboxError::Timeout,
                    OutboundFailure::UnsupportedProtocols => MailboxError::UnsupportedProtocol,
                    OutboundFailure::ConnectionClosed | OutboundFailure::Io(_) => {
                        MailboxError::ConnectionLost
                    }
                };
                self.finish_mailbox(request_id, Err(error));
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound mailbox request failed");
            }
            E::ResponseSent { .. } => {}
        }
    }

    fn on_closest_peers(&mut self, id: kad::QueryId, result: kad::GetClosestPeersResult) {
        let Some(reply) = self.pending_lookups.remove(&id) else { return };
        // A lookup that timed out still reports the closest peers it found.
        let peers = match result {
            Ok(kad::GetClosestPeersOk { peers, .. })
            | Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
        };
        let mut found = Vec::with_capacity(peers.len());
        for kad::PeerInfo { peer_id, addrs } in peers {
            for address in addrs {
                self.swarm.add_peer_address(peer_id, address);
            }
            found.push(peer_id);
        }
        let _ = reply.send(Ok(found));
    }

    fn publish(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<(), PublishError>>,
    ) {
        if let Err(error) = record::validate(&key, &value, unix_now_ms()) {
            let _ = reply.send(Err(error.into()));
            return;
        }
        if self.pending_puts.len() >= MAX_PENDING_RECORD_QUERIES {
            let _ = reply.send(Err(PublishError::Busy));
            return;
        }
        let record = kad::Record::new(kad::RecordKey::new(&key), value);
        match self.swarm.behaviour_mut().kad.put_record(record, kad::Quorum::One) {
            Ok(id) => {
                self.pending_puts.insert(id, reply);
            }
            Err(error) => {
                tracing::warn!(%error, "record store refused our own record");
                let _ = reply.send(Err(PublishError::StoreFull));
            }
        }
    }

    /// A peer asks this node to keep a record: kept only if it passes
    /// [`record::validate`] and is later than the copy held.
    fn on_inbound_record(&mut self, source: PeerId, incoming: kad::Record) {
        let now_ms = unix_now_ms();
        let published_at_ms = match record::validate(incoming.key.as_ref(), &incoming.value, now_ms)
        {
            Ok(published_at_ms) => published_at_ms,
            Err(error) => {
                tracing::debug!(peer = %source, %error, "dht record refused");
                return;
            }
        };
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let held = store
            .get(&incoming.key)
            .and_then(|held| record::validate(held.key.as_ref(), &held.value, now_ms).ok());
        if held.is_some_and(|held_at_ms| held_at_ms >= published_at_ms) {
            return;
        }
        if let Err(error) = store.put(incoming) {
            tracing::debug!(%error, "dht record store full");
        }
    }

    fn on_record_found(&mut self, id: kad::QueryId, result: kad::GetRecordResult, last: bool) {
        let Some((_, best)) = self.pending_finds.get_mut(&id) else { return };
        if let Ok(kad::GetRecordOk::FoundRecord(kad::PeerRecord { record: found, peer })) = result {
            match record::validate(found.key.as_ref(), &found.value, unix_now_ms()) {
                Ok(at_ms) if best.as_ref().is_none_or(|(best_at_ms, _)| at_ms > *best_at_ms) => {
                    *best = Some((at_ms, found.value));
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(?peer, %error, "dht returned an invalid record"),
            }
        }
        if last && let Some((reply, best)) = self.pending_finds.remove(&id) {
            let _ = reply.send(best.map(|(_, value)| value).ok_or(FindError::NotFound));
        }
    }

    /// Puts `peer`'s queued mailbox requests on the wire, up to
    /// [`mailbox::MAX_MAILBOX_REQUESTS_IN_FLIGHT_PER_PEER`]; drops those
    /// whose caller stopped waiting.
    fn send_queued_mailbox(&mut self, peer: PeerId) {
        let Some(outbox) = self.mailbox_outboxes.get_mut(&peer) else { return };
        while outbox.in_flight < mailbox::MAX_MAILBOX_REQUESTS_IN_FLIGHT_PER_PEER {
            let Some((bytes, reply)) = outbox.queued.pop_front() else { break };
            if reply.is_closed() {
                self.mailbox_requests = self.mailbox_requests.saturating_sub(1);
                continue;
            }
            let request = mailbox::Request { bytes, _reservation: None };
            let id = self.swarm.behaviour_mut().mailbox.send_request(&peer, request);
            outbox.in_flight += 1;
            self.pending_mailbox.insert(id, (peer, reply));
        }
        if outbox.in_flight == 0 && outbox.queued.is_empty() {
            self.mailbox_outboxes.remove(&peer);
        }
    }

    fn finish_mailbox(
        &mut self,
        id: OutboundRequestId,
        result: Result<MailboxResponse, MailboxError>,
    ) {
        let Some((peer, reply)) = self.pending_mailbox.remove(&id) else { return };
        let _ = reply.send(result);
        self.mailbox_requests = self.mailbox_requests.saturating_sub(1);
        if let Some(outbox) = self.mailbox_outboxes.get_mut(&peer) {
            outbox.in_flight = outbox.in_flight.saturating_sub(1);
        }
        self.send_queued_mailbox(peer);
    }
}

type MailboxReply = oneshot::Sender<Result<MailboxResponse, MailboxError>>;
type FindReply = oneshot::Sender<Result<Vec<u8>, FindError>>;
/// A valid record's publication time and value.
type Found = (u64, Vec<u8>);

/// Milliseconds since the Unix epoch by this machine's clock: the mailbox
/// service's time (clock skew checks, TTLs). A clock before 1970 reads 0.
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// Whether this node keeps `mailbox`: fewer than `replicas` x
/// [`mailbox::RESPONSIBILITY_SLACK`] peers it knows are closer to the
/// mailbox's DHT key than it is.
fn keeps(
    kad: &mut kad::Behaviour<kad::store::MemoryStore>,
    local: kad::KBucketKey<PeerId>,
    mailbox: &MailboxKey,
    replicas: usize,
) -> bool {
    let target = kad::KBucketKey::from(mailbox::dht_key(mailbox));
    let own = local.distance(&target);
    let allowed = replicas.saturating_mul(mailbox::RESPONSIBILITY_SLACK);
    let closer = kad
        .get_closest_local_peers(&target)
        .take_while(|peer| peer.distance(&target) < own)
        .take(allowed)
        .count();
    closer < allowed
}

/// One peer's mailbox requests: at most
/// [`mailbox::MAX_MAILBOX_REQUESTS_IN_FLIGHT_PER_PEER`] on the wire, the rest
/// queued in order (bounded by [`mailbox::MAX_PENDING_MAILBOX_REQUESTS`]).
#[derive(Default)]
struct MailboxOutbox {
    in_flight: usize,
    queued: VecDeque<(Vec<u8>, MailboxReply)>,
}

/// The IP a direct connection's remote address starts with; `None` for a
/// relayed (`/p2p-circuit`) or in-memory one.
fn direct_ip(address: &Multiaddr) -> Option<IpAddr> {
    if address.iter().any(|part| matches!(part, Protocol::P2pCircuit)) {
        return None;
    }
    match address.iter().next() {
        Some(Protocol::Ip4(ip)) => Some(ip.into()),
        Some(Protocol::Ip6(ip)) => Some(ip.into()),
        _ => None,
    }
}

/// Aborts a spawned task when dropped: the file service ends with the
/// network task, however that ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A dial error's reason, for logs and [`DialError::Unreachable`]: libp2p's
/// text names addresses and peer ids, never user data.
fn dial_reason(error: &SwarmDialError) -> String {
    error.to_string()
}
