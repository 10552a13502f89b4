//! File cipher throughput against the raw AES-256-GCM seal, in the same run.
//!
//! - `raw_aes_gcm_seal_64KiB`: `aead::Key::seal` of one 64 KiB buffer, the ceiling;
//! - `chunk_seal_64KiB`: `ChunkCipher::seal_chunk` of one 64 KiB chunk;
//! - `blake3_64MiB`: BLAKE3 over 64 MiB in 64 KiB `Hasher::update` calls, what
//!   the digest costs on its own;
//! - `encrypt_64MiB` / `decrypt_64MiB`: the streaming API over a 64 MiB
//!   in-memory file, BLAKE3 digest included.
//!
//! After criterion's report, a paired run measures the five again in
//! interleaved rounds of 64 MiB each, so that load from other processes
//! hits all of them alike, and prints the median bytes per second of each
//! and its ratio to the raw seal.

// A bench measures wall time; the crate's purity rule (no clock) is for the
// library. Setup on fixed inputs cannot fail.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_crypto::aead;
use xchat_crypto::file::{self, CHUNK_BYTES, ChunkCipher, FileKey};

const FILE_BYTES: usize = 64 * 1024 * 1024;
/// Rounds of the paired run.
const ROUNDS: usize = 15;

/// Everything the benchmarks work on.
struct Fixture {
    raw_key: aead::Key,
    file_key: FileKey,
    cipher: ChunkCipher,
    chunk: Vec<u8>,
    plaintext: Vec<u8>,
    ciphertext: Vec<u8>,
    out: Vec<u8>,
}

impl Fixture {
    fn new() -> Self {
        let file_key = FileKey::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let plaintext: Vec<u8> = (0..FILE_BYTES).map(|i| (i * 7 + i / 4099) as u8).collect();
        let mut ciphertext = Vec::with_capacity(FILE_BYTES + FILE_BYTES / 1024);
        file::encrypt(&file_key, plaintext.as_slice(), &mut ciphertext).unwrap();
        let mut chunk = vec![0x5au8; CHUNK_BYTES];
        chunk.reserve(aead::TAG_BYTES);
        Self {
            raw_key: aead::Key::new(&[7u8; aead::KEY_BYTES]),
            cipher: ChunkCipher::new(&file_key),
            file_key,
            chunk,
            out: Vec::with_capacity(ciphertext.len()),
            plaintext,
            ciphertext,
        }
    }

    fn raw_seal(&mut self) {
        self.chunk.truncate(CHUNK_BYTES);
        self.raw_key.seal(&[0u8; aead::NONCE_BYTES], &[], black_box(&mut self.chunk));
    }

    fn chunk_seal(&mut self) {
        self.chunk.truncate(CHUNK_BYTES);
        self.cipher.seal_chunk(3, false, black_box(&mut self.chunk)).unwrap();
    }

    fn blake3(&self) {
        let mut hasher = blake3::Hasher::new();
        for chunk in self.plaintext.chunks(CHUNK_BYTES) {
            hasher.update(black_box(chunk));
        }
        black_box(hasher.finalize());
    }

    fn encrypt(&mut self) {
        self.out.clear();
        black_box(file::encrypt(&self.file_key, self.plaintext.as_slice(), &mut self.out).unwrap());
    }

    fn decrypt(&mut self) {
        self.out.clear();
        black_box(
            file::decrypt(&self.file_key, self.ciphertext.as_slice(), &mut self.out).unwrap(),
        );
    }
}

fn file_cipher(c: &mut Criterion) {
    let mut fixture = Fixture::new();

    let mut group = c.benchmark_group("file_chunk");
    group.throughput(Throughput::Bytes(CHUNK_BYTES as u64));
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("raw_aes_gcm_seal_64KiB", |b| b.iter(|| fixture.raw_seal()));
    group.bench_function("chunk_seal_64KiB", |b| b.iter(|| fixture.chunk_seal()));
    group.finish();

    let mut group = c.benchmark_group("file_stream");
    group.throughput(Throughput::Bytes(FILE_BYTES as u64));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("blake3_64MiB", |b| b.iter(|| fixture.blake3()));
    group.bench_function("encrypt_64MiB", |b| b.iter(|| fixture.encrypt()));
    group.bench_function("decrypt_64MiB", |b| b.iter(|| fixture.decrypt()));
    group.finish();
}

/// Seconds `routine` takes.
fn time(mut routine: impl FnMut()) -> f64 {
    let start = Instant::now();
    routine();
    start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Interleaved rounds: each measures all five over 64 MiB, back to back.
fn paired_run() {
    #[cfg(target_arch = "x86_64")]
    println!(
        "cpu: aes {} pclmulqdq {} vaes {} vpclmulqdq {} avx2 {} avx512f {} (blake3 and aws-lc pick their backends at run time)",
        std::arch::is_x86_feature_detected!("aes"),
        std::arch::is_x86_feature_detected!("pclmulqdq"),
        std::arch::is_x86_feature_detected!("vaes"),
        std::arch::is_x86_feature_detected!("vpclmulqdq"),
        std::arch::is_x86_feature_detected!("avx2"),
        std::arch::is_x86_feature_detected!("avx512f"),
    );
    let mut fixture = Fixture::new();
    let chunks = FILE_BYTES / CHUNK_BYTES;
    let names = [
        "raw_aes_gcm_seal",
        "chunk_seal",
        "blake3",
        "encrypt (with blake3)",
        "decrypt (with blake3)",
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..ROUNDS {
        let seconds = [
            time(|| (0..chunks).for_each(|_| fixture.raw_seal())),
            time(|| (0..chunks).for_each(|_| fixture.chunk_seal())),
            time(|| fixture.blake3()),
            time(|| fixture.encrypt()),
            time(|| fixture.decrypt()),
        ];
        for (i, s) in seconds.iter().enumerate() {
            rates[i].push(FILE_BYTES as f64 / s);
            ratios[i].push(seconds[0] / s);
        }
    }
    println!("paired run, {ROUNDS} rounds of 64 MiB each, medians:");
    println!("{:<28} {:>10} {:>9}", "", "MB/s", "vs raw");
    for (i, name) in names.iter().enumerate() {
        println!(
            "{name:<28} {:>10.0} {:>8.1}%",
            median(rates[i].clone()) / 1e6,
            100.0 * median(ratios[i].clone())
        );
    }
    // AES-GCM then BLAKE3 over the same bytes, on one core.
    let bound: Vec<f64> =
        (0..ROUNDS).map(|r| 1.0 / (1.0 / rates[0][r] + 1.0 / rates[2][r])).collect();
    let bound_ratio: Vec<f64> = (0..ROUNDS).map(|r| bound[r] / rates[0][r]).collect();
    println!(
        "{:<28} {:>10.0} {:>8.1}%",
        "bound: raw seal + blake3",
        median(bound) / 1e6,
        100.0 * median(bound_ratio)
    );
}

criterion_group!(benches, file_cipher);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // only checks that the benchmarks run.
    if std::env::args().any(|arg| arg == "--bench") {
        paired_run();
    }
}
