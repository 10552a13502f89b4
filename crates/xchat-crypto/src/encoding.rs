//! The byte encoding of xchat-crypto's wire layouts and records.
//!
//! Everything this crate hands out as bytes (prekey bundles, handshake and
//! ratchet messages, sealed envelopes, and the `*Record` forms of its stateful
//! objects) is a fixed, versioned layout built with [`Writer`] and read back
//! with [`Reader`]. The reader checks every length against the bytes left and
//! against a named maximum before it allocates, and refuses trailing bytes,
//! so each value has exactly one encoding. `docs/protocol.md` gives the
//! layouts.
//!
//! Integers are big-endian. A variable-length field is a `u32` length then
//! the bytes.

use zeroize::Zeroizing;

/// Builds an encoding.
#[derive(Default)]
#[allow(dead_code)] // the whole codec lands before all of its users
pub(crate) struct Writer {
    buf: Vec<u8>,
}

#[allow(dead_code)]
impl Writer {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self { buf: Vec::with_capacity(capacity) }
    }

    pub(crate) fn u8(&mut self, value: u8) -> &mut Self {
        self.buf.push(value);
        self
    }

    pub(crate) fn u32(&mut self, value: u32) -> &mut Self {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn u64(&mut self, value: u64) -> &mut Self {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// Bytes of a length both sides know.
    pub(crate) fn fixed(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// A `u32` length, then the bytes.
    pub(crate) fn var(&mut self, bytes: &[u8]) -> &mut Self {
        // Every variable field xchat writes is bounded far below 4 GiB by a
        // named limit checked by its producer.
        #[allow(clippy::cast_possible_truncation)]
        self.u32(bytes.len() as u32);
        self.fixed(bytes)
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// For encodings that hold secrets: the buffer is wiped when dropped.
    pub(crate) fn into_secret_bytes(self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.buf)
    }
}

/// Reads an encoding, refusing anything malformed.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

#[allow(dead_code)]
impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.fixed(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Like [`Reader::array`], for secrets: the copy is wiped when dropped.
    pub(crate) fn secret_array<const N: usize>(
        &mut self,
    ) -> Result<Zeroizing<[u8; N]>, DecodeError> {
        let bytes = self.fixed(N)?;
        let mut out = Zeroizing::new([0u8; N]);
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn fixed(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(head)
    }

    /// A `u32` length, checked against `max` and the bytes left, then the bytes.
    pub(crate) fn var(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::TooLarge { len, max });
        }
        self.fixed(len)
    }

    /// The rest of the input.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Ends the decode: every byte must have been read.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() { Ok(()) } else { Err(DecodeError::TrailingBytes) }
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ends before the value does.
    #[error("input truncated")]
    Truncated,
    /// A length field exceeds its limit.
    #[error("field of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The length the input claims.
        len: usize,
        /// The limit for that field.
        max: usize,
    },
    /// Bytes follow the end of the value.
    #[error("trailing bytes after the value")]
    TrailingBytes,
    /// A version or kind byte this build does not know.
    #[error("unknown version {0}")]
    UnknownVersion(u8),
    /// A field holds a value that is not allowed (named).
    #[error("invalid {0}")]
    Invalid(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_refuses_lengths_over_the_limit_before_reading() {
        let mut w = Writer::default();
        w.u32(u32::MAX);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.var(1024), Err(DecodeError::TooLarge { len: u32::MAX as usize, max: 1024 }));
    }

    #[test]
    fn reader_refuses_truncation_and_trailing_bytes() {
        let mut w = Writer::default();
        w.u8(1).u64(7).var(b"abc");
        let bytes = w.into_bytes();
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            let parsed = (|| {
                r.u8()?;
                r.u64()?;
                r.var(16)?;
                Ok::<_, DecodeError>(())
            })();
            assert_eq!(parsed, Err(DecodeError::Truncated), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let mut r = Reader::new(&longer);
        r.u8().unwrap();
        r.u64().unwrap();
        assert_eq!(r.var(16).unwrap(), b"abc");
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes));
    }
}
