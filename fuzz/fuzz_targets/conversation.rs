//! A stateful conversation driven by the fuzzer: both sides send, messages
//! are delivered in any order, duplicated, tampered with, and either side
//! restarts from its record at any point.
//!
//! Invariants: a message decrypts at most once and only to what was sent; a
//! tampered message never decrypts and changes nothing; after any sequence,
//! both sides can still talk.
#![no_main]
#![allow(clippy::panic)] // a broken invariant must crash the fuzzer

use std::collections::HashSet;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_crypto::bundle::{PreKeys, UnverifiedPreKeyBundle};
use xchat_crypto::device::Device;
use xchat_crypto::handshake::{self, UnverifiedInitiation};
use xchat_crypto::identity::Identity;
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_crypto::ratchet::Session;

/// The records of two sessions right after a real handshake and a first
/// message each way, so every input starts from a live conversation.
static START: LazyLock<Option<(Vec<u8>, Vec<u8>)>> = LazyLock::new(|| {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let party = |entropy: u8, rng: &mut ChaCha20Rng| -> Option<(Identity, Device, PreKeys)> {
        let seed = RecoveryPhrase::from_entropy(&[entropy; 32]).to_seed("");
        let identity = Identity::from_seed(&seed).ok()?;
        let device = Device::new(&identity, 0, rng);
        let prekeys = PreKeys::new(&device, 0, rng);
        Some((identity, device, prekeys))
    };
    let (alice, alice_device, _) = party(1, &mut rng)?;
    let (bob, bob_device, bob_prekeys) = party(2, &mut rng)?;
    let bundle = bob_prekeys.bundle(&bob.public(), &bob_device, None, None).ok()?;
    let bundle = UnverifiedPreKeyBundle::from_bytes(&bundle.to_bytes()).ok()?.verify(None).ok()?;
    let initiated = handshake::initiate(&alice, &alice_device, &bundle, &mut rng).ok()?;
    let initiation = UnverifiedInitiation::from_bytes(&initiated.initiation.to_bytes()).ok()?;
    let responded = handshake::respond(&bob, &bob_device, &bob_prekeys, initiation, None).ok()?;
    let mut a =
        Session::new_initiator(initiated.keys, initiated.their_ratchet_key, &mut rng).ok()?;
    let mut b = Session::new_responder(responded.keys, responded.our_ratchet_key);
    b.decrypt(&a.encrypt(b"hi", &mut rng).ok()?, &mut rng).ok()?;
    a.decrypt(&b.encrypt(b"hi", &mut rng).ok()?, &mut rng).ok()?;
    Some((a.to_record().to_vec(), b.to_record().to_vec()))
});

struct Side {
    session: Session,
    /// Messages sent by this side: (plaintext, ciphertext).
    sent: Vec<(Vec<u8>, Vec<u8>)>,
    /// Indices of `sent` the other side has decrypted.
    delivered: HashSet<usize>,
}

fuzz_target!(|data: &[u8]| {
    let Some((a, b)) = START.as_ref() else { return };
    let (Ok(a), Ok(b)) = (Session::from_record(a), Session::from_record(b)) else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(data.len() as u64);
    let mut sides = [
        Side { session: a, sent: Vec::new(), delivered: HashSet::new() },
        Side { session: b, sent: Vec::new(), delivered: HashSet::new() },
    ];
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        let from = usize::from(op & 1);
        let to = 1 - from;
        match (op >> 1) % 4 {
            0 => {
                let text = format!("{from}:{}", sides[from].sent.len()).into_bytes();
                if let Ok(wire) = sides[from].session.encrypt(&text, &mut rng) {
                    sides[from].sent.push((text, wire));
                }
            }
            1 => {
                let Some(pick) = bytes.next() else { break };
                let count = sides[from].sent.len();
                if count == 0 {
                    continue;
                }
                let index = usize::from(pick) % count;
                let (text, wire) = sides[from].sent[index].clone();
                if let Ok(plaintext) = sides[to].session.decrypt(&wire, &mut rng) {
                    assert_eq!(plaintext.as_slice(), text.as_slice());
                    assert!(sides[from].delivered.insert(index), "decrypted twice");
                }
            }
            2 => {
                let (Some(pick), Some(at), Some(bit)) = (bytes.next(), bytes.next(), bytes.next())
                else {
                    break;
                };
                let count = sides[from].sent.len();
                if count == 0 {
                    continue;
                }
                let mut wire = sides[from].sent[usize::from(pick) % count].1.clone();
                let at = usize::from(at) * wire.len() / 256;
                wire[at] ^= 1 << (bit % 8);
                let before = sides[to].session.to_record();
                assert!(sides[to].session.decrypt(&wire, &mut rng).is_err(), "tampered decrypt");
                assert_eq!(*sides[to].session.to_record(), *before, "refusal changed state");
            }
            _ => {
                let record = sides[from].session.to_record();
                let Ok(restored) = Session::from_record(&record) else {
                    panic!("a session's own record does not restore");
                };
                sides[from].session = restored;
            }
        }
    }
    // Both sides can still talk, in order, whatever happened.
    for (from, to) in [(0, 1), (1, 0), (0, 1)] {
        let wire = sides[from].session.encrypt(b"still talking", &mut rng);
        let Ok(wire) = wire else { panic!("a live session cannot encrypt") };
        let read = sides[to].session.decrypt(&wire, &mut rng);
        assert_eq!(read.ok().as_deref().map(Vec::as_slice), Some(&b"still talking"[..]));
    }
});
