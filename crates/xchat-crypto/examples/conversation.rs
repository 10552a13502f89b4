//! A whole encrypted conversation between Alice and Bob, narrated.
//!
//! Everything here is xchat's real cryptographic core; only the network is
//! played by this program (a `Vec` of envelopes that it drops, reorders and
//! replays on purpose).
//!
//! Run with `cargo run --release -p xchat-crypto --example conversation`.

use std::error::Error;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use xchat_crypto::address::Address;
use xchat_crypto::bundle::{PreKeys, UnverifiedPreKeyBundle};
use xchat_crypto::device::Device;
use xchat_crypto::file::{self, FileKey};
use xchat_crypto::handshake::{self, UnverifiedInitiation};
use xchat_crypto::identity::{Identity, PublicIdentity};
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_crypto::ratchet::Session;
use xchat_crypto::safety::SafetyNumber;
use xchat_crypto::sealed;

/// The example's clock: a fixed moment, so every run tells the same story.
const NOW_MS: u64 = 1_790_000_000_000;

struct User {
    name: &'static str,
    identity: Identity,
    device: Device,
    prekeys: PreKeys,
}

impl User {
    fn new(name: &'static str, rng: &mut ChaCha20Rng) -> Result<Self, Box<dyn Error>> {
        let phrase = RecoveryPhrase::generate(rng);
        let words = phrase.to_words();
        let first: Vec<&str> = words.split(' ').take(3).collect();
        let identity = Identity::from_seed(&phrase.to_seed(""))?;
        let device = Device::new(&identity, NOW_MS, rng);
        let mut prekeys = PreKeys::new(&device, NOW_MS, rng);
        prekeys.generate_one_time_prekeys(&device, 10, rng)?;
        let address = Address::from_key(identity.signing_key().verifying_key());
        println!("  {name}: recovery phrase \"{} ...\" (24 words, shown once)", first.join(" "));
        println!("  {name}: address {address}");
        Ok(Self { name, identity, device, prekeys })
    }

    fn public(&self) -> PublicIdentity {
        self.identity.public()
    }
}

fn hex_prefix(bytes: &[u8], len: usize) -> String {
    let shown: String = bytes.iter().take(len).map(|b| format!("{b:02x}")).collect();
    format!("{shown}... ({} bytes)", bytes.len())
}

fn main() -> Result<(), Box<dyn Error>> {
    // The only randomness source of the example; a real node uses the OS's.
    let mut rng = ChaCha20Rng::seed_from_u64(2026);

    println!("1. Two people make wallet-style identities from recovery phrases");
    let alice = User::new("Alice", &mut rng)?;
    let bob = User::new("Bob", &mut rng)?;

    println!("\n2. They compare safety numbers (in person, or over a call)");
    let alice_sees = SafetyNumber::new(
        &alice.identity.signing_key().verifying_key(),
        &bob.identity.signing_key().verifying_key(),
    );
    let bob_sees = SafetyNumber::new(
        &bob.identity.signing_key().verifying_key(),
        &alice.identity.signing_key().verifying_key(),
    );
    println!("  Alice's screen: {alice_sees}");
    println!("  Bob's screen:   {bob_sees}");
    assert!(alice_sees.matches(&bob_sees.to_bytes()), "both sides see the same number");

    println!("\n3. Bob publishes a prekey bundle; Alice fetches and verifies it");
    let mut publication = bob.prekeys.publication(&bob.public(), &bob.device)?;
    let bundle_bytes = publication.take_bundle().to_bytes();
    println!("  bundle: {}", hex_prefix(&bundle_bytes, 12));
    let bob_key = bob.identity.signing_key().verifying_key();
    let bundle = UnverifiedPreKeyBundle::from_bytes(&bundle_bytes)?.verify(Some(&bob_key))?;
    println!("  signatures check out: identity -> device -> prekeys (BIP340)");

    println!("\n4. Alice runs the post-quantum handshake (X25519 + ML-KEM-768)");
    let initiated = handshake::initiate(&alice.identity, &alice.device, &bundle, &mut rng)?;
    let mut alice_session =
        Session::new_initiator(initiated.keys, initiated.their_ratchet_key, &mut rng)?;
    let initiation = initiated.initiation.to_bytes();
    println!("  initiation (with the ML-KEM ciphertext): {}", hex_prefix(&initiation, 12));

    println!("\n5. Alice's first message, sealed so relays cannot tell who sent it");
    let text = "Hi Bob! This is end-to-end encrypted.";
    let ratchet_message = alice_session.encrypt(text.as_bytes(), &mut rng)?;
    let mut first = initiation.clone();
    first.extend_from_slice(&ratchet_message);
    let envelope = sealed::seal(
        &alice.public(),
        &alice.device,
        bob.device.certificate().agreement_key(),
        &first,
        &mut rng,
    )?;
    println!("  what a relaying node sees: {}", hex_prefix(&envelope, 24));

    let opened = sealed::open(&bob.device, &envelope)?;
    println!("  Bob opens it: from {}", Address::from_key(*opened.sender().signing_key()));
    let payload = opened.into_payload();
    let (initiation_bytes, message) = payload.split_at(initiation.len());
    let responded = handshake::respond(
        &bob.identity,
        &bob.device,
        &bob.prekeys,
        UnverifiedInitiation::from_bytes(initiation_bytes)?,
        Some(&alice.identity.signing_key().verifying_key()),
    )?;
    let mut bob_session = Session::new_responder(responded.keys, responded.our_ratchet_key);
    let plaintext = bob_session.decrypt(message, &mut rng)?;
    println!("  Bob reads: \"{}\"", String::from_utf8_lossy(&plaintext));
    let mut bob_prekeys = bob.prekeys;
    bob_prekeys.consume(responded.prekey_use)?;
    println!("  Bob deletes the one-time prekey it used (forward secrecy)");

    println!("\n6. A conversation over a bad network: lost, reordered, replayed");
    let lines = ["How are you?", "Did you get my last one?", "Nevermind, here it is again."];
    let mut wire: Vec<Vec<u8>> = Vec::new();
    for line in lines {
        wire.push(alice_session.encrypt(line.as_bytes(), &mut rng)?);
    }
    // Delivered out of order: the third, then the first; the second is lost.
    for index in [2, 0] {
        let read = bob_session.decrypt(&wire[index], &mut rng)?;
        println!("  Bob reads message {}: \"{}\"", index + 1, String::from_utf8_lossy(&read));
    }
    match bob_session.decrypt(&wire[0], &mut rng) {
        Ok(_) => return Err("a replayed message was accepted".into()),
        Err(error) => println!("  a replay of message 1 is refused: {error}"),
    }
    let mut tampered = wire[1].clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    match bob_session.decrypt(&tampered, &mut rng) {
        Ok(_) => return Err("a tampered message was accepted".into()),
        Err(error) => println!("  a tampered copy of message 2 is refused: {error}"),
    }
    let late = bob_session.decrypt(&wire[1], &mut rng)?;
    println!("  message 2 arrives late and still opens: \"{}\"", String::from_utf8_lossy(&late));

    println!("\n7. Ping-pong: every reply turns the DH ratchet (post-compromise security)");
    for round in 0..3 {
        let reply = format!("reply {round} from {}", bob.name);
        let wire = bob_session.encrypt(reply.as_bytes(), &mut rng)?;
        let read = alice_session.decrypt(&wire, &mut rng)?;
        println!("  {} reads: \"{}\"", alice.name, String::from_utf8_lossy(&read));
        let answer = format!("answer {round} from {}", alice.name);
        let wire = alice_session.encrypt(answer.as_bytes(), &mut rng)?;
        let read = bob_session.decrypt(&wire, &mut rng)?;
        println!("  {} reads: \"{}\"", bob.name, String::from_utf8_lossy(&read));
    }

    println!("\n8. Bob's phone restarts: the session is restored from its record");
    let record = bob_session.to_record();
    let mut bob_session = Session::from_record(&record)?;
    let wire = alice_session.encrypt(b"Still there?", &mut rng)?;
    let read = bob_session.decrypt(&wire, &mut rng)?;
    println!("  session record: {} bytes (versioned; the store keeps it encrypted)", record.len());
    println!("  Bob reads after the restart: \"{}\"", String::from_utf8_lossy(&read));

    println!("\n9. Alice sends a 4 MiB file: its own key, 64 KiB chunks, BLAKE3 hash");
    let mut original = vec![0u8; 4 * 1024 * 1024];
    rng.fill_bytes(&mut original);
    let file_key = FileKey::generate(&mut rng);
    let mut ciphertext = Vec::new();
    let sent = file::encrypt(&file_key, original.as_slice(), &mut ciphertext)?;
    let mut received = Vec::new();
    let got = file::decrypt(&file_key, ciphertext.as_slice(), &mut received)?;
    println!("  sent:     {:?}", sent);
    println!("  received: {:?}", got);
    if sent.hash() != got.hash() || received != original {
        return Err("the file changed on the way".into());
    }
    println!("  Bob's copy matches the hash Alice's message carried");

    println!("\nEvery step verified.");
    Ok(())
}
