//! The serving side of `/xchat/file/1`: one task takes the inbound streams
//! and the direct connections; each granted fetch runs in its own serve
//! task, which reads the file on a blocking thread and writes the socket.
//!
//! Limits: at most [`MAX_PENDING_REQUESTS`] streams whose request is not
//! yet read and checked (more are closed at once), each for at most
//! [`REQUEST_TIMEOUT`]; only then, with a valid proof, does a fetch take
//! one of [`Config::max_serves`] serve slots and [`Config::max_serves_per_peer`]
//! per peer (else `Busy`), so peers without the token cannot crowd out
//! those with it. A ticket must come within [`REQUEST_TIMEOUT`]; every
//! write must progress within [`Config::stall_timeout`]; a serve on the
//! libp2p stream holds at most [`IO_BUFFERS_PER_SERVE`] buffers of
//! [`IO_BUFFER_BYTES`]; one on the direct path (Linux) holds none: the
//! kernel copies the file to the socket (`sendfile`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
#[cfg(target_os = "linux")]
use std::net::Shutdown;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::{AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use rand_core::{OsRng, TryRngCore};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::compat::TokioAsyncReadCompatExt;
use xchat_crypto::file::{ChunkCipher, ENCRYPTED_CHUNK_BYTES, FETCH_TOKEN_BYTES, FetchToken};

use super::protocol::{
    self, CHOICE_BYTES, CHOICE_SEND_ON_STREAM, DirectOffer, MAX_RESPONSE_BYTES, REQUEST_BYTES,
    Request, Response, Status, TICKET_ACCEPTED_BYTES, TICKET_BYTES, TICKET_FRAME_BYTES,
};
use super::{
    Config, FileSource, IO_BUFFER_BYTES, IO_BUFFERS_PER_SERVE, MAX_PENDING_DIRECT_CONNECTIONS,
    MAX_PENDING_REQUESTS, REQUEST_TIMEOUT, TICKET_LIFETIME,
};
use crate::frame::{read_frame, write_frame};

/// Most bytes one `sendfile` call moves on the direct path.
#[cfg(target_os = "linux")]
const SENDFILE_BYTES: usize = 4 << 20;

type Tickets = HashMap<[u8; TICKET_BYTES], oneshot::Sender<TcpStream>>;

/// What every serve task shares.
struct Shared {
    source: Option<Arc<dyn FileSource>>,
    local: PeerId,
    config: Config,
    /// The direct listener's port, when there is one.
    direct_port: Option<u16>,
    /// Tickets handed out and not yet used: at most one per serve task.
    tickets: Mutex<Tickets>,
    /// Serve tasks per peer.
    per_peer: Mutex<HashMap<PeerId, usize>>,
    /// Serve slots, all peers.
    serves: Arc<Semaphore>,
}

impl Shared {
    fn tickets(&self) -> MutexGuard<'_, Tickets> {
        self.tickets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn per_peer(&self) -> MutexGuard<'_, HashMap<PeerId, usize>> {
        self.per_peer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs the file service until `incoming` ends or the task is dropped
/// (with the network task): every serve task ends with it.
pub(crate) async fn run(
    mut incoming: libp2p_stream::IncomingStreams,
    listener: Option<TcpListener>,
    source: Option<Arc<dyn FileSource>>,
    local: PeerId,
    config: Config,
) {
    let direct_port = listener.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port());
    let serves = Arc::new(Semaphore::new(config.max_serves));
    let shared = Arc::new(Shared {
        serves,
        source,
        local,
        config,
        direct_port,
        tickets: Mutex::new(HashMap::new()),
        per_peer: Mutex::new(HashMap::new()),
    });
    let pending_requests = Arc::new(Semaphore::new(MAX_PENDING_REQUESTS));
    let pending_direct = Arc::new(Semaphore::new(MAX_PENDING_DIRECT_CONNECTIONS));
    // Dropping the set (when this task ends or is dropped) aborts them all.
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            next = incoming.next() => {
                let Some((peer, stream)) = next else { break };
                match Arc::clone(&pending_requests).try_acquire_owned() {
                    Ok(permit) => {
                        tasks.spawn(serve(Arc::clone(&shared), peer, stream, permit));
                    }
                    Err(_) => tracing::debug!(%peer, "file stream dropped: too many pending"),
                }
            }
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((tcp, from)) => match Arc::clone(&pending_direct).try_acquire_owned() {
                    Ok(permit) => {
                        tasks.spawn(take_ticket(Arc::clone(&shared), tcp, permit));
                    }
                    Err(_) => tracing::debug!(%from, "direct connection refused: too many pending"),
                },
                Err(error) => {
                    tracing::debug!(%error, "direct listener accept failed");
                    // Out of file descriptors, say: let serves end first.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tracing::debug!("file service stopped");
}

/// The next connection on the direct listener; never, without one.
async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// A serve task's place in the limits, given back on drop.
struct Slot {
    shared: Arc<Shared>,
    peer: PeerId,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_peer = self.shared.per_peer();
        if let Some(count) = per_peer.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_peer.remove(&self.peer);
            }
        }
    }
}

fn take_slot(shared: &Arc<Shared>, peer: PeerId) -> Option<Slot> {
    let mut per_peer = shared.per_peer();
    let count = per_peer.get(&peer).copied().unwrap_or(0);
    if count >= shared.config.max_serves_per_peer {
        return None;
    }
    let permit = Arc::clone(&shared.serves).try_acquire_owned().ok()?;
    per_peer.insert(peer, count + 1);
    Some(Slot { shared: Arc::clone(shared), peer, _permit: permit })
}

/// Reads a direct connection's ticket and hands the connection to the
/// serve task that issued it; anything else closes it.
async fn take_ticket(shared: Arc<Shared>, tcp: TcpStream, _permit: OwnedSemaphorePermit) {
    let mut tcp = tcp.compat();
    let frame = match timeout(REQUEST_TIMEOUT, read_frame(&mut tcp, TICKET_FRAME_BYTES, None)).await
    {
        Ok(Ok(frame)) => frame,
        Ok(Err(error)) => {
            tracing::debug!(%error, "direct connection closed: bad ticket frame");
            return;
        }
        Err(_) => {
            tracing::debug!("direct connection closed: no ticket in time");
            return;
        }
    };
    let waiting =
        protocol::decode_ticket(&frame).and_then(|ticket| shared.tickets().remove(&ticket));
    match waiting {
        Some(serve) => {
            let _ = serve.send(tcp.into_inner());
        }
        None => tracing::debug!("direct connection closed: unknown ticket"),
    }
}

/// Removes an unused ticket when its serve task is done with it.
struct TicketGuard<'a> {
    shared: &'a Shared,
    ticket: [u8; TICKET_BYTES],
}

impl Drop for TicketGuard<'_> {
    fn drop(&mut self) {
        self.shared.tickets().remove(&self.ticket);
    }
}

/// Why a serve ended early (for the log).
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("no request in time")]
    RequestTimeout,
    #[error("malformed request")]
    Malformed,
    #[error("refused: {0:?}")]
    Refused(Status),
    #[error("no choice of path in time")]
    NoChoice,
    #[error("stalled reader")]
    Stalled,
    #[error("stream i/o: {0}")]
    Io(#[from] io::Error),
}

async fn serve(
    shared: Arc<Shared>,
    peer: PeerId,
    mut stream: Stream,
    pending: OwnedSemaphorePermit,
) {
    match serve_stream(&shared, peer, &mut stream, pending).await {
        Ok(()) => tracing::debug!(%peer, "file served"),
        Err(error) => tracing::debug!(%peer, %error, "file serve ended"),
    }
}

async fn serve_stream(
    shared: &Arc<Shared>,
    peer: PeerId,
    stream: &mut Stream,
    pending: OwnedSemaphorePermit,
) -> Result<(), ServeError> {
    let frame = timeout(REQUEST_TIMEOUT, read_frame(stream, REQUEST_BYTES, None))
        .await
        .map_err(|_| ServeError::RequestTimeout)??;
    let request = Request::decode(&frame).ok_or(ServeError::Malformed)?;
    let transcript = protocol::transcript(
        &request.file_id,
        request.from_chunk,
        request.direct,
        &shared.local,
        &peer,
    );
    let source = shared.source.clone();
    let wants_direct = request.direct;
    let opened = tokio::task::spawn_blocking(move || open(source, &request, &transcript))
        .await
        .unwrap_or(Err(Status::Unavailable));
    // Only a fetcher with the token gets this far: it takes a serve slot.
    let granted = opened
        .and_then(|opened| take_slot(shared, peer).map(|slot| (opened, slot)).ok_or(Status::Busy));
    drop(pending);
    let ((file, encrypted_len, offset), _slot) = match granted {
        Ok(granted) => granted,
        Err(status) => {
            let body = Response::Refused(status).encode();
            timeout(REQUEST_TIMEOUT, write_frame(stream, &body, MAX_RESPONSE_BYTES))
                .await
                .map_err(|_| ServeError::Stalled)??;
            let _ = stream.close().await;
            return Err(ServeError::Refused(status));
        }
    };

    let (direct, mut ticket) = match (wants_direct, shared.direct_port) {
        (true, Some(port)) => {
            let mut ticket = [0u8; TICKET_BYTES];
            OsRng.try_fill_bytes(&mut ticket).map_err(|_| io::Error::other("no randomness"))?;
            let (sender, receiver) = oneshot::channel();
            shared.tickets().insert(ticket, sender);
            (
                Some(DirectOffer { port, ticket }),
                Some((receiver, TicketGuard { shared: shared.as_ref(), ticket })),
            )
        }
        _ => (None, None),
    };
    let body = Response::Ok { encrypted_len, direct }.encode();
    timeout(REQUEST_TIMEOUT, write_frame(stream, &body, MAX_RESPONSE_BYTES))
        .await
        .map_err(|_| ServeError::Stalled)??;

    // The fetcher either comes on the direct path with its ticket or asks
    // for the bytes on this stream.
    let tcp = tokio::select! {
        tcp = async {
            match ticket.as_mut() {
                Some((receiver, _)) => receiver.await.ok(),
                None => None,
            }
        }, if ticket.is_some() => tcp,
        choice = read_frame(stream, CHOICE_BYTES, None) => match choice {
            Ok(choice) if choice == [CHOICE_SEND_ON_STREAM] => None,
            _ => return Err(ServeError::NoChoice),
        },
        () = tokio::time::sleep(TICKET_LIFETIME) => return Err(ServeError::NoChoice),
    };
    drop(ticket);
    let stall = shared.config.stall_timeout;
    match tcp {
        Some(tcp) => {
            let mut tcp = tcp.compat();
            timeout(
                stall,
                write_frame(&mut tcp, &[0x00; TICKET_ACCEPTED_BYTES], TICKET_ACCEPTED_BYTES),
            )
            .await
            .map_err(|_| ServeError::Stalled)??;
            send_direct(file, offset, encrypted_len, tcp.into_inner(), stall).await
        }
        None => send_body(file, offset, encrypted_len, stream, stall).await,
    }
}

/// Checks the proof and opens the file at the first chunk wanted: the
/// file, its ciphertext length and the offset. Runs on a blocking thread
/// (the source may read a database; opening reads the disk).
fn open(
    source: Option<Arc<dyn FileSource>>,
    request: &Request,
    transcript: &[u8],
) -> Result<(File, u64, u64), Status> {
    let served = source.and_then(|source| source.lookup(&request.file_id));
    // An unknown file costs the same MAC as a known one: the answer and its
    // time tell a fetcher without the token nothing.
    let unknown = FetchToken::from_bytes(&[0; FETCH_TOKEN_BYTES]);
    let token = served.as_ref().map_or(&unknown, |served| &served.token);
    let proven = token.verify(transcript, &request.proof);
    let Some(served) = served.filter(|_| proven) else {
        return Err(Status::Refused);
    };
    let mut file = File::open(&served.path).map_err(|_| Status::Unavailable)?;
    let encrypted_len = file.metadata().map_err(|_| Status::Unavailable)?.len();
    let chunks = ChunkCipher::plaintext_len(encrypted_len)
        .and_then(ChunkCipher::chunk_count)
        .ok_or(Status::Unavailable)?;
    if u64::from(request.from_chunk) >= chunks {
        return Err(Status::OutOfRange);
    }
    let offset = u64::from(request.from_chunk) * ENCRYPTED_CHUNK_BYTES as u64;
    file.seek(SeekFrom::Start(offset)).map_err(|_| Status::Unavailable)?;
    Ok((file, encrypted_len, offset))
}

/// Writes the file's bytes from `offset` to `end` to `out`: a blocking
/// thread reads [`IO_BUFFER_BYTES`] at a time ahead of the socket, in at
/// most [`IO_BUFFERS_PER_SERVE`] buffers that go round between the two.
async fn send_body<W>(
    mut file: File,
    offset: u64,
    end: u64,
    out: &mut W,
    stall: Duration,
) -> Result<(), ServeError>
where
    W: AsyncWrite + Unpin,
{
    let (full_sender, mut full) = mpsc::channel::<io::Result<Vec<u8>>>(IO_BUFFERS_PER_SERVE);
    let (empty_sender, empty) = std::sync::mpsc::sync_channel::<Vec<u8>>(IO_BUFFERS_PER_SERVE);
    let reader = tokio::task::spawn_blocking(move || {
        let mut position = offset;
        let mut made = 0;
        while position < end {
            // A new buffer until there are enough, then the ones written.
            let mut buffer = if made < IO_BUFFERS_PER_SERVE {
                made += 1;
                vec![0u8; IO_BUFFER_BYTES]
            } else {
                match empty.recv() {
                    Ok(buffer) => buffer,
                    Err(_) => return,
                }
            };
            let want = usize::try_from(end - position)
                .map_or(IO_BUFFER_BYTES, |left| left.min(IO_BUFFER_BYTES));
            buffer.resize(want, 0);
            let read = read_full(&mut file, &mut buffer);
            if let Ok(n) = read {
                position += n as u64;
                buffer.truncate(n);
            }
            let done = matches!(read, Err(_) | Ok(0));
            let message = match read {
                Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank")),
                Ok(_) => Ok(buffer),
                Err(error) => Err(error),
            };
            if full_sender.blocking_send(message).is_err() || done {
                return;
            }
        }
    });
    let mut sent = offset;
    while sent < end {
        let Some(buffer) = full.recv().await else {
            return Err(io::Error::other("file reader stopped").into());
        };
        let buffer = buffer?;
        timeout(stall, out.write_all(&buffer)).await.map_err(|_| ServeError::Stalled)??;
        sent += buffer.len() as u64;
        let _ = empty_sender.try_send(buffer);
    }
    drop((full, empty_sender));
    let _ = reader.await;
    timeout(stall, out.close()).await.map_err(|_| ServeError::Stalled)??;
    Ok(())
}

/// The direct path on Linux: `sendfile(2)` on a blocking thread, so the
/// kernel copies the file's pages to the socket and the bytes never pass
/// through this process (one pass over memory fewer than [`send_body`]).
/// The socket's write timeout is the stall timeout: each wait for the
/// fetcher to make room is bounded, a slow but moving transfer goes on.
#[cfg(target_os = "linux")]
async fn send_direct(
    file: File,
    offset: u64,
    end: u64,
    tcp: TcpStream,
    stall: Duration,
) -> Result<(), ServeError> {
    let tcp = tcp.into_std()?;
    tcp.set_nonblocking(false)?;
    tcp.set_write_timeout(Some(stall))?;
    // A serve dropped (the node stopping) cuts the connection, which ends
    // the blocking thread's `sendfile` at once.
    let mut cut = CutOnDrop(Some(tcp.try_clone()?));
    let sent = tokio::task::spawn_blocking(move || {
        let mut position = offset;
        while position < end {
            let want = usize::try_from(end - position)
                .map_or(SENDFILE_BYTES, |left| left.min(SENDFILE_BYTES));
            match rustix::fs::sendfile(&tcp, &file, Some(&mut position), want) {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank").into());
                }
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return Err(ServeError::Stalled),
                Err(errno) => return Err(io::Error::from(errno).into()),
            }
        }
        tcp.shutdown(Shutdown::Write)?;
        Ok(())
    })
    .await;
    cut.0 = None;
    sent.unwrap_or_else(|_| Err(io::Error::other("sendfile thread ended").into()))
}

/// Shuts a direct connection down when dropped while still armed.
#[cfg(target_os = "linux")]
struct CutOnDrop(Option<std::net::TcpStream>);

#[cfg(target_os = "linux")]
impl Drop for CutOnDrop {
    fn drop(&mut self) {
        if let Some(tcp) = self.0.take() {
            let _ = tcp.shutdown(Shutdown::Both);
        }
    }
}

/// Elsewhere the direct path reads and writes as the stream does.
#[cfg(not(target_os = "linux"))]
async fn send_direct(
    file: File,
    offset: u64,
    end: u64,
    tcp: TcpStream,
    stall: Duration,
) -> Result<(), ServeError> {
    send_body(file, offset, end, &mut tcp.compat(), stall).await
}

/// Reads until `buffer` is full or the file ends; returns the bytes read.
fn read_full(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buffer.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}
