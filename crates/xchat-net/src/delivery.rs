//! `/xchat/delivery/1`: one sealed [`Envelope`] from one device to a
//! connected device, acknowledged once the receiver has taken it.
//!
//! Each delivery is one libp2p stream carrying one request and one answer
//! (rust-libp2p `request-response`). The network never looks inside the
//! envelope: it checks the frame's length before it allocates, decodes the
//! [`Envelope`] (version and length, no cryptography) and hands it up.
//!
//! # Frames (`docs/network.md`)
//!
//! Request, from the sender: one [`frame`](crate::frame) of 1 to
//! [`MAX_FRAME_BYTES`] bytes holding the encoded [`Envelope`].
//!
//! Answer, from the receiver: one byte, [`Answer`] (`0x00` accepted, `0x01`
//! malformed). A receiver that does not take the envelope (its consumer is
//! gone or did not acknowledge within [`crate::config::DELIVERY_TIMEOUT`])
//! closes the stream without an answer: the sender learns that the envelope
//! was not taken and may retry.
//!
//! A length over [`MAX_FRAME_BYTES`] or zero ends the stream before any
//! buffer exists; an accepted frame's buffer grows with the bytes that
//! arrive, taken from the node's inbound budget
//! ([`crate::config::MAX_INBOUND_DELIVERY_BYTES`]).

use std::io;
use std::sync::Arc;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use xchat_proto::envelope::{Envelope, MAX_ENVELOPE_BYTES};

use crate::frame::{InboundBudget, Reservation, read_frame, write_frame};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/xchat/delivery/1");

/// Most bytes of the envelope in a request frame: xchat-proto's
/// [`MAX_ENVELOPE_BYTES`] (263 547), checked before allocation.
pub const MAX_FRAME_BYTES: usize = MAX_ENVELOPE_BYTES;

/// The receiver's answer to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// The receiver's consumer took the envelope (`0x00`).
    Accepted,
    /// The frame held no valid [`Envelope`] (`0x01`); sending it again will
    /// not help.
    Malformed,
}

impl Answer {
    /// The answer's byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Accepted => 0x00,
            Self::Malformed => 0x01,
        }
    }

    /// The answer of a byte from the wire.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0x00 => Some(Self::Accepted),
            0x01 => Some(Self::Malformed),
            _ => None,
        }
    }
}

/// What a delivery request carries: the encoded envelope, decoded by the
/// network task (so a malformed one can be answered [`Answer::Malformed`]);
/// an inbound one holds its bytes' [`Reservation`].
pub(crate) struct Request {
    pub(crate) frame: Vec<u8>,
    pub(crate) reservation: Option<Reservation>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "delivery::Request({} bytes)", self.frame.len())
    }
}

impl Request {
    pub(crate) fn new(envelope: &Envelope) -> Self {
        Self { frame: envelope.encode(), reservation: None }
    }
}

/// The `request-response` codec of the delivery protocol. Clones share the
/// node's [`InboundBudget`].
#[derive(Debug, Clone)]
pub(crate) struct Codec {
    pub(crate) budget: Arc<InboundBudget>,
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Answer;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut reservation = Reservation::empty(&self.budget);
        let frame = read_frame(io, MAX_FRAME_BYTES, Some(&mut reservation)).await?;
        Ok(Request { frame, reservation: Some(reservation) })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Answer>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await?;
        Answer::from_byte(byte[0])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown delivery answer"))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        Request { frame, .. }: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &frame, MAX_FRAME_BYTES).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        answer: Answer,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&[answer.to_byte()]).await?;
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_and_unknown_bytes_are_refused() {
        for answer in [Answer::Accepted, Answer::Malformed] {
            assert_eq!(Answer::from_byte(answer.to_byte()), Some(answer));
        }
        assert_eq!(Answer::from_byte(0x02), None);
    }
}
