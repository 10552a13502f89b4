#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Hostile peers on `/xchat/delivery/2`: random bytes, an oversized length
//! prefix, a malformed envelope, a slow drip, a flood of streams. Each is refused, and an
//! honest peer's delivery to the same node flows in the same test.
//!
//! The hostile peer is a bare libp2p swarm with raw streams
//! (`libp2p-stream`): it writes whatever bytes a test gives it, ignoring the
//! frame rules, and reads how the victim answers.

mod common;

use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, SwarmBuilder, noise, tcp, yamux};
use xchat_net::delivery::{self, MAX_FRAME_BYTES};
use xchat_net::{Config, Event, Limits};

use common::{Node, envelope, start_with, wait_for, within};

/// Longer than any wait of these tests: the victim never times a stream out
/// during one, so a stream that ends was refused.
const NEVER: Duration = Duration::from_secs(600);

/// How the victim ended one hostile stream.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// It answered these bytes, then closed.
    Answered(Vec<u8>),
    /// It closed or reset the stream with no answer, or refused to open it.
    Refused,
}

/// A hostile peer connected to one victim.
struct Hostile {
    control: libp2p_stream::Control,
    victim: PeerId,
}

impl Hostile {
    /// Connects to `victim` at `address` over TCP.
    async fn connect(victim: PeerId, address: Multiaddr) -> Self {
        let mut swarm = SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, || {
                // Yamux's most (its receive window allows 4096): every refusal
                // seen comes from the victim.
                let mut config = yamux::Config::default();
                config.set_max_num_streams(4_000);
                config
            })
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|config| config.with_idle_connection_timeout(NEVER))
            .build();
        let control = swarm.behaviour().new_control();
        swarm.dial(address.with(Protocol::P2p(victim))).unwrap();
        tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        Self { control, victim }
    }

    /// Opens a delivery stream and sends a frame announcing `len` bytes, then
    /// one byte every `every`, forever; returns when the victim ends the
    /// stream.
    fn drip(&self, len: u32, every: Duration) -> impl Future<Output = Outcome> + use<> {
        let (mut control, victim) = (self.control.clone(), self.victim);
        async move {
            let Ok(mut stream) = control.open_stream(victim, delivery::PROTOCOL).await else {
                return Outcome::Refused;
            };
            if stream.write_all(&len.to_be_bytes()).await.is_err() {
                return Outcome::Refused;
            }
            loop {
                if stream.write_all(&[0x42]).await.is_err() || stream.flush().await.is_err() {
                    return Outcome::Refused;
                }
                tokio::time::sleep(every).await;
            }
        }
    }

    /// Opens a delivery stream, writes `bytes`, closes the write side when
    /// `close`, then reads how the victim ends the stream.
    fn send(&self, bytes: Vec<u8>, close: bool) -> impl Future<Output = Outcome> + use<> {
        let (mut control, victim) = (self.control.clone(), self.victim);
        async move {
            let Ok(mut stream) = control.open_stream(victim, delivery::PROTOCOL).await else {
                return Outcome::Refused;
            };
            if stream.write_all(&bytes).await.is_err() || stream.flush().await.is_err() {
                return Outcome::Refused;
            }
            if close && stream.close().await.is_err() {
                return Outcome::Refused;
            }
            let mut answer = Vec::new();
            match stream.read_to_end(&mut answer).await {
                Ok(_) if !answer.is_empty() => Outcome::Answered(answer),
                _ => Outcome::Refused,
            }
        }
    }
}

/// A victim whose own delivery timeout never fires during a test, so a
/// hostile stream that ends was refused, not timed out.
async fn victim() -> Node {
    start_with(Config {
        limits: Limits { delivery_timeout: NEVER, ..Limits::default() },
        ..common::config("/ip4/127.0.0.1/tcp/0".parse().unwrap())
    })
    .await
}

/// An honest peer delivers to `victim`; the victim's first envelope must be
/// the honest one (nothing from the hostile peer got through).
async fn honest_delivery_flows(victim: &mut Node) {
    let honest = start_with(common::config("/ip4/127.0.0.1/tcp/0".parse().unwrap())).await;
    honest.handle.add_address(victim.peer, victim.address.clone()).await.unwrap();
    let sending = tokio::spawn({
        let (handle, peer) = (honest.handle.clone(), victim.peer);
        async move { handle.deliver(peer, envelope(0x60)).await }
    });
    let (from, got, ack) = wait_for(&mut victim.events, |event| match event {
        Event::EnvelopeReceived { from, envelope, delivery } => Some((from, envelope, delivery)),
        _ => None,
    })
    .await;
    assert_eq!((from, got), (honest.peer, envelope(0x60)));
    victim.handle.acknowledge(ack).await.unwrap();
    within(sending).await.unwrap().unwrap();
}

/// Deterministic noise (xorshift64), so a failure replays.
fn noise_bytes(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_be_bytes()[0]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_are_refused_and_honest_delivery_flows() {
    let mut victim = victim().await;
    let hostile = Hostile::connect(victim.peer, victim.address.clone()).await;
    let garbage = noise_bytes(4096, 0x5eed);
    assert_eq!(within(hostile.send(garbage, true)).await, Outcome::Refused);
    honest_delivery_flows(&mut victim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_length_prefix_is_refused_and_honest_delivery_flows() {
    let mut victim = victim().await;
    let hostile = Hostile::connect(victim.peer, victim.address.clone()).await;
    let just_over = u32::try_from(MAX_FRAME_BYTES + 1).unwrap();
    for len in [just_over, u32::MAX] {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0xAB; 64]);
        // The write side stays open: the victim must end the stream on the
        // prefix alone, not wait for a body or a timeout.
        assert_eq!(within(hostile.send(bytes, false)).await, Outcome::Refused);
    }
    honest_delivery_flows(&mut victim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_framed_garbage_is_answered_malformed_and_honest_delivery_flows() {
    let mut victim = victim().await;
    let hostile = Hostile::connect(victim.peer, victim.address.clone()).await;
    // A frame is the delivery's id, then the envelope: garbage here.
    let id = 0x0102_0304_0506_0708_u64.to_be_bytes();
    let body = [id.as_slice(), &noise_bytes(500, 0xbad)].concat();
    let mut frame = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    // The answer names the id; the link closes once the hostile side closed
    // its own and nothing is left to answer.
    let answer = [id.as_slice(), &[delivery::Answer::Malformed.to_byte()]].concat();
    assert_eq!(within(hostile.send(frame, true)).await, Outcome::Answered(answer));
    honest_delivery_flows(&mut victim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_drip_is_cut_at_the_delivery_timeout_and_honest_delivery_flows() {
    // A short timeout, so the test sees it expire; long enough for an
    // honest delivery on a loaded machine.
    const TIMEOUT: Duration = Duration::from_secs(5);
    let mut victim = start_with(Config {
        limits: Limits { delivery_timeout: TIMEOUT, ..Limits::default() },
        ..common::config("/ip4/127.0.0.1/tcp/0".parse().unwrap())
    })
    .await;
    let hostile = Hostile::connect(victim.peer, victim.address.clone()).await;
    let started = std::time::Instant::now();
    let drip = tokio::spawn(hostile.drip(100_000, Duration::from_millis(200)));
    honest_delivery_flows(&mut victim).await;
    assert_eq!(within(drip).await.unwrap(), Outcome::Refused);
    // Cut by the timeout, not earlier: the drip was a valid, slow frame.
    assert!(started.elapsed() >= TIMEOUT, "cut after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_flood_is_refused_and_honest_delivery_flows() {
    const STREAMS: usize = 2_000;
    let mut victim = victim().await;
    let hostile = Hostile::connect(victim.peer, victim.address.clone()).await;
    // Each stream announces a frame, sends part of it and stalls with its
    // write side open, holding a slot as long as the victim lets it.
    let mut stall = 1000u32.to_be_bytes().to_vec();
    stall.extend_from_slice(&[0x11; 10]);
    let mut streams: FuturesUnordered<_> =
        (0..STREAMS).map(|_| hostile.send(stall.clone(), false)).collect();

    // The victim holds at most delivery::MAX_INBOUND_LINKS_PER_PEER of them
    // (and its Yamux stream limit bounds them before that) and refuses the
    // rest at once: it never times out during the test, so a victim
    // without limits would hold all of them.
    let must_refuse = STREAMS - xchat_net::config::MAX_STREAMS_PER_CONNECTION;
    let mut refused = 0;
    while refused < must_refuse {
        match within(streams.next()).await {
            Some(Outcome::Refused) => refused += 1,
            other => panic!("expected refusals, got {other:?}"),
        }
    }
    // With the held streams still open, honest traffic flows.
    honest_delivery_flows(&mut victim).await;
    drop(streams);
}
