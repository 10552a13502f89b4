//! The frames of `/xchat/file/1` and of its direct TCP path, their byte
//! layouts and the fetch proof's transcript (`docs/network.md`,
//! "/xchat/file/1"). Pure: encoding and decoding only, no I/O.
//!
//! Every frame is a [`frame`](crate::frame) (4-byte big-endian length, then
//! the body) whose length is checked against its named maximum before any
//! buffer exists. Each body here has one fixed length (the response two),
//! so the maximum is that length.

use libp2p::PeerId;
use xchat_crypto::file::FETCH_PROOF_BYTES;
use xchat_proto::content::FILE_ID_BYTES;
use xchat_proto::content::FileId;

/// The version byte every request and ticket frame opens with.
pub const VERSION: u8 = 1;

/// Bytes of a fast-path ticket: random, one use.
pub const TICKET_BYTES: usize = 32;

/// Bytes of a request frame's body:
///
/// | bytes | field |
/// |---|---|
/// | 1 | version, [`VERSION`] |
/// | 16 | file id |
/// | 4 | first chunk wanted, `u32` big-endian |
/// | 1 | flags: bit 0 set when the fetcher can take the direct path |
/// | 32 | fetch proof over the [`transcript`] |
pub const REQUEST_BYTES: usize = 1 + FILE_ID_BYTES + 4 + 1 + FETCH_PROOF_BYTES;

/// Bytes of a response frame's body when the server also offers the direct
/// path; the other bodies are shorter:
///
/// | bytes | field |
/// |---|---|
/// | 1 | [`Status`] |
/// | 8 | ciphertext length of the whole file, `u64` big-endian (status `Ok` only) |
/// | 2 | direct path TCP port, `u16` big-endian (when offered) |
/// | 32 | one-time ticket (when offered) |
pub const MAX_RESPONSE_BYTES: usize = 1 + 8 + 2 + TICKET_BYTES;

/// Bytes of the fetcher's choice frame's body: one byte,
/// [`CHOICE_SEND_ON_STREAM`].
pub const CHOICE_BYTES: usize = 1;

/// The fetcher's choice: send the body on this libp2p stream (the direct
/// path was not offered or could not be reached).
pub const CHOICE_SEND_ON_STREAM: u8 = 0x01;

/// Bytes of the ticket frame's body, the first frame on a direct TCP
/// connection: [`VERSION`], then the ticket.
pub const TICKET_FRAME_BYTES: usize = 1 + TICKET_BYTES;

/// Bytes of the server's answer to a valid ticket on a direct connection:
/// one byte, `0x00`; the ciphertext follows.
pub const TICKET_ACCEPTED_BYTES: usize = 1;

/// Bit of [`Request::flags`]: the fetcher can take the direct TCP path.
const FLAG_DIRECT: u8 = 0x01;

/// A fetch request, as the fetcher sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The file.
    pub file_id: FileId,
    /// The first chunk wanted: the one after the last chunk the fetcher
    /// verified, 0 for a new fetch.
    pub from_chunk: u32,
    /// Whether the fetcher can take the direct TCP path.
    pub direct: bool,
    /// The fetch proof over [`transcript`].
    pub proof: [u8; FETCH_PROOF_BYTES],
}

impl Request {
    /// The request's body.
    pub fn encode(&self) -> [u8; REQUEST_BYTES] {
        let mut out = [0u8; REQUEST_BYTES];
        let (version, rest) = out.split_at_mut(1);
        let (id, rest) = rest.split_at_mut(FILE_ID_BYTES);
        let (from, rest) = rest.split_at_mut(4);
        let (flags, proof) = rest.split_at_mut(1);
        version.copy_from_slice(&[VERSION]);
        id.copy_from_slice(self.file_id.as_bytes());
        from.copy_from_slice(&self.from_chunk.to_be_bytes());
        flags.copy_from_slice(&[if self.direct { FLAG_DIRECT } else { 0 }]);
        proof.copy_from_slice(&self.proof);
        out
    }

    /// Reads a request's body: exactly [`REQUEST_BYTES`], version
    /// [`VERSION`], no unknown flag.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; REQUEST_BYTES] = bytes.try_into().ok()?;
        let (version, rest) = bytes.split_first()?;
        let (id, rest) = rest.split_first_chunk::<FILE_ID_BYTES>()?;
        let (from, rest) = rest.split_first_chunk::<4>()?;
        let (flags, rest) = rest.split_first()?;
        let proof: [u8; FETCH_PROOF_BYTES] = rest.try_into().ok()?;
        if *version != VERSION || flags & !FLAG_DIRECT != 0 {
            return None;
        }
        Some(Self {
            file_id: FileId::from_bytes(*id),
            from_chunk: u32::from_be_bytes(*from),
            direct: flags & FLAG_DIRECT != 0,
            proof,
        })
    }
}

/// What the fetch proof is a MAC over (HMAC-SHA256 under the fetch token,
/// after the label `xchat/v1/file/fetch-proof`):
///
/// | bytes | field |
/// |---|---|
/// | 16 | file id |
/// | 4 | first chunk wanted, `u32` big-endian |
/// | 1 | flags, as in the request |
/// | 1 | length `s` of the server's peer id |
/// | s | the server's peer id (its multihash bytes) |
/// | 1 | length `f` of the fetcher's peer id |
/// | f | the fetcher's peer id |
///
/// Both transport keys are authenticated by the libp2p connection (Noise or
/// QUIC's TLS), so a proof shown to one server cannot be replayed to
/// another, nor by another peer.
pub fn transcript(
    file_id: &FileId,
    from_chunk: u32,
    direct: bool,
    server: &PeerId,
    fetcher: &PeerId,
) -> Vec<u8> {
    let server = server.to_bytes();
    let fetcher = fetcher.to_bytes();
    let mut out = Vec::with_capacity(FILE_ID_BYTES + 4 + 1 + 2 + server.len() + fetcher.len());
    out.extend_from_slice(file_id.as_bytes());
    out.extend_from_slice(&from_chunk.to_be_bytes());
    out.push(if direct { FLAG_DIRECT } else { 0 });
    // A peer id's multihash is at most 64 bytes of digest plus its header.
    for peer in [server, fetcher] {
        out.push(u8::try_from(peer.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&peer);
    }
    out
}

/// A response's status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The ciphertext follows (`0x00`).
    Ok,
    /// Unknown file or a proof that does not hold: one code for both, so a
    /// fetcher without the token learns nothing of which files exist (`0x01`).
    Refused,
    /// The server serves as many fetches as it allows, to all or to this
    /// peer; try again later (`0x02`).
    Busy,
    /// The first chunk wanted is past the file's last (`0x03`).
    OutOfRange,
    /// The server cannot read the file now (`0x04`).
    Unavailable,
}

impl Status {
    /// The status byte.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Ok => 0x00,
            Self::Refused => 0x01,
            Self::Busy => 0x02,
            Self::OutOfRange => 0x03,
            Self::Unavailable => 0x04,
        }
    }

    /// The status of a byte, `None` for an unknown one.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0x00 => Some(Self::Ok),
            0x01 => Some(Self::Refused),
            0x02 => Some(Self::Busy),
            0x03 => Some(Self::OutOfRange),
            0x04 => Some(Self::Unavailable),
            _ => None,
        }
    }
}

/// The server's offer of the direct path: dial this TCP port on the
/// server's address and show the ticket.
#[derive(Clone, PartialEq, Eq)]
pub struct DirectOffer {
    /// The TCP port of the server's direct path listener.
    pub port: u16,
    /// The one-time ticket.
    pub ticket: [u8; TICKET_BYTES],
}

impl std::fmt::Debug for DirectOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectOffer").field("port", &self.port).finish_non_exhaustive()
    }
}

/// A response, as the server sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The fetch is granted.
    Ok {
        /// The ciphertext length of the whole file.
        encrypted_len: u64,
        /// The direct path, when the server offers it.
        direct: Option<DirectOffer>,
    },
    /// The fetch is refused.
    Refused(Status),
}

impl Response {
    /// The response's body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_RESPONSE_BYTES);
        match self {
            Self::Ok { encrypted_len, direct } => {
                out.push(Status::Ok.to_byte());
                out.extend_from_slice(&encrypted_len.to_be_bytes());
                if let Some(DirectOffer { port, ticket }) = direct {
                    out.extend_from_slice(&port.to_be_bytes());
                    out.extend_from_slice(ticket);
                }
            }
            // `Refused(Ok)` is not a refusal: sent as `Unavailable`.
            Self::Refused(Status::Ok) => out.push(Status::Unavailable.to_byte()),
            Self::Refused(status) => out.push(status.to_byte()),
        }
        out
    }

    /// Reads a response's body.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (status, rest) = bytes.split_first()?;
        match Status::from_byte(*status)? {
            Status::Ok => {
                let (len, rest) = rest.split_first_chunk::<8>()?;
                let direct = if rest.is_empty() {
                    None
                } else {
                    let (port, ticket) = rest.split_first_chunk::<2>()?;
                    Some(DirectOffer {
                        port: u16::from_be_bytes(*port),
                        ticket: ticket.try_into().ok()?,
                    })
                };
                Some(Self::Ok { encrypted_len: u64::from_be_bytes(*len), direct })
            }
            refusal if rest.is_empty() => Some(Self::Refused(refusal)),
            _ => None,
        }
    }
}

/// The ticket frame's body.
pub fn encode_ticket(ticket: &[u8; TICKET_BYTES]) -> [u8; TICKET_FRAME_BYTES] {
    let mut out = [0u8; TICKET_FRAME_BYTES];
    let (version, rest) = out.split_at_mut(1);
    version.copy_from_slice(&[VERSION]);
    rest.copy_from_slice(ticket);
    out
}

/// Reads a ticket frame's body.
pub fn decode_ticket(bytes: &[u8]) -> Option<[u8; TICKET_BYTES]> {
    let (version, ticket) = bytes.split_first()?;
    if *version != VERSION {
        return None;
    }
    ticket.try_into().ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn request(direct: bool) -> Request {
        Request {
            file_id: FileId::from_bytes([7; FILE_ID_BYTES]),
            from_chunk: 0x0102_0304,
            direct,
            proof: [9; FETCH_PROOF_BYTES],
        }
    }

    #[test]
    fn request_round_trips_and_has_its_fixed_layout() {
        for direct in [false, true] {
            let bytes = request(direct).encode();
            assert_eq!(bytes[0], VERSION);
            assert_eq!(&bytes[17..21], &[1, 2, 3, 4]);
            assert_eq!(bytes[21], u8::from(direct));
            assert_eq!(Request::decode(&bytes), Some(request(direct)));
        }
    }

    #[test]
    fn request_with_another_version_length_or_flag_is_refused() {
        let bytes = request(true).encode();
        let mut wrong_version = bytes;
        wrong_version[0] = 2;
        let mut unknown_flag = bytes;
        unknown_flag[21] = 0x03;
        assert_eq!(Request::decode(&wrong_version), None);
        assert_eq!(Request::decode(&unknown_flag), None);
        assert_eq!(Request::decode(&bytes[..REQUEST_BYTES - 1]), None);
        assert_eq!(Request::decode(&[bytes.as_slice(), &[0]].concat()), None);
    }

    #[test]
    fn responses_round_trip() {
        let offer = DirectOffer { port: 4242, ticket: [3; TICKET_BYTES] };
        for response in [
            Response::Ok { encrypted_len: 65_552, direct: None },
            Response::Ok { encrypted_len: u64::MAX, direct: Some(offer) },
            Response::Refused(Status::Refused),
            Response::Refused(Status::Busy),
            Response::Refused(Status::OutOfRange),
            Response::Refused(Status::Unavailable),
        ] {
            let bytes = response.encode();
            assert!(bytes.len() <= MAX_RESPONSE_BYTES);
            assert_eq!(Response::decode(&bytes), Some(response));
        }
    }

    #[test]
    fn malformed_responses_are_refused() {
        for bytes in
            [&[][..], &[0x05], &[0x00, 1, 2], &[0x01, 0], &[0x00, 0, 0, 0, 0, 0, 0, 0, 1, 9]]
        {
            assert_eq!(Response::decode(bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn transcript_binds_file_chunk_flags_and_both_peers() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let id = FileId::from_bytes([1; FILE_ID_BYTES]);
        let base = transcript(&id, 0, true, &a, &b);
        assert_ne!(base, transcript(&id, 0, true, &b, &a));
        assert_ne!(base, transcript(&id, 1, true, &a, &b));
        assert_ne!(base, transcript(&id, 0, false, &a, &b));
        assert_ne!(base, transcript(&FileId::from_bytes([2; FILE_ID_BYTES]), 0, true, &a, &b));
    }

    #[test]
    fn ticket_frame_round_trips() {
        let ticket = [0xAB; TICKET_BYTES];
        assert_eq!(decode_ticket(&encode_ticket(&ticket)), Some(ticket));
        assert_eq!(decode_ticket(&[2; TICKET_FRAME_BYTES]), None);
        assert_eq!(decode_ticket(&[VERSION; 5]), None);
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Request::decode(&bytes);
            if let Some(response) = Response::decode(&bytes) {
                prop_assert_eq!(response.encode(), bytes.clone());
            }
            let _ = decode_ticket(&bytes);
        }
    }
}
