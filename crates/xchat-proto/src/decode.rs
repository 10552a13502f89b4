//! Decoding with limits: the one error type of this crate and the checks every
//! decoder shares.
//!
//! Every decoder first compares the input's length with its message's named
//! limit, and only then hands it to `prost`: `prost` allocates at most what
//! the input holds, so the limit bounds memory before any work. The
//! generated struct is then checked field by field into a validated type;
//! nothing else in xchat sees the generated structs.

use prost::Message;

/// Why bytes from another device, or a value built for one, were refused.
///
/// Field names are the `.proto` names, `Message.field`. Messages hold
/// lengths, counts and enum numbers, never the content of a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The input is longer than its message's limit; nothing was decoded.
    #[error("{message} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The message (`Content`, `Envelope`, ...).
        message: &'static str,
        /// The input's length in bytes.
        len: usize,
        /// The message's limit in bytes.
        max: usize,
    },
    /// The input is not a valid protobuf encoding of its message.
    #[error("{message} is not a valid protobuf encoding")]
    Malformed {
        /// The message.
        message: &'static str,
    },
    /// A version this build does not know.
    #[error("unsupported {field} {version}")]
    UnsupportedVersion {
        /// The version field.
        field: &'static str,
        /// The version it holds.
        version: u32,
    },
    /// A required field is absent or empty (proto3 does not tell them apart).
    #[error("missing {field}")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A fixed-size field of another size.
    #[error("{field} is {len} bytes, not {expected}")]
    WrongLength {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The only length allowed.
        expected: usize,
    },
    /// A variable-size field outside its bounds.
    #[error("{field} is {len} bytes, outside {min}..={max}")]
    LengthOutOfRange {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The fewest bytes allowed.
        min: usize,
        /// The most bytes allowed.
        max: usize,
    },
    /// A repeated field with too many entries.
    #[error("{field} has {count} entries, more than {max}")]
    TooMany {
        /// The field.
        field: &'static str,
        /// How many entries it has.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// A number outside its bounds.
    #[error("{field} is {value}, outside {min}..={max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The smallest value allowed.
        min: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// An enum number this build does not know, or the unspecified `0`.
    #[error("unknown {field} value {value}")]
    UnknownEnumValue {
        /// The field.
        field: &'static str,
        /// The number it holds.
        value: i32,
    },
    /// A value breaking a rule of its field (a file name with a path
    /// separator, a malformed media type).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule broken.
        reason: &'static str,
    },
    /// A public key that is not a valid key.
    #[error("{field} is not a valid public key")]
    InvalidKey {
        /// The field.
        field: &'static str,
    },
    /// A field holding one of xchat-crypto's byte layouts that does not
    /// decode as that layout.
    #[error("{field} does not decode")]
    Crypto {
        /// The field.
        field: &'static str,
        /// Why xchat-crypto refused it.
        #[source]
        source: xchat_crypto::DecodeError,
    },
}

/// Decodes `bytes` as the generated message `M`, refusing input longer than
/// `max` before `prost` reads a byte.
pub(crate) fn message<M: Message + Default>(
    bytes: &[u8],
    name: &'static str,
    max: usize,
) -> Result<M, ProtoError> {
    if bytes.len() > max {
        return Err(ProtoError::TooLarge { message: name, len: bytes.len(), max });
    }
    M::decode(bytes).map_err(|_| ProtoError::Malformed { message: name })
}

/// A fixed-size bytes field: empty is missing, any other wrong size is
/// [`ProtoError::WrongLength`].
pub(crate) fn fixed<const N: usize>(
    bytes: &[u8],
    field: &'static str,
) -> Result<[u8; N], ProtoError> {
    if bytes.is_empty() {
        return Err(ProtoError::MissingField { field });
    }
    bytes.try_into().map_err(|_| ProtoError::WrongLength { field, len: bytes.len(), expected: N })
}

/// A variable-size bytes or string field of `min..=max` bytes; empty is
/// missing when `min` is above zero.
pub(crate) fn length(
    len: usize,
    field: &'static str,
    min: usize,
    max: usize,
) -> Result<(), ProtoError> {
    if len == 0 && min > 0 {
        return Err(ProtoError::MissingField { field });
    }
    if len < min || len > max {
        return Err(ProtoError::LengthOutOfRange { field, len, min, max });
    }
    Ok(())
}

/// A repeated field of at most `max` entries.
pub(crate) fn count(count: usize, field: &'static str, max: usize) -> Result<(), ProtoError> {
    if count > max {
        return Err(ProtoError::TooMany { field, count, max });
    }
    Ok(())
}

/// A field that must be present: a submessage or a oneof.
pub(crate) fn required<T>(value: Option<T>, field: &'static str) -> Result<T, ProtoError> {
    value.ok_or(ProtoError::MissingField { field })
}

/// An enum field: `0` (unspecified) and unknown numbers are refused.
pub(crate) fn enumeration<E: TryFrom<i32>>(
    value: i32,
    field: &'static str,
) -> Result<E, ProtoError> {
    if value == 0 {
        return Err(ProtoError::UnknownEnumValue { field, value });
    }
    E::try_from(value).map_err(|_| ProtoError::UnknownEnumValue { field, value })
}

/// The length of `value` as a protobuf varint, in bytes.
pub(crate) const fn varint_len(value: u64) -> usize {
    let mut len = 1;
    let mut rest = value >> 7;
    while rest > 0 {
        len += 1;
        rest >>= 7;
    }
    len
}

/// The encoded length of a length-delimited field (field number below 16)
/// holding `len` bytes.
pub(crate) const fn delimited_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_len_matches_prost() {
        for value in [0, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            assert_eq!(varint_len(value), prost::encoding::encoded_len_varint(value), "{value}");
        }
    }

    #[test]
    fn message_refuses_oversized_input_before_decoding() {
        // Valid protobuf (an empty Envelope is zero bytes; padding with
        // field 15 varints keeps it valid), but one byte over the limit.
        let bytes = [0x78, 0x00, 0x78, 0x00, 0x78];
        assert_eq!(
            message::<crate::generated::Envelope>(&bytes, "Envelope", 4),
            Err(ProtoError::TooLarge { message: "Envelope", len: 5, max: 4 })
        );
    }

    #[test]
    fn fixed_tells_missing_from_wrong_length() {
        assert_eq!(fixed::<16>(&[], "X.id"), Err(ProtoError::MissingField { field: "X.id" }));
        assert_eq!(
            fixed::<16>(&[0; 15], "X.id"),
            Err(ProtoError::WrongLength { field: "X.id", len: 15, expected: 16 })
        );
        assert_eq!(fixed::<16>(&[7; 16], "X.id"), Ok([7; 16]));
    }

    #[test]
    fn enumeration_refuses_unspecified_and_unknown_values() {
        use crate::generated::TypingState;
        assert_eq!(
            enumeration::<TypingState>(0, "Typing.state"),
            Err(ProtoError::UnknownEnumValue { field: "Typing.state", value: 0 })
        );
        assert_eq!(
            enumeration::<TypingState>(3, "Typing.state"),
            Err(ProtoError::UnknownEnumValue { field: "Typing.state", value: 3 })
        );
        assert_eq!(enumeration::<TypingState>(1, "Typing.state"), Ok(TypingState::Started));
    }
}
