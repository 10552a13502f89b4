//! Plaintext padding to size buckets, so that the length of a ciphertext
//! tells a relay little about what it carries.
//!
//! Every ratchet message pads its plaintext before encryption
//! (`docs/protocol.md`, "Padding"). The scheme:
//!
//! ```text
//! padded = plaintext || 0x80 || 0x00 * k          (ISO/IEC 7816-4 padding)
//! len(padded) = bucket(len(plaintext) + 1)
//!
//! bucket(l) = 256                          for l <= 256
//!           = the next power of two >= l   for 256 < l <= 64 KiB
//!           = Padmé(l)                     for 64 KiB < l <= 1 MiB
//! ```
//!
//! Powers of two leak at most `log2` of the length's order of magnitude and
//! cost at most 2x, which is cheap for chat-sized messages and hides the
//! difference between "ok" and a paragraph (both travel as 256 bytes). Above
//! 64 KiB doubling would waste too much; Padmé (Nikitin et al., "Reducing
//! Metadata Leakage from Encrypted Files and Communication with PURBs",
//! PETS 2019) keeps the overhead under 12% while leaking `O(log log l)` bits:
//! with `E = floor(log2 l)` and `S = floor(log2 E) + 1`, it rounds `l` up to
//! a multiple of `2^(E - S)`.
//!
//! There is exactly one padding of each plaintext: [`unpad`] refuses a
//! buffer whose length is not the bucket of the plaintext it holds, a missing
//! marker, or a non-zero byte after the marker. It scans the whole buffer
//! without branching on its content, so its running time depends on the
//! bucket only, not on where the plaintext ends.

use zeroize::Zeroizing;

/// The marker byte that ends the plaintext (ISO/IEC 7816-4).
pub const MARKER: u8 = 0x80;
/// The smallest padded length, in bytes: every plaintext up to 255 bytes
/// pads to this.
pub const MIN_PADDED_BYTES: usize = 256;
/// Padded lengths up to this many bytes are powers of two; above, Padmé.
pub const MAX_POWER_OF_TWO_BYTES: usize = 64 * 1024;
/// The largest padded length, in bytes (1 MiB, itself a Padmé bucket).
pub const MAX_PADDED_BYTES: usize = 1024 * 1024;
/// The largest plaintext that can be padded, in bytes (one byte goes to the
/// marker).
pub const MAX_PLAINTEXT_BYTES: usize = MAX_PADDED_BYTES - 1;

/// The padded length of a plaintext of `plaintext_len` bytes, or `None`
/// when it exceeds [`MAX_PLAINTEXT_BYTES`].
pub const fn padded_len(plaintext_len: usize) -> Option<usize> {
    if plaintext_len > MAX_PLAINTEXT_BYTES {
        return None;
    }
    Some(bucket(plaintext_len + 1))
}

/// Whether `len` is a padded length: one of the buckets between
/// [`MIN_PADDED_BYTES`] and [`MAX_PADDED_BYTES`]. Every bucket is a multiple
/// of 256 bytes (Padmé rounds to at least `2^11` above 64 KiB).
pub const fn is_padded_len(len: usize) -> bool {
    len >= MIN_PADDED_BYTES && len <= MAX_PADDED_BYTES && bucket(len) == len
}

/// The bucket of an unpadded length `len` (plaintext and marker), for
/// `1 <= len <= MAX_PADDED_BYTES`. A bucket is its own bucket.
const fn bucket(len: usize) -> usize {
    if len <= MIN_PADDED_BYTES {
        MIN_PADDED_BYTES
    } else if len <= MAX_POWER_OF_TWO_BYTES {
        len.next_power_of_two()
    } else {
        padme(len)
    }
}

/// Padmé: rounds `len` (above 64 KiB here, so `E >= 16` and `E - S >= 11`)
/// up to a multiple of `2^(E - S)`, `E = floor(log2 len)`,
/// `S = floor(log2 E) + 1`.
const fn padme(len: usize) -> usize {
    let e = len.ilog2();
    let s = e.ilog2() + 1;
    let mask = (1usize << (e - s)) - 1;
    (len + mask) & !mask
}

/// Pads `plaintext` into a new buffer of its bucket's length. The buffer
/// holds the plaintext and is wiped when dropped.
///
/// # Errors
/// [`PadError::TooLarge`] above [`MAX_PLAINTEXT_BYTES`].
pub fn pad(plaintext: &[u8]) -> Result<Zeroizing<Vec<u8>>, PadError> {
    let mut out = Zeroizing::new(Vec::new());
    pad_into(plaintext, &mut out)?;
    Ok(out)
}

/// Appends the padding of `plaintext` to `out`, growing `out` by exactly the
/// padded length (reserved up front, so a buffer sized by the caller is never
/// reallocated and leaves no plaintext copy behind).
///
/// # Errors
/// [`PadError::TooLarge`] above [`MAX_PLAINTEXT_BYTES`]; `out` is unchanged.
pub fn pad_into(plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), PadError> {
    let padded = padded_len(plaintext.len())
        .ok_or(PadError::TooLarge { len: plaintext.len(), max: MAX_PLAINTEXT_BYTES })?;
    out.reserve_exact(padded);
    out.extend_from_slice(plaintext);
    out.push(MARKER);
    out.resize(out.len() + padded - plaintext.len() - 1, 0);
    Ok(())
}

/// The plaintext inside `padded`, a prefix of it.
///
/// # Errors
/// [`UnpadError::Malformed`] when `padded` is not the padding of any
/// plaintext: a length that is not a bucket, no marker, a non-zero byte
/// after the marker, or a plaintext whose bucket is smaller than `padded`.
pub fn unpad(padded: &[u8]) -> Result<&[u8], UnpadError> {
    // The length is public (it is the ciphertext's length); the content is
    // not, so from here on the scan does not branch on it.
    if !is_padded_len(padded.len()) {
        return Err(UnpadError::Malformed);
    }
    let mut words = padded.chunks_exact(8);
    let mut last_index = 0u64;
    let mut last_word = 0u64;
    for (index, chunk) in (0u64..).zip(&mut words) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_be_bytes(bytes);
        // All ones when the word is not zero, without a branch.
        let nonzero = ((word | word.wrapping_neg()) >> 63).wrapping_neg();
        last_index = (index & nonzero) | (last_index & !nonzero);
        last_word = (word & nonzero) | (last_word & !nonzero);
    }
    if !words.remainder().is_empty() {
        // Unreachable: every bucket is a multiple of 8 bytes.
        return Err(UnpadError::Malformed);
    }
    // The last non-zero byte of the last non-zero word is its lowest non-zero
    // byte (the word is big-endian); an all-zero buffer gives 64 here.
    let zero_bits = last_word.trailing_zeros() & !7;
    let marker = last_word.checked_shr(zero_bits).unwrap_or(0) & 0xff;
    if marker != u64::from(MARKER) {
        return Err(UnpadError::Malformed);
    }
    // A marker was found, so `zero_bits <= 56`.
    let plaintext_len = usize::try_from(last_index * 8 + 7 - u64::from(zero_bits / 8))
        .map_err(|_| UnpadError::Malformed)?;
    if padded_len(plaintext_len) != Some(padded.len()) {
        return Err(UnpadError::Malformed);
    }
    padded.get(..plaintext_len).ok_or(UnpadError::Malformed)
}

/// Why a plaintext could not be padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PadError {
    /// The plaintext is longer than [`MAX_PLAINTEXT_BYTES`].
    #[error("plaintext of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The plaintext's length.
        len: usize,
        /// [`MAX_PLAINTEXT_BYTES`].
        max: usize,
    },
}

/// Why a padded buffer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnpadError {
    /// The buffer is not the padding of any plaintext.
    #[error("malformed padding")]
    Malformed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn padded_len_follows_the_buckets() {
        let cases = [
            (0, 256),
            (1, 256),
            (255, 256),
            (256, 512),
            (511, 512),
            (512, 1024),
            (1000, 1024),
            (1023, 1024),
            (1024, 2048),
            (4095, 4096),
            (32 * 1024, 64 * 1024),
            (64 * 1024 - 1, 64 * 1024),
            // Padmé from here: E = 16, S = 5, multiples of 2^11.
            (64 * 1024, 64 * 1024 + 2048),
            (100_000, 100_352),
            // E = 17, S = 5: multiples of 2^12.
            (200_000, 200_704),
            // E = 19, S = 5: multiples of 2^14, up to exactly 1 MiB.
            (MAX_PLAINTEXT_BYTES, MAX_PADDED_BYTES),
        ];
        for (len, padded) in cases {
            assert_eq!(padded_len(len), Some(padded), "plaintext of {len} bytes");
        }
        assert_eq!(padded_len(MAX_PLAINTEXT_BYTES + 1), None);
    }

    #[test]
    fn padme_overhead_stays_under_twelve_percent() {
        let mut len = MAX_POWER_OF_TWO_BYTES;
        while len <= MAX_PLAINTEXT_BYTES {
            let padded = padded_len(len).unwrap();
            assert!(padded > len);
            assert!((padded - len - 1) * 100 < (len + 1) * 12, "{len} -> {padded}");
            assert!(is_padded_len(padded));
            len += 997;
        }
    }

    #[test]
    fn every_bucket_is_a_multiple_of_256_bytes() {
        for len in (0..=MAX_PLAINTEXT_BYTES).step_by(61) {
            assert_eq!(padded_len(len).unwrap() % 256, 0, "plaintext of {len} bytes");
        }
    }

    #[test]
    fn pad_appends_marker_then_zeros() {
        let padded = pad(b"hello").unwrap();
        assert_eq!(padded.len(), 256);
        assert_eq!(&padded[..5], b"hello");
        assert_eq!(padded[5], MARKER);
        assert!(padded[6..].iter().all(|&b| b == 0));
    }

    #[test]
    fn pad_refuses_plaintext_over_the_limit() {
        let big = vec![0u8; MAX_PLAINTEXT_BYTES + 1];
        assert_eq!(
            pad(&big).unwrap_err(),
            PadError::TooLarge { len: MAX_PLAINTEXT_BYTES + 1, max: MAX_PLAINTEXT_BYTES }
        );
        let mut out = vec![1, 2, 3];
        assert!(pad_into(&big, &mut out).is_err());
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn unpad_recovers_plaintexts_ending_in_marker_and_zero_bytes() {
        for plaintext in [&b""[..], b"\x00", b"\x80", b"a\x80\x00", &[0x80; 255], &[0; 300]] {
            let padded = pad(plaintext).unwrap();
            assert_eq!(unpad(&padded).unwrap(), plaintext);
        }
    }

    #[test]
    fn unpad_refuses_all_zeros_and_missing_marker() {
        assert_eq!(unpad(&[0u8; 256]), Err(UnpadError::Malformed));
        let mut padded = pad(b"abc").unwrap();
        padded[3] = 0x81;
        assert_eq!(unpad(&padded), Err(UnpadError::Malformed));
        let mut padded = pad(b"abc").unwrap();
        padded[255] = 1;
        assert_eq!(unpad(&padded), Err(UnpadError::Malformed));
    }

    #[test]
    fn unpad_refuses_lengths_that_are_not_buckets() {
        for len in [0, 1, 8, 255, 257, 384, 3000, MAX_PADDED_BYTES + 256] {
            let mut buf = vec![0u8; len];
            if let Some(first) = buf.first_mut() {
                *first = MARKER;
            }
            assert_eq!(unpad(&buf), Err(UnpadError::Malformed), "{len} bytes");
        }
    }

    #[test]
    fn unpad_refuses_padding_longer_than_the_bucket() {
        // A 100-byte plaintext padded to 512 instead of 256: not canonical.
        let mut buf = vec![0u8; 512];
        buf[..100].fill(7);
        buf[100] = MARKER;
        assert_eq!(unpad(&buf), Err(UnpadError::Malformed));
    }

    proptest! {
        #[test]
        fn pad_then_unpad_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let padded = pad(&plaintext).unwrap();
            prop_assert!(is_padded_len(padded.len()));
            prop_assert_eq!(Some(padded.len()), padded_len(plaintext.len()));
            prop_assert_eq!(unpad(&padded).unwrap(), &plaintext[..]);
        }

        #[test]
        fn unpad_accepts_only_canonical_paddings(
            len in prop::sample::select(vec![256usize, 512, 1024, 2048]),
            pokes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            marker_at in any::<prop::sample::Index>(),
        ) {
            // Mostly zeros with a marker somewhere and a few random bytes:
            // near-valid buffers, which exercise the scan rather than the
            // length check.
            let mut buf = vec![0u8; len];
            buf[marker_at.index(len)] = MARKER;
            for (at, byte) in pokes {
                buf[at.index(len)] = byte;
            }
            if let Ok(plaintext) = unpad(&buf) {
                prop_assert_eq!(&pad(plaintext).unwrap()[..], &buf[..]);
            }
        }

        #[test]
        fn unpad_never_panics_on_arbitrary_bytes(buf in proptest::collection::vec(any::<u8>(), 0..2100)) {
            if let Ok(plaintext) = unpad(&buf) {
                prop_assert_eq!(&pad(plaintext).unwrap()[..], &buf[..]);
            }
        }

        #[test]
        fn unpad_refuses_a_nonzero_byte_after_the_marker(
            len in 0usize..600,
            at in any::<prop::sample::Index>(),
            byte in any::<u8>().prop_filter("zero or a marker", |b| *b != 0 && *b != MARKER),
        ) {
            let plaintext = vec![MARKER; len];
            let mut padded = pad(&plaintext).unwrap();
            let room = padded.len() - len - 1;
            prop_assume!(room > 0);
            padded[len + 1 + at.index(room)] = byte;
            prop_assert_eq!(unpad(&padded), Err(UnpadError::Malformed));
        }
    }
}
