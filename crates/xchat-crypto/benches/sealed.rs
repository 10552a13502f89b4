//! Sealed-sender envelopes: seal and open of a 1 KiB payload, cold (the free
//! functions) and warm (`sealed::Sealer` and `sealed::Opener` with the peer
//! cached), and the cost of a miss when a flood of distinct valid senders
//! keeps a full `Opener` missing.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_crypto::device::Device;
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::Seed;
use xchat_crypto::sealed;

const PAYLOAD_BYTES: usize = 1024;

#[allow(clippy::unwrap_used)] // a bench's setup cannot fail on fixed inputs
fn sealed_sender(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let alice = Identity::from_seed(&Seed::from_bytes(&[1; 64]).unwrap()).unwrap();
    let bob = Identity::from_seed(&Seed::from_bytes(&[2; 64]).unwrap()).unwrap();
    let mallory = Identity::from_seed(&Seed::from_bytes(&[3; 64]).unwrap()).unwrap();
    let alice_phone = Device::new(&alice, 0, &mut rng);
    let bob_phone = Device::new(&bob, 0, &mut rng);
    let alice_public = alice.public();
    let recipient = *bob_phone.agreement().public();
    let payload = vec![0x42u8; PAYLOAD_BYTES];
    let envelope =
        sealed::seal(&alice_public, &alice_phone, &recipient, &payload, &mut rng).unwrap();

    // A full opener: Alice and MAX_CACHED_SENDERS - 1 others.
    let mut opener = sealed::Opener::new();
    opener.open(&bob_phone, &envelope).unwrap();
    for i in 1..sealed::MAX_CACHED_SENDERS {
        let device = Device::new(&mallory, i as u64, &mut rng);
        let other = sealed::seal(&mallory.public(), &device, &recipient, b"", &mut rng).unwrap();
        opener.open(&bob_phone, &other).unwrap();
    }
    let mut sealer = sealed::Sealer::new();
    sealer.seal(&alice_public, &alice_phone, &recipient, &payload, &mut rng).unwrap();

    // Twice as many distinct senders as the opener holds, opened in a cycle:
    // every open is a miss that evicts.
    let flood: Vec<Vec<u8>> = (0..2 * sealed::MAX_CACHED_SENDERS)
        .map(|i| {
            let device = Device::new(&mallory, i as u64, &mut rng);
            sealed::seal(&mallory.public(), &device, &recipient, &payload, &mut rng).unwrap()
        })
        .collect();
    let mut flooded = sealed::Opener::new();

    let mut group = c.benchmark_group("sealed");
    group.throughput(Throughput::Bytes(PAYLOAD_BYTES as u64));
    group.bench_function("seal_1KiB", |b| {
        b.iter(|| {
            sealed::seal(&alice_public, &alice_phone, &recipient, black_box(&payload), &mut rng)
                .unwrap()
        });
    });
    group.bench_function("seal_1KiB_warm", |b| {
        b.iter(|| {
            sealer
                .seal(&alice_public, &alice_phone, &recipient, black_box(&payload), &mut rng)
                .unwrap()
        });
    });
    group.bench_function("open_1KiB", |b| {
        b.iter(|| sealed::open(&bob_phone, black_box(&envelope)).unwrap());
    });
    group.bench_function("open_1KiB_warm", |b| {
        b.iter(|| opener.open(&bob_phone, black_box(&envelope)).unwrap());
    });
    // The same envelopes through the cold path, for the cost of a miss alone.
    let mut next = flood.iter().cycle();
    group.bench_function("open_1KiB_flood_cold", |b| {
        b.iter(|| sealed::open(&bob_phone, black_box(next.next().unwrap())).unwrap());
    });
    // One cursor for every batch criterion runs: restarting the cycle would
    // reopen the first senders while they are still cached.
    let mut next = flood.iter().cycle();
    group.bench_function("open_1KiB_flood_miss", |b| {
        b.iter(|| flooded.open(&bob_phone, black_box(next.next().unwrap())).unwrap());
    });
    group.bench_function("seal_open_1KiB", |b| {
        b.iter(|| {
            let envelope = sealed::seal(
                &alice_public,
                &alice_phone,
                &recipient,
                black_box(&payload),
                &mut rng,
            )
            .unwrap();
            sealed::open(&bob_phone, &envelope).unwrap()
        });
    });
    group.finish();

    let opened = opener.stats();
    let flooded = flooded.stats();
    println!(
        "sealed: warm opener {} hits / {} misses; flooded opener {} hits / {} misses",
        opened.hits, opened.misses, flooded.hits, flooded.misses
    );
}

criterion_group!(benches, sealed_sender);
criterion_main!(benches);
