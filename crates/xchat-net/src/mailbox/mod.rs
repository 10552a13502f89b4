//! `/xchat/mailbox/1`: envelopes left for an offline device on the nodes
//! closest to its mailbox key in the DHT, fetched and deleted by the
//! mailbox's owner.
//!
//! The messages, proofs of work and signatures are xchat-proto's
//! ([`xchat_proto::mailbox`], `docs/wire.md`); this module carries them:
//!
//! - one request and one response per stream (rust-libp2p
//!   `request-response`), each one [`frame`](crate::frame): a request of at
//!   most [`MAX_REQUEST_BYTES`], a response of at most
//!   [`MAX_RESPONSE_BYTES`], both checked before allocation, inbound
//!   requests drawing on a node-wide budget ([`MAX_INBOUND_MAILBOX_BYTES`]);
//! - [`Server`]: a mailbox node's checks, quotas and expiry, sans-IO, over a
//!   [`Storage`] ([`MemoryStorage`] here; the node's encrypted database
//!   implements it to survive restarts); the proof of work it asks rises
//!   with its load ([`load`] has the rule);
//! - [`store`]: a sender's side of a store: mints the stamp off the async
//!   runtime, stores on the closest nodes, and pays once more for the nodes
//!   that ask more work, up to what the sender is willing to pay;
//! - [`dht_key`]: where in the DHT a mailbox lives. A sender stores on the
//!   [`Config::replicas`] nodes closest to it
//!   ([`NetworkHandle::store_in_mailbox`](crate::NetworkHandle::store_in_mailbox)).

pub mod load;
mod sender;
mod server;
mod storage;

use std::io;
use std::sync::Arc;

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use xchat_proto::mailbox::{
    MAX_DEMANDED_DIFFICULTY_BITS, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, MAX_TTL_SECONDS, Response,
};

pub use sender::{Postage, StoreError, StoreReport, asked_difficulty, store};
pub use server::{NONCE_MEMORY_MS, PURGE_INTERVAL_MS, Server};
pub use storage::{ItemRecord, MailboxKey, MemoryStorage, Storage, StorageError, Usage};

use crate::frame::{InboundBudget, Reservation, read_frame, write_frame};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/xchat/mailbox/1");

/// Fewest bits of proof of work a node asks of a store by default (about
/// 65 000 SHA-256 computations for the sender: milliseconds): what a quiet
/// node asks.
pub const MIN_DIFFICULTY_BITS: u8 = 16;
/// Most bits of proof of work a node asks by default, however loaded (about
/// 4 million SHA-256 computations: about a second on one core). Below
/// xchat-proto's [`MAX_DEMANDED_DIFFICULTY_BITS`], the most any node may ask.
pub const MAX_DIFFICULTY_BITS: u8 = 22;
/// The window a node counts its stores in to know its load (10 s): the
/// difficulty it asks follows a burst at once and falls back within two
/// windows after it ([`load`]).
pub const LOAD_WINDOW_MS: u64 = 10 * 1000;
/// Stores accepted in one [`LOAD_WINDOW_MS`] at which a node asks one bit
/// more than its minimum; each doubling of them asks one more (10 stores a
/// second: a single peer's sustained request rate,
/// [`REQUESTS_PER_SECOND_PER_PEER`]).
pub const BUSY_STORES_PER_WINDOW: u64 = 100;
/// Most bits of proof of work a sender pays for one store by default: the
/// most any node may ask. A node asking more (it cannot, honestly) is not
/// paid: the store fails there and the sender's own retries take over.
pub const MAX_PAID_DIFFICULTY_BITS: u8 = MAX_DEMANDED_DIFFICULTY_BITS;
/// Nodes a sender stores each envelope on by default (k).
pub const REPLICAS: usize = 3;
/// A node keeps a mailbox when fewer than this many times
/// [`Config::replicas`] peers it knows are closer to the mailbox's DHT key:
/// the slack absorbs differences between nodes' views of the DHT.
pub const RESPONSIBILITY_SLACK: usize = 2;
/// Most envelopes a node keeps for one mailbox.
pub const MAX_ITEMS_PER_MAILBOX: u64 = 1024;
/// Most envelope bytes a node keeps for one mailbox (32 MiB).
pub const MAX_BYTES_PER_MAILBOX: u64 = 32 * 1024 * 1024;
/// Most envelopes a node keeps, all mailboxes.
pub const MAX_TOTAL_ITEMS: u64 = 65_536;
/// Most envelope bytes a node keeps, all mailboxes (1 GiB).
pub const MAX_TOTAL_BYTES: u64 = 1024 * 1024 * 1024;
/// Most fetch and delete nonces a node remembers against replays.
pub const MAX_REMEMBERED_NONCES: usize = 65_536;
/// Mailbox requests one peer may make per second, sustained.
pub const REQUESTS_PER_SECOND_PER_PEER: u64 = 10;
/// Mailbox requests one peer may make at once after a quiet spell.
pub const REQUEST_BURST_PER_PEER: u64 = 64;
/// Most peers whose request rate a node tracks at once; past it, peers
/// that have been quiet long enough to be owed a full burst are forgotten.
pub const MAX_RATE_TRACKED_PEERS: usize = 4096;
/// Most bytes of inbound mailbox requests a node holds while reading them,
/// all peers together (32 MiB).
pub const MAX_INBOUND_MAILBOX_BYTES: usize = 32 * 1024 * 1024;
/// Most mailbox streams open at once on one connection, both directions.
pub const MAX_MAILBOX_STREAMS_PER_CONNECTION: usize = 8;
/// Most mailbox requests this node has queued or sent and awaits a response
/// for, all peers.
pub const MAX_PENDING_MAILBOX_REQUESTS: usize = 256;
/// Most mailbox requests this node has on the wire to one peer; the others
/// wait their turn. Half of [`MAX_MAILBOX_STREAMS_PER_CONNECTION`], so two
/// nodes storing in each other's mailboxes at once stay within both sides'
/// stream limit, which drops the streams beyond it.
pub const MAX_MAILBOX_REQUESTS_IN_FLIGHT_PER_PEER: usize = MAX_MAILBOX_STREAMS_PER_CONNECTION / 2;
/// Most DHT lookups of closest peers awaited at once.
pub const MAX_PENDING_LOOKUPS: usize = 64;

/// A mailbox node's policy. [`Config::default`] is this module's constants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// See [`MIN_DIFFICULTY_BITS`]. At most
    /// [`MAX_DEMANDED_DIFFICULTY_BITS`]; the [`Server`] uses that beyond.
    pub min_difficulty_bits: u8,
    /// See [`MAX_DIFFICULTY_BITS`]. Between `min_difficulty_bits` and
    /// [`MAX_DEMANDED_DIFFICULTY_BITS`]; the [`Server`] uses the nearest
    /// beyond.
    pub max_difficulty_bits: u8,
    /// See [`LOAD_WINDOW_MS`]; tests shorten it.
    pub load_window_ms: u64,
    /// See [`BUSY_STORES_PER_WINDOW`].
    pub busy_stores_per_window: u64,
    /// Longest a node keeps an envelope, in seconds; a longer TTL asked by
    /// the sender is cut to it. At most xchat-proto's [`MAX_TTL_SECONDS`].
    pub max_ttl_seconds: u32,
    /// See [`REPLICAS`].
    pub replicas: usize,
    /// See [`MAX_ITEMS_PER_MAILBOX`].
    pub max_items_per_mailbox: u64,
    /// See [`MAX_BYTES_PER_MAILBOX`].
    pub max_bytes_per_mailbox: u64,
    /// See [`MAX_TOTAL_ITEMS`].
    pub max_total_items: u64,
    /// See [`MAX_TOTAL_BYTES`].
    pub max_total_bytes: u64,
    /// See [`MAX_REMEMBERED_NONCES`].
    pub max_remembered_nonces: usize,
    /// See [`REQUESTS_PER_SECOND_PER_PEER`].
    pub requests_per_second_per_peer: u64,
    /// See [`REQUEST_BURST_PER_PEER`].
    pub request_burst_per_peer: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            min_difficulty_bits: MIN_DIFFICULTY_BITS,
            max_difficulty_bits: MAX_DIFFICULTY_BITS,
            load_window_ms: LOAD_WINDOW_MS,
            busy_stores_per_window: BUSY_STORES_PER_WINDOW,
            max_ttl_seconds: MAX_TTL_SECONDS,
            replicas: REPLICAS,
            max_items_per_mailbox: MAX_ITEMS_PER_MAILBOX,
            max_bytes_per_mailbox: MAX_BYTES_PER_MAILBOX,
            max_total_items: MAX_TOTAL_ITEMS,
            max_total_bytes: MAX_TOTAL_BYTES,
            max_remembered_nonces: MAX_REMEMBERED_NONCES,
            requests_per_second_per_peer: REQUESTS_PER_SECOND_PER_PEER,
            request_burst_per_peer: REQUEST_BURST_PER_PEER,
        }
    }
}

/// Prefix of a mailbox's DHT key, so it never meets another kind of key.
const DHT_KEY_PREFIX: &[u8] = b"/xchat/mailbox/";

/// Where `mailbox` lives in the DHT: the nodes closest to this key keep it.
/// Kademlia hashes it (SHA-256) into its key space.
pub fn dht_key(mailbox: &MailboxKey) -> Vec<u8> {
    [DHT_KEY_PREFIX, mailbox].concat()
}

/// A mailbox request's bytes: encoded by the sender, decoded by the
/// [`Server`]; an inbound one holds its bytes' [`Reservation`] while the
/// server works on it.
pub(crate) struct Request {
    pub(crate) bytes: Vec<u8>,
    pub(crate) _reservation: Option<Reservation>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mailbox::Request({} bytes)", self.bytes.len())
    }
}

/// The `request-response` codec of the mailbox protocol.
#[derive(Debug, Clone)]
pub(crate) struct Codec {
    pub(crate) budget: Arc<InboundBudget>,
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut reservation = Reservation::empty(&self.budget);
        let bytes = read_frame(io, MAX_REQUEST_BYTES, Some(&mut reservation)).await?;
        Ok(Request { bytes, _reservation: Some(reservation) })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        // Only responses to this node's own requests: at most
        // MAX_PENDING_MAILBOX_REQUESTS of them, each within its limit.
        let bytes = read_frame(io, MAX_RESPONSE_BYTES, None).await?;
        Response::decode(&bytes).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request.bytes, MAX_REQUEST_BYTES).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response.encode(), MAX_RESPONSE_BYTES).await?;
        io.close().await
    }
}
