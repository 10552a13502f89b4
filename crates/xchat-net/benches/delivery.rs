//! Envelope delivery between two nodes on 127.0.0.1, over TCP and QUIC,
//! against plain tokio TCP on the same loopback in the same run:
//!
//! - round trip of one acknowledged 1 KiB envelope (p50, p99) vs. a 1 KiB
//!   TCP echo;
//! - envelopes per second with many in flight;
//! - plain TCP copy throughput, as the physical reference.
//!
//! `cargo bench -p xchat-net --bench delivery` (release). Prints a table;
//! the figures go to `docs/network.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xchat_net::identity::Keypair;
use xchat_net::{Config, Event, Multiaddr, Network, NetworkHandle, PeerId};
use xchat_proto::envelope::Envelope;

const ENVELOPE_BYTES: usize = 1024;
const ROUND_TRIPS: usize = 2_000;
const THROUGHPUT_ENVELOPES: usize = 20_000;
const IN_FLIGHT: usize = 256;
const COPY_BYTES: usize = 256 * 1024 * 1024;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn summary(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (percentile(&samples, 0.50), percentile(&samples, 0.99))
}

async fn tcp_echo() -> (Duration, Duration) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        socket.set_nodelay(true).unwrap();
        let mut buffer = vec![0u8; ENVELOPE_BYTES];
        while socket.read_exact(&mut buffer).await.is_ok() {
            socket.write_all(&buffer).await.unwrap();
        }
    });
    let mut client = TcpStream::connect(address).await.unwrap();
    client.set_nodelay(true).unwrap();
    let message = vec![7u8; ENVELOPE_BYTES];
    let mut buffer = vec![0u8; ENVELOPE_BYTES];
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS + 100 {
        let start = Instant::now();
        client.write_all(&message).await.unwrap();
        client.read_exact(&mut buffer).await.unwrap();
        samples.push(start.elapsed());
    }
    summary(samples.split_off(100))
}

async fn tcp_copy() -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buffer = vec![0u8; 256 * 1024];
        let mut total = 0;
        while total < COPY_BYTES {
            total += socket.read(&mut buffer).await.unwrap();
        }
    });
    let mut client = TcpStream::connect(address).await.unwrap();
    let chunk = vec![9u8; 256 * 1024];
    let start = Instant::now();
    for _ in 0..COPY_BYTES / chunk.len() {
        client.write_all(&chunk).await.unwrap();
    }
    reader.await.unwrap();
    COPY_BYTES as f64 / start.elapsed().as_secs_f64()
}

struct Pair {
    sender: NetworkHandle,
    receiver: PeerId,
}

/// Two nodes over `listen`; the receiver acknowledges every envelope at
/// once (what a node does after its store commits).
async fn pair(listen: &str) -> Pair {
    let config = || Config {
        listen_addresses: vec![listen.parse::<Multiaddr>().unwrap()],
        enable_mdns: false,
        mailbox: None,
        ..Config::default()
    };
    // The sender's events are not needed: dropping them lets its task skip
    // them.
    let (sender_net, sender, _) = Network::new(Keypair::generate_ed25519(), config()).unwrap();
    let (receiver_net, receiver_handle, mut events) =
        Network::new(Keypair::generate_ed25519(), config()).unwrap();
    tokio::spawn(sender_net.run());
    tokio::spawn(receiver_net.run());
    let address = loop {
        if let Some(Event::Listening { address }) = events.recv().await {
            break address;
        }
    };
    let receiver = receiver_handle.local_peer_id();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::EnvelopeReceived { delivery, .. } = event {
                receiver_handle.acknowledge(delivery).await.unwrap();
            }
        }
    });
    sender.dial(receiver, vec![address]).await.unwrap();
    Pair { sender, receiver }
}

async fn delivery_round_trip(pair: &Pair) -> (Duration, Duration) {
    let envelope = Envelope::new(vec![5u8; ENVELOPE_BYTES]).unwrap();
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS + 100 {
        let start = Instant::now();
        pair.sender.deliver(pair.receiver, envelope.clone()).await.unwrap();
        samples.push(start.elapsed());
    }
    summary(samples.split_off(100))
}

async fn delivery_throughput(pair: &Pair) -> f64 {
    let envelope = Envelope::new(vec![6u8; ENVELOPE_BYTES]).unwrap();
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(THROUGHPUT_ENVELOPES);
    for _ in 0..THROUGHPUT_ENVELOPES {
        let permit = Arc::clone(&permits).acquire_owned().await.unwrap();
        let (handle, peer, envelope) = (pair.sender.clone(), pair.receiver, envelope.clone());
        tasks.push(tokio::spawn(async move {
            handle.deliver(peer, envelope).await.unwrap();
            drop(permit);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    THROUGHPUT_ENVELOPES as f64 / start.elapsed().as_secs_f64()
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn main() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let (echo_p50, echo_p99) = tcp_echo().await;
        let copy = tcp_copy().await;
        println!("raw loopback TCP: 1 KiB echo p50 {:.1} µs, p99 {:.1} µs; copy {:.2} GB/s",
            micros(echo_p50), micros(echo_p99), copy / 1e9);
        for (name, listen) in [("TCP", "/ip4/127.0.0.1/tcp/0"), ("QUIC", "/ip4/127.0.0.1/udp/0/quic-v1")] {
            let pair = pair(listen).await;
            let (p50, p99) = delivery_round_trip(&pair).await;
            let rate = delivery_throughput(&pair).await;
            println!(
                "xchat delivery over {name}: 1 KiB acknowledged p50 {:.1} µs ({:.1}x echo), p99 {:.1} µs; {:.0} envelopes/s ({} in flight)",
                micros(p50), micros(p50) / micros(echo_p50), micros(p99), rate, IN_FLIGHT
            );
        }
    });
}
