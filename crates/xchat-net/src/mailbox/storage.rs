//! Where a mailbox node keeps the envelopes it holds for others: a small
//! trait, so the node can keep them in its encrypted database (they must
//! survive a restart), and [`MemoryStorage`] for tests and simulations.

use std::collections::{BTreeMap, HashMap};

use xchat_proto::mailbox::{ITEM_ID_BYTES, ItemId, MAILBOX_KEY_BYTES};

/// A mailbox's key bytes: a BIP340 x-only public key.
pub type MailboxKey = [u8; MAILBOX_KEY_BYTES];

/// One envelope held for a mailbox.
#[derive(Clone, PartialEq, Eq)]
pub struct ItemRecord {
    /// The envelope's id (`ItemId::of_envelope`).
    pub id: ItemId,
    /// When this node stored it, by its clock, in ms since the Unix epoch.
    pub stored_at_ms: u64,
    /// When this node deletes it, in ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// The encoded envelope, as the sender wrote it.
    pub envelope: Vec<u8>,
}

impl std::fmt::Debug for ItemRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemRecord")
            .field("id", &self.id)
            .field("stored_at_ms", &self.stored_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("envelope_bytes", &self.envelope.len())
            .finish()
    }
}

/// How much a mailbox, or the whole store, holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Items held.
    pub items: u64,
    /// Bytes of their envelopes.
    pub bytes: u64,
}

/// Why storage failed. Its message says what failed, never what was stored.
#[derive(Debug, thiserror::Error)]
#[error("mailbox storage failed: {0}")]
pub struct StorageError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// The envelopes a mailbox node holds. Each method is one atomic change.
pub trait Storage: Send + 'static {
    /// Keeps `item` in `mailbox` unless an item with its id is there;
    /// returns whether it was new.
    ///
    /// # Errors
    /// [`StorageError`].
    fn insert(&mut self, mailbox: &MailboxKey, item: ItemRecord) -> Result<bool, StorageError>;

    /// Up to `limit` items of `mailbox` not expired at `now_ms`, oldest
    /// first (by `stored_at_ms`, then id).
    ///
    /// # Errors
    /// [`StorageError`].
    fn list(
        &self,
        mailbox: &MailboxKey,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<ItemRecord>, StorageError>;

    /// Deletes the items of `mailbox` among `ids`; returns how many there
    /// were.
    ///
    /// # Errors
    /// [`StorageError`].
    fn delete(&mut self, mailbox: &MailboxKey, ids: &[ItemId]) -> Result<u32, StorageError>;

    /// Deletes every item expired at `now_ms`; returns how many.
    ///
    /// # Errors
    /// [`StorageError`].
    fn purge_expired(&mut self, now_ms: u64) -> Result<u64, StorageError>;

    /// What `mailbox` holds.
    ///
    /// # Errors
    /// [`StorageError`].
    fn usage(&self, mailbox: &MailboxKey) -> Result<Usage, StorageError>;

    /// What the whole store holds.
    ///
    /// # Errors
    /// [`StorageError`].
    fn total_usage(&self) -> Result<Usage, StorageError>;
}

/// Items ordered for listing: oldest first, then by id.
type Order = (u64, [u8; ITEM_ID_BYTES]);

/// Envelopes in memory: lost on restart, for tests and simulations.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    mailboxes: HashMap<MailboxKey, BTreeMap<Order, ItemRecord>>,
    total: Usage,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn usage_of<'a>(items: impl Iterator<Item = &'a ItemRecord>) -> Usage {
    items.fold(Usage::default(), |usage, item| Usage {
        items: usage.items + 1,
        bytes: usage.bytes + item.envelope.len() as u64,
    })
}

impl Storage for MemoryStorage {
    fn insert(&mut self, mailbox: &MailboxKey, item: ItemRecord) -> Result<bool, StorageError> {
        let items = self.mailboxes.entry(*mailbox).or_default();
        if items.values().any(|held| held.id == item.id) {
            return Ok(false);
        }
        self.total.items += 1;
        self.total.bytes += item.envelope.len() as u64;
        items.insert((item.stored_at_ms, *item.id.as_bytes()), item);
        Ok(true)
    }

    fn list(
        &self,
        mailbox: &MailboxKey,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<ItemRecord>, StorageError> {
        Ok(self
            .mailboxes
            .get(mailbox)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|item| item.expires_at_ms > now_ms)
            .take(limit)
            .cloned()
            .collect())
    }

    fn delete(&mut self, mailbox: &MailboxKey, ids: &[ItemId]) -> Result<u32, StorageError> {
        let Some(items) = self.mailboxes.get_mut(mailbox) else { return Ok(0) };
        let before = usage_of(items.values());
        items.retain(|_, item| !ids.contains(&item.id));
        let after = usage_of(items.values());
        if items.is_empty() {
            self.mailboxes.remove(mailbox);
        }
        self.total.items -= before.items - after.items;
        self.total.bytes -= before.bytes - after.bytes;
        Ok(u32::try_from(before.items - after.items).unwrap_or(u32::MAX))
    }

    fn purge_expired(&mut self, now_ms: u64) -> Result<u64, StorageError> {
        let before = self.total.items;
        for items in self.mailboxes.values_mut() {
            items.retain(|_, item| item.expires_at_ms > now_ms);
        }
        self.mailboxes.retain(|_, items| !items.is_empty());
        self.total = usage_of(self.mailboxes.values().flat_map(BTreeMap::values));
        Ok(before - self.total.items)
    }

    fn usage(&self, mailbox: &MailboxKey) -> Result<Usage, StorageError> {
        Ok(self.mailboxes.get(mailbox).map(|items| usage_of(items.values())).unwrap_or_default())
    }

    fn total_usage(&self) -> Result<Usage, StorageError> {
        Ok(self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(stored_at_ms: u64, fill: u8) -> ItemRecord {
        let envelope = vec![fill; 10];
        ItemRecord {
            id: ItemId::of_envelope(&envelope),
            stored_at_ms,
            expires_at_ms: stored_at_ms + 1000,
            envelope,
        }
    }

    #[test]
    fn memory_storage_lists_oldest_first_and_counts_usage() {
        let mut storage = MemoryStorage::new();
        let mailbox = [1; 32];
        assert!(storage.insert(&mailbox, item(20, 2)).unwrap());
        assert!(storage.insert(&mailbox, item(10, 1)).unwrap());
        assert!(!storage.insert(&mailbox, item(30, 1)).unwrap(), "same id twice is one item");
        let listed = storage.list(&mailbox, 0, 10).unwrap();
        assert_eq!(listed.iter().map(|i| i.stored_at_ms).collect::<Vec<_>>(), [10, 20]);
        assert_eq!(storage.usage(&mailbox).unwrap(), Usage { items: 2, bytes: 20 });
        assert_eq!(storage.total_usage().unwrap(), Usage { items: 2, bytes: 20 });
        assert_eq!(storage.list(&mailbox, 0, 1).unwrap().len(), 1);
        assert!(storage.list(&[2; 32], 0, 10).unwrap().is_empty());
    }

    #[test]
    fn memory_storage_deletes_and_purges() {
        let mut storage = MemoryStorage::new();
        let mailbox = [1; 32];
        storage.insert(&mailbox, item(10, 1)).unwrap();
        storage.insert(&mailbox, item(2000, 2)).unwrap();
        storage.insert(&[3; 32], item(10, 3)).unwrap();
        // Expired items are not listed even before the purge.
        assert_eq!(storage.list(&mailbox, 1500, 10).unwrap().len(), 1);
        assert_eq!(storage.purge_expired(1500).unwrap(), 2);
        assert_eq!(storage.total_usage().unwrap(), Usage { items: 1, bytes: 10 });
        let id = item(2000, 2).id;
        assert_eq!(storage.delete(&[3; 32], &[id]).unwrap(), 0, "another mailbox's id");
        assert_eq!(storage.delete(&mailbox, &[id, id]).unwrap(), 1);
        assert_eq!(storage.total_usage().unwrap(), Usage::default());
    }
}
