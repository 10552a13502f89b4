//! The node's network work, one async function per effect of the core:
//! finding a contact's device (its presence record), delivering an
//! envelope to it or to its mailbox, fetching bundles, publishing this
//! device's records, and emptying this device's mailboxes.
//!
//! None of it decides anything about messages: the core chose the route; a
//! function here only reports what happened, as an input for the core.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand_core::{OsRng, UnwrapErr};
use xchat_core::io::{MailboxKey, Send};
use xchat_core::retry::Route;
use xchat_crypto::device::{DeviceCertificate, DeviceId};
use xchat_crypto::presence::{self, PresenceRecord};
use xchat_crypto::signature::VerifyingKey;
use xchat_net::record::{self, Presence};
use xchat_net::{NetworkHandle, PeerId, mailbox};
use xchat_proto::bundle::{
    DeviceList, PreKeyRecord, PreKeys, UnverifiedDeviceList, UnverifiedPreKeyRecord,
};
use xchat_proto::envelope::Envelope;
use xchat_proto::mailbox::{
    DeleteRequest, FetchRequest, ItemId, MAX_DELETE_ITEMS, MAX_TTL_SECONDS, Request, Response,
};

/// How long a contact device's presence, once found, is used without asking
/// the DHT again.
pub const PRESENCE_CACHE: Duration = Duration::from_secs(5 * 60);
/// Mailbox nodes asked when fetching: more than the replicas an envelope
/// was stored on, as the DHT's view shifts while nodes come and go.
pub const MAILBOX_FETCH_NODES: usize = 2 * mailbox::REPLICAS;
/// Proof-of-work bits minted on every mailbox store: what a mailbox node
/// asks by default.
pub const MAILBOX_STAMP_BITS: u8 = mailbox::MIN_DIFFICULTY_BITS;
/// Most proof-of-work bits paid for one mailbox store, when loaded nodes
/// ask more than [`MAILBOX_STAMP_BITS`]: the most any node may ask (about 16
/// million hashes). The store is minted again once at what they ask; a
/// node asking more is not paid, and if no node stored the envelope the
/// core's retries take over.
pub const MAILBOX_MAX_STAMP_BITS: u8 = mailbox::MAX_PAID_DIFFICULTY_BITS;

/// Most mailbox stores under way at once. Each mints a stamp (CPU) and asks
/// [`mailbox::REPLICAS`] nodes, whose requests the network bounds
/// (`xchat_net::mailbox::MAX_PENDING_MAILBOX_REQUESTS`): beyond this the
/// stores wait their turn here instead of being refused as busy and
/// retried minutes later.
pub const MAX_MAILBOX_STORES: usize = 32;

/// Waits before each lookup of a contact's records.
const LOOKUP_RETRIES: [Duration; 4] =
    [Duration::ZERO, Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)];

type DeviceKey = ([u8; 32], DeviceId);

/// Carries out the network effects of one node.
#[derive(Debug)]
pub struct Courier {
    net: NetworkHandle,
    /// Contact devices' peer ids, and when they were found.
    presence: Mutex<HashMap<DeviceKey, (PeerId, Instant)>>,
    stamp_bits: u8,
    /// Turns to store in mailboxes: [`MAX_MAILBOX_STORES`].
    mailbox_stores: tokio::sync::Semaphore,
}

impl Courier {
    /// A courier on `net`, minting stamps of `stamp_bits` bits (more, up to
    /// [`MAILBOX_MAX_STAMP_BITS`], for a node that asks more).
    pub fn new(net: NetworkHandle, stamp_bits: u8) -> Self {
        Self {
            net,
            presence: Mutex::new(HashMap::new()),
            stamp_bits,
            mailbox_stores: tokio::sync::Semaphore::new(MAX_MAILBOX_STORES),
        }
    }

    /// The network.
    pub fn net(&self) -> &NetworkHandle {
        &self.net
    }

    /// The device a peer id was last found to be, if any.
    pub fn device_of(&self, peer: &PeerId) -> Option<(VerifyingKey, DeviceId)> {
        let presence = self.presence.lock().ok()?;
        presence.iter().find(|(_, (p, _))| p == peer).and_then(|((identity, device), _)| {
            VerifyingKey::from_bytes(identity).ok().map(|key| (key, *device))
        })
    }

    /// Where `device` of `identity` is now: its presence record of today
    /// (or yesterday's, near midnight), cached for [`PRESENCE_CACHE`]; the
    /// addresses it gives are handed to the swarm.
    pub async fn resolve(&self, identity: &VerifyingKey, device: DeviceId) -> Option<PeerId> {
        let key = (identity.to_bytes(), device);
        if let Ok(cache) = self.presence.lock()
            && let Some((peer, at)) = cache.get(&key)
            && at.elapsed() < PRESENCE_CACHE
        {
            return Some(*peer);
        }
        let today = presence::epoch_of(crate::now_ms());
        for epoch in [today, today.saturating_sub(1)] {
            let Ok(presence_key) = presence::presence_key(identity, device, epoch) else {
                continue;
            };
            let Ok(bytes) = self.net.find_record(record::presence_record_key(&presence_key)).await
            else {
                continue;
            };
            let Some(found) = PresenceRecord::decode(&bytes)
                .and_then(|r| r.open(identity, device, epoch))
                .ok()
                .and_then(|payload| Presence::decode(&payload).ok())
            else {
                continue;
            };
            for address in found.addresses {
                // Best effort: a stopped network fails the delivery anyway.
                let _ = self.net.add_address(found.peer, address).await;
            }
            if let Ok(mut cache) = self.presence.lock() {
                cache.insert(key, (found.peer, Instant::now()));
            }
            return Some(found.peer);
        }
        None
    }

    /// Forgets where a device was: the next send looks it up again.
    pub fn forget(&self, identity: &VerifyingKey, device: DeviceId) {
        if let Ok(mut cache) = self.presence.lock() {
            cache.remove(&(identity.to_bytes(), device));
        }
    }

    /// Sends one envelope by the route the core chose; `Ok` once the device
    /// or at least one mailbox node took it.
    pub async fn send(&self, send: &Send) -> Result<(), SendError> {
        match send.route {
            Route::Direct => {
                let peer =
                    self.resolve(&send.identity, send.device).await.ok_or(SendError::NotFound)?;
                let envelope =
                    Envelope::decode(&send.envelope).map_err(|_| SendError::Malformed)?;
                let delivered = self.net.deliver(peer, envelope).await;
                if delivered.is_err() {
                    self.forget(&send.identity, send.device);
                }
                delivered.map_err(|_| SendError::Unreachable)
            }
            Route::Mailbox => {
                let mailbox = send.mailbox.ok_or(SendError::NoMailbox)?;
                // Never closed.
                let _turn =
                    self.mailbox_stores.acquire().await.map_err(|_| SendError::Unreachable)?;
                let postage = mailbox::Postage {
                    bits: self.stamp_bits,
                    max_bits: MAILBOX_MAX_STAMP_BITS.max(self.stamp_bits),
                };
                // Mints off the runtime, and once more for loaded nodes.
                let report = mailbox::store(
                    &self.net,
                    mailbox,
                    send.envelope.clone(),
                    MAX_TTL_SECONDS,
                    postage,
                    mailbox::REPLICAS,
                )
                .await
                .map_err(|error| match error {
                    mailbox::StoreError::Lookup(_) => SendError::Unreachable,
                    mailbox::StoreError::Invalid(_) | mailbox::StoreError::Cancelled => {
                        SendError::Malformed
                    }
                })?;
                if report.stored() > 0 { Ok(()) } else { Err(SendError::Unreachable) }
            }
        }
    }

    /// The prekey records of every device of `identity` in the DHT: its
    /// device list, then each listed device's shared bundle. Records that do
    /// not verify are left out (the core checks them again).
    pub async fn fetch_bundles(&self, identity: &VerifyingKey) -> Vec<Vec<u8>> {
        // A lookup right after joining, or while nodes churn, can miss a
        // record that is there: ask again a few times before reporting none
        // (the core then asks again only minutes later).
        let mut list = Err(xchat_net::FindError::NotFound);
        for wait in LOOKUP_RETRIES {
            tokio::time::sleep(wait).await;
            list = self.net.find_record(record::device_list_key(identity)).await;
            if list.is_ok() {
                break;
            }
        }
        let Ok(list) = list else {
            return Vec::new();
        };
        let Some(list) =
            UnverifiedDeviceList::decode(&list).ok().and_then(|l| l.verify(identity).ok())
        else {
            return Vec::new();
        };
        let lookups = list.certificates().iter().map(|certificate| {
            let key = record::prekey_key(identity, &certificate.device_id());
            async move { self.net.find_record(key).await.ok() }
        });
        futures::future::join_all(lookups).await.into_iter().flatten().collect()
    }

    /// Publishes this device's records: its bundle for others to start
    /// sessions from (the shared one, without one-time prekeys: every
    /// initiator would use those), and the identity's device list.
    ///
    /// # Errors
    /// [`PublishFailed`] when a record was not stored on any other node.
    pub async fn publish_prekeys(
        &self,
        record: &[u8],
        identity: &VerifyingKey,
        device: &DeviceCertificate,
    ) -> Result<(), PublishFailed> {
        let now = crate::now_ms();
        let shared = UnverifiedPreKeyRecord::decode(record)
            .ok()
            .and_then(|r| r.verify(Some(identity)).ok())
            .map(|r| match r.prekeys {
                PreKeys::Publication(publication) => publication.last_resort_bundle(),
                PreKeys::Bundle(bundle) => bundle,
            })
            .ok_or(PublishFailed)?;
        let bundle = PreKeyRecord { published_at_ms: now, prekeys: PreKeys::Bundle(shared) };
        let list = DeviceList::new(now, vec![*device], Vec::new()).map_err(|_| PublishFailed)?;
        let bundle = self
            .net
            .publish_record(record::prekey_key(identity, &device.device_id()), bundle.encode());
        let list = self.net.publish_record(record::device_list_key(identity), list.encode());
        let (bundle, list) = futures::join!(bundle, list);
        bundle.and(list).map_err(|_| PublishFailed)
    }

    /// Fetches every mailbox of `keys` from the nodes that keep it; returns
    /// each epoch's items, each once.
    pub async fn fetch_mailboxes(&self, keys: &[MailboxKey]) -> Vec<(u64, Vec<(ItemId, Vec<u8>)>)> {
        let mut rng = UnwrapErr(OsRng);
        let mut out = Vec::new();
        for key in keys {
            let public = key.key.verifying_key();
            let Ok(nodes) = self.net.mailbox_nodes(&public.to_bytes()).await else { continue };
            let mut items = BTreeMap::new();
            for peer in nodes.into_iter().take(MAILBOX_FETCH_NODES) {
                let fetch = Request::Fetch(FetchRequest::new(&key.key, crate::now_ms(), &mut rng));
                if let Ok(Response::Fetched(page)) = self.net.mailbox_request(peer, fetch).await {
                    for item in page.items() {
                        items.entry(item.id()).or_insert_with(|| item.envelope().to_vec());
                    }
                }
            }
            if !items.is_empty() {
                out.push((key.epoch, items.into_iter().collect()));
            }
        }
        out
    }

    /// Deletes `items` from the mailbox of `key` on every node that keeps it.
    pub async fn delete_from_mailbox(&self, key: &MailboxKey, items: &[ItemId]) {
        let mut rng = UnwrapErr(OsRng);
        let public = key.key.verifying_key();
        let Ok(nodes) = self.net.mailbox_nodes(&public.to_bytes()).await else { return };
        for peer in nodes.into_iter().take(MAILBOX_FETCH_NODES) {
            for chunk in items.chunks(MAX_DELETE_ITEMS) {
                let Ok(delete) =
                    DeleteRequest::new(&key.key, crate::now_ms(), chunk.to_vec(), &mut rng)
                else {
                    continue;
                };
                // What a node does not delete expires with its TTL.
                let _ = self.net.mailbox_request(peer, Request::Delete(delete)).await;
            }
        }
    }
}

/// Why an envelope was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The device's presence was not found.
    #[error("device not found on the network")]
    NotFound,
    /// The device or the mailbox nodes could not be reached, or refused.
    #[error("unreachable")]
    Unreachable,
    /// A mailbox send without the recipient's mailbox key.
    #[error("no mailbox key")]
    NoMailbox,
    /// The envelope does not encode (a bug in the core).
    #[error("malformed envelope")]
    Malformed,
}

/// A record was not published on any other node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("record not published")]
pub struct PublishFailed;
