//! Session setup against the sum of its primitives, in the same run.
//!
//! - `handshake/initiator`: decode and verify Bob's prekey bundle (five BIP340
//!   verifications, the ML-KEM key check), then `handshake::initiate`;
//! - `handshake/responder`: decode the initiation, then `handshake::respond`
//!   (two BIP340 verifications, four X25519, one ML-KEM decapsulation);
//! - `handshake/session_setup`: both, plus the first ratchet step of each
//!   side, which is what "a session" costs;
//! - `primitives/*`: each primitive the setup is made of, alone.
//!
//! After criterion's report, a paired run times the setup and each primitive
//! in interleaved rounds (so load from other processes hits all alike), adds
//! the primitives up as the setup uses them, and prints the ratio.

// A bench measures wall time; the crate's purity rule (no clock) is for the
// library. Setup on fixed inputs cannot fail.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_crypto::bundle::{PreKeyBundle, PreKeys, UnverifiedPreKeyBundle};
use xchat_crypto::device::Device;
use xchat_crypto::handshake::{self, UnverifiedInitiation};
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_crypto::ratchet::Session;
use xchat_crypto::{agreement, kdf, kem, signature};

/// Rounds of the paired run.
const ROUNDS: usize = 31;
/// Iterations per round and measurement.
const ITERATIONS: usize = 200;

struct Party {
    identity: Identity,
    device: Device,
    prekeys: PreKeys,
}

impl Party {
    fn new(entropy: u8, rng: &mut ChaCha20Rng) -> Self {
        let seed = RecoveryPhrase::from_entropy(&[entropy; 32]).to_seed("");
        let identity = Identity::from_seed(&seed).unwrap();
        let device = Device::new(&identity, 1_700_000_000_000, rng);
        let mut prekeys = PreKeys::new(&device, 1_700_000_000_000, rng);
        prekeys.generate_one_time_prekeys(&device, 1, rng).unwrap();
        Self { identity, device, prekeys }
    }

    /// A full bundle: one-time X25519 and one-time ML-KEM prekeys.
    fn bundle_bytes(&self) -> Vec<u8> {
        let publication = self.prekeys.publication(&self.identity.public(), &self.device).unwrap();
        let mut publication = publication;
        publication.take_bundle().to_bytes()
    }
}

struct Fixture {
    alice: Party,
    bob: Party,
    bundle: Vec<u8>,
    initiation: Vec<u8>,
    rng: ChaCha20Rng,
}

impl Fixture {
    fn new() -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(0xbe4c);
        let alice = Party::new(1, &mut rng);
        let bob = Party::new(2, &mut rng);
        let bundle = bob.bundle_bytes();
        let verified = verify_bundle(&bundle);
        let initiated =
            handshake::initiate(&alice.identity, &alice.device, &verified, &mut rng).unwrap();
        let initiation = initiated.initiation.to_bytes();
        Self { alice, bob, bundle, initiation, rng }
    }

    fn initiator(&mut self) -> handshake::Initiated {
        let bundle = verify_bundle(&self.bundle);
        handshake::initiate(&self.alice.identity, &self.alice.device, &bundle, &mut self.rng)
            .unwrap()
    }

    fn responder(&mut self) -> handshake::Responded {
        let initiation = UnverifiedInitiation::from_bytes(&self.initiation).unwrap();
        handshake::respond(
            &self.bob.identity,
            &self.bob.device,
            &self.bob.prekeys,
            initiation,
            None,
        )
        .unwrap()
    }

    /// Both sides, each ending with a ratchet session ready to send.
    fn session_setup(&mut self) -> (Session, Session) {
        let initiated = self.initiator();
        let alice =
            Session::new_initiator(initiated.keys, initiated.their_ratchet_key, &mut self.rng)
                .unwrap();
        let initiation =
            UnverifiedInitiation::from_bytes(&initiated.initiation.to_bytes()).unwrap();
        let responded = handshake::respond(
            &self.bob.identity,
            &self.bob.device,
            &self.bob.prekeys,
            initiation,
            None,
        )
        .unwrap();
        let bob = Session::new_responder(responded.keys, responded.our_ratchet_key);
        (alice, bob)
    }
}

fn verify_bundle(bytes: &[u8]) -> PreKeyBundle {
    UnverifiedPreKeyBundle::from_bytes(bytes).unwrap().verify(None).unwrap()
}

/// The primitives of a session setup, each alone.
struct Primitives {
    signer: signature::SigningKey,
    message: Vec<u8>,
    signature: signature::Signature,
    x25519: agreement::KeyPair,
    peer: agreement::PublicKey,
    kem: kem::KeyPair,
    kem_ciphertext: kem::Ciphertext,
    transcript: Vec<u8>,
    rng: ChaCha20Rng,
}

impl Primitives {
    fn new() -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(0x9e1);
        let signer = signature::SigningKey::generate(&mut rng);
        let message = vec![0x42; 220];
        let signature = signer.sign(b"ctx", &message, &mut rng);
        let x25519 = agreement::KeyPair::generate(&mut rng);
        let peer = *agreement::KeyPair::generate(&mut rng).public();
        let kem = kem::KeyPair::generate(&mut rng);
        let (kem_ciphertext, _) = kem.public().encapsulate(&mut rng);
        Self {
            signer,
            message,
            signature,
            x25519,
            peer,
            kem,
            kem_ciphertext,
            transcript: vec![0x17; 3500],
            rng,
        }
    }

    fn verify(&self) {
        self.signer
            .verifying_key()
            .verify(b"ctx", black_box(&self.message), &self.signature)
            .unwrap();
    }

    fn x25519_keygen(&mut self) {
        black_box(agreement::KeyPair::generate(&mut self.rng));
    }

    fn x25519_dh(&self) {
        black_box(self.x25519.secret().diffie_hellman(black_box(&self.peer)).unwrap());
    }

    fn kem_key_check(&self) {
        black_box(kem::PublicKey::from_bytes(black_box(self.kem.public().as_bytes())).unwrap());
    }

    fn kem_encapsulate(&mut self) {
        black_box(self.kem.public().encapsulate(&mut self.rng));
    }

    fn kem_decapsulate(&self) {
        black_box(self.kem.secret().decapsulate(black_box(&self.kem_ciphertext)));
    }

    fn transcript_hash(&self) {
        black_box(kdf::sha256(&[black_box(&self.transcript)]));
    }

    fn hkdf(&self) {
        let mut out = [0u8; 96];
        kdf::hkdf_sha256(b"salt", black_box(&[7u8; 160]), &[b"info"], &mut out).unwrap();
        black_box(out);
    }
}

fn benches(c: &mut Criterion) {
    let mut fixture = Fixture::new();
    let mut group = c.benchmark_group("handshake");
    group.bench_function("initiator", |b| b.iter(|| black_box(fixture.initiator())));
    group.bench_function("responder", |b| b.iter(|| black_box(fixture.responder())));
    group.bench_function("session_setup", |b| b.iter(|| black_box(fixture.session_setup())));
    group.finish();

    let mut p = Primitives::new();
    let mut group = c.benchmark_group("primitives");
    group.bench_function("bip340_verify", |b| b.iter(|| p.verify()));
    group.bench_function("x25519_keygen", |b| b.iter(|| p.x25519_keygen()));
    group.bench_function("x25519_dh", |b| b.iter(|| p.x25519_dh()));
    group.bench_function("mlkem768_key_check", |b| b.iter(|| p.kem_key_check()));
    group.bench_function("mlkem768_encapsulate", |b| b.iter(|| p.kem_encapsulate()));
    group.bench_function("mlkem768_decapsulate", |b| b.iter(|| p.kem_decapsulate()));
    group.bench_function("sha256_transcript", |b| b.iter(|| p.transcript_hash()));
    group.bench_function("hkdf_sha256_96", |b| b.iter(|| p.hkdf()));
    group.finish();
}

/// Microseconds per call of `routine`, over [`ITERATIONS`] calls.
fn time(mut routine: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        routine();
    }
    start.elapsed().as_secs_f64() * 1e6 / ITERATIONS as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// How many of each primitive one session setup (both sides) performs.
/// Initiator: five BIP340 verifications (identity certificate, device
/// certificate, signed, one-time and ML-KEM prekeys), the ML-KEM key check,
/// one X25519 key generation and four agreements, one encapsulation, the
/// transcript hash and HKDF; then its first ratchet step (one key generation,
/// one agreement, one HKDF). Responder: two verifications (identity and device
/// certificates), four agreements, one decapsulation, the transcript hash and
/// HKDF.
const COUNTS: [(&str, f64); 8] = [
    ("bip340_verify", 7.0),
    ("mlkem768_key_check", 1.0),
    ("x25519_keygen", 2.0),
    ("x25519_dh", 9.0),
    ("mlkem768_encapsulate", 1.0),
    ("mlkem768_decapsulate", 1.0),
    ("sha256_transcript", 2.0),
    ("hkdf_sha256_96", 3.0),
];

fn paired_run() {
    let mut fixture = Fixture::new();
    let mut p = Primitives::new();
    let mut setup = Vec::new();
    let mut each: Vec<Vec<f64>> = vec![Vec::new(); COUNTS.len()];
    for _ in 0..ROUNDS {
        setup.push(time(|| {
            black_box(fixture.session_setup());
        }));
        each[0].push(time(|| p.verify()));
        each[1].push(time(|| p.kem_key_check()));
        each[2].push(time(|| p.x25519_keygen()));
        each[3].push(time(|| p.x25519_dh()));
        each[4].push(time(|| p.kem_encapsulate()));
        each[5].push(time(|| p.kem_decapsulate()));
        each[6].push(time(|| p.transcript_hash()));
        each[7].push(time(|| p.hkdf()));
    }
    println!("\nsession setup against its primitives (median of {ROUNDS} paired rounds):");
    let mut sum = 0.0;
    for ((name, count), samples) in COUNTS.iter().zip(each) {
        let us = median(samples);
        sum += us * count;
        println!("  {name:<22} {us:>9.2} us  x {count:>2}  = {:>9.2} us", us * count);
    }
    let setup = median(setup);
    println!("  {:<22} {:>9.2} us", "sum of primitives", sum);
    println!("  {:<22} {:>9.2} us", "session setup", setup);
    println!("  ratio setup / primitives: {:.2} (target: at most 1.5)", setup / sum);
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
    paired_run();
}
