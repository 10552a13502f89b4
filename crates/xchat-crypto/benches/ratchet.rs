//! The Double Ratchet against vodozemac's Olm (`vodozemac::olm::Session`),
//! and the primitives under it.
//!
//! Two workloads, 1 KiB plaintexts, each iteration one message encrypted by
//! one side and decrypted by the other:
//! - one-way: consecutive messages in one direction (symmetric steps only);
//! - ping-pong: the direction alternates, so every message carries a new
//!   ratchet key (a DH ratchet step per message).
//!
//! Primitives: one X25519 key generation plus agreement, one AES-256-GCM
//! seal of 1 KiB (through this crate's wrappers).
//!
//! After criterion's groups, a table compares the time per message
//! (median over criterion's samples).
//!
//! `cargo bench -p xchat-crypto --bench ratchet`

// A benchmark aborts on any failure: it measures working code only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use vodozemac::olm::{Account, OlmMessage, Session as OlmSession, SessionConfig};
use xchat_crypto::agreement::KeyPair;
use xchat_crypto::ratchet::{Session, session_keys_for_tests};
use xchat_crypto::{aead, agreement};

const PLAINTEXT: [u8; 1024] = [0x42; 1024];

/// Nanoseconds per iteration of every call criterion made, per benchmark.
#[derive(Default)]
struct Samples(RefCell<BTreeMap<&'static str, Vec<f64>>>);

impl Samples {
    /// Runs `iters` iterations of `routine`, records and returns the time.
    fn time(&self, id: &'static str, iters: u64, mut routine: impl FnMut()) -> Duration {
        // Benchmarks measure wall-clock time; the library never does.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        for _ in 0..iters {
            routine();
        }
        let elapsed = start.elapsed();
        self.0.borrow_mut().entry(id).or_default().push(elapsed.as_nanos() as f64 / iters as f64);
        elapsed
    }

    /// The median time per iteration of `id`, in nanoseconds.
    fn median(&self, id: &str) -> f64 {
        let mut samples = self.0.borrow().get(id).cloned().unwrap_or_default();
        samples.sort_by(f64::total_cmp);
        samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

/// Two xchat sessions after a first exchange both ways, so that both have
/// a sending and a receiving chain.
fn xchat_pair() -> (Session, Session, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut okm = [0u8; 96];
    rng.fill_bytes(&mut okm);
    let responder_key = KeyPair::generate(&mut rng);
    let mut alice = Session::new_initiator(
        session_keys_for_tests(&okm, [7u8; 32]),
        *responder_key.public(),
        &mut rng,
    )
    .unwrap();
    let mut bob = Session::new_responder(session_keys_for_tests(&okm, [7u8; 32]), responder_key);
    let hello = alice.encrypt(b"hello", &mut rng).unwrap();
    bob.decrypt(&hello, &mut rng).unwrap();
    let reply = bob.encrypt(b"hi", &mut rng).unwrap();
    alice.decrypt(&reply, &mut rng).unwrap();
    (alice, bob, rng)
}

/// Two Olm sessions between two accounts, established both ways (past the
/// pre-key messages).
fn vodozemac_pair() -> (OlmSession, OlmSession) {
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
    let mut bob = bob_account
        .create_inbound_session(SessionConfig::version_1(), alice_account.curve25519_key(), &hello)
        .unwrap()
        .session;
    let reply = bob.encrypt(b"hi").unwrap();
    alice.decrypt(&reply).unwrap();
    (alice, bob)
}

fn one_way(c: &mut Criterion, samples: &Samples) {
    let mut group = c.benchmark_group("one_way_1KiB");
    group.throughput(Throughput::Elements(1));
    let (mut alice, mut bob, mut rng) = xchat_pair();
    group.bench_function("xchat", |b| {
        b.iter_custom(|iters| {
            samples.time("one_way/xchat", iters, || {
                let message = alice.encrypt(black_box(&PLAINTEXT), &mut rng).unwrap();
                black_box(bob.decrypt(&message, &mut rng).unwrap());
            })
        });
    });
    let (mut alice, mut bob) = vodozemac_pair();
    group.bench_function("vodozemac", |b| {
        b.iter_custom(|iters| {
            samples.time("one_way/vodozemac", iters, || {
                let message = alice.encrypt(black_box(PLAINTEXT)).unwrap();
                black_box(bob.decrypt(&message).unwrap());
            })
        });
    });
    group.finish();
}

fn ping_pong(c: &mut Criterion, samples: &Samples) {
    let mut group = c.benchmark_group("ping_pong_1KiB");
    group.throughput(Throughput::Elements(1));
    let (mut alice, mut bob, mut rng) = xchat_pair();
    let mut alice_turn = true;
    group.bench_function("xchat", |b| {
        b.iter_custom(|iters| {
            samples.time("ping_pong/xchat", iters, || {
                let (from, to) =
                    if alice_turn { (&mut alice, &mut bob) } else { (&mut bob, &mut alice) };
                let message = from.encrypt(black_box(&PLAINTEXT), &mut rng).unwrap();
                black_box(to.decrypt(&message, &mut rng).unwrap());
                alice_turn = !alice_turn;
            })
        });
    });
    let (mut alice, mut bob) = vodozemac_pair();
    let mut alice_turn = true;
    group.bench_function("vodozemac", |b| {
        b.iter_custom(|iters| {
            samples.time("ping_pong/vodozemac", iters, || {
                let (from, to) =
                    if alice_turn { (&mut alice, &mut bob) } else { (&mut bob, &mut alice) };
                let message = from.encrypt(black_box(PLAINTEXT)).unwrap();
                black_box(to.decrypt(&message).unwrap());
                alice_turn = !alice_turn;
            })
        });
    });
    group.finish();
}

fn primitives(c: &mut Criterion, samples: &Samples) {
    let mut group = c.benchmark_group("primitives");
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let theirs = *KeyPair::generate(&mut rng).public();
    group.bench_function("x25519_keygen_and_agreement", |b| {
        b.iter_custom(|iters| {
            samples.time("x25519", iters, || {
                let ours = agreement::KeyPair::generate(&mut rng);
                black_box(ours.secret().diffie_hellman(black_box(&theirs)).unwrap());
            })
        });
    });
    let key = aead::Key::new(&[9u8; 32]);
    let mut buffer = [0u8; 1024];
    let mut counter = 0u64;
    group.throughput(Throughput::Bytes(1024));
    group.bench_function("aes256gcm_seal_1KiB", |b| {
        b.iter_custom(|iters| {
            samples.time("aes_gcm", iters, || {
                counter += 1;
                let mut nonce = [0u8; aead::NONCE_BYTES];
                nonce[4..].copy_from_slice(&counter.to_be_bytes());
                black_box(key.seal_detached(&nonce, b"", black_box(&mut buffer)));
            })
        });
    });
    group.finish();
}

fn print_summary(samples: &Samples) {
    // A filtered run (`cargo bench ... -- one_way`) or `--profile-time`
    // measures only some benchmarks: no table then.
    let all = [
        "one_way/xchat",
        "one_way/vodozemac",
        "ping_pong/xchat",
        "ping_pong/vodozemac",
        "x25519",
        "aes_gcm",
    ];
    if all.iter().any(|id| samples.median(id).is_nan()) {
        return;
    }
    let us = |id: &str| samples.median(id) / 1_000.0;
    println!();
    println!("Summary: time per 1 KiB message, encrypt + decrypt (median of criterion's samples)");
    println!();
    println!("| workload  | xchat (us) | vodozemac (us) | vodozemac / xchat | target |");
    println!("|-----------|-----------:|---------------:|------------------:|-------:|");
    for (workload, target) in [("one_way", 5.0), ("ping_pong", 1.5)] {
        let ours = us(&format!("{workload}/xchat"));
        let theirs = us(&format!("{workload}/vodozemac"));
        let ratio = theirs / ours;
        println!(
            "| {workload:<9} | {ours:>10.2} | {theirs:>14.2} | {ratio:>16.2}x | {target:>5.1}x{} |",
            if ratio >= target { "" } else { " (missed)" }
        );
    }
    println!();
    println!(
        "Primitives: X25519 keygen + agreement {:.2} us; AES-256-GCM seal of 1 KiB {:.0} ns",
        us("x25519"),
        samples.median("aes_gcm")
    );
}

fn main() {
    let samples = Samples::default();
    let mut criterion = Criterion::default().configure_from_args();
    one_way(&mut criterion, &samples);
    ping_pong(&mut criterion, &samples);
    primitives(&mut criterion, &samples);
    criterion.final_summary();
    print_summary(&samples);
}
