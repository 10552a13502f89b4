//! When and how an unacknowledged envelope is sent again.
//!
//! Delivery is at-least-once: an envelope stays in the outbox until what it
//! waits for arrives (a delivery receipt for a message; the transport's
//! acknowledgement for a receipt). Each attempt goes **direct** to the
//! device while that may work, then to the recipient's **mailbox**, with an
//! exponential backoff between attempts and a little jitter so that many
//! devices coming back at once do not retry in lockstep.

use std::time::Duration;

use rand_core::CryptoRng;

use crate::time::UnixMillis;

/// Wait before the second attempt.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);
/// Direct attempts before the envelope also goes to the mailbox.
pub const DIRECT_ATTEMPTS: u32 = 2;
/// After this long without what it waits for, an envelope is given up and
/// its message marked failed (a recipient away for a month is told nothing
/// more by retrying; mailbox copies are refreshed until then).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Where one attempt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Straight to the device, over a connection to it.
    Direct,
    /// To the recipient's mailbox, on the nodes that hold it.
    Mailbox,
}

/// How long a copy in the recipient's mailbox is trusted to be there: a
/// mailbox keeps an envelope at most `xchat_proto::mailbox::MAX_TTL_SECONDS`
/// (7 days), so a message still unacknowledged is stored again after this.
pub const MAILBOX_REFRESH: Duration = Duration::from_secs(3 * 24 * 60 * 60);

/// How long a sender waits for a delivery receipt once the device itself
/// acknowledged the envelope before sending it again. The device
/// acknowledges only after committing what the envelope caused, and its
/// receipt is in its own outbox, retried until the network takes it: a
/// resend before this is a duplicate the device refuses, and under load
/// (receipts late by seconds) a flood of them.
pub const RECEIPT_PATIENCE: Duration = Duration::from_secs(10 * 60);

/// Longest an attempt is waited for before the next one may start. An
/// attempt is one at a time per envelope: the next is scheduled from when
/// the last one ended (the node reports every attempt's outcome), not from
/// when it was queued, so an attempt that waits seconds behind others in a
/// busy node is not doubled by a retry, and the retries of a loaded node do
/// not snowball into mailbox stores. This bounds the wait if an outcome
/// never comes (the node's direct delivery gives up after 30 s, a mailbox
/// store sooner than this).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2 * 60);

/// The route of attempt number `attempt` (0 is the first), given whether
/// the device is believed reachable now.
pub fn route(attempt: u32, reachable: bool) -> Route {
    if reachable && attempt < DIRECT_ATTEMPTS { Route::Direct } else { Route::Mailbox }
}

/// The route of a retry, or none: once a mailbox took the envelope (at
/// `mailbox_at`), it is stored again only after [`MAILBOX_REFRESH`]; until
/// then it goes direct while the device is reachable, and waits otherwise.
pub fn retry_route(
    attempt: u32,
    reachable: bool,
    mailbox_at: Option<UnixMillis>,
    now: UnixMillis,
) -> Option<Route> {
    match mailbox_at {
        Some(at) if now.since(at) < MAILBOX_REFRESH => reachable.then_some(Route::Direct),
        _ => Some(route(attempt, reachable)),
    }
}

/// When to try again after attempt number `attempt` (0 is the first)
/// started or ended at `now`: `FIRST_BACKOFF` doubled per attempt, capped
/// at `MAX_BACKOFF`, plus up to 10% of jitter.
pub fn next_attempt(attempt: u32, now: UnixMillis, rng: &mut impl CryptoRng) -> UnixMillis {
    let doublings = attempt.min(16);
    let backoff = FIRST_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF);
    let jitter_range = u64::try_from(backoff.as_millis() / 10).unwrap_or(u64::MAX).max(1);
    let jitter = Duration::from_millis(rng.next_u64() % jitter_range);
    now.saturating_add(backoff + jitter)
}

/// Whether an envelope queued at `queued_at` should be given up at `now`.
pub fn expired(queued_at: UnixMillis, now: UnixMillis) -> bool {
    now.since(queued_at) >= GIVE_UP_AFTER
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn backoff_doubles_then_caps_with_bounded_jitter() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let now = UnixMillis(1_000_000);
        let mut previous = Duration::ZERO;
        for attempt in 0..40 {
            let wait = next_attempt(attempt, now, &mut rng).since(now);
            let base = FIRST_BACKOFF.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF);
            assert!(wait >= base && wait <= base + base / 10, "attempt {attempt}: {wait:?}");
            assert!(wait + MAX_BACKOFF / 10 >= previous, "backoff never shrinks");
            previous = wait;
        }
        assert!(previous <= MAX_BACKOFF + MAX_BACKOFF / 10);
    }

    #[test]
    fn direct_first_then_mailbox() {
        assert_eq!(route(0, true), Route::Direct);
        assert_eq!(route(DIRECT_ATTEMPTS - 1, true), Route::Direct);
        assert_eq!(route(DIRECT_ATTEMPTS, true), Route::Mailbox);
        assert_eq!(route(0, false), Route::Mailbox);
    }

    #[test]
    fn envelopes_are_given_up_after_the_limit() {
        let queued = UnixMillis(0);
        assert!(!expired(queued, queued.saturating_add(GIVE_UP_AFTER - Duration::from_millis(1))));
        assert!(expired(queued, queued.saturating_add(GIVE_UP_AFTER)));
    }
}
