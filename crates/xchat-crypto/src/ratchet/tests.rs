//! Unit tests of the session that need its internals: forged headers that
//! only a peer holding the header key could make, counters at their limits,
//! the byte layout, records. The conversation tests are in
//! `tests/ratchet.rs`.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use super::*;

fn pair(seed: u64) -> (Session, Session, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut okm = [0u8; 96];
    rng.fill_bytes(&mut okm);
    let mut associated_data = [0u8; 32];
    rng.fill_bytes(&mut associated_data);
    let responder_key = agreement::KeyPair::generate(&mut rng);
    let initiator = Session::new_initiator(
        SessionKeys::from_okm(&okm, associated_data),
        *responder_key.public(),
        &mut rng,
    )
    .unwrap();
    let responder =
        Session::new_responder(SessionKeys::from_okm(&okm, associated_data), responder_key);
    (initiator, responder, rng)
}

/// A message with an authentic header (sealed under `header_key`, as only
/// the peer could) and a body of garbage.
fn forge(session: &Session, header_key: &HeaderKey, header: &Header) -> Vec<u8> {
    let nonce = [7u8; 12];
    let mut message = vec![VERSION];
    message.extend_from_slice(&nonce);
    message.extend_from_slice(&header_key.seal(
        &nonce,
        &header_aad(&session.associated_data),
        header,
    ));
    message.resize(MIN_MESSAGE_BYTES, 0x55);
    message
}

#[test]
fn decrypt_refuses_counter_beyond_max_skip_before_deriving_keys() {
    let (mut alice, mut bob, mut rng) = pair(1);
    let first = alice.encrypt(b"hello", &mut rng).unwrap();
    bob.decrypt(&first, &mut rng).unwrap();
    let before = bob.to_record();
    let sending = alice.sending.as_ref().unwrap();
    // Were a single key derived per skipped message, u32::MAX - 1 of them
    // would not finish; the refusal comes from the counter alone.
    for (number, expected) in [
        (u32::MAX - 1, Err(DecryptError::TooManySkipped { skip: u32::MAX - 2, max: MAX_SKIP })),
        (1 + MAX_SKIP + 1, Err(DecryptError::TooManySkipped { skip: MAX_SKIP + 1, max: MAX_SKIP })),
        // Exactly MAX_SKIP is allowed: the keys are derived, then the
        // garbage body fails and nothing is kept.
        (1 + MAX_SKIP, Err(DecryptError::Undecryptable)),
    ] {
        let header = Header {
            ratchet_key: *alice.our_ratchet_key.public(),
            previous_chain_length: 0,
            message_number: number,
        };
        let forged = forge(&alice, &sending.header_key, &header);
        assert_eq!(bob.decrypt(&forged, &mut rng).map(|_| ()), expected, "n = {number}");
        assert_eq!(bob.to_record(), before);
    }
}

#[test]
fn ratchet_step_refuses_counters_beyond_max_skip_before_any_agreement() {
    let (mut alice, mut bob, mut rng) = pair(2);
    bob.decrypt(&alice.encrypt(b"1", &mut rng).unwrap(), &mut rng).unwrap();
    alice.decrypt(&bob.encrypt(b"2", &mut rng).unwrap(), &mut rng).unwrap();
    // Alice now has a receiving chain; a header under her next receiving
    // header key starts a DH ratchet step.
    let before = alice.to_record();
    let new_key = agreement::KeyPair::generate(&mut rng);
    for (previous, number, skip) in [
        (0, u32::MAX, u32::MAX),
        (0, MAX_SKIP + 1, MAX_SKIP + 1),
        (u32::MAX, 0, u32::MAX - 1),
        (1 + MAX_SKIP + 1, 0, MAX_SKIP + 1),
    ] {
        let header = Header {
            ratchet_key: *new_key.public(),
            previous_chain_length: previous,
            message_number: number,
        };
        let forged = forge(&alice, &alice.next_receiving_header_key, &header);
        assert_eq!(
            alice.decrypt(&forged, &mut rng).map(|_| ()),
            Err(DecryptError::TooManySkipped { skip, max: MAX_SKIP })
        );
        assert_eq!(alice.to_record(), before);
    }
}

#[test]
fn decrypt_refuses_current_chain_header_with_another_ratchet_key() {
    let (mut alice, mut bob, mut rng) = pair(3);
    bob.decrypt(&alice.encrypt(b"1", &mut rng).unwrap(), &mut rng).unwrap();
    let before = bob.to_record();
    let header = Header {
        ratchet_key: PublicKey::from_bytes([9u8; 32]),
        previous_chain_length: 0,
        message_number: 1,
    };
    let forged = forge(&alice, &alice.sending.as_ref().unwrap().header_key, &header);
    assert_eq!(bob.decrypt(&forged, &mut rng).map(|_| ()), Err(DecryptError::Undecryptable));
    assert_eq!(bob.to_record(), before);
}

#[test]
fn decrypt_refuses_message_number_that_would_overflow_the_chain() {
    let (mut alice, mut bob, mut rng) = pair(4);
    bob.decrypt(&alice.encrypt(b"1", &mut rng).unwrap(), &mut rng).unwrap();
    bob.receiving.as_mut().unwrap().next = u32::MAX - 1;
    let before = bob.to_record();
    let header = Header {
        ratchet_key: *alice.our_ratchet_key.public(),
        previous_chain_length: 0,
        message_number: u32::MAX,
    };
    let forged = forge(&alice, &alice.sending.as_ref().unwrap().header_key, &header);
    assert_eq!(bob.decrypt(&forged, &mut rng).map(|_| ()), Err(DecryptError::Undecryptable));
    assert_eq!(bob.to_record(), before);
}

#[test]
fn limits_match_the_documented_values() {
    assert_eq!(PREFIX_BYTES, 69);
    assert_eq!(MIN_MESSAGE_BYTES, 341);
    assert_eq!(MAX_PLAINTEXT_BYTES, 258_047);
    assert_eq!(MAX_MESSAGE_BYTES, 258_133);
    assert_eq!(MAX_SKIPPED_KEYS, 4_000);
    assert_eq!(FIXED_RECORD_BYTES, 340);
    assert_eq!(MAX_RECORD_BYTES, 144_520);
}

#[test]
fn encrypt_refuses_an_exhausted_chain() {
    let (mut alice, _, mut rng) = pair(5);
    alice.sending.as_mut().unwrap().next = u32::MAX;
    let before = alice.to_record();
    assert_eq!(alice.encrypt(b"x", &mut rng), Err(EncryptError::ChainExhausted));
    assert_eq!(alice.to_record(), before);
}

#[test]
fn responder_cannot_send_before_the_first_message() {
    let (_, mut bob, mut rng) = pair(6);
    assert_eq!(bob.encrypt(b"x", &mut rng), Err(EncryptError::AwaitingFirstMessage));
}

#[test]
fn new_initiator_refuses_a_low_order_ratchet_key() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let keys = SessionKeys::from_okm(&[1u8; 96], [2u8; 32]);
    assert_eq!(
        Session::new_initiator(keys, PublicKey::from_bytes([0u8; 32]), &mut rng).map(|_| ()),
        Err(RatchetError::WeakKey)
    );
}

#[test]
fn message_layout_matches_the_documented_table() {
    let (mut alice, mut bob, mut rng) = pair(8);
    let message = alice.encrypt(b"hi", &mut rng).unwrap();
    assert_eq!(message.len(), 1 + 12 + 56 + 256 + 16);
    assert_eq!(message.len(), MIN_MESSAGE_BYTES);
    assert_eq!(message[0], VERSION);
    let nonce: [u8; 12] = message[1..13].try_into().unwrap();
    let encrypted_header: [u8; 56] = message[13..69].try_into().unwrap();

    // The header opens under the initiator's header key with the version
    // and the associated data as its AAD.
    let sending_header_key = &alice.sending.as_ref().unwrap().header_key;
    let mut aad = vec![VERSION];
    aad.extend_from_slice(&alice.associated_data);
    let header = sending_header_key.open(&nonce, &aad, &encrypted_header).unwrap();
    assert_eq!(header.ratchet_key, *alice.our_ratchet_key.public());
    assert_eq!((header.previous_chain_length, header.message_number), (0, 0));

    // The body opens under message key 0 with the same nonce, and the
    // associated data then bytes 0..69 as its AAD.
    let initiator = pair(8).0;
    let (message_key, _) = initiator.sending.as_ref().unwrap().chain_key.step();
    let mut aad = alice.associated_data.to_vec();
    aad.extend_from_slice(&message[..69]);
    let mut body = message[69..].to_vec();
    let padded = aead::Key::new(&message_key).open(&nonce, &aad, &mut body).unwrap();
    assert_eq!(padding::unpad(padded).unwrap(), b"hi");

    assert_eq!(&*bob.decrypt(&message, &mut rng).unwrap(), b"hi");
}

#[test]
fn rolled_back_sender_never_reuses_a_nonce_under_a_message_key() {
    let (mut alice, mut bob, mut rng) = pair(9);
    let saved = alice.to_record();
    let first = alice.encrypt(b"first", &mut rng).unwrap();
    // The device is restored from the older record and sends something
    // else under the same message key.
    let mut restored = Session::from_record(&saved).unwrap();
    let second = restored.encrypt(b"second", &mut rng).unwrap();
    assert_ne!(first[1..13], second[1..13]);
    assert_eq!(&*bob.decrypt(&first, &mut rng).unwrap(), b"first");
    // The receiver already used message key 0: the second message is a
    // replay to it.
    assert_eq!(bob.decrypt(&second, &mut rng).map(|_| ()), Err(DecryptError::Undecryptable));
}

#[test]
fn session_debug_is_redacted() {
    let (mut alice, mut bob, mut rng) = pair(10);
    let _lost = alice.encrypt(b"1", &mut rng).unwrap();
    bob.decrypt(&alice.encrypt(b"2", &mut rng).unwrap(), &mut rng).unwrap();
    insta::assert_snapshot!(
        format!("{alice:?}"),
        @r#"Session { sent: Some(2), received: None, skipped_keys: 0, keys: "<redacted>" }"#
    );
    insta::assert_snapshot!(
        format!("{bob:?}"),
        @r#"Session { sent: Some(0), received: Some(2), skipped_keys: 1, keys: "<redacted>" }"#
    );
}

/// A session with skipped keys in two chains, and both chains live.
fn busy_session(seed: u64) -> (Session, Session, ChaCha20Rng) {
    let (mut alice, mut bob, mut rng) = pair(seed);
    let _lost = alice.encrypt(b"a0", &mut rng).unwrap();
    bob.decrypt(&alice.encrypt(b"a1", &mut rng).unwrap(), &mut rng).unwrap();
    let _lost = alice.encrypt(b"a2", &mut rng).unwrap();
    alice.decrypt(&bob.encrypt(b"b0", &mut rng).unwrap(), &mut rng).unwrap();
    let _lost = alice.encrypt(b"a3", &mut rng).unwrap();
    bob.decrypt(&alice.encrypt(b"a4", &mut rng).unwrap(), &mut rng).unwrap();
    assert_eq!(bob.skipped_key_count(), 3);
    assert_eq!(bob.skipped.chains().count(), 2);
    (alice, bob, rng)
}

#[test]
fn record_round_trip_is_byte_identical() {
    let (alice, bob, _) = busy_session(11);
    for session in [&alice, &bob] {
        let record = session.to_record();
        let restored = Session::from_record(&record).unwrap();
        assert_eq!(restored.to_record(), record);
    }
    let (fresh_alice, fresh_bob, _) = pair(12);
    for session in [&fresh_alice, &fresh_bob] {
        let record = session.to_record();
        assert_eq!(Session::from_record(&record).unwrap().to_record(), record);
    }
    assert_eq!(fresh_bob.to_record().len(), FIXED_RECORD_BYTES - 2 * (32 + 32 + 4) - 32);
}

#[test]
fn from_record_refuses_every_truncation_and_trailing_bytes() {
    let (_, bob, _) = busy_session(13);
    let record = bob.to_record();
    for cut in 0..record.len() {
        assert!(Session::from_record(&record[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = record.to_vec();
    longer.push(0);
    assert_eq!(
        Session::from_record(&longer).map(|_| ()),
        Err(RecordError::Malformed(DecodeError::TrailingBytes))
    );
}

#[test]
fn from_record_refuses_malformed_fields() {
    let (_, bob, _) = busy_session(14);
    let record = bob.to_record().to_vec();
    let malformed = |at: usize, value: &[u8]| {
        let mut bad = record.clone();
        bad[at..at + value.len()].copy_from_slice(value);
        Session::from_record(&bad).map(|_| ()).unwrap_err()
    };
    assert_eq!(malformed(0, &[2]), RecordError::Malformed(DecodeError::UnknownVersion(2)));
    let their_flag = 1 + 32 + 32 + 32;
    assert_eq!(
        malformed(their_flag, &[2]),
        RecordError::Malformed(DecodeError::Invalid("presence flag"))
    );
    let skipped_count = record.len() - 3 * SKIPPED_KEY_RECORD_BYTES - 2 * (32 + 4) - 4;
    assert_eq!(
        malformed(skipped_count, &(MAX_SKIPPED_CHAINS as u32 + 1).to_be_bytes()),
        RecordError::Malformed(DecodeError::TooLarge {
            len: MAX_SKIPPED_CHAINS + 1,
            max: MAX_SKIPPED_CHAINS
        })
    );
    // The first chain holds the keys of messages 0 and 2 (in that order).
    let first_chain_count = skipped_count + 4 + 32;
    assert_eq!(
        malformed(first_chain_count, &0u32.to_be_bytes()),
        RecordError::Malformed(DecodeError::Invalid("empty skipped chain"))
    );
    assert_eq!(
        malformed(first_chain_count, &u32::MAX.to_be_bytes()),
        RecordError::Malformed(DecodeError::TooLarge {
            len: u32::MAX as usize,
            max: MAX_SKIPPED_KEYS
        })
    );
    let second_key_number = first_chain_count + 4 + SKIPPED_KEY_RECORD_BYTES;
    assert_eq!(
        malformed(second_key_number, &0u32.to_be_bytes()),
        RecordError::Malformed(DecodeError::Invalid("skipped key order"))
    );
    let too_long = vec![RECORD_VERSION; MAX_RECORD_BYTES + 1];
    assert_eq!(
        Session::from_record(&too_long).map(|_| ()),
        Err(RecordError::TooLarge { len: MAX_RECORD_BYTES + 1, max: MAX_RECORD_BYTES })
    );
}

#[test]
fn from_record_refuses_impossible_states() {
    let (alice, _, _) = pair(15);
    let record = alice.to_record().to_vec();
    // A fresh initiator without its peer's ratchet key.
    let their_flag = 1 + 32 + 32 + 32;
    let mut bad = record[..their_flag].to_vec();
    bad.push(0);
    bad.extend_from_slice(&record[their_flag + 1 + 32..]);
    assert_eq!(
        Session::from_record(&bad).map(|_| ()),
        Err(RecordError::Malformed(DecodeError::Invalid("session state")))
    );
}
