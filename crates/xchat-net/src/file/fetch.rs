//! The fetching side of `/xchat/file/1`: [`fetch`] opens the stream, proves
//! the token, takes the direct path when it can, and returns a [`Fetch`]
//! that reads chunks as its caller asks for them.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt};
use libp2p::{PeerId, Stream};
use libp2p_stream::{Control, OpenStreamError};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;
use tokio_util::compat::TokioAsyncReadCompatExt;
use xchat_crypto::file::{ChunkCipher, ENCRYPTED_CHUNK_BYTES};

use super::protocol::{
    self, CHOICE_SEND_ON_STREAM, DirectOffer, MAX_RESPONSE_BYTES, REQUEST_BYTES, Request, Response,
    Status, TICKET_ACCEPTED_BYTES, TICKET_FRAME_BYTES,
};
use super::{
    DIRECT_CONNECT_TIMEOUT, EncryptedChunk, FetchError, FetchRequest, MAX_FETCHES, PROTOCOL,
    REQUEST_TIMEOUT, Route, RoutePolicy,
};
use crate::frame::{read_frame, write_frame};

/// What a [`NetworkHandle`](crate::NetworkHandle) needs to fetch: a stream
/// control of the swarm and the node's fetch limit.
#[derive(Clone)]
pub(crate) struct Fetcher {
    pub(crate) control: Control,
    pub(crate) fetches: Arc<Semaphore>,
    pub(crate) stall_timeout: Duration,
}

impl Fetcher {
    pub(crate) fn new(control: Control, stall_timeout: Duration) -> Self {
        Self { control, fetches: Arc::new(Semaphore::new(MAX_FETCHES)), stall_timeout }
    }
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("fetches_free", &self.fetches.available_permits())
            .finish_non_exhaustive()
    }
}

/// Where the ciphertext comes from.
enum Body {
    Direct(TcpStream),
    Stream,
}

/// A fetch under way: the file's ciphertext, chunk by chunk, as the caller
/// reads it ([`Fetch::next_chunk`]). Reads pull the bytes from the socket,
/// so the fetch holds one chunk at a time and a caller that stops reading
/// stops the sender (flow control); dropping it ends the transfer.
pub struct Fetch {
    stream: Stream,
    body: Body,
    encrypted_len: u64,
    chunk_count: u64,
    next: u64,
    stall_timeout: Duration,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetch")
            .field("route", &self.route())
            .field("encrypted_len", &self.encrypted_len)
            .field("next_chunk", &self.next)
            .finish_non_exhaustive()
    }
}

impl Fetch {
    /// The ciphertext length of the whole file, as the server announced it
    /// (a lie shows as a chunk that does not verify as last, or not last).
    pub const fn encrypted_len(&self) -> u64 {
        self.encrypted_len
    }

    /// The file's chunk count, from [`Fetch::encrypted_len`].
    pub const fn chunk_count(&self) -> u64 {
        self.chunk_count
    }

    /// The index of the chunk [`Fetch::next_chunk`] returns next.
    pub const fn next_index(&self) -> u64 {
        self.next
    }

    /// Which way the ciphertext comes.
    pub const fn route(&self) -> Route {
        match self.body {
            Body::Direct(_) => Route::Direct,
            Body::Stream => Route::Stream,
        }
    }

    /// The next chunk, in order, or `None` after the last one. Verify it
    /// ([`EncryptedChunk::open`]) before keeping it; after an error, fetch
    /// again from the chunk after the last one verified.
    ///
    /// # Errors
    /// [`FetchError::ConnectionLost`] when the transfer is cut,
    /// [`FetchError::Timeout`] when nothing came for the stall timeout.
    pub async fn next_chunk(&mut self) -> Result<Option<EncryptedChunk>, FetchError> {
        if self.next >= self.chunk_count {
            return Ok(None);
        }
        let start = self.next * ENCRYPTED_CHUNK_BYTES as u64;
        let len = (self.encrypted_len - start).min(ENCRYPTED_CHUNK_BYTES as u64);
        let len = usize::try_from(len).map_err(|_| FetchError::Malformed)?;
        let bytes = match &mut self.body {
            Body::Direct(tcp) => read_direct(tcp, len, self.stall_timeout).await?,
            Body::Stream => {
                let mut bytes = vec![0u8; len];
                read_exact(&mut self.stream, &mut bytes, self.stall_timeout).await?;
                bytes
            }
        };
        let index = u32::try_from(self.next).map_err(|_| FetchError::Malformed)?;
        self.next += 1;
        Ok(Some(EncryptedChunk { index, is_last: self.next == self.chunk_count, bytes }))
    }
}

/// Reads `len` bytes from the direct path straight into the chunk's
/// buffer (never zeroed first: the socket writes every byte kept).
async fn read_direct(
    tcp: &mut TcpStream,
    len: usize,
    stall: Duration,
) -> Result<Vec<u8>, FetchError> {
    let mut bytes = Vec::with_capacity(len);
    // `read_buf` fills the spare capacity and no more while some is left:
    // never past the chunk's end.
    while bytes.len() < len {
        match timeout(stall, tcp.read_buf(&mut bytes)).await {
            Err(_) => return Err(FetchError::Timeout),
            Ok(Ok(0) | Err(_)) => return Err(FetchError::ConnectionLost),
            Ok(Ok(_)) => {}
        }
    }
    Ok(bytes)
}

async fn read_exact<R: AsyncRead + Unpin>(
    io: &mut R,
    buffer: &mut [u8],
    stall: Duration,
) -> Result<(), FetchError> {
    // The stall timeout bounds each read, not the chunk: a slow but moving
    // transfer goes on.
    let mut filled = 0;
    while let Some(rest) = buffer.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match timeout(stall, io.read(rest)).await {
            Err(_) => return Err(FetchError::Timeout),
            Ok(Ok(0) | Err(_)) => return Err(FetchError::ConnectionLost),
            Ok(Ok(n)) => filled += n,
        }
    }
    Ok(())
}

/// Fetches `request` from `peer` (connected already), whose libp2p
/// connection comes from `peer_ip` when it is a direct IP connection.
pub(crate) async fn fetch(
    fetcher: &Fetcher,
    local: PeerId,
    peer: PeerId,
    peer_ip: Option<IpAddr>,
    request: FetchRequest,
) -> Result<Fetch, FetchError> {
    let permit =
        Arc::clone(&fetcher.fetches).try_acquire_owned().map_err(|_| FetchError::TooManyFetches)?;
    let mut control = fetcher.control.clone();
    let mut stream = match timeout(REQUEST_TIMEOUT, control.open_stream(peer, PROTOCOL)).await {
        Err(_) => return Err(FetchError::Timeout),
        Ok(Err(OpenStreamError::UnsupportedProtocol(_))) => {
            return Err(FetchError::UnsupportedProtocol);
        }
        Ok(Err(_)) => return Err(FetchError::Unreachable),
        Ok(Ok(stream)) => stream,
    };
    let direct = request.route == RoutePolicy::Any && peer_ip.is_some();
    let transcript =
        protocol::transcript(&request.file_id, request.from_chunk, direct, &peer, &local);
    let body = Request {
        file_id: request.file_id,
        from_chunk: request.from_chunk,
        direct,
        proof: request.token.prove(&transcript),
    }
    .encode();
    let response = timeout(REQUEST_TIMEOUT, async {
        write_frame(&mut stream, &body, REQUEST_BYTES).await?;
        read_frame(&mut stream, MAX_RESPONSE_BYTES, None).await
    })
    .await
    .map_err(|_| FetchError::Timeout)?
    .map_err(|error| match error.kind() {
        io::ErrorKind::InvalidData => FetchError::Malformed,
        _ => FetchError::ConnectionLost,
    })?;
    let (encrypted_len, offer) = match Response::decode(&response) {
        Some(Response::Ok { encrypted_len, direct }) => (encrypted_len, direct),
        Some(Response::Refused(status)) => return Err(refusal(status)),
        None => return Err(FetchError::Malformed),
    };
    let chunk_count = ChunkCipher::plaintext_len(encrypted_len)
        .and_then(ChunkCipher::chunk_count)
        .filter(|count| u64::from(request.from_chunk) < *count)
        .ok_or(FetchError::Malformed)?;

    let tcp = match (offer, peer_ip) {
        (Some(offer), Some(ip)) if direct => {
            match timeout(DIRECT_CONNECT_TIMEOUT, connect_direct(ip, &offer)).await {
                Ok(Ok(tcp)) => Some(tcp),
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "direct path failed: using the stream");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "direct path timed out: using the stream");
                    None
                }
            }
        }
        _ => None,
    };
    let body = match tcp {
        Some(tcp) => Body::Direct(tcp),
        None => {
            timeout(
                REQUEST_TIMEOUT,
                write_frame(&mut stream, &[CHOICE_SEND_ON_STREAM], protocol::CHOICE_BYTES),
            )
            .await
            .map_err(|_| FetchError::Timeout)?
            .map_err(|_| FetchError::ConnectionLost)?;
            Body::Stream
        }
    };
    Ok(Fetch {
        stream,
        body,
        encrypted_len,
        chunk_count,
        next: u64::from(request.from_chunk),
        stall_timeout: fetcher.stall_timeout,
        _permit: permit,
    })
}

/// Dials the direct path, shows the ticket and waits for its acceptance.
async fn connect_direct(ip: IpAddr, offer: &DirectOffer) -> io::Result<TcpStream> {
    let mut tcp = TcpStream::connect(SocketAddr::new(ip, offer.port)).await?.compat();
    write_frame(&mut tcp, &protocol::encode_ticket(&offer.ticket), TICKET_FRAME_BYTES).await?;
    let accepted = read_frame(&mut tcp, TICKET_ACCEPTED_BYTES, None).await?;
    if accepted != [0x00] {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "ticket not accepted"));
    }
    Ok(tcp.into_inner())
}

fn refusal(status: Status) -> FetchError {
    match status {
        Status::Refused => FetchError::Refused,
        Status::Busy => FetchError::Busy,
        Status::OutOfRange => FetchError::OutOfRange,
        // `Ok` never comes as a refusal: `Response::decode` reads it as a grant.
        Status::Unavailable | Status::Ok => FetchError::Unavailable,
    }
}
