//! `/xchat/file/1`: a file's ciphertext, from the device that shared it to
//! a device that holds its descriptor, resumable from any chunk.
//!
//! A file is end-to-end encrypted before the network sees it
//! (`xchat_crypto::file`): chunks of 64 KiB sealed with AES-256-GCM, each
//! authenticated at its index. The network only moves that ciphertext, so
//! it need not protect it again; it must only keep strangers from fetching
//! (`Refused` without the fetch token) and keep its memory and sockets
//! bounded whatever peers do.
//!
//! # Protocol (`docs/network.md`, "/xchat/file/1")
//!
//! 1. The fetcher opens a `/xchat/file/1` stream in the libp2p connection
//!    (Noise or QUIC's TLS: both peers' transport keys authenticated) and
//!    sends a [`protocol::Request`]: file id, first chunk wanted, and a proof
//!    of the file's [`FetchToken`] over a transcript naming both peers.
//! 2. The server answers a [`protocol::Response`]: a refusal code, or the
//!    ciphertext length and, when it runs a direct listener and the fetcher
//!    asked for it, a TCP port and a one-time ticket.
//! 3. Direct path: the fetcher dials that port on the address of its libp2p
//!    connection to the server, shows the ticket, and reads the ciphertext
//!    from the plain TCP connection, without Noise's per-frame cipher and
//!    Yamux's flow window in the way. Otherwise (no offer, a relayed or
//!    in-memory connection, the port not reachable) it asks for the
//!    ciphertext on the stream itself.
//!
//! Why plain TCP is safe here: the ticket is sent only inside the
//! authenticated libp2p stream and is good for one connection within
//! [`TICKET_LIFETIME`]; what the TCP connection carries is ciphertext that
//! only the file key opens and whose every chunk authenticates at its index
//! (a changed, dropped, reordered or extended chunk fails `open_chunk`). An
//! on-path attacker can see the ciphertext's length (as it can on the
//! stream) or break the transfer (as it can any TCP connection); the
//! fetcher then resumes from its last verified chunk.
//!
//! # Who owns what
//!
//! ```text
//!  network task (swarm) --inbound /xchat/file/1 streams--> file service task
//!                                                           |- one serve task per fetch:
//!  direct listener (TCP) --ticket frames--> ticket table --'   reads the file on a blocking
//!                                                              thread, writes the socket
//!  NetworkHandle::fetch_file --> Fetch (owned by the caller; reads its socket as the caller asks)
//! ```
//!
//! The file service task is spawned by [`Network::run`](crate::Network::run)
//! and ends with it. It owns every serve task; chunks never cross the
//! network task's event loop. A [`Fetch`] has no task of its own: its
//! caller's reads pull the bytes, so the fetch holds at most one chunk and
//! the sockets' buffers, and a slow caller slows the sender (TCP or Yamux
//! flow control).

mod fetch;
pub mod protocol;
mod server;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use libp2p::StreamProtocol;
use xchat_crypto::file::{ChunkCipher, ChunkError, FetchToken};
use xchat_proto::content::FileId;

pub use fetch::Fetch;
pub(crate) use fetch::{Fetcher, fetch};
pub(crate) use server::run as serve;

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/xchat/file/1");

/// Most fetches this node serves at once, all peers together; more (with a
/// valid proof) are answered `Busy`.
pub const MAX_SERVES: usize = 32;
/// Most fetches this node serves at once to one peer; more are answered
/// `Busy`.
pub const MAX_SERVES_PER_PEER: usize = 4;
/// Most fetches this node runs at once ([`FetchError::TooManyFetches`]
/// past it).
pub const MAX_FETCHES: usize = 32;
/// Longest a peer may take to send its request (or ticket) once its stream
/// (or direct connection) is open, and the server to answer it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a direct path ticket stays good, and how long the server waits
/// for the fetcher's choice of path.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(10);
/// Longest the fetcher tries the direct path (connect, ticket, answer)
/// before it falls back to the libp2p stream.
pub const DIRECT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest one write or read of a transfer may wait for the other side: a
/// stalled reader (or sender) is dropped after it.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Most direct connections still owing their ticket at once; more are
/// closed at once.
pub const MAX_PENDING_DIRECT_CONNECTIONS: usize = 64;
/// Most inbound streams whose request is not yet read and checked, all
/// peers together; more are closed at once. Each lasts at most
/// [`REQUEST_TIMEOUT`].
pub const MAX_PENDING_REQUESTS: usize = 64;
/// Bytes of one read from the file and one write to the socket.
pub const IO_BUFFER_BYTES: usize = 256 * 1024;
/// Buffers of [`IO_BUFFER_BYTES`] one serve holds at most (so 1 MiB): the
/// file is read ahead of the socket by this much.
pub const IO_BUFFERS_PER_SERVE: usize = 4;

/// How a node serves and fetches files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the direct path listens (plain TCP, tickets only): `0.0.0.0:0`
    /// by default (every interface, a port the system picks). `None`: no
    /// direct path; fetchers take the libp2p stream.
    pub direct_listen: Option<SocketAddr>,
    /// See [`MAX_SERVES`].
    pub max_serves: usize,
    /// See [`MAX_SERVES_PER_PEER`].
    pub max_serves_per_peer: usize,
    /// See [`STALL_TIMEOUT`].
    pub stall_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            direct_listen: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
            max_serves: MAX_SERVES,
            max_serves_per_peer: MAX_SERVES_PER_PEER,
            stall_timeout: STALL_TIMEOUT,
        }
    }
}

/// What the node serves: looked up for each fetch, on a blocking thread
/// (an implementation may read a database).
pub trait FileSource: Send + Sync + 'static {
    /// The served file `file_id`, or `None` when this node does not serve
    /// it (the fetcher is told `Refused`, as for a bad proof).
    fn lookup(&self, file_id: &FileId) -> Option<ServedFile>;
}

/// A file this node serves: where its ciphertext is and the token fetchers
/// must prove.
#[derive(Clone)]
pub struct ServedFile {
    /// The encrypted file (the exact output of `xchat_crypto::file::encrypt`).
    pub path: PathBuf,
    /// The file's fetch token (`FileKey::fetch_token`).
    pub token: FetchToken,
}

impl std::fmt::Debug for ServedFile {
    // The path may hold a user's file name: not printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedFile").finish_non_exhaustive()
    }
}

/// A [`FileSource`] in memory: the files the node serves now. Clones share
/// the same files.
#[derive(Clone, Default)]
pub struct FileRegistry {
    files: Arc<Mutex<HashMap<FileId, ServedFile>>>,
}

impl FileRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `file_id` from `file` (replacing what was served under it).
    pub fn insert(&self, file_id: FileId, file: ServedFile) {
        self.lock().insert(file_id, file);
    }

    /// Stops serving `file_id`; returns whether it was served. Fetches
    /// under way finish.
    pub fn remove(&self, file_id: &FileId) -> bool {
        self.lock().remove(file_id).is_some()
    }

    /// How many files are served.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no file is served.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FileId, ServedFile>> {
        // A panic while holding the lock cannot leave the map half-changed.
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for FileRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRegistry").field("files", &self.len()).finish()
    }
}

impl FileSource for FileRegistry {
    fn lookup(&self, file_id: &FileId) -> Option<ServedFile> {
        self.lock().get(file_id).cloned()
    }
}

/// Which way the ciphertext may come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutePolicy {
    /// The direct TCP path when the server offers it and it can be reached,
    /// else the libp2p stream.
    #[default]
    Any,
    /// The libp2p stream only (Noise and Yamux, or QUIC).
    StreamOnly,
}

/// Which way a fetch's ciphertext comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A plain TCP connection to the server, opened with a ticket.
    Direct,
    /// The `/xchat/file/1` stream in the libp2p connection.
    Stream,
}

/// What to fetch.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// The file, from its descriptor.
    pub file_id: FileId,
    /// The file's fetch token, from the key in its descriptor
    /// (`FileKey::fetch_token`).
    pub token: FetchToken,
    /// The first chunk wanted: 0, or the one after the last chunk verified.
    pub from_chunk: u32,
    /// Which way the ciphertext may come.
    pub route: RoutePolicy,
}

/// One chunk of a file's ciphertext as it arrived, not yet verified:
/// [`EncryptedChunk::open`] (or `ChunkCipher::open_chunk`) checks it.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedChunk {
    index: u32,
    is_last: bool,
    bytes: Vec<u8>,
}

impl EncryptedChunk {
    /// The chunk's index in the file.
    pub const fn index(&self) -> u32 {
        self.index
    }

    /// Whether this is the file's last chunk.
    pub const fn is_last(&self) -> bool {
        self.is_last
    }

    /// The sealed chunk (ciphertext and tag).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The sealed chunk, to store as it is.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Verifies and decrypts the chunk at its index and place.
    ///
    /// # Errors
    /// [`ChunkError::Decryption`]: not this file's chunk at this place (a
    /// wrong key, a changed chunk, a lying server).
    pub fn open(self, cipher: &ChunkCipher) -> Result<Vec<u8>, ChunkError> {
        let Self { index, is_last, mut bytes } = self;
        cipher.open_chunk(index, is_last, &mut bytes)?;
        Ok(bytes)
    }
}

impl std::fmt::Debug for EncryptedChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedChunk")
            .field("index", &self.index)
            .field("is_last", &self.is_last)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Why a fetch failed. Every case but `Refused` and `OutOfRange` may pass:
/// try again later, from the chunk after the last one verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The peer could not be reached.
    #[error("peer unreachable")]
    Unreachable,
    /// The peer does not speak `/xchat/file/1`.
    #[error("peer does not speak the file protocol")]
    UnsupportedProtocol,
    /// The peer does not serve this file, or the token is not the file's:
    /// the peer says no more.
    #[error("fetch refused")]
    Refused,
    /// The peer serves as many fetches as it allows.
    #[error("peer busy")]
    Busy,
    /// The first chunk asked for is past the file's last.
    #[error("first chunk past the end of the file")]
    OutOfRange,
    /// The peer cannot read the file now.
    #[error("file unavailable at the peer")]
    Unavailable,
    /// The peer broke the protocol (an unknown answer, an impossible length).
    #[error("peer broke the file protocol")]
    Malformed,
    /// The connection closed before the transfer ended.
    #[error("connection lost")]
    ConnectionLost,
    /// The peer did not answer, or sent nothing for the stall timeout.
    #[error("peer timed out")]
    Timeout,
    /// This node runs [`MAX_FETCHES`] fetches already.
    #[error("too many fetches in flight")]
    TooManyFetches,
    /// The network task has stopped.
    #[error("network stopped")]
    Stopped,
}

#[cfg(test)]
mod tests {
    use xchat_crypto::file::FileKey;

    use super::*;

    #[test]
    fn registry_serves_what_was_inserted_until_removed() {
        let registry = FileRegistry::new();
        let id = FileId::from_bytes([1; 16]);
        let token = FileKey::from_bytes(&[2; 32]).fetch_token();
        assert!(registry.lookup(&id).is_none());
        registry.insert(id, ServedFile { path: "/secret/name.pdf".into(), token });
        assert!(registry.clone().lookup(&id).is_some());
        assert_eq!(format!("{registry:?}"), "FileRegistry { files: 1 }");
        assert_eq!(format!("{:?}", registry.lookup(&id).unwrap()), "ServedFile { .. }");
        assert!(registry.remove(&id));
        assert!(registry.is_empty());
    }
}
