//! Sealed-sender envelopes: seal and open of a 1 KiB payload.

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
    let alice_phone = Device::new(&alice, 0, &mut rng);
    let bob_phone = Device::new(&bob, 0, &mut rng);
    let alice_public = alice.public();
    let recipient = *bob_phone.agreement().public();
    let payload = vec![0x42u8; PAYLOAD_BYTES];
    let envelope =
        sealed::seal(&alice_public, &alice_phone, &recipient, &payload, &mut rng).unwrap();

    let mut group = c.benchmark_group("sealed");
    group.throughput(Throughput::Bytes(PAYLOAD_BYTES as u64));
    group.bench_function("seal_1KiB", |b| {
        b.iter(|| {
            sealed::seal(&alice_public, &alice_phone, &recipient, black_box(&payload), &mut rng)
                .unwrap()
        });
    });
    group.bench_function("open_1KiB", |b| {
        b.iter(|| sealed::open(&bob_phone, black_box(&envelope)).unwrap());
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
}

criterion_group!(benches, sealed_sender);
criterion_main!(benches);
