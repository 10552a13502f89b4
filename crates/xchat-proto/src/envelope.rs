//! What travels between two devices: the [`Envelope`] the network carries,
//! and the [`DeviceMessage`] inside its sealed-sender layer.
//!
//! ```text
//! Envelope { version, sealed }                         what relays and mailboxes see
//!   sealed = xchat_crypto::sealed::seal(DeviceMessage)  only the recipient device opens it
//!     DeviceMessage = first { initiation, ratchet }     a new session's first message
//!                   | ratchet                           any later message
//!       ratchet = Session::encrypt(Content)             see [`crate::content`]
//! ```
//!
//! Lengths are checked against xchat-crypto's own limits, so a message that
//! passes here can only fail inside the cryptography.

use xchat_crypto::{handshake, ratchet, sealed};

use crate::decode::{self, ProtoError};
use crate::generated as pb;

/// The version of [`Envelope`] this build writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;
/// Fewest bytes of a sealed-sender envelope: one with an empty payload.
pub const MIN_SEALED_BYTES: usize = sealed::ENVELOPE_OVERHEAD_BYTES;
/// Most bytes of a sealed-sender envelope ([`sealed::MAX_ENVELOPE_BYTES`]).
pub const MAX_SEALED_BYTES: usize = sealed::MAX_ENVELOPE_BYTES;
/// Most bytes of an encoded [`Envelope`]: the largest sealed envelope and
/// [`crate::HEADROOM_BYTES`] for the version, the framing and fields a later
/// version adds. Checked before decoding; the network layer frames
/// envelopes with this limit.
pub const MAX_ENVELOPE_BYTES: usize = MAX_SEALED_BYTES + crate::HEADROOM_BYTES;
/// Most bytes of an encoded [`DeviceMessage`]: the sealed payload's limit
/// ([`sealed::MAX_SEALED_PAYLOAD_BYTES`]), which it must fit. Checked before
/// decoding.
pub const MAX_DEVICE_MESSAGE_BYTES: usize = sealed::MAX_SEALED_PAYLOAD_BYTES;
/// Fewest bytes of a handshake initiation: one naming no one-time prekey
/// (the 4-byte id is absent).
pub const MIN_INITIATION_BYTES: usize = handshake::MAX_INITIATION_BYTES - 4;
/// Most bytes of a handshake initiation ([`handshake::MAX_INITIATION_BYTES`]).
pub const MAX_INITIATION_BYTES: usize = handshake::MAX_INITIATION_BYTES;

// The largest first message fits a sealed envelope.
const _: () = assert!(
    decode::delimited_len(
        decode::delimited_len(MAX_INITIATION_BYTES)
            + decode::delimited_len(ratchet::MAX_MESSAGE_BYTES)
    ) <= MAX_DEVICE_MESSAGE_BYTES
);

/// What the network layer carries between devices: a sealed-sender envelope,
/// versioned. A relay learns its length and nothing else.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    sealed: Vec<u8>,
}

impl Envelope {
    /// Wraps the output of [`sealed::seal`].
    ///
    /// # Errors
    /// [`ProtoError::LengthOutOfRange`] outside
    /// [`MIN_SEALED_BYTES`]`..=`[`MAX_SEALED_BYTES`].
    pub fn new(sealed: Vec<u8>) -> Result<Self, ProtoError> {
        decode::length(sealed.len(), "Envelope.sealed", MIN_SEALED_BYTES, MAX_SEALED_BYTES)?;
        Ok(Self { sealed })
    }

    /// The sealed-sender envelope, for [`sealed::open`].
    pub fn sealed(&self) -> &[u8] {
        &self.sealed
    }

    /// The sealed-sender envelope, by value.
    pub fn into_sealed(self) -> Vec<u8> {
        self.sealed
    }

    /// Decodes an envelope from the network.
    ///
    /// # Errors
    /// [`ProtoError::TooLarge`] over [`MAX_ENVELOPE_BYTES`] (before
    /// decoding), [`ProtoError::Malformed`], [`ProtoError::UnsupportedVersion`]
    /// for a version other than [`ENVELOPE_VERSION`], and the errors of
    /// [`Envelope::new`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let raw: pb::Envelope = decode::message(bytes, "Envelope", MAX_ENVELOPE_BYTES)?;
        Self::try_from(raw)
    }

    /// Encodes the envelope for the network.
    pub fn encode(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&pb::Envelope {
            version: ENVELOPE_VERSION,
            sealed: self.sealed.clone(),
        })
    }
}

impl TryFrom<pb::Envelope> for Envelope {
    type Error = ProtoError;

    fn try_from(raw: pb::Envelope) -> Result<Self, ProtoError> {
        if raw.version != ENVELOPE_VERSION {
            return Err(ProtoError::UnsupportedVersion {
                field: "Envelope.version",
                version: raw.version,
            });
        }
        Self::new(raw.sealed)
    }
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Envelope({} bytes, {})",
            self.sealed.len(),
            xchat_crypto::fingerprint(&self.sealed)
        )
    }
}

/// The payload of a sealed envelope: a ratchet message, preceded by the
/// handshake initiation when it is a session's first.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceMessage {
    initiation: Option<Vec<u8>>,
    ratchet: Vec<u8>,
}

impl DeviceMessage {
    /// A session's first message: `initiation` is
    /// [`handshake::Initiation::to_bytes`], `ratchet` the session's first
    /// ratchet message.
    ///
    /// # Errors
    /// [`ProtoError::LengthOutOfRange`] for an initiation outside
    /// [`MIN_INITIATION_BYTES`]`..=`[`MAX_INITIATION_BYTES`] or a ratchet
    /// message outside xchat-crypto's bounds
    /// ([`ratchet::MIN_MESSAGE_BYTES`]`..=`[`ratchet::MAX_MESSAGE_BYTES`]).
    pub fn first(initiation: Vec<u8>, ratchet: Vec<u8>) -> Result<Self, ProtoError> {
        decode::length(
            initiation.len(),
            "FirstMessage.initiation",
            MIN_INITIATION_BYTES,
            MAX_INITIATION_BYTES,
        )?;
        check_ratchet(&ratchet, "FirstMessage.ratchet")?;
        Ok(Self { initiation: Some(initiation), ratchet })
    }

    /// A message of an established session.
    ///
    /// # Errors
    /// [`ProtoError::LengthOutOfRange`] for a ratchet message outside
    /// xchat-crypto's bounds.
    pub fn ratchet(ratchet: Vec<u8>) -> Result<Self, ProtoError> {
        check_ratchet(&ratchet, "DeviceMessage.ratchet")?;
        Ok(Self { initiation: None, ratchet })
    }

    /// The handshake initiation, for
    /// `xchat_crypto::handshake::UnverifiedInitiation::from_bytes`, when this
    /// is a session's first message.
    pub fn initiation(&self) -> Option<&[u8]> {
        self.initiation.as_deref()
    }

    /// The ratchet message, for `xchat_crypto::ratchet::Session::decrypt`.
    pub fn ratchet_message(&self) -> &[u8] {
        &self.ratchet
    }

    /// Decodes the payload of an opened sealed envelope.
    ///
    /// # Errors
    /// [`ProtoError::TooLarge`] over [`MAX_DEVICE_MESSAGE_BYTES`] (before
    /// decoding), [`ProtoError::Malformed`], [`ProtoError::MissingField`] when
    /// neither kind is set, and the length errors of [`DeviceMessage::first`]
    /// and [`DeviceMessage::ratchet`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let raw: pb::DeviceMessage =
            decode::message(bytes, "DeviceMessage", MAX_DEVICE_MESSAGE_BYTES)?;
        Self::try_from(raw)
    }

    /// Encodes the message, to be sealed.
    pub fn encode(&self) -> Vec<u8> {
        let kind = match &self.initiation {
            Some(initiation) => pb::device_message::Kind::First(pb::FirstMessage {
                initiation: initiation.clone(),
                ratchet: self.ratchet.clone(),
            }),
            None => pb::device_message::Kind::Ratchet(self.ratchet.clone()),
        };
        prost::Message::encode_to_vec(&pb::DeviceMessage { kind: Some(kind) })
    }
}

fn check_ratchet(ratchet: &[u8], field: &'static str) -> Result<(), ProtoError> {
    decode::length(ratchet.len(), field, ratchet::MIN_MESSAGE_BYTES, ratchet::MAX_MESSAGE_BYTES)
}

impl TryFrom<pb::DeviceMessage> for DeviceMessage {
    type Error = ProtoError;

    fn try_from(raw: pb::DeviceMessage) -> Result<Self, ProtoError> {
        match decode::required(raw.kind, "DeviceMessage.kind")? {
            pb::device_message::Kind::First(first) => Self::first(first.initiation, first.ratchet),
            pb::device_message::Kind::Ratchet(ratchet) => Self::ratchet(ratchet),
        }
    }
}

impl std::fmt::Debug for DeviceMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceMessage")
            .field("initiation_bytes", &self.initiation.as_ref().map(Vec::len))
            .field("ratchet_bytes", &self.ratchet.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn sealed(len: usize) -> Vec<u8> {
        vec![1; len]
    }

    #[test]
    fn envelope_round_trips_at_both_bounds() {
        for len in [MIN_SEALED_BYTES, MAX_SEALED_BYTES] {
            let envelope = Envelope::new(sealed(len)).unwrap();
            let bytes = envelope.encode();
            assert!(bytes.len() <= MAX_ENVELOPE_BYTES);
            assert_eq!(Envelope::decode(&bytes).unwrap(), envelope);
        }
    }

    #[test]
    fn envelope_refuses_sealed_bytes_out_of_bounds() {
        for len in [0, MIN_SEALED_BYTES - 1, MAX_SEALED_BYTES + 1] {
            let raw = pb::Envelope { version: ENVELOPE_VERSION, sealed: sealed(len) };
            let err = Envelope::decode(&raw.encode_to_vec()).unwrap_err();
            let expected = if len == 0 {
                ProtoError::MissingField { field: "Envelope.sealed" }
            } else {
                ProtoError::LengthOutOfRange {
                    field: "Envelope.sealed",
                    len,
                    min: MIN_SEALED_BYTES,
                    max: MAX_SEALED_BYTES,
                }
            };
            assert_eq!(err, expected);
        }
    }

    #[test]
    fn envelope_refuses_unknown_version() {
        for version in [0, 2, u32::MAX] {
            let raw = pb::Envelope { version, sealed: sealed(MIN_SEALED_BYTES) };
            assert_eq!(
                Envelope::decode(&raw.encode_to_vec()),
                Err(ProtoError::UnsupportedVersion { field: "Envelope.version", version })
            );
        }
    }

    #[test]
    fn envelope_refuses_input_over_the_limit_before_decoding() {
        let bytes = vec![0u8; MAX_ENVELOPE_BYTES + 1];
        assert_eq!(
            Envelope::decode(&bytes),
            Err(ProtoError::TooLarge {
                message: "Envelope",
                len: MAX_ENVELOPE_BYTES + 1,
                max: MAX_ENVELOPE_BYTES
            })
        );
    }

    #[test]
    fn envelope_ignores_fields_added_later() {
        let mut bytes = Envelope::new(sealed(MIN_SEALED_BYTES)).unwrap().encode();
        // Field 15, length-delimited, 3 bytes: unknown to this version.
        bytes.extend_from_slice(&[0x7a, 3, 1, 2, 3]);
        assert_eq!(Envelope::decode(&bytes).unwrap().sealed(), &sealed(MIN_SEALED_BYTES)[..]);
    }

    #[test]
    fn device_message_round_trips_both_kinds() {
        let first = DeviceMessage::first(
            vec![1; MAX_INITIATION_BYTES],
            vec![2; ratchet::MAX_MESSAGE_BYTES],
        )
        .unwrap();
        let bytes = first.encode();
        assert!(bytes.len() <= MAX_DEVICE_MESSAGE_BYTES);
        let decoded = DeviceMessage::decode(&bytes).unwrap();
        assert_eq!(decoded, first);
        assert_eq!(decoded.initiation(), Some(&[1; MAX_INITIATION_BYTES][..]));

        let later = DeviceMessage::ratchet(vec![3; ratchet::MIN_MESSAGE_BYTES]).unwrap();
        let decoded = DeviceMessage::decode(&later.encode()).unwrap();
        assert_eq!(decoded, later);
        assert_eq!(decoded.initiation(), None);
        assert_eq!(decoded.ratchet_message().len(), ratchet::MIN_MESSAGE_BYTES);
    }

    #[test]
    fn device_message_refuses_missing_kind() {
        assert_eq!(
            DeviceMessage::decode(&[]),
            Err(ProtoError::MissingField { field: "DeviceMessage.kind" })
        );
    }

    #[test]
    fn device_message_refuses_lengths_out_of_bounds() {
        let ratchet = vec![0; ratchet::MIN_MESSAGE_BYTES];
        for len in [1, MIN_INITIATION_BYTES - 1, MAX_INITIATION_BYTES + 1] {
            assert_eq!(
                DeviceMessage::first(vec![0; len], ratchet.clone()),
                Err(ProtoError::LengthOutOfRange {
                    field: "FirstMessage.initiation",
                    len,
                    min: MIN_INITIATION_BYTES,
                    max: MAX_INITIATION_BYTES
                })
            );
        }
        let raw = pb::DeviceMessage {
            kind: Some(pb::device_message::Kind::First(pb::FirstMessage {
                initiation: vec![0; MIN_INITIATION_BYTES],
                ratchet: vec![],
            })),
        };
        assert_eq!(
            DeviceMessage::decode(&raw.encode_to_vec()),
            Err(ProtoError::MissingField { field: "FirstMessage.ratchet" })
        );
        let raw = pb::DeviceMessage {
            kind: Some(pb::device_message::Kind::Ratchet(vec![0; ratchet::MIN_MESSAGE_BYTES - 1])),
        };
        assert!(matches!(
            DeviceMessage::decode(&raw.encode_to_vec()),
            Err(ProtoError::LengthOutOfRange { field: "DeviceMessage.ratchet", .. })
        ));
    }
}
