//! Call signalling: the WebRTC offer, answer and ICE candidates, and the end
//! of a call, carried as end-to-end-encrypted messages. The media flow over
//! WebRTC, never through xchat.

use rand_core::CryptoRng;

use crate::decode::{self, ProtoError};
use crate::generated as pb;

/// Bytes of a [`CallId`].
pub const CALL_ID_BYTES: usize = 16;
/// Most bytes of an SDP offer or answer (64 KiB; browsers' offers are a few
/// KiB).
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Most bytes of an ICE candidate line (they are about 100).
pub const MAX_ICE_CANDIDATE_BYTES: usize = 1024;
/// Most bytes of an SDP media identification tag (RFC 5888 `mid`).
pub const MAX_SDP_MID_BYTES: usize = 64;

/// A call's id: 16 random bytes, drawn by the caller.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId([u8; CALL_ID_BYTES]);

impl CallId {
    /// Draws a new id from `rng`.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        let mut bytes = [0u8; CALL_ID_BYTES];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Wraps stored id bytes.
    pub const fn from_bytes(bytes: [u8; CALL_ID_BYTES]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; CALL_ID_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallId(")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// An SDP offer or answer: UTF-8, 1 to [`MAX_SDP_BYTES`] bytes. Not parsed
/// here; the browser does.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sdp(String);

impl Sdp {
    /// Checks the length of `sdp`.
    ///
    /// # Errors
    /// [`ProtoError::MissingField`] when empty,
    /// [`ProtoError::LengthOutOfRange`] over [`MAX_SDP_BYTES`].
    pub fn new(sdp: String) -> Result<Self, ProtoError> {
        Self::parse(sdp, "sdp")
    }

    fn parse(sdp: String, field: &'static str) -> Result<Self, ProtoError> {
        decode::length(sdp.len(), field, 1, MAX_SDP_BYTES)?;
        Ok(Self(sdp))
    }

    /// The SDP.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Redacts: an SDP holds network addresses and fingerprints.
impl std::fmt::Debug for Sdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sdp({} bytes)", self.0.len())
    }
}

/// A WebRTC ICE candidate (`RTCIceCandidateInit`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IceCandidate {
    candidate: String,
    sdp_mid: Option<String>,
    sdp_m_line_index: Option<u16>,
}

impl IceCandidate {
    /// A candidate: `candidate` is the candidate line, 0 to
    /// [`MAX_ICE_CANDIDATE_BYTES`] (empty signals the end of candidates);
    /// `sdp_mid`, when known, 1 to [`MAX_SDP_MID_BYTES`].
    ///
    /// # Errors
    /// [`ProtoError::LengthOutOfRange`] or [`ProtoError::MissingField`]
    /// naming the field out of bounds.
    pub fn new(
        candidate: String,
        sdp_mid: Option<String>,
        sdp_m_line_index: Option<u16>,
    ) -> Result<Self, ProtoError> {
        decode::length(candidate.len(), "IceCandidate.candidate", 0, MAX_ICE_CANDIDATE_BYTES)?;
        if let Some(mid) = &sdp_mid {
            decode::length(mid.len(), "IceCandidate.sdp_mid", 1, MAX_SDP_MID_BYTES)?;
        }
        Ok(Self { candidate, sdp_mid, sdp_m_line_index })
    }

    /// The candidate line; empty at the end of candidates.
    pub fn candidate(&self) -> &str {
        &self.candidate
    }

    /// The media stream identification tag, when known.
    pub fn sdp_mid(&self) -> Option<&str> {
        self.sdp_mid.as_deref()
    }

    /// The index of the media description, when known.
    pub fn sdp_m_line_index(&self) -> Option<u16> {
        self.sdp_m_line_index
    }
}

/// Redacts the candidate line: it holds network addresses.
impl std::fmt::Debug for IceCandidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceCandidate")
            .field("candidate_bytes", &self.candidate.len())
            .field("sdp_mid", &self.sdp_mid)
            .field("sdp_m_line_index", &self.sdp_m_line_index)
            .finish()
    }
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HangUpReason {
    /// The user ended the call.
    Normal,
    /// The connection failed or was lost.
    ConnectionFailed,
    /// Nobody answered in time.
    NoAnswer,
    /// Another device of the same user answered.
    AnsweredElsewhere,
}

/// Why a call was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The callee is in another call.
    Busy,
    /// The callee declined.
    Declined,
}

/// One step of a call's signalling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Signal {
    /// The caller's SDP offer.
    Offer(Sdp),
    /// The callee's SDP answer.
    Answer(Sdp),
    /// An ICE candidate of either side.
    IceCandidate(IceCandidate),
    /// Either side ended the call.
    HangUp(HangUpReason),
    /// The callee did not take the call.
    Reject(RejectReason),
}

/// A step of the signalling of one call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallSignal {
    /// The call.
    pub call_id: CallId,
    /// The step.
    pub signal: Signal,
}

impl CallSignal {
    pub(super) fn to_proto(&self) -> pb::CallSignal {
        use pb::call_signal::Signal as S;
        let signal = match &self.signal {
            Signal::Offer(sdp) => S::Offer(sdp.0.clone()),
            Signal::Answer(sdp) => S::Answer(sdp.0.clone()),
            Signal::IceCandidate(ice) => S::IceCandidate(pb::IceCandidate {
                candidate: ice.candidate.clone(),
                sdp_mid: ice.sdp_mid.clone(),
                sdp_m_line_index: ice.sdp_m_line_index.map(u32::from),
            }),
            Signal::HangUp(reason) => S::HangUp(pb::HangUp {
                reason: match reason {
                    HangUpReason::Normal => pb::HangUpReason::Normal,
                    HangUpReason::ConnectionFailed => pb::HangUpReason::ConnectionFailed,
                    HangUpReason::NoAnswer => pb::HangUpReason::NoAnswer,
                    HangUpReason::AnsweredElsewhere => pb::HangUpReason::AnsweredElsewhere,
                }
                .into(),
            }),
            Signal::Reject(reason) => S::Reject(pb::Reject {
                reason: match reason {
                    RejectReason::Busy => pb::RejectReason::Busy,
                    RejectReason::Declined => pb::RejectReason::Declined,
                }
                .into(),
            }),
        };
        pb::CallSignal { call_id: self.call_id.0.to_vec(), signal: Some(signal) }
    }
}

impl TryFrom<pb::CallSignal> for CallSignal {
    type Error = ProtoError;

    fn try_from(raw: pb::CallSignal) -> Result<Self, ProtoError> {
        use pb::call_signal::Signal as S;
        let call_id = CallId(decode::fixed(&raw.call_id, "CallSignal.call_id")?);
        let signal = match decode::required(raw.signal, "CallSignal.signal")? {
            S::Offer(sdp) => Signal::Offer(Sdp::parse(sdp, "CallSignal.offer")?),
            S::Answer(sdp) => Signal::Answer(Sdp::parse(sdp, "CallSignal.answer")?),
            S::IceCandidate(ice) => {
                let index = ice
                    .sdp_m_line_index
                    .map(|index| {
                        u16::try_from(index).map_err(|_| ProtoError::OutOfRange {
                            field: "IceCandidate.sdp_m_line_index",
                            value: index.into(),
                            min: 0,
                            max: u16::MAX.into(),
                        })
                    })
                    .transpose()?;
                Signal::IceCandidate(IceCandidate::new(ice.candidate, ice.sdp_mid, index)?)
            }
            S::HangUp(hang_up) => {
                const FIELD: &str = "HangUp.reason";
                Signal::HangUp(match decode::enumeration(hang_up.reason, FIELD)? {
                    pb::HangUpReason::Normal => HangUpReason::Normal,
                    pb::HangUpReason::ConnectionFailed => HangUpReason::ConnectionFailed,
                    pb::HangUpReason::NoAnswer => HangUpReason::NoAnswer,
                    pb::HangUpReason::AnsweredElsewhere => HangUpReason::AnsweredElsewhere,
                    pb::HangUpReason::Unspecified => {
                        return Err(ProtoError::UnknownEnumValue { field: FIELD, value: 0 });
                    }
                })
            }
            S::Reject(reject) => {
                const FIELD: &str = "Reject.reason";
                Signal::Reject(match decode::enumeration(reject.reason, FIELD)? {
                    pb::RejectReason::Busy => RejectReason::Busy,
                    pb::RejectReason::Declined => RejectReason::Declined,
                    pb::RejectReason::Unspecified => {
                        return Err(ProtoError::UnknownEnumValue { field: FIELD, value: 0 });
                    }
                })
            }
        };
        Ok(Self { call_id, signal })
    }
}
