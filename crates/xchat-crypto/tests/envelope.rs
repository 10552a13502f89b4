//! The whole stack as a relay sees it: a ratchet message inside a sealed
//! envelope, after a real handshake. Every byte of an envelope is
//! authenticated, a rejected envelope changes no state, and a replay is
//! refused, also after both sides restart from their records.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed setup is a failed test

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_crypto::bundle::{PreKeys, UnverifiedPreKeyBundle};
use xchat_crypto::device::Device;
use xchat_crypto::handshake::{self, UnverifiedInitiation};
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_crypto::ratchet::Session;
use xchat_crypto::sealed;

const NOW_MS: u64 = 1_790_000_000_000;

struct Party {
    identity: Identity,
    device: Device,
    prekeys: PreKeys,
}

impl Party {
    fn new(entropy: u8, rng: &mut ChaCha20Rng) -> Self {
        let seed = RecoveryPhrase::from_entropy(&[entropy; 32]).to_seed("");
        let identity = Identity::from_seed(&seed).unwrap();
        let device = Device::new(&identity, NOW_MS, rng);
        let mut prekeys = PreKeys::new(&device, NOW_MS, rng);
        prekeys.generate_one_time_prekeys(&device, 4, rng).unwrap();
        Self { identity, device, prekeys }
    }

    fn seal_to(&self, to: &Party, payload: &[u8], rng: &mut ChaCha20Rng) -> Vec<u8> {
        let recipient = to.device.certificate().agreement_key();
        sealed::seal(&self.identity.public(), &self.device, recipient, payload, rng).unwrap()
    }

    /// What a restart does: every stateful object back from its record.
    fn restart(self) -> Self {
        let key = self.identity.signing_key().verifying_key();
        Self {
            identity: Identity::from_record(&self.identity.to_record()).unwrap(),
            device: Device::from_record(&self.device.to_record(), &key).unwrap(),
            prekeys: PreKeys::from_record(&self.prekeys.to_record()).unwrap(),
        }
    }
}

/// Alice and Bob after first contact: Alice's first envelope carries the
/// initiation and a ratchet message; Bob has answered it.
struct Conversation {
    alice: Party,
    bob: Party,
    alice_session: Session,
    bob_session: Session,
    first_envelope: Vec<u8>,
    initiation_len: usize,
    rng: ChaCha20Rng,
}

impl Conversation {
    fn new() -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(0xe7e1);
        let alice = Party::new(1, &mut rng);
        let mut bob = Party::new(2, &mut rng);
        let mut publication = bob.prekeys.publication(&bob.identity.public(), &bob.device).unwrap();
        let bob_key = bob.identity.signing_key().verifying_key();
        let bundle = UnverifiedPreKeyBundle::from_bytes(&publication.take_bundle().to_bytes())
            .unwrap()
            .verify(Some(&bob_key))
            .unwrap();
        let initiated =
            handshake::initiate(&alice.identity, &alice.device, &bundle, &mut rng).unwrap();
        let mut alice_session =
            Session::new_initiator(initiated.keys, initiated.their_ratchet_key, &mut rng).unwrap();
        let mut payload = initiated.initiation.to_bytes();
        let initiation_len = payload.len();
        payload.extend(alice_session.encrypt(b"hello bob", &mut rng).unwrap());
        let first_envelope = alice.seal_to(&bob, &payload, &mut rng);

        let (bob_session, text) = answer_first(&mut bob, &first_envelope, initiation_len, &mut rng)
            .expect("the first envelope opens");
        assert_eq!(text, b"hello bob");
        Self { alice, bob, alice_session, bob_session, first_envelope, initiation_len, rng }
    }

    fn alice_sends(&mut self, text: &[u8]) -> Vec<u8> {
        let message = self.alice_session.encrypt(text, &mut self.rng).unwrap();
        self.alice.seal_to(&self.bob, &message, &mut self.rng)
    }

    /// Bob's side of delivery: open the envelope, check the sender, decrypt.
    fn bob_receives(&mut self, envelope: &[u8]) -> Option<Vec<u8>> {
        let opened = sealed::open(&self.bob.device, envelope).ok()?;
        if opened.sender() != &self.alice.identity.public() {
            return None;
        }
        let plaintext = self.bob_session.decrypt(opened.payload(), &mut self.rng).ok()?;
        Some(plaintext.to_vec())
    }

    fn restart_both(self) -> Self {
        Self {
            alice: self.alice.restart(),
            bob: self.bob.restart(),
            alice_session: Session::from_record(&self.alice_session.to_record()).unwrap(),
            bob_session: Session::from_record(&self.bob_session.to_record()).unwrap(),
            ..self
        }
    }
}

/// Bob opens a first envelope, answers the handshake, decrypts, and only
/// then consumes the one-time prekeys (compute, then commit).
fn answer_first(
    bob: &mut Party,
    envelope: &[u8],
    initiation_len: usize,
    rng: &mut ChaCha20Rng,
) -> Option<(Session, Vec<u8>)> {
    let opened = sealed::open(&bob.device, envelope).ok()?;
    let (initiation, message) = opened.payload().split_at_checked(initiation_len)?;
    let initiation = UnverifiedInitiation::from_bytes(initiation).ok()?;
    let responded =
        handshake::respond(&bob.identity, &bob.device, &bob.prekeys, initiation, None).ok()?;
    if responded.their_identity != *opened.sender() {
        return None;
    }
    let mut session = Session::new_responder(responded.keys, responded.our_ratchet_key);
    let text = session.decrypt(message, rng).ok()?.to_vec();
    bob.prekeys.consume(responded.prekey_use).ok()?;
    Some((session, text))
}

#[test]
fn every_byte_of_an_envelope_is_authenticated_and_a_refusal_changes_nothing() {
    let mut conversation = Conversation::new();
    let envelope = conversation.alice_sends(b"the real message");
    let before = conversation.bob_session.to_record();

    let mut refused = 0;
    for index in 0..envelope.len() {
        for bit in [0x01, 0x80] {
            let mut flipped = envelope.clone();
            flipped[index] ^= bit;
            assert_eq!(conversation.bob_receives(&flipped), None, "flip {bit:#x} at {index}");
            refused += 1;
        }
    }
    for len in 0..envelope.len() {
        assert_eq!(conversation.bob_receives(&envelope[..len]), None, "truncated to {len}");
        refused += 1;
    }
    for extra in [&[0u8][..], &[0xff; 16], &[0x5a; 300]] {
        let mut extended = envelope.clone();
        extended.extend_from_slice(extra);
        assert_eq!(conversation.bob_receives(&extended), None, "extended by {}", extra.len());
        refused += 1;
    }
    assert_eq!(refused, 3 * envelope.len() + 3);
    assert_eq!(*conversation.bob_session.to_record(), *before, "a refusal changed the session");

    assert_eq!(conversation.bob_receives(&envelope).as_deref(), Some(&b"the real message"[..]));
}

#[test]
fn replayed_envelopes_are_refused_also_after_a_restart_from_records() {
    let mut conversation = Conversation::new();
    let envelopes: Vec<Vec<u8>> =
        (0..5u8).map(|i| conversation.alice_sends(&[b'm', b'0' + i])).collect();
    // Out of order, with the third held back.
    for index in [1, 0, 4, 3] {
        let text = conversation.bob_receives(&envelopes[index]).expect("first delivery opens");
        assert_eq!(text, [b'm', b'0' + index as u8]);
    }
    for index in [1, 0, 4, 3] {
        assert_eq!(conversation.bob_receives(&envelopes[index]), None, "replay of {index}");
    }

    let mut conversation = conversation.restart_both();
    for index in [1, 0, 4, 3] {
        assert_eq!(conversation.bob_receives(&envelopes[index]), None, "replay of {index}");
    }
    // The held-back message still opens after the restart, exactly once.
    assert_eq!(conversation.bob_receives(&envelopes[2]).as_deref(), Some(&b"m2"[..]));
    assert_eq!(conversation.bob_receives(&envelopes[2]), None);

    // A replay of the first envelope cannot start a second session: its
    // one-time prekey is gone, also from the restored prekeys.
    let first = conversation.first_envelope.clone();
    let len = conversation.initiation_len;
    assert!(answer_first(&mut conversation.bob, &first, len, &mut conversation.rng).is_none());

    // And the conversation goes on, both ways.
    let envelope = conversation.alice_sends(b"still here");
    assert_eq!(conversation.bob_receives(&envelope).as_deref(), Some(&b"still here"[..]));
    let reply = conversation.bob_session.encrypt(b"me too", &mut conversation.rng).unwrap();
    let sealed = conversation.bob.seal_to(&conversation.alice, &reply, &mut conversation.rng);
    let opened = sealed::open(&conversation.alice.device, &sealed).unwrap();
    assert_eq!(opened.sender(), &conversation.bob.identity.public());
    let text = conversation.alice_session.decrypt(opened.payload(), &mut conversation.rng).unwrap();
    assert_eq!(text.as_slice(), b"me too");
}

#[test]
fn an_envelope_for_another_device_or_from_an_impostor_is_refused() {
    let mut conversation = Conversation::new();
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let mallory = Party::new(3, &mut rng);

    // Sealed to Mallory's device: Bob cannot open it.
    let message = conversation.alice_session.encrypt(b"for bob", &mut rng).unwrap();
    let misdirected = conversation.alice.seal_to(&mallory, &message, &mut rng);
    assert_eq!(conversation.bob_receives(&misdirected), None);

    // Mallory re-seals Alice's ratchet message under her own certificate:
    // the envelope opens, but names Mallory, and Bob's session for Alice is
    // not Mallory's.
    let impostor = mallory.seal_to(&conversation.bob, &message, &mut rng);
    let opened = sealed::open(&conversation.bob.device, &impostor).unwrap();
    assert_eq!(opened.sender(), &mallory.identity.public());
    assert_eq!(conversation.bob_receives(&impostor), None);

    // The message itself, delivered properly, still opens once.
    let proper = conversation.alice.seal_to(&conversation.bob, &message, &mut rng);
    assert_eq!(conversation.bob_receives(&proper).as_deref(), Some(&b"for bob"[..]));
}
