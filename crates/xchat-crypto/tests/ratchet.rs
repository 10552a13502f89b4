//! Conversations through the Double Ratchet's public API: both directions,
//! long streams, lost, late, duplicated and tampered messages, restarts from
//! records, and a property test of random conversations.

// Helpers outside `#[test]` functions panic on purpose: a test failure.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use xchat_crypto::ratchet::{
    DecryptError, EncryptError, MAX_MESSAGE_BYTES, MAX_PLAINTEXT_BYTES, MAX_SKIP,
    MAX_SKIPPED_CHAINS, MAX_SKIPPED_KEYS, MIN_MESSAGE_BYTES, Session, VERSION,
};

mod common;

/// An initiator and a responder as the handshake leaves them.
fn pair(seed: u64) -> (Session, Session, ChaCha20Rng) {
    common::session_pair(seed)
}

fn send(from: &mut Session, text: &str, rng: &mut ChaCha20Rng) -> Vec<u8> {
    from.encrypt(text.as_bytes(), rng).unwrap()
}

fn receive(to: &mut Session, message: &[u8], rng: &mut ChaCha20Rng) -> String {
    String::from_utf8(to.decrypt(message, rng).unwrap().to_vec()).unwrap()
}

fn restart(session: &Session) -> Session {
    Session::from_record(&session.to_record()).unwrap()
}

/// Asserts that `message` is refused and leaves `session` as it was.
fn assert_refused_without_change(session: &mut Session, message: &[u8], rng: &mut ChaCha20Rng) {
    let before = session.to_record();
    assert!(session.decrypt(message, rng).is_err());
    assert_eq!(session.to_record(), before);
}

#[test]
fn messages_flow_in_both_directions() {
    let (mut alice, mut bob, mut rng) = pair(1);
    for round in 0..5 {
        for i in 0..3 {
            let text = format!("alice {round}.{i}");
            let message = send(&mut alice, &text, &mut rng);
            assert_eq!(receive(&mut bob, &message, &mut rng), text);
        }
        for i in 0..2 {
            let text = format!("bob {round}.{i}");
            let message = send(&mut bob, &text, &mut rng);
            assert_eq!(receive(&mut alice, &message, &mut rng), text);
        }
    }
    assert_eq!(alice.skipped_key_count(), 0);
    assert_eq!(bob.skipped_key_count(), 0);
}

#[test]
fn long_one_way_stream_decrypts_in_order() {
    let (mut alice, mut bob, mut rng) = pair(2);
    for i in 0..5_000 {
        let text = format!("message {i}");
        let message = send(&mut alice, &text, &mut rng);
        assert_eq!(receive(&mut bob, &message, &mut rng), text);
    }
}

#[test]
fn ping_pong_ratchets_on_every_message() {
    let (mut alice, mut bob, mut rng) = pair(3);
    let mut seen_headers = std::collections::HashSet::new();
    for i in 0..200 {
        let (from, to) = if i % 2 == 0 { (&mut alice, &mut bob) } else { (&mut bob, &mut alice) };
        let text = format!("turn {i}");
        let message = send(from, &text, &mut rng);
        // No two messages share a nonce or an encrypted header.
        assert!(seen_headers.insert(message[1..69].to_vec()));
        assert_eq!(receive(to, &message, &mut rng), text);
    }
}

#[test]
fn messages_decrypt_in_any_order_across_ratchet_steps() {
    let (mut alice, mut bob, mut rng) = pair(4);
    let mut to_bob = Vec::new();
    for i in 0..10 {
        let text = format!("first chain {i}");
        to_bob.push((send(&mut alice, &text, &mut rng), text));
    }
    // Bob reads one, answers; Alice ratchets and sends a second chain.
    let (message, text) = to_bob.remove(4);
    assert_eq!(receive(&mut bob, &message, &mut rng), text);
    let reply = send(&mut bob, "reply", &mut rng);
    assert_eq!(receive(&mut alice, &reply, &mut rng), "reply");
    for i in 0..10 {
        let text = format!("second chain {i}");
        to_bob.push((send(&mut alice, &text, &mut rng), text));
    }
    to_bob.reverse();
    for (message, text) in &to_bob {
        assert_eq!(&receive(&mut bob, message, &mut rng), text);
    }
    assert_eq!(bob.skipped_key_count(), 0);
}

#[test]
fn dropped_messages_do_not_block_later_ones() {
    let (mut alice, mut bob, mut rng) = pair(5);
    for i in 0..30 {
        let text = format!("message {i}");
        let message = send(&mut alice, &text, &mut rng);
        if i % 3 != 0 {
            assert_eq!(receive(&mut bob, &message, &mut rng), text);
        }
    }
    assert_eq!(bob.skipped_key_count(), 10);
    let reply = send(&mut bob, "still here", &mut rng);
    assert_eq!(receive(&mut alice, &reply, &mut rng), "still here");
}

#[test]
fn decrypt_rejects_replayed_message() {
    let (mut alice, mut bob, mut rng) = pair(6);
    let first = send(&mut alice, "first (ratchet step)", &mut rng);
    let late = send(&mut alice, "late (skipped key)", &mut rng);
    let current = send(&mut alice, "current chain", &mut rng);
    receive(&mut bob, &first, &mut rng);
    receive(&mut bob, &current, &mut rng);
    receive(&mut bob, &late, &mut rng);
    for message in [&first, &late, &current] {
        assert_eq!(bob.decrypt(message, &mut rng).map(|_| ()), Err(DecryptError::Undecryptable));
    }
    // After both sides ratchet, the old chain's messages are still replays.
    let reply = send(&mut bob, "reply", &mut rng);
    receive(&mut alice, &reply, &mut rng);
    let next = send(&mut alice, "next chain", &mut rng);
    receive(&mut bob, &next, &mut rng);
    for message in [&first, &late, &current, &next] {
        assert_refused_without_change(&mut bob, message, &mut rng);
    }
    assert_refused_without_change(&mut alice, &reply, &mut rng);
}

#[test]
fn skipping_more_than_max_skip_is_refused_and_changes_nothing() {
    let (mut alice, mut bob, mut rng) = pair(7);
    receive(&mut bob, &send(&mut alice, "start", &mut rng), &mut rng);
    let messages: Vec<_> =
        (0..=MAX_SKIP + 1).map(|i| send(&mut alice, &format!("{i}"), &mut rng)).collect();
    let before = bob.to_record();
    // Message MAX_SKIP + 1 of this run would skip MAX_SKIP + 1 keys.
    assert_eq!(
        bob.decrypt(&messages[MAX_SKIP as usize + 1], &mut rng).map(|_| ()),
        Err(DecryptError::TooManySkipped { skip: MAX_SKIP + 1, max: MAX_SKIP })
    );
    assert_eq!(bob.to_record(), before);
    // Exactly MAX_SKIP is allowed, and the skipped ones still arrive.
    assert_eq!(receive(&mut bob, &messages[MAX_SKIP as usize], &mut rng), MAX_SKIP.to_string());
    assert_eq!(bob.skipped_key_count(), MAX_SKIP as usize);
    assert_eq!(receive(&mut bob, &messages[0], &mut rng), "0");
    assert_eq!(
        receive(&mut bob, &messages[MAX_SKIP as usize + 1], &mut rng),
        (MAX_SKIP + 1).to_string()
    );
}

#[test]
fn oldest_skipped_keys_are_forgotten_beyond_the_limit() {
    let (mut alice, mut bob, mut rng) = pair(8);
    let skips = [MAX_SKIP as usize, MAX_SKIP as usize, 500];
    let mut held = Vec::new();
    // Three of Alice's chains, each read only at its last message: more
    // skipped keys than MAX_SKIPPED_KEYS in all.
    for (chain, skip) in skips.into_iter().enumerate() {
        let messages: Vec<_> =
            (0..=skip).map(|i| send(&mut alice, &format!("{chain}.{i}"), &mut rng)).collect();
        receive(&mut bob, &messages[skip], &mut rng);
        held.push(messages);
        let reply = send(&mut bob, "reply", &mut rng);
        receive(&mut alice, &reply, &mut rng);
    }
    assert_eq!(bob.skipped_key_count(), MAX_SKIPPED_KEYS);
    // The oldest keys went first: the start of the first chain.
    let forgotten = skips.iter().sum::<usize>() - MAX_SKIPPED_KEYS;
    assert_eq!(forgotten, 500);
    assert_refused_without_change(&mut bob, &held[0][forgotten - 1], &mut rng);
    assert_refused_without_change(&mut bob, &held[0][0], &mut rng);
    assert_eq!(receive(&mut bob, &held[0][forgotten], &mut rng), format!("0.{forgotten}"));
    assert_eq!(receive(&mut bob, &held[1][0], &mut rng), "1.0");
    assert_eq!(receive(&mut bob, &held[2][0], &mut rng), "2.0");
}

#[test]
fn oldest_skipped_chain_is_forgotten_beyond_the_limit() {
    let (mut alice, mut bob, mut rng) = pair(9);
    let mut late = Vec::new();
    for chain in 0..=MAX_SKIPPED_CHAINS {
        late.push(send(&mut alice, &format!("late {chain}"), &mut rng));
        receive(&mut bob, &send(&mut alice, "on time", &mut rng), &mut rng);
        receive(&mut alice, &send(&mut bob, "reply", &mut rng), &mut rng);
    }
    assert_eq!(bob.skipped_key_count(), MAX_SKIPPED_CHAINS);
    assert_refused_without_change(&mut bob, &late[0], &mut rng);
    for (chain, message) in late.iter().enumerate().skip(1) {
        assert_eq!(receive(&mut bob, message, &mut rng), format!("late {chain}"));
    }
}

/// Every byte flipped, every truncation, and extensions of `message` are
/// refused without changing `session`; then `message` itself decrypts.
fn assert_only_the_exact_message_decrypts(
    session: &mut Session,
    message: &[u8],
    text: &str,
    rng: &mut ChaCha20Rng,
) {
    for at in 0..message.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = message.to_vec();
            bad[at] ^= flip;
            assert_refused_without_change(session, &bad, rng);
        }
    }
    for cut in 0..message.len() {
        assert_refused_without_change(session, &message[..cut], rng);
    }
    for extra in [1, 16, 256] {
        let mut longer = message.to_vec();
        longer.resize(message.len() + extra, 0);
        assert_refused_without_change(session, &longer, rng);
    }
    assert_eq!(receive(session, message, rng), text);
}

#[test]
fn tampered_truncated_or_extended_messages_are_refused_without_state_change() {
    let (mut alice, mut bob, mut rng) = pair(10);
    let ratchet_step = send(&mut alice, "first: a ratchet step", &mut rng);
    let skipped = send(&mut alice, "second: read late", &mut rng);
    let in_chain = send(&mut alice, "third: ahead in the chain", &mut rng);
    assert_only_the_exact_message_decrypts(
        &mut bob,
        &ratchet_step,
        "first: a ratchet step",
        &mut rng,
    );
    assert_only_the_exact_message_decrypts(
        &mut bob,
        &in_chain,
        "third: ahead in the chain",
        &mut rng,
    );
    assert_only_the_exact_message_decrypts(&mut bob, &skipped, "second: read late", &mut rng);
    // And the conversation goes on.
    let reply = send(&mut bob, "reply", &mut rng);
    assert_eq!(receive(&mut alice, &reply, &mut rng), "reply");
}

#[test]
fn messages_of_another_session_are_refused() {
    let (mut alice, _, mut rng) = pair(11);
    let (_, mut other_bob, _) = pair(12);
    let message = send(&mut alice, "not for you", &mut rng);
    assert_refused_without_change(&mut other_bob, &message, &mut rng);
}

#[test]
fn public_fields_get_their_own_errors() {
    let (mut alice, mut bob, mut rng) = pair(13);
    let mut message = send(&mut alice, "hi", &mut rng);
    message[0] = VERSION + 1;
    assert_eq!(
        bob.decrypt(&message, &mut rng).map(|_| ()),
        Err(DecryptError::UnknownVersion(VERSION + 1))
    );
    let huge = vec![VERSION; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        bob.decrypt(&huge, &mut rng).map(|_| ()),
        Err(DecryptError::TooLarge { len: MAX_MESSAGE_BYTES + 1, max: MAX_MESSAGE_BYTES })
    );
}

#[test]
fn largest_plaintext_round_trips_and_one_more_byte_is_refused() {
    let (mut alice, mut bob, mut rng) = pair(16);
    let largest = vec![0xa5; MAX_PLAINTEXT_BYTES];
    let message = alice.encrypt(&largest, &mut rng).unwrap();
    assert_eq!(message.len(), MAX_MESSAGE_BYTES);
    assert_eq!(&*bob.decrypt(&message, &mut rng).unwrap(), &largest[..]);
    let before = alice.to_record();
    assert_eq!(
        alice.encrypt(&vec![0; MAX_PLAINTEXT_BYTES + 1], &mut rng),
        Err(EncryptError::TooLarge { len: MAX_PLAINTEXT_BYTES + 1, max: MAX_PLAINTEXT_BYTES })
    );
    assert_eq!(alice.to_record(), before);
}

#[test]
fn message_length_reveals_only_the_padding_bucket() {
    let (mut alice, _, mut rng) = pair(14);
    let lengths: Vec<_> = [0usize, 1, 100, 255, 256, 1000, 1023, 1024]
        .iter()
        .map(|&n| alice.encrypt(&vec![b'x'; n], &mut rng).unwrap().len())
        .collect();
    let o = MIN_MESSAGE_BYTES - 256;
    assert_eq!(lengths, [256, 256, 256, 256, 512, 1024, 1024, 2048].map(|p| o + p));
}

#[test]
fn restart_from_records_mid_conversation_continues() {
    let (mut alice, mut bob, mut rng) = pair(15);
    let late_first = send(&mut alice, "late, first chain", &mut rng);
    receive(&mut bob, &send(&mut alice, "hello", &mut rng), &mut rng);
    receive(&mut alice, &send(&mut bob, "hi", &mut rng), &mut rng);
    let late_second = send(&mut alice, "late, second chain", &mut rng);
    let read = send(&mut alice, "read before the restart", &mut rng);
    receive(&mut bob, &send(&mut alice, "on time", &mut rng), &mut rng);
    receive(&mut bob, &read, &mut rng);
    assert_eq!(bob.skipped_key_count(), 2);

    let mut alice = restart(&alice);
    let mut bob = restart(&bob);
    assert_eq!(bob.skipped_key_count(), 2);
    // A message read before the restart is still a replay after it.
    assert_refused_without_change(&mut bob, &read, &mut rng);
    assert_eq!(receive(&mut bob, &late_second, &mut rng), "late, second chain");
    assert_eq!(receive(&mut bob, &late_first, &mut rng), "late, first chain");
    let reply = send(&mut bob, "after the restart", &mut rng);
    assert_eq!(receive(&mut alice, &reply, &mut rng), "after the restart");
    let mut bob = restart(&bob);
    assert_refused_without_change(&mut bob, &late_first, &mut rng);
    let again = send(&mut alice, "and again", &mut rng);
    assert_eq!(receive(&mut bob, &again, &mut rng), "and again");
}

// --- Random conversations ---------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Alice,
    Bob,
}

#[derive(Debug, Clone)]
enum Op {
    Send(Side),
    /// Deliver one message in flight, chosen by the index: reordering.
    Deliver(prop::sample::Index),
    /// Deliver again a message already delivered.
    Duplicate(prop::sample::Index),
    /// Lose one message in flight.
    Drop(prop::sample::Index),
    /// Save the session to its record and load it back.
    Restart(Side),
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Alice), Just(Side::Bob)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => side().prop_map(Op::Send),
        4 => any::<prop::sample::Index>().prop_map(Op::Deliver),
        1 => any::<prop::sample::Index>().prop_map(Op::Duplicate),
        1 => any::<prop::sample::Index>().prop_map(Op::Drop),
        1 => side().prop_map(Op::Restart),
    ]
}

/// A message on the wire.
#[derive(Clone)]
struct InFlight {
    to: Side,
    bytes: Vec<u8>,
    text: String,
    sent_at: usize,
}

/// A message waits at most this many operations before it is delivered:
/// then at most this many chains can start after it, fewer than
/// `MAX_SKIPPED_CHAINS`, so no key of a message still in flight is ever
/// forgotten and every delivery must succeed.
const MAX_DELAY_OPS: usize = 3;
const _: () = assert!(MAX_DELAY_OPS < MAX_SKIPPED_CHAINS);

struct Conversation {
    alice: Session,
    bob: Session,
    rng: ChaCha20Rng,
    bob_has_received: bool,
    in_flight: Vec<InFlight>,
    delivered: Vec<InFlight>,
    sent: usize,
}

impl Conversation {
    fn session(&mut self, side: Side) -> (&mut Session, &mut ChaCha20Rng) {
        match side {
            Side::Alice => (&mut self.alice, &mut self.rng),
            Side::Bob => (&mut self.bob, &mut self.rng),
        }
    }

    fn send(&mut self, from: Side, now: usize) -> Result<(), TestCaseError> {
        let text = format!("{from:?} #{}", self.sent);
        let (session, rng) = self.session(from);
        let result = session.encrypt(text.as_bytes(), rng);
        if from == Side::Bob && !self.bob_has_received {
            prop_assert!(result.is_err());
            return Ok(());
        }
        self.sent += 1;
        let to = match from {
            Side::Alice => Side::Bob,
            Side::Bob => Side::Alice,
        };
        self.in_flight.push(InFlight { to, bytes: result.unwrap(), text, sent_at: now });
        Ok(())
    }

    fn deliver(&mut self, index: usize) -> Result<(), TestCaseError> {
        let message = self.in_flight.remove(index);
        let (session, rng) = self.session(message.to);
        let plaintext = session.decrypt(&message.bytes, rng).map(|p| p.to_vec());
        prop_assert_eq!(plaintext, Ok(message.text.clone().into_bytes()));
        if message.to == Side::Bob {
            self.bob_has_received = true;
        }
        self.delivered.push(message);
        Ok(())
    }

    fn duplicate(&mut self, index: usize) -> Result<(), TestCaseError> {
        let message = self.delivered[index].clone();
        let (session, rng) = self.session(message.to);
        let before = session.to_record();
        prop_assert_eq!(
            session.decrypt(&message.bytes, rng).map(|_| ()),
            Err(DecryptError::Undecryptable)
        );
        prop_assert_eq!(session.to_record(), before);
        Ok(())
    }

    fn deliver_overdue(&mut self, now: usize) -> Result<(), TestCaseError> {
        while let Some(index) = self.in_flight.iter().position(|m| now - m.sent_at >= MAX_DELAY_OPS)
        {
            self.deliver(index)?;
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_conversations_deliver_every_message_exactly_once(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let (alice, bob, rng) = pair(seed);
        let mut c = Conversation {
            alice,
            bob,
            rng,
            bob_has_received: false,
            in_flight: Vec::new(),
            delivered: Vec::new(),
            sent: 0,
        };
        for (now, op) in ops.into_iter().enumerate() {
            match op {
                Op::Send(side) => c.send(side, now)?,
                Op::Deliver(index) if !c.in_flight.is_empty() => {
                    c.deliver(index.index(c.in_flight.len()))?;
                }
                Op::Duplicate(index) if !c.delivered.is_empty() => {
                    c.duplicate(index.index(c.delivered.len()))?;
                }
                Op::Drop(index) if !c.in_flight.is_empty() => {
                    c.in_flight.remove(index.index(c.in_flight.len()));
                }
                Op::Restart(side) => {
                    let (session, _) = c.session(side);
                    *session = restart(session);
                }
                _ => {}
            }
            c.deliver_overdue(now)?;
        }
        // Both sides keep talking.
        while !c.in_flight.is_empty() {
            c.deliver(0)?;
        }
        for from in [Side::Alice, Side::Bob, Side::Alice, Side::Bob] {
            c.send(from, usize::MAX)?;
            c.deliver(0)?;
        }
        prop_assert!(c.bob_has_received);
        for index in 0..c.delivered.len() {
            c.duplicate(index)?;
        }
    }
}
