//! Length-prefixed frames, the unit of every xchat stream protocol, and
//! the node-wide budget their buffers are taken from.
//!
//! | bytes | field |
//! |---|---|
//! | 4 | length `n`, `u32` big-endian, 1 to the protocol's maximum |
//! | n | the message |
//!
//! The length is checked against the maximum before any buffer exists;
//! the buffer then grows [`READ_CHUNK_BYTES`] at a time with the bytes that
//! arrive, so a peer that announces a large frame and sends nothing costs
//! nothing.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of a frame's length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Most bytes one read of a frame's body adds to its buffer, and so to the
/// [`InboundBudget`]: a frame's memory follows the bytes that arrived.
pub const READ_CHUNK_BYTES: usize = 16 * 1024;

/// The bytes of inbound frames a node holds at once for one protocol, all
/// peers together: from the first byte read until the message is done with
/// (for a delivery, until the consumer acknowledges or drops the
/// [`InboundDelivery`](crate::InboundDelivery)). A stream whose bytes do not
/// fit is refused; its sender retries later.
#[derive(Debug)]
pub(crate) struct InboundBudget {
    used: AtomicUsize,
    max: usize,
}

impl InboundBudget {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { used: AtomicUsize::new(0), max })
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Bytes taken from an [`InboundBudget`], given back on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<InboundBudget>,
    bytes: usize,
}

impl Reservation {
    pub(crate) fn empty(budget: &Arc<InboundBudget>) -> Self {
        Self { budget: Arc::clone(budget), bytes: 0 }
    }

    /// Takes `bytes` more, if the budget has them.
    pub(crate) fn grow(&mut self, bytes: usize) -> Result<(), FrameError> {
        let budget = &self.budget;
        budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= budget.max)
            })
            .map_err(|_| FrameError::OverBudget { max: budget.max })?;
        self.bytes += bytes;
        Ok(())
    }

    /// Gives `bytes` back early.
    pub(crate) fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.budget.used.fetch_sub(bytes, Ordering::AcqRel);
        self.bytes -= bytes;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Why a frame was refused while reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is zero or over [`MAX_FRAME_BYTES`].
    #[error("frame length {len} outside 1 to {max}")]
    BadLength {
        /// The announced length.
        len: u64,
        /// The largest accepted length.
        max: usize,
    },
    /// The node holds as many inbound bytes as it allows (for deliveries,
    /// [`crate::config::MAX_INBOUND_DELIVERY_BYTES`]).
    #[error("inbound budget of {max} bytes exhausted")]
    OverBudget {
        /// The node's budget.
        max: usize,
    },
    /// The stream ended before the announced length.
    #[error("frame cut after {got} of {len} bytes")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes announced.
        len: usize,
    },
}

impl From<FrameError> for io::Error {
    fn from(error: FrameError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

/// Reads one length-prefixed frame of at most `max` bytes. The length is
/// checked before any buffer is made; the buffer then grows
/// [`READ_CHUNK_BYTES`] at a time with the bytes that arrive, each chunk
/// taken from `reservation` first.
///
/// # Errors
/// [`FrameError`] (as [`io::ErrorKind::InvalidData`]) or the stream's error.
pub(crate) async fn read_frame<T>(
    io: &mut T,
    max: usize,
    mut reservation: Option<&mut Reservation>,
) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    io.read_exact(&mut prefix).await?;
    let announced = u32::from_be_bytes(prefix);
    let len = usize::try_from(announced)
        .ok()
        .filter(|len| (1..=max).contains(len))
        .ok_or(FrameError::BadLength { len: announced.into(), max })?;
    let mut frame = Vec::new();
    while frame.len() < len {
        let start = frame.len();
        let step = (len - start).min(READ_CHUNK_BYTES);
        if let Some(reservation) = reservation.as_deref_mut() {
            reservation.grow(step)?;
        }
        frame.resize(start + step, 0);
        let read = match frame.get_mut(start..) {
            Some(chunk) => io.read(chunk).await?,
            None => 0,
        };
        if let Some(reservation) = reservation.as_deref_mut() {
            reservation.shrink(step - read);
        }
        frame.truncate(start + read);
        if read == 0 {
            return Err(FrameError::Truncated { got: start, len }.into());
        }
    }
    Ok(frame)
}

/// Writes one length-prefixed frame.
///
/// # Errors
/// [`FrameError::BadLength`] for an empty frame or one over `max` (a local
/// bug), or the stream's error.
pub(crate) async fn write_frame<T>(io: &mut T, frame: &[u8], max: usize) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    let len = u32::try_from(frame.len())
        .ok()
        .filter(|len| (1..=max).contains(&(*len as usize)))
        .ok_or(FrameError::BadLength { len: frame.len() as u64, max })?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(frame).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;

    use super::*;
    use crate::delivery::MAX_FRAME_BYTES;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        futures::executor::block_on(future)
    }

    #[test]
    fn frame_round_trips() {
        let mut wire = Cursor::new(Vec::new());
        block_on(write_frame(&mut wire, b"sealed bytes", 64)).unwrap();
        assert_eq!(&wire.get_ref()[..4], &12u32.to_be_bytes());
        wire.set_position(0);
        assert_eq!(block_on(read_frame(&mut wire, 64, None)).unwrap(), b"sealed bytes");
    }

    #[test]
    fn oversized_length_is_refused_before_reading_the_body() {
        let mut bytes = u32::MAX.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0xAB; 16]);
        let mut wire = Cursor::new(bytes);
        let error = block_on(read_frame(&mut wire, MAX_FRAME_BYTES, None)).unwrap_err();
        let inner = error.into_inner().unwrap().downcast::<FrameError>().unwrap();
        assert_eq!(*inner, FrameError::BadLength { len: u32::MAX.into(), max: MAX_FRAME_BYTES });
        // Nothing past the prefix was consumed.
        assert_eq!(wire.position(), 4);
    }

    #[test]
    fn one_byte_over_the_limit_is_refused() {
        let len = u32::try_from(MAX_FRAME_BYTES + 1).unwrap();
        let mut wire = Cursor::new(len.to_be_bytes().to_vec());
        assert!(block_on(read_frame(&mut wire, MAX_FRAME_BYTES, None)).is_err());
    }

    #[test]
    fn empty_frame_is_refused() {
        let mut wire = Cursor::new(0u32.to_be_bytes().to_vec());
        assert!(block_on(read_frame(&mut wire, MAX_FRAME_BYTES, None)).is_err());
    }

    #[test]
    fn truncated_frame_is_refused() {
        let mut bytes = 10u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[1, 2, 3]);
        let error = block_on(read_frame(&mut Cursor::new(bytes), 64, None)).unwrap_err();
        let inner = error.into_inner().unwrap().downcast::<FrameError>().unwrap();
        assert_eq!(*inner, FrameError::Truncated { got: 3, len: 10 });
    }

    #[test]
    fn bytes_past_the_announced_length_stay_unread() {
        let mut bytes = 2u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        let mut wire = Cursor::new(bytes);
        assert_eq!(block_on(read_frame(&mut wire, 64, None)).unwrap(), [1, 2]);
        assert_eq!(wire.position(), 6);
    }

    #[test]
    fn frame_memory_is_taken_from_the_budget_and_given_back() {
        let budget = InboundBudget::new(READ_CHUNK_BYTES * 3);
        let body = vec![7u8; READ_CHUNK_BYTES * 2 + 5];
        let mut wire = Cursor::new(Vec::new());
        block_on(write_frame(&mut wire, &body, MAX_FRAME_BYTES)).unwrap();
        wire.set_position(0);
        let mut reservation = Reservation::empty(&budget);
        let frame = block_on(read_frame(&mut wire, MAX_FRAME_BYTES, Some(&mut reservation)));
        assert_eq!(frame.unwrap(), body);
        assert_eq!(budget.used(), body.len());
        drop(reservation);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn frame_over_the_budget_is_refused_and_its_bytes_given_back() {
        let budget = InboundBudget::new(READ_CHUNK_BYTES);
        let mut held = Reservation::empty(&budget);
        held.grow(10).unwrap();
        let mut wire = Cursor::new(Vec::new());
        block_on(write_frame(&mut wire, &vec![1u8; READ_CHUNK_BYTES * 2], MAX_FRAME_BYTES))
            .unwrap();
        wire.set_position(0);
        let mut reservation = Reservation::empty(&budget);
        let error =
            block_on(read_frame(&mut wire, MAX_FRAME_BYTES, Some(&mut reservation))).unwrap_err();
        let inner = error.into_inner().unwrap().downcast::<FrameError>().unwrap();
        assert_eq!(*inner, FrameError::OverBudget { max: READ_CHUNK_BYTES });
        drop(reservation);
        assert_eq!(budget.used(), 10);
    }

    #[test]
    fn writing_an_oversized_frame_is_refused() {
        let mut wire = Cursor::new(Vec::new());
        assert!(block_on(write_frame(&mut wire, &[0; 65], 64)).is_err());
        assert!(wire.get_ref().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_frame_round_trips(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..4096)) {
            let mut wire = Cursor::new(Vec::new());
            block_on(write_frame(&mut wire, &body, 4096)).unwrap();
            wire.set_position(0);
            proptest::prop_assert_eq!(block_on(read_frame(&mut wire, 4096, None)).unwrap(), body);
        }

        #[test]
        fn any_bytes_read_within_the_limit_or_fail(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            max in 1usize..1024,
        ) {
            let budget = InboundBudget::new(READ_CHUNK_BYTES);
            let mut reservation = Reservation::empty(&budget);
            let mut wire = Cursor::new(bytes);
            if let Ok(frame) = block_on(read_frame(&mut wire, max, Some(&mut reservation))) {
                proptest::prop_assert!(!frame.is_empty() && frame.len() <= max);
                proptest::prop_assert_eq!(budget.used(), frame.len());
            }
            drop(reservation);
            proptest::prop_assert_eq!(budget.used(), 0);
        }
    }
}
