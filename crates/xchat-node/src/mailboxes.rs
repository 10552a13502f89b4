//! The envelopes a node keeps for other devices' mailboxes, on disk: a
//! node that restarts still holds what it said it stored.
//!
//! One SQLite database (`mailboxes.db` in the profile, or a relay's own
//! path) with one table. It is not encrypted: every envelope is sealed
//! end to end and padded, and mailbox keys are public keys that change
//! every day; the node's own messages are in its SQLCipher store, not here.
//! Writes are durable before the network answers `Stored`
//! (`synchronous = FULL` in WAL mode).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use xchat_net::mailbox::{ItemRecord, MailboxKey, Storage, StorageError, Usage};
use xchat_proto::mailbox::{ITEM_ID_BYTES, ItemId};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    mailbox    BLOB NOT NULL,
    id         BLOB NOT NULL,
    stored_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    envelope   BLOB NOT NULL,
    PRIMARY KEY (mailbox, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_order ON items (mailbox, stored_at, id);
CREATE INDEX IF NOT EXISTS items_expiry ON items (expires_at);
";

/// Mailboxes in a SQLite database.
#[derive(Debug)]
pub struct SqliteStorage {
    conn: Connection,
    /// What the whole database holds, kept in memory: the network asks it
    /// for every store request (its global quota).
    total: Usage,
}

fn failed(error: impl std::error::Error + Send + Sync + 'static) -> StorageError {
    StorageError(Box::new(error))
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl SqliteStorage {
    /// Opens (or makes) the mailboxes database at `path`.
    ///
    /// # Errors
    /// [`StorageError`] when the file cannot be opened or is not such a
    /// database.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let conn = Connection::open(path).map_err(failed)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(failed)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(failed)?;
        conn.execute_batch(SCHEMA).map_err(failed)?;
        let total = conn
            .query_row(
                "SELECT count(*), coalesce(sum(length(envelope)), 0) FROM items",
                [],
                |row| {
                    Ok(Usage {
                        items: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                        bytes: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                    })
                },
            )
            .map_err(failed)?;
        Ok(Self { conn, total })
    }
}

impl Storage for SqliteStorage {
    fn insert(&mut self, mailbox: &MailboxKey, item: ItemRecord) -> Result<bool, StorageError> {
        let inserted = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO items (mailbox, id, stored_at, expires_at, envelope)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    &mailbox[..],
                    &item.id.as_bytes()[..],
                    to_i64(item.stored_at_ms),
                    to_i64(item.expires_at_ms),
                    &item.envelope
                ],
            )
            .map_err(failed)?;
        if inserted == 1 {
            self.total.items += 1;
            self.total.bytes += item.envelope.len() as u64;
        }
        Ok(inserted == 1)
    }

    fn list(
        &self,
        mailbox: &MailboxKey,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<ItemRecord>, StorageError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT id, stored_at, expires_at, envelope FROM items
                 WHERE mailbox = ?1 AND expires_at > ?2
                 ORDER BY stored_at, id LIMIT ?3",
            )
            .map_err(failed)?;
        let rows = statement
            .query_map(
                params![&mailbox[..], to_i64(now_ms), i64::try_from(limit).unwrap_or(i64::MAX)],
                |row| {
                    let id: Vec<u8> = row.get(0)?;
                    Ok((id, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?, row.get(3)?))
                },
            )
            .map_err(failed)?;
        let mut items = Vec::new();
        for row in rows {
            let (id, stored_at, expires_at, envelope) = row.map_err(failed)?;
            // Rows are only written by `insert`: an id of another length is
            // a damaged file, which the caller hears about.
            let id: [u8; ITEM_ID_BYTES] = id
                .try_into()
                .map_err(|_| failed(std::io::Error::other("damaged mailbox item id")))?;
            items.push(ItemRecord {
                id: ItemId::from_bytes(id),
                stored_at_ms: u64::try_from(stored_at).unwrap_or(0),
                expires_at_ms: u64::try_from(expires_at).unwrap_or(0),
                envelope,
            });
        }
        Ok(items)
    }

    fn delete(&mut self, mailbox: &MailboxKey, ids: &[ItemId]) -> Result<u32, StorageError> {
        let tx = self.conn.transaction().map_err(failed)?;
        let (mut count, mut bytes) = (0u32, 0u64);
        {
            let mut size = tx
                .prepare_cached("SELECT length(envelope) FROM items WHERE mailbox = ?1 AND id = ?2")
                .map_err(failed)?;
            let mut delete = tx
                .prepare_cached("DELETE FROM items WHERE mailbox = ?1 AND id = ?2")
                .map_err(failed)?;
            for id in ids {
                let key = params![&mailbox[..], &id.as_bytes()[..]];
                let len: Option<i64> =
                    size.query_row(key, |row| row.get(0)).optional().map_err(failed)?;
                if let Some(len) = len {
                    delete.execute(key).map_err(failed)?;
                    count += 1;
                    bytes += u64::try_from(len).unwrap_or(0);
                }
            }
        }
        tx.commit().map_err(failed)?;
        self.total.items = self.total.items.saturating_sub(u64::from(count));
        self.total.bytes = self.total.bytes.saturating_sub(bytes);
        Ok(count)
    }

    fn purge_expired(&mut self, now_ms: u64) -> Result<u64, StorageError> {
        let tx = self.conn.transaction().map_err(failed)?;
        let (items, bytes): (i64, i64) = tx
            .query_row(
                "SELECT count(*), coalesce(sum(length(envelope)), 0) FROM items WHERE expires_at <= ?1",
                [to_i64(now_ms)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(failed)?;
        tx.execute("DELETE FROM items WHERE expires_at <= ?1", [to_i64(now_ms)]).map_err(failed)?;
        tx.commit().map_err(failed)?;
        let items = u64::try_from(items).unwrap_or(0);
        self.total.items = self.total.items.saturating_sub(items);
        self.total.bytes = self.total.bytes.saturating_sub(u64::try_from(bytes).unwrap_or(0));
        Ok(items)
    }

    fn usage(&self, mailbox: &MailboxKey) -> Result<Usage, StorageError> {
        self.conn
            .query_row(
                "SELECT count(*), coalesce(sum(length(envelope)), 0) FROM items WHERE mailbox = ?1",
                [&mailbox[..]],
                |row| {
                    Ok(Usage {
                        items: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                        bytes: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                    })
                },
            )
            .map_err(failed)
    }

    fn total_usage(&self) -> Result<Usage, StorageError> {
        Ok(self.total)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn item(stored_at_ms: u64, fill: u8) -> ItemRecord {
        let envelope = vec![fill; 10 + usize::from(fill)];
        ItemRecord {
            id: ItemId::of_envelope(&envelope),
            stored_at_ms,
            expires_at_ms: stored_at_ms + 1000,
            envelope,
        }
    }

    #[test]
    fn items_are_listed_oldest_first_once_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = SqliteStorage::open(&dir.path().join("m.db")).unwrap();
        let (mailbox, other) = ([1; 32], [2; 32]);
        assert!(storage.insert(&mailbox, item(20, 2)).unwrap());
        assert!(storage.insert(&mailbox, item(10, 1)).unwrap());
        assert!(!storage.insert(&mailbox, item(10, 1)).unwrap(), "the same item again");
        assert!(storage.insert(&other, item(5, 3)).unwrap());
        let listed = storage.list(&mailbox, 0, 10).unwrap();
        assert_eq!(listed, vec![item(10, 1), item(20, 2)]);
        assert_eq!(storage.list(&mailbox, 0, 1).unwrap(), vec![item(10, 1)]);
        assert_eq!(storage.usage(&mailbox).unwrap(), Usage { items: 2, bytes: 11 + 12 });
        assert_eq!(storage.total_usage().unwrap(), Usage { items: 3, bytes: 11 + 12 + 13 });
    }

    #[test]
    fn what_was_stored_survives_a_reopen_and_deletes_and_expiry_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mailbox = [1; 32];
        {
            let mut storage = SqliteStorage::open(&path).unwrap();
            for (at, fill) in [(10, 1), (20, 2), (3000, 3)] {
                storage.insert(&mailbox, item(at, fill)).unwrap();
            }
            assert_eq!(storage.delete(&mailbox, &[item(20, 2).id, item(99, 9).id]).unwrap(), 1);
        }
        let mut storage = SqliteStorage::open(&path).unwrap();
        assert_eq!(storage.list(&mailbox, 0, 10).unwrap(), vec![item(10, 1), item(3000, 3)]);
        assert_eq!(storage.total_usage().unwrap(), Usage { items: 2, bytes: 11 + 13 });
        // Expired items are not listed, then purged.
        assert_eq!(storage.list(&mailbox, 1010, 10).unwrap(), vec![item(3000, 3)]);
        assert_eq!(storage.purge_expired(1010).unwrap(), 1);
        assert_eq!(storage.total_usage().unwrap(), Usage { items: 1, bytes: 13 });
        drop(storage);
        let storage = SqliteStorage::open(&path).unwrap();
        assert_eq!(storage.total_usage().unwrap(), Usage { items: 1, bytes: 13 });
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        assert!(SqliteStorage::open(&path).is_err());
    }
}
