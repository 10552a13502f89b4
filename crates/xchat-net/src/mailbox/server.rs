//! A mailbox node's side of `/xchat/mailbox/1`, sans-IO: bytes and the
//! node's clock in, a [`Response`] out. The network task feeds it; tests
//! drive it with a fake clock.
//!
//! Order of checks for each request, cheapest refusal first: the peer's
//! request rate (a token bucket per peer), decode within
//! [`MAX_REQUEST_BYTES`](xchat_proto::mailbox::MAX_REQUEST_BYTES) (in the
//! codec, before allocation), responsibility (store only), proof of work or
//! signature and clock skew, replayed nonce, quotas. Nothing is stored or
//! remembered for a request that is refused.
//!
//! The proof of work asked is the node's minimum raised by its load
//! ([`super::load`]); a store below it is refused
//! [`ErrorCode::InsufficientWork`] with the difficulty asked, so the sender
//! can pay it and retry. Each store accepted counts towards the load.

use std::collections::HashMap;

use libp2p::PeerId;

use xchat_proto::mailbox::{
    ErrorCode, Fetched, Item, MAX_FETCH_ITEMS, MAX_REQUEST_SKEW_MS, REQUEST_NONCE_BYTES, Response,
    UnverifiedRequest,
};

use super::load::{self, Load};
use super::storage::{ItemRecord, MailboxKey, Storage};
use super::{Config, MAX_RATE_TRACKED_PEERS};

/// How long an accepted fetch or delete nonce is remembered: a request
/// older than the skew is refused as stale, so twice the skew covers every
/// clock a replay could be accepted under.
pub const NONCE_MEMORY_MS: u64 = 2 * MAX_REQUEST_SKEW_MS;
/// How often expired items and nonces are purged, at most (one minute).
pub const PURGE_INTERVAL_MS: u64 = 60 * 1000;

/// The mailbox node: its policy, its storage and the nonces it accepted.
pub struct Server {
    config: Config,
    storage: Box<dyn Storage>,
    /// Accepted nonces and when each may be forgotten; at most
    /// [`Config::max_remembered_nonces`].
    nonces: HashMap<[u8; REQUEST_NONCE_BYTES], u64>,
    /// Each recent peer's request allowance (token bucket), at most
    /// [`MAX_RATE_TRACKED_PEERS`].
    allowances: HashMap<PeerId, Allowance>,
    /// Stores accepted lately, for the difficulty asked.
    load: Load,
    next_purge_ms: u64,
}

/// A peer's token bucket, in thousandths of a request so that slow refills
/// are not lost to rounding.
#[derive(Debug, Clone, Copy)]
struct Allowance {
    milli_requests: u64,
    updated_ms: u64,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("nonces", &self.nonces.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A node with `config` keeping envelopes in `storage`. Difficulties
    /// past what a sender pays are brought within it
    /// ([`Config::min_difficulty_bits`]).
    pub fn new(config: Config, storage: Box<dyn Storage>) -> Self {
        let config = load::payable(config);
        Self {
            load: Load::new(config.load_window_ms),
            config,
            storage,
            nonces: HashMap::new(),
            allowances: HashMap::new(),
            next_purge_ms: 0,
        }
    }

    /// The node's policy.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The bits of proof of work this node asks of a store at `now_ms`: its
    /// minimum, raised by its recent load ([`super::load`]).
    pub fn difficulty(&mut self, now_ms: u64) -> u8 {
        let config = &self.config;
        load::difficulty_for(
            config.min_difficulty_bits,
            config.max_difficulty_bits,
            config.busy_stores_per_window,
            self.load.stores(now_ms),
        )
    }

    /// Answers `request` (bytes from the network) from `peer` at `now_ms`
    /// (ms since the Unix epoch by this node's clock). `responsible` tells
    /// whether this node is among those that keep a mailbox (from its DHT
    /// view). A peer past its request rate is refused before decoding.
    pub fn handle(
        &mut self,
        now_ms: u64,
        peer: PeerId,
        request: &[u8],
        responsible: impl FnOnce(&MailboxKey) -> bool,
    ) -> Response {
        self.purge(now_ms);
        if !self.admit(now_ms, peer) {
            return Response::Refused(ErrorCode::RateLimited);
        }
        match self.answer(now_ms, request, responsible) {
            Ok(response) => response,
            Err(code) => Response::Refused(code),
        }
    }

    fn answer(
        &mut self,
        now_ms: u64,
        request: &[u8],
        responsible: impl FnOnce(&MailboxKey) -> bool,
    ) -> Result<Response, ErrorCode> {
        let request =
            UnverifiedRequest::decode(request).map_err(|error| ErrorCode::from(&error))?;
        match request {
            UnverifiedRequest::Store(store) => {
                let mailbox = store.mailbox_key().to_bytes();
                if !responsible(&mailbox) {
                    return Err(ErrorCode::NotResponsible);
                }
                let asked = self.difficulty(now_ms);
                // A refusal for too few bits says how many are asked.
                let store = store.verify(asked).map_err(|error| ErrorCode::from(&error))?;
                let id = store.item_id();
                let ttl_ms = u64::from(store.ttl_seconds().min(self.config.max_ttl_seconds)) * 1000;
                let envelope = store.into_envelope();
                self.check_quota(&mailbox, envelope.len() as u64)?;
                let record = ItemRecord {
                    id,
                    stored_at_ms: now_ms,
                    expires_at_ms: now_ms.saturating_add(ttl_ms),
                    envelope,
                };
                self.storage.insert(&mailbox, record).map_err(internal)?;
                self.load.record(now_ms);
                Ok(Response::Stored(id))
            }
            UnverifiedRequest::Fetch(fetch) => {
                let fetch = fetch.verify(now_ms).map_err(|error| ErrorCode::from(&error))?;
                self.remember_nonce(now_ms, *fetch.nonce())?;
                let mailbox = fetch.mailbox_key().to_bytes();
                // One more than a page holds tells whether more remain.
                let mut items =
                    self.storage.list(&mailbox, now_ms, MAX_FETCH_ITEMS + 1).map_err(internal)?;
                let mut page = Fetched::new();
                let mut more = false;
                for record in items.drain(..) {
                    let item = Item::new(record.stored_at_ms, record.envelope)
                        .map_err(|_| ErrorCode::Internal)?;
                    if page.push(item).is_err() {
                        more = true;
                        break;
                    }
                }
                page.set_more(more);
                Ok(Response::Fetched(page))
            }
            UnverifiedRequest::Delete(delete) => {
                let delete = delete.verify(now_ms).map_err(|error| ErrorCode::from(&error))?;
                self.remember_nonce(now_ms, *delete.nonce())?;
                let mailbox = delete.mailbox_key().to_bytes();
                let count = self.storage.delete(&mailbox, delete.item_ids()).map_err(internal)?;
                Ok(Response::Deleted { count })
            }
        }
    }

    /// Refuses a store that would take `mailbox` or the whole node past its
    /// quota. An envelope already held passes: storing it again is a no-op.
    fn check_quota(&self, mailbox: &MailboxKey, bytes: u64) -> Result<(), ErrorCode> {
        let config = &self.config;
        let mine = self.storage.usage(mailbox).map_err(internal)?;
        let all = self.storage.total_usage().map_err(internal)?;
        let full = mine.items >= config.max_items_per_mailbox
            || mine.bytes + bytes > config.max_bytes_per_mailbox
            || all.items >= config.max_total_items
            || all.bytes + bytes > config.max_total_bytes;
        if full { Err(ErrorCode::MailboxFull) } else { Ok(()) }
    }

    /// Takes one request from `peer`'s allowance, refilled at
    /// `requests_per_second_per_peer` up to `request_burst_per_peer`.
    fn admit(&mut self, now_ms: u64, peer: PeerId) -> bool {
        let burst = self.config.request_burst_per_peer.saturating_mul(1000);
        let rate = self.config.requests_per_second_per_peer;
        let refilled = |allowance: &Allowance| {
            let elapsed_ms = now_ms.saturating_sub(allowance.updated_ms);
            allowance.milli_requests.saturating_add(elapsed_ms.saturating_mul(rate)).min(burst)
        };
        if !self.allowances.contains_key(&peer) && self.allowances.len() >= MAX_RATE_TRACKED_PEERS {
            // Forget the peers owed a full burst: tracking them changes nothing.
            self.allowances.retain(|_, allowance| refilled(allowance) < burst);
            if self.allowances.len() >= MAX_RATE_TRACKED_PEERS {
                return false;
            }
        }
        let allowance = self
            .allowances
            .entry(peer)
            .or_insert(Allowance { milli_requests: burst, updated_ms: now_ms });
        let available = refilled(allowance);
        allowance.updated_ms = now_ms;
        if available < 1000 {
            allowance.milli_requests = available;
            return false;
        }
        allowance.milli_requests = available - 1000;
        true
    }

    /// Refuses a nonce seen within [`NONCE_MEMORY_MS`], else remembers it.
    fn remember_nonce(
        &mut self,
        now_ms: u64,
        nonce: [u8; REQUEST_NONCE_BYTES],
    ) -> Result<(), ErrorCode> {
        if self.nonces.get(&nonce).is_some_and(|forget_at| *forget_at > now_ms) {
            return Err(ErrorCode::Replayed);
        }
        if self.nonces.len() >= self.config.max_remembered_nonces {
            self.nonces.retain(|_, forget_at| *forget_at > now_ms);
            if self.nonces.len() >= self.config.max_remembered_nonces {
                // Forgetting one early would let it be replayed.
                return Err(ErrorCode::RateLimited);
            }
        }
        self.nonces.insert(nonce, now_ms.saturating_add(NONCE_MEMORY_MS));
        Ok(())
    }

    fn purge(&mut self, now_ms: u64) {
        if now_ms < self.next_purge_ms {
            return;
        }
        self.next_purge_ms = now_ms.saturating_add(PURGE_INTERVAL_MS);
        self.nonces.retain(|_, forget_at| *forget_at > now_ms);
        match self.storage.purge_expired(now_ms) {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "expired mailbox items deleted"),
            Err(error) => tracing::warn!(%error, "purging expired mailbox items failed"),
        }
    }
}

fn internal(error: super::storage::StorageError) -> ErrorCode {
    tracing::warn!(%error, "mailbox storage failed");
    ErrorCode::Internal
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;
    use xchat_crypto::signature::SigningKey;
    use xchat_proto::mailbox::{DeleteRequest, FetchRequest, Request, StoreRequest};

    use super::*;
    use crate::mailbox::storage::MemoryStorage;

    const NOW: u64 = 1_790_000_000_000;
    const BITS: u8 = 4;
    /// Every request in these tests comes from this peer, unless a test
    /// says otherwise.
    static PEER: std::sync::LazyLock<PeerId> = std::sync::LazyLock::new(PeerId::random);

    fn server(config: Config) -> Server {
        Server::new(config, Box::new(MemoryStorage::new()))
    }

    fn config() -> Config {
        // No rate limit nor load in the way, except in their own tests.
        Config {
            min_difficulty_bits: BITS,
            request_burst_per_peer: 10_000,
            busy_stores_per_window: u64::MAX,
            ..Config::default()
        }
    }

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(7)
    }

    fn mailbox(rng: &mut ChaCha20Rng) -> SigningKey {
        SigningKey::generate(rng)
    }

    fn envelope(fill: u8, len: usize) -> Vec<u8> {
        xchat_proto::envelope::Envelope::new(vec![fill; len]).unwrap().encode()
    }

    fn store(key: &SigningKey, fill: u8, ttl: u32, bits: u8) -> Vec<u8> {
        let request = StoreRequest::new(key.verifying_key(), envelope(fill, 400), ttl, bits);
        Request::Store(request.unwrap()).encode()
    }

    fn fetch(key: &SigningKey, at: u64, rng: &mut ChaCha20Rng) -> Vec<u8> {
        Request::Fetch(FetchRequest::new(key, at, rng)).encode()
    }

    fn fetched(response: Response) -> Vec<Item> {
        match response {
            Response::Fetched(page) => page.into_items(),
            other => panic!("expected items, got {other:?}"),
        }
    }

    #[test]
    fn stored_envelope_is_fetched_then_deleted_by_its_owner() {
        let (mut rng, mut server) = (rng(), server(config()));
        let owner = mailbox(&mut rng);
        let Response::Stored(id) =
            server.handle(NOW, *PEER, &store(&owner, 1, 3600, BITS), |_| true)
        else {
            panic!("not stored")
        };
        let items =
            fetched(server.handle(NOW + 1, *PEER, &fetch(&owner, NOW, &mut rng), |_| false));
        assert_eq!(items.len(), 1);
        assert_eq!((items[0].id(), items[0].stored_at_ms()), (id, NOW));
        assert_eq!(items[0].envelope(), envelope(1, 400));

        let delete = DeleteRequest::new(&owner, NOW, vec![id], &mut rng).unwrap();
        let response = server.handle(NOW + 2, *PEER, &Request::Delete(delete).encode(), |_| true);
        assert_eq!(response, Response::Deleted { count: 1 });
        assert!(
            fetched(server.handle(NOW + 3, *PEER, &fetch(&owner, NOW, &mut rng), |_| true))
                .is_empty()
        );
    }

    #[test]
    fn store_with_too_little_work_is_refused() {
        let (mut rng, mut server) = (rng(), server(config()));
        let owner = mailbox(&mut rng);
        let response = server.handle(NOW, *PEER, &store(&owner, 1, 60, BITS - 1), |_| true);
        assert_eq!(
            response,
            Response::Refused(ErrorCode::InsufficientWork { required_bits: Some(BITS) })
        );
        assert!(
            fetched(server.handle(NOW, *PEER, &fetch(&owner, NOW, &mut rng), |_| true)).is_empty()
        );
    }

    #[test]
    fn stamp_that_does_not_hold_is_refused() {
        let (mut rng, mut server) = (rng(), server(config()));
        let owner = mailbox(&mut rng);
        // A stamp minted for one envelope does not cover another: find a
        // stored request's envelope bytes and change one.
        let mut bytes = store(&owner, 1, 60, 12);
        let at = bytes.windows(8).position(|w| w == [1; 8]).unwrap();
        bytes[at] = 2;
        let response = server.handle(NOW, *PEER, &bytes, |_| true);
        assert_eq!(
            response,
            Response::Refused(ErrorCode::InsufficientWork { required_bits: None })
        );
    }

    #[test]
    fn fetch_signed_for_another_mailbox_is_refused() {
        let (mut rng, mut server) = (rng(), server(config()));
        let (owner, thief) = (mailbox(&mut rng), mailbox(&mut rng));
        server.handle(NOW, *PEER, &store(&owner, 1, 60, BITS), |_| true);
        // The thief signs with its key and names the owner's mailbox.
        let mut forged = fetch(&thief, NOW, &mut rng);
        let (theirs, ours) = (thief.verifying_key().to_bytes(), owner.verifying_key().to_bytes());
        let at = forged.windows(32).position(|w| w == theirs).unwrap();
        forged[at..at + 32].copy_from_slice(&ours);
        let response = server.handle(NOW, *PEER, &forged, |_| true);
        assert_eq!(response, Response::Refused(ErrorCode::InvalidSignature));
    }

    #[test]
    fn replayed_and_stale_fetches_are_refused() {
        let (mut rng, mut server) = (rng(), server(config()));
        let owner = mailbox(&mut rng);
        let request = fetch(&owner, NOW, &mut rng);
        assert!(matches!(server.handle(NOW, *PEER, &request, |_| true), Response::Fetched(_)));
        let again = server.handle(NOW + 1000, *PEER, &request, |_| true);
        assert_eq!(again, Response::Refused(ErrorCode::Replayed));
        let stale = server.handle(NOW + MAX_REQUEST_SKEW_MS + 1, *PEER, &request, |_| true);
        assert_eq!(stale, Response::Refused(ErrorCode::Stale));
    }

    #[test]
    fn nonce_memory_is_bounded_and_refuses_rather_than_forgets() {
        let mut server = server(Config { max_remembered_nonces: 2, ..config() });
        let mut rng = rng();
        let owner = mailbox(&mut rng);
        for _ in 0..2 {
            let response = server.handle(NOW, *PEER, &fetch(&owner, NOW, &mut rng), |_| true);
            assert!(matches!(response, Response::Fetched(_)));
        }
        let full = server.handle(NOW, *PEER, &fetch(&owner, NOW, &mut rng), |_| true);
        assert_eq!(full, Response::Refused(ErrorCode::RateLimited));
        // Once the remembered nonces may be forgotten, fetches pass again.
        let later = NOW + NONCE_MEMORY_MS + 1;
        let response = server.handle(later, *PEER, &fetch(&owner, later, &mut rng), |_| true);
        assert!(matches!(response, Response::Fetched(_)));
    }

    #[test]
    fn store_for_a_mailbox_the_node_does_not_keep_is_refused() {
        let (mut rng, mut server) = (rng(), server(config()));
        let owner = mailbox(&mut rng);
        let response = server.handle(NOW, *PEER, &store(&owner, 1, 60, BITS), |_| false);
        assert_eq!(response, Response::Refused(ErrorCode::NotResponsible));
    }

    #[test]
    fn mailbox_and_node_quotas_refuse_more() {
        let mut server =
            server(Config { max_items_per_mailbox: 2, max_total_items: 3, ..config() });
        let mut rng = rng();
        let (alice, bob) = (mailbox(&mut rng), mailbox(&mut rng));
        for fill in 0..2 {
            let response = server.handle(NOW, *PEER, &store(&alice, fill, 60, BITS), |_| true);
            assert!(matches!(response, Response::Stored(_)));
        }
        let response = server.handle(NOW, *PEER, &store(&alice, 9, 60, BITS), |_| true);
        assert_eq!(response, Response::Refused(ErrorCode::MailboxFull));
        assert!(matches!(
            server.handle(NOW, *PEER, &store(&bob, 1, 60, BITS), |_| true),
            Response::Stored(_)
        ));
        let response = server.handle(NOW, *PEER, &store(&bob, 2, 60, BITS), |_| true);
        assert_eq!(response, Response::Refused(ErrorCode::MailboxFull), "node full");
    }

    #[test]
    fn ttl_is_capped_and_expired_items_are_purged() {
        let mut server = server(Config { max_ttl_seconds: 60, ..config() });
        let mut rng = rng();
        let owner = mailbox(&mut rng);
        server.handle(NOW, *PEER, &store(&owner, 1, 3600, BITS), |_| true);
        let at = NOW + 59_000;
        assert_eq!(
            fetched(server.handle(at, *PEER, &fetch(&owner, at, &mut rng), |_| true)).len(),
            1
        );
        // Past the node's cap, not the sender's hour.
        let at = NOW + 61_000 + PURGE_INTERVAL_MS;
        assert!(
            fetched(server.handle(at, *PEER, &fetch(&owner, at, &mut rng), |_| true)).is_empty()
        );
        assert_eq!(server.storage.total_usage().unwrap().items, 0, "purged, not only hidden");
    }

    #[test]
    fn garbage_is_refused_as_malformed() {
        let mut server = server(config());
        for bytes in [&b""[..], b"\xff\xff\xff", &[0x0a; 64]] {
            let response = server.handle(NOW, *PEER, bytes, |_| true);
            assert_eq!(response, Response::Refused(ErrorCode::Malformed), "{bytes:?}");
        }
    }

    #[test]
    fn a_full_page_says_more_remain() {
        let mut server = server(Config { max_items_per_mailbox: 1000, ..config() });
        let mut rng = rng();
        let owner = mailbox(&mut rng);
        for i in 0..=MAX_FETCH_ITEMS {
            let fill = u8::try_from(i % 256).unwrap();
            let envelope = xchat_proto::envelope::Envelope::new(
                [vec![fill; 400], (i as u32).to_be_bytes().to_vec()].concat(),
            )
            .unwrap()
            .encode();
            let request = StoreRequest::new(owner.verifying_key(), envelope, 60, BITS).unwrap();
            let stored = server.handle(NOW, *PEER, &Request::Store(request).encode(), |_| true);
            assert!(matches!(stored, Response::Stored(_)));
        }
        match server.handle(NOW, *PEER, &fetch(&owner, NOW, &mut rng), |_| true) {
            Response::Fetched(page) => {
                assert_eq!(page.items().len(), MAX_FETCH_ITEMS);
                assert!(page.more());
            }
            other => panic!("{other:?}"),
        }
    }

    /// A node whose difficulty rises from `BITS` at 4 stores a second
    /// (window 1 s), up to `BITS + 3`.
    fn loaded_config() -> Config {
        Config {
            max_difficulty_bits: BITS + 3,
            load_window_ms: 1000,
            busy_stores_per_window: 4,
            ..config()
        }
    }

    /// Stores `count` distinct envelopes paying `bits`, from fill `first`;
    /// returns the last response.
    fn store_many(
        server: &mut Server,
        at: u64,
        key: &SigningKey,
        first: u8,
        count: u8,
        bits: u8,
    ) -> Response {
        let mut last = Response::Deleted { count: 0 };
        for fill in first..first + count {
            last = server.handle(at, *PEER, &store(key, fill, 60, bits), |_| true);
        }
        last
    }

    #[test]
    fn loaded_node_asks_more_work_and_says_how_much() {
        let (mut rng, mut server) = (rng(), server(loaded_config()));
        let owner = mailbox(&mut rng);
        assert_eq!(server.difficulty(NOW), BITS);
        assert!(matches!(store_many(&mut server, NOW, &owner, 0, 4, BITS), Response::Stored(_)));
        // Four stores in the window: one bit more, and the refusal says so.
        assert_eq!(server.difficulty(NOW), BITS + 1);
        let response = server.handle(NOW + 1, *PEER, &store(&owner, 50, 60, BITS), |_| true);
        assert_eq!(
            response,
            Response::Refused(ErrorCode::InsufficientWork { required_bits: Some(BITS + 1) })
        );
        // Paying it is accepted; twice the load asks another bit.
        assert!(matches!(
            store_many(&mut server, NOW + 2, &owner, 50, 4, BITS + 1),
            Response::Stored(_)
        ));
        assert_eq!(server.difficulty(NOW + 3), BITS + 2);
    }

    #[test]
    fn difficulty_falls_back_when_the_load_stops() {
        let (mut rng, mut server) = (rng(), server(loaded_config()));
        let owner = mailbox(&mut rng);
        store_many(&mut server, NOW, &owner, 0, 8, BITS + 2);
        assert_eq!(server.difficulty(NOW), BITS + 2);
        // The next window still remembers the burst...
        assert_eq!(server.difficulty(NOW + 1000), BITS + 2);
        let response = server.handle(NOW + 1000, *PEER, &store(&owner, 99, 60, BITS), |_| true);
        assert!(matches!(response, Response::Refused(ErrorCode::InsufficientWork { .. })));
        // ...and after a whole quiet window the minimum is back.
        assert_eq!(server.difficulty(NOW + 2000), BITS);
        let response = server.handle(NOW + 2000, *PEER, &store(&owner, 99, 60, BITS), |_| true);
        assert!(matches!(response, Response::Stored(_)));
    }

    #[test]
    fn difficulty_stays_within_the_cap_however_loaded() {
        let (mut rng, mut server) = (rng(), server(loaded_config()));
        let owner = mailbox(&mut rng);
        store_many(&mut server, NOW, &owner, 0, 100, BITS + 3);
        assert_eq!(server.difficulty(NOW), BITS + 3, "100 stores is past 16 x busy");
    }

    #[test]
    fn refused_stores_do_not_raise_the_difficulty() {
        let (mut rng, mut server) = (rng(), server(loaded_config()));
        let owner = mailbox(&mut rng);
        // Cheap stores, a stamp that does not hold, stores the node does
        // not keep: none is stored, none counts.
        store_many(&mut server, NOW, &owner, 0, 20, BITS - 1);
        let mut forged = store(&owner, 1, 60, BITS);
        let at = forged.windows(8).position(|w| w == [1; 8]).unwrap();
        forged[at] = 2;
        for _ in 0..20 {
            server.handle(NOW, *PEER, &forged, |_| true);
            server.handle(NOW, *PEER, &store(&owner, 3, 60, BITS), |_| false);
        }
        assert_eq!(server.difficulty(NOW), BITS);
    }

    #[test]
    fn difficulty_configured_past_what_senders_pay_is_brought_within_it() {
        let max = xchat_proto::mailbox::MAX_DEMANDED_DIFFICULTY_BITS;
        let mut server =
            server(Config { min_difficulty_bits: 60, max_difficulty_bits: 64, ..config() });
        assert_eq!(server.difficulty(NOW), max);
        assert_eq!(server.config().max_difficulty_bits, max);
    }

    #[test]
    fn a_peer_past_its_request_rate_is_refused_and_others_are_not() {
        let mut server = server(Config {
            requests_per_second_per_peer: 2,
            request_burst_per_peer: 3,
            ..config()
        });
        let (mut rng, greedy, other) = (rng(), PeerId::random(), PeerId::random());
        let owner = mailbox(&mut rng);
        let mut ask = |server: &mut Server, at: u64, peer: PeerId| {
            server.handle(at, peer, &fetch(&owner, at, &mut rng), |_| true)
        };
        for _ in 0..3 {
            assert!(matches!(ask(&mut server, NOW, greedy), Response::Fetched(_)));
        }
        assert_eq!(ask(&mut server, NOW, greedy), Response::Refused(ErrorCode::RateLimited));
        assert!(matches!(ask(&mut server, NOW, other), Response::Fetched(_)));
        // Half a second later the greedy peer has one request again.
        assert!(matches!(ask(&mut server, NOW + 500, greedy), Response::Fetched(_)));
        assert_eq!(ask(&mut server, NOW + 500, greedy), Response::Refused(ErrorCode::RateLimited));
    }
}
