//! Mailbox keys: where a device's envelopes wait while it is offline.
//!
//! Each device of an identity has one mailbox key per epoch of
//! [`EPOCH_MS`] (a day). It is the identity's signing key, tweaked as
//! BIP341 tweaks a key (libsecp256k1's x-only tweak):
//!
//! ```text
//! t_e  = SHA-256( MAILBOX_KEY_TWEAK || identity key (32) || device id (16) || epoch (u64 BE) )
//! M_e  = P + t_e·G          (the mailbox key senders store under, from the address alone)
//! m_e  = d + t_e            (its secret, which only the identity's devices hold)
//! ```
//!
//! A sender who knows the recipient's address and device id computes the
//! mailbox key of any epoch with no message exchanged; the recipient's
//! devices sign fetch and delete requests with the matching secret. A node
//! that holds mailboxes sees keys that change every day and that it cannot
//! link to each other or to an identity without knowing the address (as
//! Tor v3 blinds onion-service keys per period). Whoever knows an address
//! can compute its mailbox keys: the rotation hides who receives from nodes
//! that merely store, not from the sender's contacts.
//!
//! The tweak is public to whoever knows the address, and signatures under a
//! mailbox key use their own labels (`SIG_MAILBOX_FETCH`,
//! `SIG_MAILBOX_DELETE`), so a signature under `M_e` is never one under the
//! identity key or under another epoch's key.

use crate::device::DeviceId;
use crate::identity::Identity;
use crate::kdf;
use crate::signature::{KeyError, SigningKey, VerifyingKey};

/// Length of a mailbox epoch: one day, in milliseconds.
pub const EPOCH_MS: u64 = 24 * 60 * 60 * 1000;

/// The epoch of the time `now_ms` (ms since the Unix epoch).
pub const fn epoch_of(now_ms: u64) -> u64 {
    now_ms / EPOCH_MS
}

/// The mailbox key of `device` of `identity` for `epoch`, as a sender
/// computes it.
///
/// # Errors
/// [`KeyError::InvalidTweak`] with probability about 2^-128.
pub fn mailbox_key(
    identity: &VerifyingKey,
    device: DeviceId,
    epoch: u64,
) -> Result<VerifyingKey, KeyError> {
    identity.tweaked(&epoch_tweak(kdf::MAILBOX_KEY_TWEAK, identity, device, epoch))
}

/// The secret of the mailbox key of `device` for `epoch`, which signs the
/// mailbox's fetch and delete requests.
///
/// # Errors
/// [`KeyError::InvalidTweak`] with probability about 2^-128.
pub fn mailbox_signing_key(
    identity: &Identity,
    device: DeviceId,
    epoch: u64,
) -> Result<SigningKey, KeyError> {
    let signing = identity.signing_key();
    signing.tweaked(&epoch_tweak(kdf::MAILBOX_KEY_TWEAK, &signing.verifying_key(), device, epoch))
}

/// The tweak of a per-device, per-epoch key under `label` (mailbox and
/// presence keys share the construction, told apart by their labels).
pub(crate) fn epoch_tweak(
    label: &[u8],
    identity: &VerifyingKey,
    device: DeviceId,
    epoch: u64,
) -> [u8; 32] {
    kdf::sha256(&[label, &identity.to_bytes(), device.as_bytes(), &epoch.to_be_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phrase::Seed;

    fn identity(byte: u8) -> Identity {
        Identity::from_seed(&Seed::from_bytes(&[byte; 64]).unwrap()).unwrap()
    }

    #[test]
    fn sender_and_recipient_derive_the_same_key() {
        let alice = identity(1);
        let device = DeviceId::from_bytes([7; 16]);
        for epoch in [0, 1, 20_000, u64::MAX] {
            let public = mailbox_key(&alice.signing_key().verifying_key(), device, epoch).unwrap();
            let secret = mailbox_signing_key(&alice, device, epoch).unwrap();
            assert_eq!(secret.verifying_key(), public, "epoch {epoch}");
        }
    }

    #[test]
    fn keys_differ_by_epoch_device_and_identity_and_from_the_identity_key() {
        let (alice, bob) = (identity(1), identity(2));
        let key = |who: &Identity, device: u8, epoch| {
            mailbox_key(
                &who.signing_key().verifying_key(),
                DeviceId::from_bytes([device; 16]),
                epoch,
            )
            .unwrap()
            .to_bytes()
        };
        let keys = [
            key(&alice, 1, 5),
            key(&alice, 1, 6),
            key(&alice, 2, 5),
            key(&bob, 1, 5),
            alice.signing_key().verifying_key().to_bytes(),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn a_signature_under_a_mailbox_key_verifies_under_it_only() {
        let alice = identity(1);
        let device = DeviceId::from_bytes([7; 16]);
        let secret = mailbox_signing_key(&alice, device, 3).unwrap();
        let signature = secret.sign_with_aux(b"fetch", &[0; 32]);
        let ours = mailbox_key(&alice.signing_key().verifying_key(), device, 3).unwrap();
        let other = mailbox_key(&alice.signing_key().verifying_key(), device, 4).unwrap();
        assert!(ours.verify_raw(b"fetch", &signature).is_ok());
        assert!(other.verify_raw(b"fetch", &signature).is_err());
        assert!(alice.signing_key().verifying_key().verify_raw(b"fetch", &signature).is_err());
    }

    #[test]
    fn epochs_are_days() {
        assert_eq!(epoch_of(0), 0);
        assert_eq!(epoch_of(EPOCH_MS - 1), 0);
        assert_eq!(epoch_of(EPOCH_MS), 1);
    }
}
