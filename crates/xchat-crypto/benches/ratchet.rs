//! The Double Ratchet against vodozemac's Olm (`vodozemac::olm::Session`, the
//! Matrix peer), and the primitives under it.
//!
//! Two workloads, 1 KiB plaintexts, each step one message encrypted by one
//! side and decrypted by the other:
//! - one-way: consecutive messages in one direction (symmetric steps only);
//! - ping-pong: the direction alternates, so every message carries a new
//!   ratchet key (a DH ratchet step per message).
//!
//! Primitives: one X25519 key generation plus agreement, one AES-256-GCM
//! seal of 1 KiB (through this crate's wrappers).
//!
//! After criterion's report, a paired run times every workload in
//! interleaved rounds (so load from other processes hits all alike) and
//! prints the median time per message and the ratios to vodozemac.
//!
//! `cargo bench -p xchat-crypto --bench ratchet`

// A benchmark measures wall time (the library never reads a clock) and
// aborts on any failure: it measures working code only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use vodozemac::olm::{Account, OlmMessage, Session as OlmSession, SessionConfig};
use xchat_crypto::ratchet::Session;
use xchat_crypto::{aead, agreement};

const PLAINTEXT: [u8; 1024] = [0x42; 1024];
/// Rounds of the paired run.
const ROUNDS: usize = 41;
/// Messages per round and workload.
const MESSAGES: usize = 300;

/// One side of a conversation, xchat's or vodozemac's.
trait Side {
    /// What travels: xchat's wire bytes; vodozemac's message value (handed
    /// over without serialization, which only flatters the peer).
    type Message;
    fn send(&mut self, plaintext: &[u8], rng: &mut ChaCha20Rng) -> Self::Message;
    fn receive(&mut self, message: &Self::Message, rng: &mut ChaCha20Rng);
}

impl Side for Session {
    type Message = Vec<u8>;

    fn send(&mut self, plaintext: &[u8], rng: &mut ChaCha20Rng) -> Vec<u8> {
        self.encrypt(plaintext, rng).unwrap()
    }

    fn receive(&mut self, message: &Vec<u8>, rng: &mut ChaCha20Rng) {
        black_box(self.decrypt(message, rng).unwrap());
    }
}

impl Side for OlmSession {
    type Message = OlmMessage;

    fn send(&mut self, plaintext: &[u8], _: &mut ChaCha20Rng) -> OlmMessage {
        self.encrypt(plaintext).unwrap()
    }

    fn receive(&mut self, message: &OlmMessage, _: &mut ChaCha20Rng) {
        black_box(self.decrypt(message).unwrap());
    }
}

/// Two sides after a first exchange both ways, and whose turn it is.
struct Conversation<S> {
    sides: [S; 2],
    turn: usize,
    rng: ChaCha20Rng,
}

impl<S: Side> Conversation<S> {
    fn new(mut sides: [S; 2], mut rng: ChaCha20Rng) -> Self {
        for (from, to) in [(0, 1), (1, 0)] {
            let message = sides[from].send(b"hello", &mut rng);
            sides[to].receive(&message, &mut rng);
        }
        Self { sides, turn: 0, rng }
    }

    /// One message from the side whose turn it is; `alternate` passes the turn.
    fn step(&mut self, alternate: bool) {
        let (from, to) = (self.turn, 1 - self.turn);
        let message = self.sides[from].send(black_box(&PLAINTEXT), &mut self.rng);
        self.sides[to].receive(&message, &mut self.rng);
        if alternate {
            self.turn = to;
        }
    }
}

fn xchat() -> Conversation<Session> {
    let (alice, bob, rng) = common::session_pair(1);
    Conversation::new([alice, bob], rng)
}

fn vodozemac() -> Conversation<OlmSession> {
    let alice_account = Account::new();
    let mut bob_account = Account::new();
    bob_account.generate_one_time_keys(1);
    let one_time_key = *bob_account.one_time_keys().values().next().unwrap();
    bob_account.mark_keys_as_published();
    let mut alice = alice_account
        .create_outbound_session(
            SessionConfig::version_1(),
            bob_account.curve25519_key(),
            one_time_key,
        )
        .unwrap();
    let OlmMessage::PreKey(hello) = alice.encrypt(b"hello").unwrap() else {
        panic!("the first message of an outbound session is a pre-key message");
    };
    let bob = bob_account
        .create_inbound_session(SessionConfig::version_1(), alice_account.curve25519_key(), &hello)
        .unwrap()
        .session;
    // Bob answers first so that Alice leaves the pre-key stage.
    let mut conversation =
        Conversation { sides: [bob, alice], turn: 0, rng: ChaCha20Rng::seed_from_u64(0) };
    conversation.step(true);
    conversation.step(true);
    conversation
}

/// The primitives a message is made of.
struct Primitives {
    theirs: agreement::PublicKey,
    key: aead::Key,
    buffer: [u8; 1024],
    counter: u64,
    rng: ChaCha20Rng,
}

impl Primitives {
    fn new() -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let theirs = *agreement::KeyPair::generate(&mut rng).public();
        Self { theirs, key: aead::Key::new(&[9u8; 32]), buffer: [0u8; 1024], counter: 0, rng }
    }

    fn x25519(&mut self) {
        let ours = agreement::KeyPair::generate(&mut self.rng);
        black_box(ours.secret().diffie_hellman(black_box(&self.theirs)).unwrap());
    }

    fn aes_gcm(&mut self) {
        self.counter += 1;
        let mut nonce = [0u8; aead::NONCE_BYTES];
        nonce[4..].copy_from_slice(&self.counter.to_be_bytes());
        black_box(self.key.seal_detached(&nonce, b"", black_box(&mut self.buffer)));
    }
}

fn criterion_groups(c: &mut Criterion) {
    for (workload, alternate) in [("one_way_1KiB", false), ("ping_pong_1KiB", true)] {
        let mut group = c.benchmark_group(workload);
        group.throughput(Throughput::Elements(1));
        let mut ours = xchat();
        group.bench_function("xchat", |b| b.iter(|| ours.step(alternate)));
        let mut theirs = vodozemac();
        group.bench_function("vodozemac", |b| b.iter(|| theirs.step(alternate)));
        group.finish();
    }
    let mut primitives = Primitives::new();
    let mut group = c.benchmark_group("primitives");
    group.bench_function("x25519_keygen_and_agreement", |b| b.iter(|| primitives.x25519()));
    group.throughput(Throughput::Bytes(1024));
    group.bench_function("aes256gcm_seal_1KiB", |b| b.iter(|| primitives.aes_gcm()));
    group.finish();
}

/// Microseconds per call of `routine`, over [`MESSAGES`] calls.
fn time(mut routine: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..MESSAGES {
        routine();
    }
    start.elapsed().as_secs_f64() * 1e6 / MESSAGES as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn paired_run() {
    let mut ours = [xchat(), xchat()];
    let mut theirs = [vodozemac(), vodozemac()];
    let mut primitives = Primitives::new();
    let mut samples: [Vec<f64>; 6] = Default::default();
    for _ in 0..ROUNDS {
        samples[0].push(time(|| ours[0].step(false)));
        samples[1].push(time(|| theirs[0].step(false)));
        samples[2].push(time(|| ours[1].step(true)));
        samples[3].push(time(|| theirs[1].step(true)));
        samples[4].push(time(|| primitives.x25519()));
        samples[5].push(time(|| primitives.aes_gcm()));
    }
    let [one_way, olm_one_way, ping_pong, olm_ping_pong, x25519, aes_gcm] = samples.map(median);
    println!("\nTime per 1 KiB message, encrypt + decrypt (median of {ROUNDS} paired rounds)\n");
    println!("| workload  | xchat (us) | vodozemac (us) | vodozemac / xchat | target |");
    println!("|-----------|-----------:|---------------:|------------------:|-------:|");
    for (workload, ours, theirs, target) in
        [("one_way", one_way, olm_one_way, 5.0), ("ping_pong", ping_pong, olm_ping_pong, 1.5)]
    {
        let ratio = theirs / ours;
        let verdict = if ratio >= target { "" } else { " (missed)" };
        println!(
            "| {workload:<9} | {ours:>10.2} | {theirs:>14.2} | {ratio:>16.2}x | {target:>5.1}x{verdict} |"
        );
    }
    println!(
        "\nPrimitives: X25519 keygen + agreement {x25519:.2} us; AES-256-GCM seal of 1 KiB {:.0} ns",
        aes_gcm * 1e3
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    criterion_groups(&mut criterion);
    criterion.final_summary();
    paired_run();
}
