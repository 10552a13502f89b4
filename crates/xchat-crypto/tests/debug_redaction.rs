//! `Debug` of every secret-holding type is redacted: snapshots pin what is
//! printed, so a derived `Debug` that leaks key bytes cannot slip in.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed setup is a failed test

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_crypto::{aead, agreement, device, identity, kem, phrase, signature};

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(0x5ec2e7)
}

fn identity() -> identity::Identity {
    let seed = phrase::RecoveryPhrase::from_entropy(&[9u8; 32]).to_seed("");
    identity::Identity::from_seed(&seed).unwrap()
}

#[test]
fn primitive_secrets_are_redacted() {
    let mut rng = rng();
    let x25519 = agreement::KeyPair::generate(&mut rng);
    insta::assert_snapshot!(format!("{:?}", x25519.secret()), @"agreement::SecretKey(<redacted>)");
    let other = agreement::KeyPair::generate(&mut rng);
    let shared = x25519.secret().diffie_hellman(other.public()).unwrap();
    insta::assert_snapshot!(format!("{shared:?}"), @"agreement::SharedSecret(<redacted>)");

    let signing = signature::SigningKey::generate(&mut rng);
    insta::assert_snapshot!(format!("{signing:?}"), @"signature::SigningKey(<redacted>)");

    let kem = kem::KeyPair::generate(&mut rng);
    insta::assert_snapshot!(format!("{:?}", kem.secret()), @"kem::SecretKey(<redacted>)");
    let (_, kem_shared) = kem.public().encapsulate(&mut rng);
    insta::assert_snapshot!(format!("{kem_shared:?}"), @"kem::SharedSecret(<redacted>)");

    let aead = aead::Key::new(&[7u8; 32]);
    insta::assert_snapshot!(format!("{aead:?}"), @"aead::Key(<redacted>)");
}

#[test]
fn identity_secrets_are_redacted() {
    let phrase = phrase::RecoveryPhrase::from_entropy(&[9u8; 32]);
    insta::assert_snapshot!(format!("{phrase:?}"), @"RecoveryPhrase(<redacted>)");
    let seed = phrase.to_seed("");
    insta::assert_snapshot!(format!("{seed:?}"), @"Seed(<redacted>)");
    let master = identity::ExtendedPrivateKey::master(&seed).unwrap();
    insta::assert_snapshot!(format!("{master:?}"), @"ExtendedPrivateKey(<redacted>)");

    let identity = identity();
    let printed = format!("{identity:?}");
    let secret_hex = hex::encode(identity.signing_key().to_bytes().as_ref());
    assert!(!printed.contains(&secret_hex));
    insta::assert_snapshot!("identity_debug", printed);

    let device = device::Device::new(&identity, 1_700_000_000_000, &mut rng());
    insta::assert_snapshot!("device_debug", format!("{device:?}"));
}

#[test]
fn handshake_results_are_redacted() {
    let mut rng = rng();
    let alice = identity();
    let alice_device = device::Device::new(&alice, 1, &mut rng);
    let bob_seed = phrase::RecoveryPhrase::from_entropy(&[8u8; 32]).to_seed("");
    let bob = identity::Identity::from_seed(&bob_seed).unwrap();
    let bob_device = device::Device::new(&bob, 1, &mut rng);
    let prekeys = xchat_crypto::bundle::PreKeys::new(&bob_device, 1, &mut rng);
    let bundle = prekeys.bundle(&bob.public(), &bob_device, None, None).unwrap();
    let initiated =
        xchat_crypto::handshake::initiate(&alice, &alice_device, &bundle, &mut rng).unwrap();
    let printed = format!("{initiated:?}");
    assert!(printed.contains("SessionKeys(<redacted>)"), "{printed}");
    insta::assert_snapshot!("initiated_debug", printed);
}
