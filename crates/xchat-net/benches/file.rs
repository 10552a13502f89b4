//! File transfer between two processes on 127.0.0.1, against plain loopback
//! TCP measured in the same run:
//!
//! - raw TCP copy (two tokio tasks, 256 KiB writes and reads): the physical
//!   reference;
//! - `/xchat/file/1` on the direct path, 4 GiB, chunks received in order
//!   (not decrypted), with both processes' peak RSS (`VmHWM`);
//! - the same with every chunk verified (`open_chunk`) as the node would;
//! - the libp2p stream fallback over TCP (Noise, Yamux) and over QUIC.
//!
//! `cargo bench -p xchat-net --bench file` (release). The bench spawns
//! itself as the serving process (`XCHAT_FILE_BENCH_SERVE=<path>`); the
//! encrypted file lives in `/dev/shm` (or the temp dir) while it runs.
//! `XCHAT_FILE_BENCH_GIB` changes the size of the big transfer (default 4).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{self, BufRead, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xchat_crypto::file::{ChunkCipher, FileKey};
use xchat_net::file::{FetchRequest, FileRegistry, Route, RoutePolicy, ServedFile};
use xchat_net::identity::Keypair;
use xchat_net::{Config, Event, Multiaddr, Network, PeerId};
use xchat_proto::content::FileId;

const GIB: u64 = 1 << 30;
const RAW_COPY_BYTES: u64 = 2 * GIB;
const SMALL_GIB: u64 = 1;
const IO_BYTES: usize = 256 * 1024;
const FILE_ID: [u8; 16] = [0x42; 16];
const KEY: [u8; 32] = [0x17; 32];

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn gbps(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e9
}

/// Zero plaintext: encryption makes it look random, and the bench is about
/// moving it.
struct Zeros(u64);

impl Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.0) as usize;
        buf[..n].fill(0);
        self.0 -= n as u64;
        Ok(n)
    }
}

fn config(addresses: &[&str]) -> Config {
    Config {
        listen_addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        enable_mdns: false,
        mailbox: None,
        ..Config::default()
    }
}

/// The serving process: serves one file, prints its peer id and addresses,
/// runs until its stdin closes, then prints its peak RSS.
async fn serve(path: String) {
    let registry = FileRegistry::new();
    let key = FileKey::from_bytes(&KEY);
    registry.insert(
        FileId::from_bytes(FILE_ID),
        ServedFile { path: path.into(), token: key.fetch_token() },
    );
    let (mut network, handle, mut events) = Network::new(
        Keypair::generate_ed25519(),
        config(&["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"]),
    )
    .unwrap();
    network.set_file_source(Arc::new(registry));
    tokio::spawn(network.run());
    let mut addresses = Vec::new();
    while addresses.len() < 2 {
        if let Some(Event::Listening { address }) = events.recv().await {
            addresses.push(address);
        }
    }
    println!("{}", handle.local_peer_id());
    for address in &addresses {
        println!("{address}");
    }
    io::stdout().flush().unwrap();
    // Drain events so the network never stalls on a full queue.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        let _ = io::stdin().read_to_string(&mut sink);
    })
    .await
    .unwrap();
    println!("{:.1}", peak_rss_mib());
    drop(handle);
}

async fn raw_tcp_copy() -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let writer = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let buffer = vec![7u8; IO_BYTES];
        let mut sent = 0;
        while sent < RAW_COPY_BYTES {
            socket.write_all(&buffer).await.unwrap();
            sent += IO_BYTES as u64;
        }
    });
    let mut client = TcpStream::connect(address).await.unwrap();
    let mut buffer = vec![0u8; IO_BYTES];
    let start = Instant::now();
    let mut received = 0;
    while received < RAW_COPY_BYTES {
        let n = client.read(&mut buffer).await.unwrap();
        assert!(n > 0);
        received += n as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    writer.await.unwrap();
    gbps(received, seconds)
}

struct Transfer {
    gbps: f64,
    route: Route,
}

async fn fetch(
    handle: &xchat_net::NetworkHandle,
    server: PeerId,
    route: RoutePolicy,
    max_bytes: u64,
    verify: bool,
) -> Transfer {
    let key = FileKey::from_bytes(&KEY);
    let cipher = ChunkCipher::new(&key);
    let request = FetchRequest {
        file_id: FileId::from_bytes(FILE_ID),
        token: key.fetch_token(),
        from_chunk: 0,
        route,
    };
    let start = Instant::now();
    let mut fetch = handle.fetch_file(server, request).await.unwrap();
    let mut bytes = 0u64;
    while bytes < max_bytes {
        let Some(chunk) = fetch.next_chunk().await.unwrap() else { break };
        bytes += chunk.bytes().len() as u64;
        if verify {
            chunk.open(&cipher).unwrap();
        }
    }
    Transfer { gbps: gbps(bytes, start.elapsed().as_secs_f64()), route: fetch.route() }
}

fn main() {
    if let Ok(path) = std::env::var("XCHAT_FILE_BENCH_SERVE") {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        runtime.block_on(serve(path));
        return;
    }
    let gib: u64 =
        std::env::var("XCHAT_FILE_BENCH_GIB").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let big = gib * GIB;
    let dir = tempfile::Builder::new()
        .prefix("xchat-file-bench")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let path = dir.path().join("sealed");
    let start = Instant::now();
    xchat_crypto::file::encrypt(
        &FileKey::from_bytes(&KEY),
        Zeros(big),
        io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap()),
    )
    .unwrap();
    eprintln!("encrypted {gib} GiB in {:.1} s", start.elapsed().as_secs_f64());

    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("XCHAT_FILE_BENCH_SERVE", &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = io::BufReader::new(child.stdout.take().unwrap()).lines();
    let server: PeerId = lines.next().unwrap().unwrap().parse().unwrap();
    let tcp: Multiaddr = lines.next().unwrap().unwrap().parse().unwrap();
    let quic: Multiaddr = lines.next().unwrap().unwrap().parse().unwrap();
    let (tcp, quic) = if tcp.to_string().contains("quic") { (quic, tcp) } else { (tcp, quic) };

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let raw = raw_tcp_copy().await;

        let (network, handle, mut events) =
            Network::new(Keypair::generate_ed25519(), config(&["/ip4/127.0.0.1/tcp/0"])).unwrap();
        tokio::spawn(network.run());
        tokio::spawn(async move { while events.recv().await.is_some() {} });

        handle.add_address(server, tcp.clone()).await.unwrap();
        let direct = fetch(&handle, server, RoutePolicy::Any, big, false).await;
        let fetcher_rss = peak_rss_mib();
        let verified = fetch(&handle, server, RoutePolicy::Any, SMALL_GIB * GIB, true).await;
        let stream_tcp = fetch(&handle, server, RoutePolicy::StreamOnly, SMALL_GIB * GIB, false).await;

        // A second client that knows only the QUIC address.
        let (network, quic_handle, mut events) = Network::new(
            Keypair::generate_ed25519(),
            config(&["/ip4/127.0.0.1/udp/0/quic-v1"]),
        )
        .unwrap();
        tokio::spawn(network.run());
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        quic_handle.add_address(server, quic).await.unwrap();
        let stream_quic =
            fetch(&quic_handle, server, RoutePolicy::StreamOnly, SMALL_GIB * GIB, false).await;

        drop(child.stdin.take());
        let server_rss: f64 = lines.next().unwrap().unwrap().parse().unwrap();
        child.wait().unwrap();

        let ratio = |t: &Transfer| t.gbps / raw * 100.0;
        println!("| what | GB/s | of raw TCP |");
        println!("|---|---|---|");
        println!("| raw loopback TCP copy, {} GiB, 256 KiB I/O | {raw:.2} | 100% |", RAW_COPY_BYTES / GIB);
        println!(
            "| /xchat/file/1 {:?} path, {gib} GiB, chunks in order | {:.2} | {:.0}% |",
            direct.route,
            direct.gbps,
            ratio(&direct)
        );
        println!(
            "| same, {SMALL_GIB} GiB, every chunk verified (`open_chunk`) | {:.2} | {:.0}% |",
            verified.gbps,
            ratio(&verified)
        );
        println!(
            "| libp2p {:?} over TCP (Noise, Yamux), {SMALL_GIB} GiB | {:.2} | {:.0}% |",
            stream_tcp.route,
            stream_tcp.gbps,
            ratio(&stream_tcp)
        );
        println!(
            "| libp2p {:?} over QUIC, {SMALL_GIB} GiB | {:.2} | {:.0}% |",
            stream_quic.route,
            stream_quic.gbps,
            ratio(&stream_quic)
        );
        println!(
            "peak RSS during the {gib} GiB transfer: fetcher {fetcher_rss:.1} MiB, server {server_rss:.1} MiB (whole run)"
        );
    });
}
