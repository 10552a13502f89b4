//! Safety numbers: a short fingerprint of two identities that their owners
//! compare, aloud or by scanning a QR code, to rule out a man in the middle.
//!
//! This follows Signal's displayable fingerprint (libsignal
//! `rust/protocol/src/fingerprint.rs`). Each identity's key is hashed on its
//! own, 5200 rounds of SHA-512, so that finding another key whose number
//! collides on the 30 compared digits costs an attacker 5200 hashes per try.
//! Round `i` hashes (`docs/protocol.md`):
//!
//! | field | bytes | value |
//! |---|---|---|
//! | version | 1 | [`SAFETY_NUMBER_VERSION`] (0) |
//! | context | 22 | [`kdf::SAFETY_NUMBER_CONTEXT`], `xchat/v1/safety-number` |
//! | identity key | 32 | x-only BIP340 key, as in the address |
//! | previous hash | 0 in round 1, then 64 | SHA-512 output of round `i - 1` |
//!
//! From each identity's final hash, the first 30 bytes give six groups of
//! five digits (each 5-byte big-endian integer modulo 100 000). The two
//! identities' halves are put in the order of their fingerprints (the first
//! 32 bytes of the hash, compared as bytes), so both sides compute the same 60
//! digits, shown as 12 groups of 5. Signal orders the halves by their digits;
//! ordering by the fingerprint bytes is equally symmetric and uses one order
//! for the digits and the QR payload.
//!
//! A QR code carries [`SafetyNumber::to_bytes`]: the version, then both
//! 32-byte fingerprints in the same order (65 bytes). The scanning side checks
//! it with [`SafetyNumber::matches`], in constant time.

use std::fmt;

use aws_lc_rs::digest;
use subtle::ConstantTimeEq;

use crate::kdf;
use crate::signature::VerifyingKey;

/// Version of the safety-number computation and of its QR payload.
pub const SAFETY_NUMBER_VERSION: u8 = 0;
/// SHA-512 rounds per identity.
pub const ITERATIONS: usize = 5200;
/// Digits of a safety number: 30 per identity.
pub const DIGITS: usize = 60;
/// Digits per displayed group.
pub const GROUP_DIGITS: usize = 5;
/// Displayed groups.
pub const GROUPS: usize = DIGITS / GROUP_DIGITS;
/// Bytes of one identity's fingerprint in the QR payload.
pub const FINGERPRINT_BYTES: usize = 32;
/// Bytes of the QR payload: version, then two fingerprints.
pub const SCANNABLE_BYTES: usize = 1 + 2 * FINGERPRINT_BYTES;

/// Bytes of a hash that give one identity's 30 digits: six 5-byte chunks.
const DISPLAY_BYTES: usize = 30;
/// Bytes per 5-digit group.
const CHUNK_BYTES: usize = 5;
const SHA512_BYTES: usize = 64;

/// The safety number of two identities. The same on both sides, whichever
/// side computes it; different as soon as either key differs.
#[derive(Clone)]
pub struct SafetyNumber {
    digits: String,
    scannable: [u8; SCANNABLE_BYTES],
}

impl SafetyNumber {
    /// The safety number of our identity key and theirs.
    pub fn new(ours: &VerifyingKey, theirs: &VerifyingKey) -> Self {
        let ours = fingerprint(ours);
        let theirs = fingerprint(theirs);
        let (first, second) = if ours[..FINGERPRINT_BYTES] <= theirs[..FINGERPRINT_BYTES] {
            (ours, theirs)
        } else {
            (theirs, ours)
        };
        let mut digits = String::with_capacity(DIGITS);
        for hash in [&first, &second] {
            for chunk in hash[..DISPLAY_BYTES].chunks_exact(CHUNK_BYTES) {
                let value = chunk.iter().fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte));
                digits.push_str(&format!("{:05}", value % 100_000));
            }
        }
        let mut scannable = [0u8; SCANNABLE_BYTES];
        scannable[0] = SAFETY_NUMBER_VERSION;
        scannable[1..=FINGERPRINT_BYTES].copy_from_slice(&first[..FINGERPRINT_BYTES]);
        scannable[1 + FINGERPRINT_BYTES..].copy_from_slice(&second[..FINGERPRINT_BYTES]);
        Self { digits, scannable }
    }

    /// The 60 digits, without spaces.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The 12 groups of 5 digits, in display order.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        // `digits` is ASCII, so every 5-byte slice is on a char boundary.
        (0..GROUPS).filter_map(|i| self.digits.get(i * GROUP_DIGITS..(i + 1) * GROUP_DIGITS))
    }

    /// The QR payload: `version (1) || first fingerprint (32) || second
    /// fingerprint (32)`.
    pub fn to_bytes(&self) -> [u8; SCANNABLE_BYTES] {
        self.scannable
    }

    /// Whether a scanned QR payload is this safety number, compared in
    /// constant time. A payload of another length or version does not match.
    pub fn matches(&self, scanned: &[u8]) -> bool {
        bool::from(self.scannable.as_slice().ct_eq(scanned))
    }
}

impl fmt::Display for SafetyNumber {
    /// The 12 groups separated by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.groups().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(group)?;
        }
        Ok(())
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({self})")
    }
}

/// One identity's iterated hash (the table in the module documentation).
fn fingerprint(key: &VerifyingKey) -> [u8; SHA512_BYTES] {
    let mut prefix = digest::Context::new(&digest::SHA512);
    prefix.update(&[SAFETY_NUMBER_VERSION]);
    prefix.update(kdf::SAFETY_NUMBER_CONTEXT.as_bytes());
    prefix.update(&key.to_bytes());
    let mut hash = [0u8; SHA512_BYTES];
    hash.copy_from_slice(prefix.clone().finish().as_ref());
    for _ in 1..ITERATIONS {
        let mut round = prefix.clone();
        round.update(&hash);
        hash.copy_from_slice(round.finish().as_ref());
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::SigningKey;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn key(seed: u64) -> VerifyingKey {
        SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(seed)).verifying_key()
    }

    fn key_of_scalar(scalar: u8) -> VerifyingKey {
        let mut secret = [0u8; 32];
        secret[31] = scalar;
        SigningKey::from_bytes(&secret).unwrap().verifying_key()
    }

    #[test]
    fn safety_number_is_the_same_on_both_sides() {
        let (alice, bob) = (key(1), key(2));
        let at_alice = SafetyNumber::new(&alice, &bob);
        let at_bob = SafetyNumber::new(&bob, &alice);
        assert_eq!(at_alice.to_string(), at_bob.to_string());
        assert_eq!(at_alice.to_bytes(), at_bob.to_bytes());
        assert!(at_alice.matches(&at_bob.to_bytes()));
        assert!(at_bob.matches(&at_alice.to_bytes()));
    }

    #[test]
    fn safety_number_changes_when_either_key_changes() {
        let (alice, bob, mallory) = (key(1), key(2), key(3));
        let genuine = SafetyNumber::new(&alice, &bob);
        for forged in [SafetyNumber::new(&alice, &mallory), SafetyNumber::new(&mallory, &bob)] {
            assert_ne!(genuine.to_string(), forged.to_string());
            assert!(!genuine.matches(&forged.to_bytes()));
            assert!(!forged.matches(&genuine.to_bytes()));
        }
        // Each half depends on its own identity only: replacing Bob's key
        // changes Bob's 30 digits, not Alice's.
        let replaced = SafetyNumber::new(&alice, &mallory);
        let halves = |n: &SafetyNumber| {
            let (a, b) = n.digits().split_at(DIGITS / 2);
            [a.to_owned(), b.to_owned()]
        };
        let common = halves(&genuine).into_iter().filter(|h| halves(&replaced).contains(h)).count();
        assert_eq!(common, 1);
    }

    #[test]
    fn safety_number_is_twelve_groups_of_five_digits() {
        let number = SafetyNumber::new(&key(4), &key(5));
        assert_eq!(number.digits().len(), DIGITS);
        assert!(number.digits().bytes().all(|b| b.is_ascii_digit()));
        let groups: Vec<&str> = number.groups().collect();
        assert_eq!(groups.len(), GROUPS);
        assert!(groups.iter().all(|g| g.len() == GROUP_DIGITS));
        assert_eq!(number.to_string(), groups.join(" "));
        assert_eq!(number.to_bytes().len(), SCANNABLE_BYTES);
        assert_eq!(number.to_bytes()[0], SAFETY_NUMBER_VERSION);
    }

    #[test]
    fn matches_refuses_other_lengths_versions_and_any_flipped_bit() {
        let number = SafetyNumber::new(&key(6), &key(7));
        let bytes = number.to_bytes();
        assert!(number.matches(&bytes));
        assert!(!number.matches(&bytes[..SCANNABLE_BYTES - 1]));
        assert!(!number.matches(&[bytes.as_slice(), &[0]].concat()));
        assert!(!number.matches(&[]));
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes;
                flipped[i] ^= 1 << bit;
                assert!(!number.matches(&flipped), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn safety_number_with_oneself_is_well_defined() {
        let alice = key(8);
        let number = SafetyNumber::new(&alice, &alice);
        let (a, b) = number.digits().split_at(DIGITS / 2);
        assert_eq!(a, b);
    }

    #[test]
    fn safety_number_of_a_fixed_pair_never_changes() {
        // The keys of secret scalars 1 and 2 (the generator G and 2G). The
        // expected values were computed independently of this code, from the
        // table above with Python's hashlib.
        let number = SafetyNumber::new(&key_of_scalar(1), &key_of_scalar(2));
        insta::assert_snapshot!(
            number,
            @"36794 04209 49687 55392 86390 06302 97940 94894 13651 85359 16352 17112"
        );
        insta::assert_snapshot!(
            hex::encode(number.to_bytes()),
            @"007be420de9a24e9ead61119dbbf9ab718f5b772601d0ef4f61682b4a11dde1596b62e81abd487bbf3b0ee41acf5079386242903af003d7d3760387afdb9d812ac"
        );
    }
}
