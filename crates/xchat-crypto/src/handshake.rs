//! The PQXDH-style handshake that starts a session between two devices.
//!
//! (Being built: the initiator and responder sides land with the prekey
//! bundles of [`crate::bundle`].) The handshake's output, [`SessionKeys`], is
//! the input of [`crate::ratchet::Session`].

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// What the handshake hands to the Double Ratchet: the first root key, the
/// two header keys of header encryption, and the hash of the handshake
/// transcript that every message of the session authenticates.
///
/// The initiator sends its first messages under `initiator_header_key`; the
/// responder's first reply uses `responder_header_key` (the "next header key"
/// of the Double Ratchet specification, section 4).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SessionKeys {
    pub(crate) root_key: Zeroizing<[u8; 32]>,
    pub(crate) initiator_header_key: Zeroizing<[u8; 32]>,
    pub(crate) responder_header_key: Zeroizing<[u8; 32]>,
    pub(crate) associated_data: [u8; 32],
}

#[allow(dead_code)] // used by the handshake, which lands next
impl SessionKeys {
    /// Splits 96 bytes of handshake output into the three keys, and binds the
    /// transcript hash.
    pub(crate) fn from_okm(okm: &[u8; 96], associated_data: [u8; 32]) -> Self {
        let mut keys = Self {
            root_key: Zeroizing::new([0u8; 32]),
            initiator_header_key: Zeroizing::new([0u8; 32]),
            responder_header_key: Zeroizing::new([0u8; 32]),
            associated_data,
        };
        keys.root_key.copy_from_slice(&okm[..32]);
        keys.initiator_header_key.copy_from_slice(&okm[32..64]);
        keys.responder_header_key.copy_from_slice(&okm[64..]);
        keys
    }
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}
