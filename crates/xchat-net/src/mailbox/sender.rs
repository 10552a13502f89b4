//! A sender's side of a store: mint, store on the closest nodes, and pay
//! once more where a loaded node asks more work.
//!
//! Minting is CPU work of up to about `2^bits` hashes, so it runs on
//! tokio's blocking pool, never on the async runtime. A node's refusal
//! carries the difficulty it asks now (xchat-proto decodes no more than
//! [`MAX_DEMANDED_DIFFICULTY_BITS`](xchat_proto::mailbox::MAX_DEMANDED_DIFFICULTY_BITS));
//! the sender pays it once, at most [`Postage::max_bits`], and only where
//! fewer than the wanted replicas stored the envelope. Anything else is the
//! caller's to retry later.

use libp2p::PeerId;
use xchat_crypto::signature::VerifyingKey;
use xchat_proto::ProtoError;
use xchat_proto::mailbox::{ErrorCode, Request, Response, StoreRequest};

use crate::{LookupError, MailboxError, NetworkHandle};

/// How much proof of work a sender pays for a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Postage {
    /// Bits minted first: what nodes ask when quiet (their
    /// [`Config::min_difficulty_bits`](super::Config::min_difficulty_bits)).
    pub bits: u8,
    /// Most bits paid when a node asks more; a node asking more than this
    /// is not paid. See [`MAX_PAID_DIFFICULTY_BITS`](super::MAX_PAID_DIFFICULTY_BITS).
    pub max_bits: u8,
}

/// What one store did.
#[derive(Debug)]
pub struct StoreReport {
    /// Each node's answer in the order asked; a node paid again at a higher
    /// difficulty is listed twice, its refusal then its second answer.
    pub outcomes: Vec<(PeerId, Result<Response, MailboxError>)>,
    /// The difficulty of the last stamp minted.
    pub difficulty_bits: u8,
}

impl StoreReport {
    /// How many nodes keep the envelope.
    pub fn stored(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|(_, outcome)| matches!(outcome, Ok(Response::Stored(_))))
            .count()
    }
}

/// Why a store did not reach any node.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The closest nodes could not be looked up.
    #[error("mailbox nodes not found: {0}")]
    Lookup(#[from] LookupError),
    /// The envelope or TTL breaks a limit, or the difficulty is past the
    /// stamp's.
    #[error("store request invalid: {0}")]
    Invalid(#[from] ProtoError),
    /// The blocking task minting the stamp did not finish (the runtime is
    /// shutting down).
    #[error("minting the stamp was cancelled")]
    Cancelled,
}

/// Leaves `envelope` (an encoded `Envelope`) for `ttl_seconds` in the mailbox
/// of `mailbox`, on the `replicas` closest nodes that take it
/// ([`NetworkHandle::store_in_mailbox`]), with a stamp of `postage.bits`.
/// When fewer than `replicas` stored it and some nodes asked more work (at
/// most `postage.max_bits`), mints once more at the most they asked and
/// asks those nodes again, closest first, as many as are missing.
///
/// # Errors
/// [`StoreError`]; a store that no node took is a report with no
/// [`Response::Stored`], not an error.
pub async fn store(
    net: &NetworkHandle,
    mailbox: VerifyingKey,
    envelope: Vec<u8>,
    ttl_seconds: u32,
    postage: Postage,
    replicas: usize,
) -> Result<StoreReport, StoreError> {
    let bits = postage.bits;
    let request = mint(move || StoreRequest::new(mailbox, envelope, ttl_seconds, bits)).await?;
    let mut report = StoreReport {
        outcomes: net.store_in_mailbox(request.clone(), replicas).await?,
        difficulty_bits: bits,
    };
    let missing = replicas.saturating_sub(report.stored());
    let Some((bits, nodes)) = asked_difficulty(&report.outcomes, postage, missing) else {
        return Ok(report);
    };
    tracing::debug!(bits, nodes = nodes.len(), "mailbox nodes ask more work; paying once");
    let request = mint(move || request.restamp(bits)).await?;
    report.difficulty_bits = bits;
    let again = nodes.into_iter().map(|peer| {
        let request = Request::Store(request.clone());
        async move { (peer, net.mailbox_request(peer, request).await) }
    });
    report.outcomes.extend(futures::future::join_all(again).await);
    Ok(report)
}

/// Whom to pay again after a store with `postage.bits`, and how much: of the
/// nodes that refused for too little work saying a difficulty above
/// `postage.bits` and at most `postage.max_bits`, the first `missing` (the
/// closest, as [`NetworkHandle::store_in_mailbox`] lists them), and the most
/// any of them asked. `None` when there is none, or nothing is missing.
/// A node that asks more than the sender pays, or no more than it already
/// paid, is not asked again.
pub fn asked_difficulty(
    outcomes: &[(PeerId, Result<Response, MailboxError>)],
    postage: Postage,
    missing: usize,
) -> Option<(u8, Vec<PeerId>)> {
    let asks: Vec<(PeerId, u8)> =
        outcomes
            .iter()
            .filter_map(|(peer, outcome)| match outcome {
                Ok(Response::Refused(ErrorCode::InsufficientWork {
                    required_bits: Some(bits),
                })) if *bits > postage.bits && *bits <= postage.max_bits => Some((*peer, *bits)),
                _ => None,
            })
            .take(missing)
            .collect();
    let bits = asks.iter().map(|(_, bits)| *bits).max()?;
    Some((bits, asks.into_iter().map(|(peer, _)| peer).collect()))
}

/// Runs `mint` on the blocking pool.
async fn mint(
    mint: impl FnOnce() -> Result<StoreRequest, ProtoError> + Send + 'static,
) -> Result<StoreRequest, StoreError> {
    Ok(tokio::task::spawn_blocking(mint).await.map_err(|_| StoreError::Cancelled)??)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POSTAGE: Postage = Postage { bits: 16, max_bits: 20 };

    fn asked(bits: Option<u8>) -> Result<Response, MailboxError> {
        Ok(Response::Refused(ErrorCode::InsufficientWork { required_bits: bits }))
    }

    #[test]
    fn pays_the_most_asked_within_the_postage_to_the_closest_missing() {
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let outcomes = vec![
            (peers[0], asked(Some(18))),
            (peers[1], asked(Some(19))),
            (peers[2], Ok(Response::Refused(ErrorCode::MailboxFull))),
            (peers[3], asked(Some(17))),
        ];
        assert_eq!(
            asked_difficulty(&outcomes, POSTAGE, 3),
            Some((19, vec![peers[0], peers[1], peers[3]]))
        );
        assert_eq!(asked_difficulty(&outcomes, POSTAGE, 1), Some((18, vec![peers[0]])));
        assert_eq!(asked_difficulty(&outcomes, POSTAGE, 0), None, "enough stored");
    }

    #[test]
    fn a_node_asking_more_than_the_sender_pays_or_nothing_new_is_not_paid() {
        let peer = PeerId::random();
        for bits in [Some(21), Some(24), Some(16), Some(10), None] {
            let outcomes = vec![(peer, asked(bits))];
            assert_eq!(asked_difficulty(&outcomes, POSTAGE, 3), None, "{bits:?}");
        }
        let unreachable = vec![(peer, Err(MailboxError::Unreachable))];
        assert_eq!(asked_difficulty(&unreachable, POSTAGE, 3), None);
        // The one payable ask is paid; the one past the postage is not.
        let other = PeerId::random();
        let outcomes = vec![(peer, asked(Some(23))), (other, asked(Some(20)))];
        assert_eq!(asked_difficulty(&outcomes, POSTAGE, 3), Some((20, vec![other])));
    }
}
