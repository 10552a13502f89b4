#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `/xchat/file/1` between real swarms: over the memory transport (the
//! libp2p stream), over 127.0.0.1 TCP (the direct path) and QUIC; cut and
//! resumed; refused without the token; and hostile peers on the stream and
//! on the direct listener, each while an honest transfer flows.
//!
//! Files are encrypted with `xchat_crypto::file::encrypt` into a temporary
//! directory under `/dev/shm` (falling back to the system's); every
//! received chunk is verified and the plaintext's BLAKE3 compared with the
//! sender's digest.

mod common;

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use xchat_crypto::file::{ChunkCipher, FileDigest, FileKey};
use xchat_net::file::{
    self, FetchError, FetchRequest, FileRegistry, Route, RoutePolicy, ServedFile,
};
use xchat_net::identity::Keypair;
use xchat_net::{Config, Event, Network, NetworkHandle};
use xchat_proto::content::FileId;

use common::{Node, Transport, listen_address, wait_for, within};

/// Makes plaintext without holding it: each 4 KiB block filled with a byte
/// of its index, so every chunk differs from its neighbours.
struct Pattern {
    position: u64,
    len: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let block = 4096u64;
        let in_block = block - self.position % block;
        let n = (buf.len() as u64).min(in_block).min(self.len - self.position) as usize;
        buf[..n].fill((self.position / block).wrapping_mul(31) as u8);
        self.position += n as u64;
        Ok(n)
    }
}

/// An encrypted file on disk, served under an id.
struct SharedFile {
    id: FileId,
    key: FileKey,
    digest: FileDigest,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SharedFile {
    fn new(len: u64, seed: u8) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("xchat-file-test")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let path = dir.path().join("sealed");
        let key = FileKey::from_bytes(&[seed; 32]);
        let out = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
        let digest = xchat_crypto::file::encrypt(&key, Pattern { position: 0, len }, out).unwrap();
        Self { id: FileId::from_bytes([seed; 16]), key, digest, path, _dir: dir }
    }

    fn served(&self) -> ServedFile {
        ServedFile { path: self.path.clone(), token: self.key.fetch_token() }
    }

    fn request(&self, from_chunk: u32, route: RoutePolicy) -> FetchRequest {
        FetchRequest { file_id: self.id, token: self.key.fetch_token(), from_chunk, route }
    }
}

/// A node serving `registry`, with the task's handle so a test can kill it.
async fn start_server(
    keypair: Keypair,
    config: Config,
    registry: &FileRegistry,
) -> (Node, tokio::task::JoinHandle<()>) {
    let (mut network, handle, mut events) = Network::new(keypair, config).unwrap();
    network.set_file_source(Arc::new(registry.clone()));
    let task = tokio::spawn(network.run());
    let address = wait_for(&mut events, |event| match event {
        Event::Listening { address } => Some(address),
        _ => None,
    })
    .await;
    let peer = handle.local_peer_id();
    (Node { handle, events, peer, address }, task)
}

fn config(transport: Transport) -> Config {
    common::config(listen_address(transport))
}

/// What a fetch received so far: verified chunks hashed, and where it stopped.
struct Received {
    cipher: ChunkCipher,
    hasher: blake3::Hasher,
    len: u64,
    next: u32,
    done: bool,
}

impl Received {
    fn new(file: &SharedFile) -> Self {
        Self {
            cipher: ChunkCipher::new(&file.key),
            hasher: blake3::Hasher::new(),
            len: 0,
            next: 0,
            done: false,
        }
    }

    /// Reads and verifies `fetch`'s chunks, at most `limit`, until the end
    /// or an error.
    async fn take(&mut self, fetch: &mut file::Fetch, limit: usize) -> Result<(), FetchError> {
        for _ in 0..limit {
            let Some(chunk) = within(fetch.next_chunk()).await? else {
                self.done = true;
                return Ok(());
            };
            assert_eq!(chunk.index(), self.next, "chunks come in order");
            let is_last = chunk.is_last();
            let plaintext = chunk.open(&self.cipher).expect("every chunk verifies");
            self.hasher.update(&plaintext);
            self.len += plaintext.len() as u64;
            self.next += 1;
            if is_last {
                self.done = true;
                assert!(within(fetch.next_chunk()).await.unwrap().is_none());
                return Ok(());
            }
        }
        Ok(())
    }

    fn assert_whole(&self, file: &SharedFile) {
        assert!(self.done);
        assert_eq!(self.len, file.digest.plaintext_len());
        assert_eq!(self.hasher.finalize().as_bytes(), file.digest.hash());
    }
}

/// Fetches all of `file` from `server` and checks it.
async fn fetch_whole(
    client: &NetworkHandle,
    server: PeerId,
    file: &SharedFile,
    route: RoutePolicy,
) -> Route {
    let mut fetch = within(client.fetch_file(server, file.request(0, route))).await.unwrap();
    let mut received = Received::new(file);
    received.take(&mut fetch, usize::MAX).await.unwrap();
    received.assert_whole(file);
    fetch.route()
}

async fn pair(transport: Transport, registry: &FileRegistry) -> (Node, Node) {
    let (server, _) = start_server(Keypair::generate_ed25519(), config(transport), registry).await;
    let client = common::start(transport).await;
    client.handle.add_address(server.peer, server.address.clone()).await.unwrap();
    (server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_over_memory_transport_comes_whole_on_the_stream() {
    let registry = FileRegistry::new();
    let shared = SharedFile::new(3 * 65_536 + 1_234, 1);
    registry.insert(shared.id, shared.served());
    let (server, client) = pair(Transport::Memory, &registry).await;
    let route = fetch_whole(&client.handle, server.peer, &shared, RoutePolicy::Any).await;
    assert_eq!(route, Route::Stream, "a memory connection has no IP for the direct path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_over_tcp_comes_whole_on_the_direct_path() {
    let registry = FileRegistry::new();
    let shared = SharedFile::new(16 * 1024 * 1024 + 7, 2);
    registry.insert(shared.id, shared.served());
    let (server, client) = pair(Transport::Tcp, &registry).await;
    let route = fetch_whole(&client.handle, server.peer, &shared, RoutePolicy::Any).await;
    assert_eq!(route, Route::Direct);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_only_fetch_over_tcp_and_quic_comes_whole_on_the_stream() {
    for transport in [Transport::Tcp, Transport::Quic] {
        let registry = FileRegistry::new();
        let shared = SharedFile::new(2 * 1024 * 1024 + 99, 3);
        registry.insert(shared.id, shared.served());
        let (server, client) = pair(transport, &registry).await;
        let route =
            fetch_whole(&client.handle, server.peer, &shared, RoutePolicy::StreamOnly).await;
        assert_eq!(route, Route::Stream, "{transport:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_without_a_direct_listener_serves_on_the_stream() {
    let registry = FileRegistry::new();
    let shared = SharedFile::new(1024 * 1024, 4);
    registry.insert(shared.id, shared.served());
    let mut server_config = config(Transport::Tcp);
    server_config.file.direct_listen = None;
    let (server, _) = start_server(Keypair::generate_ed25519(), server_config, &registry).await;
    assert_eq!(server.handle.direct_file_address().await.unwrap(), None);
    let client = common::start(Transport::Tcp).await;
    client.handle.add_address(server.peer, server.address.clone()).await.unwrap();
    let route = fetch_whole(&client.handle, server.peer, &shared, RoutePolicy::Any).await;
    assert_eq!(route, Route::Stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_file_is_one_chunk_and_past_the_end_is_out_of_range() {
    let registry = FileRegistry::new();
    let shared = SharedFile::new(0, 5);
    registry.insert(shared.id, shared.served());
    let (server, client) = pair(Transport::Tcp, &registry).await;
    fetch_whole(&client.handle, server.peer, &shared, RoutePolicy::Any).await;
    let past =
        within(client.handle.fetch_file(server.peer, shared.request(1, RoutePolicy::Any))).await;
    assert_eq!(past.unwrap_err(), FetchError::OutOfRange);
}

/// Kills the serving network after `cut_after` chunks, starts it again
/// (same transport key, new port) and resumes from the chunk after the last
/// one verified.
async fn cut_and_resume(len: u64, cut_after: usize) {
    let registry = FileRegistry::new();
    let shared = SharedFile::new(len, 6);
    registry.insert(shared.id, shared.served());
    let keypair = Keypair::generate_ed25519();
    let (server, server_task) =
        start_server(keypair.clone(), config(Transport::Tcp), &registry).await;
    let mut client = common::start(Transport::Tcp).await;
    client.handle.add_address(server.peer, server.address.clone()).await.unwrap();

    let mut fetch =
        within(client.handle.fetch_file(server.peer, shared.request(0, RoutePolicy::Any)))
            .await
            .unwrap();
    assert_eq!(fetch.route(), Route::Direct);
    let mut received = Received::new(&shared);
    received.take(&mut fetch, cut_after).await.unwrap();
    assert!(!received.done);

    server_task.abort();
    drop(server);
    // What was in flight may still arrive; then the cut shows.
    let cut = received.take(&mut fetch, usize::MAX).await;
    assert!(
        matches!(cut, Err(FetchError::ConnectionLost)),
        "the transfer must be cut, got {cut:?} after {} chunks",
        received.next
    );
    drop(fetch);
    let server_peer = keypair.public().to_peer_id();
    wait_for(&mut client.events, |event| match event {
        Event::PeerDisconnected { peer } if peer == server_peer => Some(()),
        _ => None,
    })
    .await;

    let (server, _task) = start_server(keypair, config(Transport::Tcp), &registry).await;
    client.handle.add_address(server.peer, server.address.clone()).await.unwrap();
    let resume_from = received.next;
    let mut fetch = client
        .handle
        .fetch_file(server.peer, shared.request(resume_from, RoutePolicy::Any))
        .await
        .unwrap();
    assert_eq!(fetch.next_index(), u64::from(resume_from));
    received.take(&mut fetch, usize::MAX).await.unwrap();
    received.assert_whole(&shared);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_cut_by_killing_the_server_resumes_from_the_last_verified_chunk() {
    cut_and_resume(48 * 1024 * 1024 + 5, 100).await;
}

/// 1 GiB (in `/dev/shm` when there is one), cut halfway: a few seconds in a
/// debug build, so it always runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_file_cut_halfway_resumes_and_hashes_equal() {
    const GIB: u64 = 1 << 30;
    cut_and_resume(GIB, (GIB / 65_536 / 2) as usize).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proof_and_unknown_file_are_refused_alike_while_an_honest_transfer_flows() {
    let registry = FileRegistry::new();
    let shared = SharedFile::new(8 * 1024 * 1024, 7);
    registry.insert(shared.id, shared.served());
    let (server, client) = pair(Transport::Tcp, &registry).await;

    let mut honest =
        within(client.handle.fetch_file(server.peer, shared.request(0, RoutePolicy::Any)))
            .await
            .unwrap();
    let mut received = Received::new(&shared);
    received.take(&mut honest, 10).await.unwrap();

    let wrong_token = FetchRequest {
        token: FileKey::from_bytes(&[99; 32]).fetch_token(),
        ..shared.request(0, RoutePolicy::Any)
    };
    let unknown_file = FetchRequest {
        file_id: FileId::from_bytes([98; 16]),
        ..shared.request(0, RoutePolicy::Any)
    };
    let stream_only = FetchRequest {
        token: FileKey::from_bytes(&[97; 32]).fetch_token(),
        ..shared.request(3, RoutePolicy::StreamOnly)
    };
    for request in [wrong_token, unknown_file, stream_only] {
        let refused = within(client.handle.fetch_file(server.peer, request)).await;
        assert_eq!(refused.unwrap_err(), FetchError::Refused);
    }

    received.take(&mut honest, usize::MAX).await.unwrap();
    received.assert_whole(&shared);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_past_the_per_peer_limit_are_busy_and_the_others_finish() {
    let registry = FileRegistry::new();
    // Larger than what loopback's socket buffers hold: neither serve can
    // write its whole file and end (freeing its slot) before it is read.
    let shared = SharedFile::new(128 * 1024 * 1024, 8);
    registry.insert(shared.id, shared.served());
    let mut server_config = config(Transport::Tcp);
    server_config.file.max_serves_per_peer = 2;
    let (server, _) = start_server(Keypair::generate_ed25519(), server_config, &registry).await;
    let client = common::start(Transport::Tcp).await;
    client.handle.add_address(server.peer, server.address.clone()).await.unwrap();

    let mut first =
        within(client.handle.fetch_file(server.peer, shared.request(0, RoutePolicy::Any)))
            .await
            .unwrap();
    let mut second = client
        .handle
        .fetch_file(server.peer, shared.request(0, RoutePolicy::StreamOnly))
        .await
        .unwrap();
    for _ in 0..3 {
        let third =
            within(client.handle.fetch_file(server.peer, shared.request(0, RoutePolicy::Any)))
                .await;
        assert_eq!(third.unwrap_err(), FetchError::Busy);
    }
    for fetch in [&mut first, &mut second] {
        let mut received = Received::new(&shared);
        received.take(fetch, usize::MAX).await.unwrap();
        received.assert_whole(&shared);
    }
    drop((first, second));
    // The slots are free again once the serves end.
    within(async {
        loop {
            match within(client.handle.fetch_file(server.peer, shared.request(0, RoutePolicy::Any)))
                .await
            {
                Ok(mut fetch) => {
                    let mut received = Received::new(&shared);
                    received.take(&mut fetch, usize::MAX).await.unwrap();
                    received.assert_whole(&shared);
                    return;
                }
                Err(FetchError::Busy) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(error) => panic!("{error}"),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_fetcher_is_dropped_while_another_transfer_flows() {
    let registry = FileRegistry::new();
    let big = SharedFile::new(64 * 1024 * 1024, 9);
    let small = SharedFile::new(4 * 1024 * 1024, 10);
    registry.insert(big.id, big.served());
    registry.insert(small.id, small.served());
    let mut server_config = config(Transport::Tcp);
    server_config.file.stall_timeout = Duration::from_secs(1);
    let (server, _) = start_server(Keypair::generate_ed25519(), server_config, &registry).await;
    let client = common::start(Transport::Tcp).await;
    client.handle.add_address(server.peer, server.address.clone()).await.unwrap();

    // Asks for 64 MiB and reads nothing: the socket buffers fill, the
    // server's writes stall, and it drops the fetch after a second.
    let mut stalled =
        within(client.handle.fetch_file(server.peer, big.request(0, RoutePolicy::Any)))
            .await
            .unwrap();
    fetch_whole(&client.handle, server.peer, &small, RoutePolicy::Any).await;
    // The server sees no progress for two stall checks (2 s); wait more than twice that.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut received = Received::new(&big);
    let result = received.take(&mut stalled, usize::MAX).await;
    assert_eq!(result, Err(FetchError::ConnectionLost));
    assert!(!received.done, "the stalled fetch was cut before its end");
}

/// A bare libp2p peer with raw streams, to speak `/xchat/file/1` wrongly,
/// connected to `victim` before it is handed out.
///
/// libp2p-stream can lose a stream asked for in the instant the connection
/// comes up: the connection's handler already holds the pending request
/// queue, the behaviour does not yet list the connection, so the request
/// lands in a new queue whose dial the swarm refuses ("already connected")
/// and waits forever. Asking only once the connection is up keeps the test
/// out of that race.
async fn hostile_control(victim: PeerId, address: Multiaddr) -> libp2p_stream::Control {
    use libp2p::swarm::SwarmEvent;
    let mut swarm = common::bare_swarm();
    let control = swarm.behaviour().new_control();
    swarm.dial(address.with(Protocol::P2p(victim))).unwrap();
    within(async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == victim => return,
                SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial failed: {error}"),
                _ => {}
            }
        }
    })
    .await;
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    control
}

/// Writes `bytes` on a new file stream and reads until the victim ends it;
/// returns what it answered.
async fn hostile_stream(
    control: &mut libp2p_stream::Control,
    victim: PeerId,
    bytes: &[u8],
) -> Vec<u8> {
    let mut stream = within(control.open_stream(victim, file::PROTOCOL)).await.unwrap();
    within(stream.write_all(bytes)).await.unwrap();
    within(stream.flush()).await.unwrap();
    let mut answer = Vec::new();
    let _ = within(stream.read_to_end(&mut answer)).await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_frames_are_dropped_while_an_honest_transfer_flows() {
    let registry = FileRegistry::new();
    let shared = SharedFile::new(8 * 1024 * 1024, 11);
    registry.insert(shared.id, shared.served());
    let (server, client) = pair(Transport::Tcp, &registry).await;
    let mut honest =
        within(client.handle.fetch_file(server.peer, shared.request(0, RoutePolicy::Any)))
            .await
            .unwrap();
    let mut received = Received::new(&shared);
    received.take(&mut honest, 5).await.unwrap();

    // On the libp2p stream: random bytes, a length over the request's
    // maximum (just over and u32::MAX), a right-sized frame of garbage.
    let mut control = hostile_control(server.peer, server.address.clone()).await;
    let just_over = u32::try_from(file::protocol::REQUEST_BYTES + 1).unwrap().to_be_bytes();
    let mut garbage_frame =
        u32::try_from(file::protocol::REQUEST_BYTES).unwrap().to_be_bytes().to_vec();
    garbage_frame.extend_from_slice(&[0xEE; file::protocol::REQUEST_BYTES]);
    for bytes in
        [vec![0x5A; 300], just_over.to_vec(), u32::MAX.to_be_bytes().to_vec(), garbage_frame]
    {
        let answer = hostile_stream(&mut control, server.peer, &bytes).await;
        assert!(answer.is_empty(), "no answer to garbage, got {answer:?}");
    }

    // On the direct listener: the same, and an unknown ticket.
    let direct = server.handle.direct_file_address().await.unwrap().unwrap();
    let direct = std::net::SocketAddr::from(([127, 0, 0, 1], direct.port()));
    let mut unknown_ticket =
        u32::try_from(file::protocol::TICKET_FRAME_BYTES).unwrap().to_be_bytes().to_vec();
    unknown_ticket.push(file::protocol::VERSION);
    unknown_ticket.extend_from_slice(&[0x77; file::protocol::TICKET_BYTES]);
    for bytes in [vec![0x5A; 300], u32::MAX.to_be_bytes().to_vec(), unknown_ticket] {
        let mut tcp = within(tokio::net::TcpStream::connect(direct)).await.unwrap();
        within(tcp.write_all(&bytes)).await.unwrap();
        let mut answer = Vec::new();
        let _ = within(tcp.read_to_end(&mut answer)).await;
        assert!(answer.is_empty(), "no answer on the direct path, got {answer:?}");
    }

    received.take(&mut honest, usize::MAX).await.unwrap();
    received.assert_whole(&shared);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_without_a_valid_request_take_no_serve_slot() {
    let registry = FileRegistry::new();
    let shared = SharedFile::new(2 * 1024 * 1024, 12);
    registry.insert(shared.id, shared.served());
    let mut server_config = config(Transport::Tcp);
    server_config.file.max_serves = 1;
    let (server, _) = start_server(Keypair::generate_ed25519(), server_config, &registry).await;

    // Silent streams, and requests with a wrong proof, from a hostile peer.
    let mut control = hostile_control(server.peer, server.address.clone()).await;
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(within(control.open_stream(server.peer, file::PROTOCOL)).await.unwrap());
    }
    let mut forged = u32::try_from(file::protocol::REQUEST_BYTES).unwrap().to_be_bytes().to_vec();
    forged.extend_from_slice(
        &file::protocol::Request {
            file_id: shared.id,
            from_chunk: 0,
            direct: true,
            proof: [0; 32],
        }
        .encode(),
    );
    // libp2p-stream drops inbound streams the server has not yet taken
    // (its hand-over channel holds one): the forged request may share the
    // fate of the silent streams opened just before it, so it is sent until
    // a stream carries it.
    let answer = within(async {
        loop {
            let mut stream = control.open_stream(server.peer, file::PROTOCOL).await.unwrap();
            let mut answer = Vec::new();
            if stream.write_all(&forged).await.is_ok()
                && stream.flush().await.is_ok()
                && stream.read_to_end(&mut answer).await.is_ok()
                && !answer.is_empty()
            {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(answer, [0, 0, 0, 1, 0x01], "a framed `Refused`");

    let client = common::start(Transport::Tcp).await;
    client.handle.add_address(server.peer, server.address.clone()).await.unwrap();
    fetch_whole(&client.handle, server.peer, &shared, RoutePolicy::Any).await;
    drop(silent);
}
