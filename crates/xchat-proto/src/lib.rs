//! xchat's wire messages: everything that crosses a process boundary between
//! devices, defined once as protobuf and decoded with explicit limits before
//! any work.
//!
//! This crate sits between the cryptography and the messenger
//! (`docs/architecture.md`): `xchat-core -> xchat-proto -> xchat-crypto`, and
//! `xchat-net` uses it to frame what it carries. Like `xchat-crypto` it is
//! pure: no I/O, no clock, no OS randomness.
//!
//! The `.proto` files in `proto/xchat/v1/` (package `xchat.v1`) are the
//! source of truth; `prost-build` turns them into Rust committed in
//! `src/generated/` (a test fails when it is stale). Those generated structs
//! stay private: every decoder checks the input's length against a named
//! limit, lets `prost` decode, then checks every field into a validated type,
//! and every encoder starts from a validated type. A refusal is a
//! [`ProtoError`] naming the field; untrusted input never panics.
//! `docs/wire.md` lists the messages and their limits.
//!
//! Main types, by module:
//! - [`envelope`]: [`Envelope`](envelope::Envelope) (what the network carries:
//!   a sealed-sender envelope) and [`DeviceMessage`](envelope::DeviceMessage)
//!   (its payload: a ratchet message, with the handshake when first);
//! - [`content`]: [`Content`](content::Content) (the ratchet's plaintext) and
//!   its [`Body`](content::Body): text, file, receipt, timer change, call
//!   signal, typing;
//! - [`bundle`]: [`PreKeyRecord`](bundle::PreKeyRecord) and
//!   [`DeviceList`](bundle::DeviceList), the records a device publishes;
//! - [`mailbox`]: [`Request`](mailbox::Request) and
//!   [`Response`](mailbox::Response) of the mailbox protocol, with
//!   proof-of-work stamps and signed fetches and deletes.
//!
//! # Example
//!
//! ```
//! use xchat_proto::content::{Body, Content, MessageId, Text, VanishingTimer};
//!
//! let content = Content {
//!     id: MessageId::from_bytes([7; 16]),
//!     sent_at_ms: 1_790_000_000_000,
//!     timer: VanishingTimer::from_secs(3600)?,
//!     body: Body::Text(Text::new("hello".to_owned())?),
//! };
//! // The plaintext for `xchat_crypto::ratchet::Session::encrypt`.
//! let plaintext = content.encode();
//! // What `Session::decrypt` gave back, checked field by field.
//! assert_eq!(Content::decode(&plaintext)?, content);
//!
//! // Limits are checked before anything is decoded.
//! let too_long = vec![0u8; xchat_proto::content::MAX_CONTENT_BYTES + 1];
//! assert!(matches!(
//!     Content::decode(&too_long),
//!     Err(xchat_proto::ProtoError::TooLarge { .. })
//! ));
//! # Ok::<(), xchat_proto::ProtoError>(())
//! ```

pub mod bundle;
pub mod content;
mod decode;
pub mod envelope;
mod generated;
pub mod mailbox;

pub use decode::ProtoError;

/// Bytes a message's limit allows beyond the largest message this version
/// writes, where that limit is not already a container's: room for fields a
/// later version adds, which this version skips when decoding. Without it,
/// adding a field would make old decoders refuse new messages.
pub const HEADROOM_BYTES: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/wire.md` and the `.proto` comments quote these numbers.
    #[test]
    fn limits_are_the_documented_values() {
        assert_eq!(envelope::MAX_ENVELOPE_BYTES, 263_547);
        assert_eq!(envelope::MAX_SEALED_BYTES, 262_523);
        assert_eq!(envelope::MIN_SEALED_BYTES, 379);
        assert_eq!(envelope::MAX_DEVICE_MESSAGE_BYTES, 262_144);
        assert_eq!((envelope::MIN_INITIATION_BYTES, envelope::MAX_INITIATION_BYTES), (1460, 1464));
        assert_eq!(content::MAX_CONTENT_BYTES, 258_047);
        assert_eq!(content::MAX_TEXT_BYTES, 65_536);
        assert_eq!(content::MAX_SDP_BYTES, 65_536);
        assert_eq!(content::MAX_VANISHING_TIMER_SECS, 2_419_200);
        assert_eq!(bundle::MAX_PREKEY_RECORD_BYTES, 138_000);
        assert_eq!(bundle::MAX_DEVICE_LIST_BYTES, 11_915);
        assert_eq!(mailbox::MAX_REQUEST_BYTES, 264_571);
        assert_eq!(mailbox::MAX_RESPONSE_BYTES, 4_194_304);
        assert_eq!(mailbox::MAX_TTL_SECONDS, 604_800);
    }
}
