//! Call signalling: how the WebRTC offer, answer, ICE candidates and the end
//! of a call travel, and what the callee's side remembers of a ringing call.
//!
//! A call signal is *live*: it is worth something for the seconds a call
//! rings or sets up, and nothing after. So it is not a message of the
//! history and never takes the outbox's path (receipts, mailbox, 30 days of
//! retries). Each signal is encrypted to every device of the contact with a
//! session, like a text, and sent **direct** only; a failed attempt is tried
//! again after [`CALL_RETRY`] (doubling, at most [`CALL_RETRY_MAX`]), one
//! attempt in flight per device at a time, until [`CALL_SIGNAL_TTL`]: then it
//! is dropped and the user is told (`Event::CallSignalFailed`). None of this
//! is written to the store: after a restart a call is over anyway, and the
//! ratchet state that encrypted a lost signal is written as usual (the
//! receiver skips the missing message key).
//!
//! The callee remembers each offer that rings ([`Ringing`]) until the user
//! answers or declines it: a hang-up from the caller before that, or
//! [`RING_TIMEOUT`] without one, makes it a missed call: an entry in the
//! conversation's history ([`crate::record::CallEntry`], unread until the
//! user opens the conversation, under its vanishing timer, and never
//! answered with a read receipt), and `Event::CallMissed`, which stops the
//! ringing. Calls that were taken leave no record here: the core sees
//! their signals, not how long the media flowed.

use std::time::Duration;

use xchat_crypto::device::DeviceId;
use xchat_crypto::signature::VerifyingKey;
use xchat_proto::content::{CallId, MessageId, Sdp};

use crate::contact::ContactId;
use crate::time::UnixMillis;

/// How long a call signal is tried before it is dropped and the user told.
pub const CALL_SIGNAL_TTL: Duration = Duration::from_secs(30);
/// Wait after the first attempt of a call signal before the second.
pub const CALL_RETRY: Duration = Duration::from_millis(500);
/// Longest wait between two attempts of a call signal.
pub const CALL_RETRY_MAX: Duration = Duration::from_secs(4);
/// How long an offer rings at the callee without an answer, a decline or the
/// caller's hang-up before it counts as missed (the caller's UI gives up
/// sooner and says `NoAnswer`; this covers a caller that vanished).
pub const RING_TIMEOUT: Duration = Duration::from_secs(90);
/// Calls ringing at once (offers not answered yet); beyond it the oldest is
/// counted missed. Bounds what a contact flooding offers costs.
pub const MAX_RINGING: usize = 16;
/// Calls remembered as ended by the caller before their offer arrived
/// (signals may overtake each other): a late offer for one of them is a
/// missed call, and never rings.
pub const MAX_ENDED_CALLS: usize = 64;
/// Call signal envelopes in flight at once; beyond it a new signal is
/// refused (`CommandError::TooManyCallSignals`).
pub const MAX_CALL_SENDS: usize = 4096;

/// One call signal's envelope for one device, until the device took it or
/// [`CALL_SIGNAL_TTL`] passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSend {
    /// The conversation.
    pub contact: ContactId,
    /// The call.
    pub call_id: CallId,
    /// The signal's content id (shared by its envelopes to every device).
    pub signal: MessageId,
    /// The recipient's identity.
    pub identity: VerifyingKey,
    /// The recipient device.
    pub device: DeviceId,
    /// The encoded envelope, sent again as is.
    pub envelope: Vec<u8>,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (once the one in flight failed).
    pub next_attempt_at: UnixMillis,
    /// When it is dropped.
    pub expires_at: UnixMillis,
    /// Whether an attempt is in flight (its outcome not reported yet).
    pub in_flight: bool,
}

/// When to try a call signal again after attempt number `attempt` (0 is the
/// first) started at `now`: [`CALL_RETRY`] doubled per attempt, capped at
/// [`CALL_RETRY_MAX`]. No jitter: only two people wait for it.
pub fn next_attempt(attempt: u32, now: UnixMillis) -> UnixMillis {
    let wait = CALL_RETRY.saturating_mul(1 << attempt.min(8)).min(CALL_RETRY_MAX);
    now.saturating_add(wait)
}

/// A call signal waiting for a session with its contact (bundles asked
/// for), until [`CALL_SIGNAL_TTL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallWaiting {
    /// The conversation.
    pub contact: ContactId,
    /// The call.
    pub call_id: CallId,
    /// The signal's content id.
    pub signal: MessageId,
    /// The encoded `Content` (kept in memory only).
    pub content: zeroize::Zeroizing<Vec<u8>>,
    /// When it is dropped.
    pub expires_at: UnixMillis,
}

/// An incoming call that rings: an offer the user has neither answered nor
/// declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ringing {
    /// Who calls.
    pub contact: ContactId,
    /// When the offer arrived.
    pub since: UnixMillis,
    /// Whether the offer asks for video ([`offers_video`]).
    pub video: bool,
}

/// Whether an SDP offer has a video media section (`m=video`): what the
/// history says of a missed call. The SDP is the caller's and otherwise
/// left to the browser.
pub fn offers_video(sdp: &Sdp) -> bool {
    sdp.as_str().lines().any(|line| line.starts_with("m=video "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_then_cap_within_the_signal_lifetime() {
        let now = UnixMillis(1_000);
        assert_eq!(next_attempt(0, now).since(now), CALL_RETRY);
        assert_eq!(next_attempt(1, now).since(now), CALL_RETRY * 2);
        assert_eq!(next_attempt(30, now).since(now), CALL_RETRY_MAX);
        assert!(CALL_RETRY_MAX < CALL_SIGNAL_TTL);
    }

    #[test]
    fn an_offer_is_video_only_with_a_video_media_section() {
        let sdp = |text: &str| Sdp::new(text.into()).unwrap();
        let audio = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n";
        assert!(!offers_video(&sdp(audio)));
        assert!(offers_video(&sdp(&format!("{audio}m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"))));
        assert!(!offers_video(&sdp("v=0\r\na=x m=video 9\r\n")), "only at a line's start");
    }
}
