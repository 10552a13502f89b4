//! A profile's store: one SQLCipher database, its connection settings, and
//! the transaction that makes one input's writes atomic.
//!
//! Ownership: a [`Store`] is one SQLite connection, owned by one task (the
//! node's messenger task); it is `Send`, not `Sync`. Writes happen only in
//! [`Store::apply`], reads anywhere outside it. A second process opening the
//! same profile gets its own connection; SQLite's locks then decide, and a
//! writer that waits longer than the busy timeout gets [`StoreError::Busy`].

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::CorruptPart;
use crate::header::{HEADER_FILE, KeyHeader};
use crate::{DatabaseKey, KeyKind, StoreError, files, migration};

/// The database's file name in a profile directory. SQLite keeps its
/// write-ahead log and shared-memory index next to it (`-wal`, `-shm`).
pub const DATABASE_FILE: &str = "store.db";
/// SQLite's page cache, in KiB (decrypted pages; SQLite's default is 2 MiB).
pub const CACHE_KIB: u32 = 16 * 1024;
/// How long a write waits for another connection's lock before
/// [`StoreError::Busy`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The size the write-ahead log is truncated to after a checkpoint, in
/// bytes: the log does not keep its largest size (and the old page images in
/// it) forever.
pub const JOURNAL_SIZE_LIMIT_BYTES: u64 = 16 * 1024 * 1024;

/// An open profile store.
pub struct Store {
    conn: Connection,
}

/// The writes of one [`Store::apply`]: they commit together, or none does.
pub struct Batch<'a> {
    tx: rusqlite::Transaction<'a>,
}

impl Store {
    /// Creates a profile in `dir` (made, owner-only, if missing), keyed with
    /// `key`: writes the key header, then the database at schema
    /// [`crate::SCHEMA_VERSION`].
    ///
    /// Safe to run again after a crash part-way: the database is written only
    /// once the header exists, so an interrupted create leaves either an
    /// empty database file without header (created again here) or a header
    /// and a database that [`Store::open`] completes.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] when `dir` holds a profile,
    /// [`StoreError::DiskFull`], [`StoreError::Io`].
    pub fn create(dir: &Path, key: &DatabaseKey) -> Result<Self, StoreError> {
        files::create_private_dir(dir)?;
        let db_path = dir.join(DATABASE_FILE);
        if exists(&dir.join(HEADER_FILE))?
            || exists(&wal_path(&db_path))?
            || std::fs::symlink_metadata(&db_path).is_ok_and(|m| m.len() > 0)
        {
            return Err(StoreError::AlreadyExists);
        }
        // An empty file is an empty SQLite database; made here, it is
        // owner-only, and SQLite gives its -wal and -shm files its mode.
        if !exists(&db_path)? {
            files::create_new_private(&db_path)?;
            files::sync_parent(&db_path)?;
        }
        KeyHeader::new(key).write_new(dir)?;
        Self::open_database(&db_path, key)
    }

    /// Opens the profile in `dir` with `key`, migrating its schema to
    /// [`crate::SCHEMA_VERSION`].
    ///
    /// The key is checked against the key header first, so a wrong key
    /// touches no database file.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] without a profile, [`StoreError::WrongKey`],
    /// [`StoreError::WrongKeyKind`], [`StoreError::Corrupt`] (the header, or
    /// a database whose first page does not open with the header's key),
    /// [`StoreError::SchemaTooNew`], [`StoreError::Busy`],
    /// [`StoreError::DiskFull`], [`StoreError::Migration`].
    pub fn open(dir: &Path, key: &DatabaseKey) -> Result<Self, StoreError> {
        KeyHeader::read(dir)?.admits(key)?;
        let db_path = dir.join(DATABASE_FILE);
        if !exists(&db_path)? {
            return Err(StoreError::Corrupt(CorruptPart::MissingDatabase));
        }
        Self::open_database(&db_path, key).map_err(|err| match err {
            // The header vouched for the key: a first page it cannot decrypt
            // is a damaged (or swapped) file, not a passphrase to type again.
            StoreError::WrongKey => StoreError::Corrupt(CorruptPart::DatabaseHeader),
            other => other,
        })
    }

    /// Opens the profile in `dir` with its passphrase: Argon2id with the
    /// header's salt and parameters, then [`Store::open`].
    ///
    /// # Errors
    /// As [`DatabaseKey::from_passphrase`] and [`Store::open`].
    pub fn open_with_passphrase(dir: &Path, passphrase: &str) -> Result<Self, StoreError> {
        let key = DatabaseKey::from_passphrase(dir, passphrase)?;
        Self::open(dir, &key)
    }

    /// How the profile in `dir` is opened (to ask for a passphrase or look
    /// for a key file).
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Corrupt`] for a damaged header.
    pub fn key_kind(dir: &Path) -> Result<KeyKind, StoreError> {
        Ok(KeyHeader::read(dir)?.source().kind())
    }

    fn open_database(path: &Path, key: &DatabaseKey) -> Result<Self, StoreError> {
        initialize_sqlcipher();
        // Never create: `create` made the file, and a missing one is an error.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)?;
        // SQLCipher logs a failed page HMAC to stderr unless told not to; its
        // log level is process-wide, and the error reaches us as a code.
        conn.execute_batch("PRAGMA cipher_log_level = NONE")?;
        // The raw-key form: SQLCipher uses the 32 bytes as its AES key and
        // skips its own PBKDF2 (Argon2id already stretched the passphrase).
        conn.key(Some(rusqlite::MAIN_DB), key.sqlcipher_raw_key().as_slice(), false)?;
        // Pin SQLCipher 4's page format (4096-byte pages, HMAC-SHA512,
        // AES-256-CBC), so a later SQLCipher with other defaults still reads
        // this file.
        conn.execute_batch("PRAGMA cipher_compatibility = 4")?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // The first read decrypts page 1: SQLITE_NOTADB if the key is wrong.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
        migration::check_supported(migration::schema_version(&conn)?)?;
        configure(&conn)?;
        migration::migrate(&mut conn)?;
        Ok(Self { conn })
    }

    /// Runs `writes` in one transaction and commits it: every write of the
    /// closure is saved, or (on any error, or a panic) none is. The node
    /// applies all `Write` effects of one input here, and only then carries
    /// out that input's sends and notifications (STYLE.md section 2).
    ///
    /// The transaction takes the write lock when it begins, so a conflict
    /// with another process shows as [`StoreError::Busy`] before any work,
    /// never half-way.
    ///
    /// # Errors
    /// The closure's error, or [`StoreError::Busy`] (another process holds
    /// the lock), [`StoreError::DiskFull`], [`StoreError::Corrupt`],
    /// [`StoreError::Database`]: in every case nothing of the batch is saved
    /// and the earlier state is whole.
    pub fn apply<T, E>(
        &mut self,
        writes: impl FnOnce(&mut Batch<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|err| E::from(err.into()))?;
        let mut batch = Batch { tx };
        // On an error the batch is dropped, which rolls the transaction back.
        let value = writes(&mut batch)?;
        batch.tx.commit().map_err(|err| E::from(err.into()))?;
        Ok(value)
    }

    /// Sets how long a write waits for another connection's lock.
    ///
    /// # Errors
    /// [`StoreError::Database`] if SQLite refuses it.
    pub fn set_busy_timeout(&self, timeout: Duration) -> Result<(), StoreError> {
        Ok(self.conn.busy_timeout(timeout)?)
    }

    /// Copies the write-ahead log into the database and truncates the log to
    /// zero bytes (`PRAGMA wal_checkpoint(TRUNCATE)`). SQLite checkpoints by
    /// itself every 1000 pages; this is for a clean point (after vanishing
    /// messages are deleted, before a backup).
    ///
    /// # Errors
    /// [`StoreError::Busy`] while another connection reads or writes.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let busy: i64 =
            self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
        if busy != 0 {
            return Err(StoreError::Busy);
        }
        Ok(())
    }

    /// Reads every page and checks the database's structure
    /// (`PRAGMA integrity_check`; each page's SQLCipher HMAC is checked as it
    /// is read). Slow on a large profile: for tests and repair, not startup.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for any problem found.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        let first: String = self.conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
        if first != "ok" {
            return Err(StoreError::Corrupt(CorruptPart::Database));
        }
        Ok(())
    }

    /// The file's schema version: [`crate::SCHEMA_VERSION`] once open.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        migration::schema_version(&self.conn)
    }

    /// Closes the database, reporting what dropping the store would ignore.
    /// The last connection to close checkpoints the WAL into the database
    /// and removes it.
    ///
    /// # Errors
    /// [`StoreError::Busy`], [`StoreError::DiskFull`], [`StoreError::Database`].
    pub fn close(self) -> Result<(), StoreError> {
        self.conn.close().map_err(|(_, err)| err.into())
    }

    /// The connection, for the store's own modules' reads.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection, for the store's own modules that need it whole
    /// (backups) and tests that set limits SQLite offers no other way.
    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Batch<'_> {
    /// The transaction, for the store's own modules' writes.
    pub(crate) fn conn(&self) -> &Connection {
        &self.tx
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.conn.path()).finish()
    }
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").finish_non_exhaustive()
    }
}

/// Runs SQLite's and SQLCipher's process-wide initialisation to its end,
/// once, before any keyed connection is made.
///
/// SQLite marks itself initialised before it calls SQLCipher's
/// initialisation (`SQLITE_EXTRA_INIT`) and without holding a lock, so a
/// second thread opening its first connection meanwhile finds SQLCipher not
/// ready: keying that connection fails with "SQL logic error"
/// (`sqlcipherCodecAttach: sqlcipher not initialized`). Profiles opened at
/// once on several threads of a fresh process met it. Here the first
/// connection of the process is an unkeyed in-memory one, made while every
/// other caller waits on the `OnceLock`; its error, if any, is met again
/// (and reported) by the keyed open that follows.
fn initialize_sqlcipher() {
    static INITIALIZED: OnceLock<()> = OnceLock::new();
    INITIALIZED.get_or_init(|| drop(Connection::open_in_memory()));
}

/// The connection's settings, after the key and before the migrations.
fn configure(conn: &Connection) -> Result<(), StoreError> {
    // Write-ahead log: readers never block the writer, and a commit is one
    // sequential append. Persistent in the file; set again to be sure.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Io(std::io::Error::other(
            "the file system does not support the database's write-ahead log",
        )));
    }
    conn.execute_batch(&format!(
        // synchronous = FULL, not NORMAL. With WAL, NORMAL syncs the log only
        // at checkpoints: a transaction that has committed can still be lost
        // to a power cut or an OS crash (the file stays consistent, but goes
        // back to an earlier commit). The node acknowledges what it received
        // once `apply` returns (a delivery receipt, a mailbox deletion), and
        // after that no one resends it, so "committed" must mean "on disk":
        // FULL syncs the log at every commit. The cost is one fsync per
        // transaction, which is why the node may group several inputs into
        // one transaction before acknowledging any of them.
        //
        // secure_delete: deleted rows (vanishing messages) are overwritten
        // with zeros, so a key compromised later does not bring them back
        // from free pages.
        //
        // foreign_keys: a session needs its certified device.
        //
        // temp_store = MEMORY: sorts and temporary tables never reach a file.
        //
        // cache_size: every page read from the file costs an HMAC-SHA512
        // check and an AES-CBC decryption, so the hot pages of a busy
        // profile (the message-id index above all) are worth keeping.
        "PRAGMA synchronous = FULL;
         PRAGMA cache_size = -{CACHE_KIB};
         PRAGMA secure_delete = ON;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES};"
    ))?;
    Ok(())
}

/// Whether `path` exists (a dangling symlink counts: it is not ours to
/// replace).
fn exists(path: &Path) -> Result<bool, StoreError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err.into()),
    }
}

fn wal_path(db_path: &Path) -> std::path::PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KdfParams;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn key(seed: u64) -> DatabaseKey {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        DatabaseKey::new_from_passphrase("pass", KdfParams::new(64, 1, 1).unwrap(), &mut rng)
            .unwrap()
    }

    #[test]
    fn sqlcipher_refuses_a_wrong_raw_key_with_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(dir.path(), &key(1)).unwrap();
        store.apply(|batch| batch.put_setting("k", b"v")).unwrap();
        drop(store);
        // Past the header's check: SQLCipher itself must refuse the key.
        let err = Store::open_database(&dir.path().join(DATABASE_FILE), &key(2)).unwrap_err();
        assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    }

    #[test]
    fn connection_settings_are_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path(), &key(1)).unwrap();
        let pragma = |name: &str| -> String {
            let value: rusqlite::types::Value =
                store.conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0)).unwrap();
            match value {
                rusqlite::types::Value::Integer(n) => n.to_string(),
                rusqlite::types::Value::Text(text) => text,
                other => panic!("PRAGMA {name} = {other:?}"),
            }
        };
        assert_eq!(pragma("journal_mode"), "wal");
        assert_eq!(pragma("synchronous"), "2", "FULL");
        assert_eq!(pragma("secure_delete"), "1");
        assert_eq!(pragma("foreign_keys"), "1");
        assert_eq!(pragma("temp_store"), "2", "MEMORY");
        assert_eq!(pragma("cache_size"), format!("-{CACHE_KIB}"));
        assert_eq!(pragma("journal_size_limit"), JOURNAL_SIZE_LIMIT_BYTES.to_string());
        assert_eq!(pragma("cipher_page_size"), "4096");
        assert_eq!(pragma("cipher_provider"), "openssl");
        assert_eq!(pragma("busy_timeout"), BUSY_TIMEOUT.as_millis().to_string());
    }

    #[test]
    fn disk_full_rolls_back_the_batch_and_keeps_earlier_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(dir.path(), &key(1)).unwrap();
        store
            .apply(|batch| {
                for i in 0..20u8 {
                    batch.put_setting(&format!("kept-{i}"), &[i; 500])?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        // No page may be added from now on: the file system is "full".
        let pages: i64 = store.conn.query_row("PRAGMA page_count", [], |row| row.get(0)).unwrap();
        store.conn_mut().execute_batch(&format!("PRAGMA max_page_count = {pages}")).unwrap();

        let err = store
            .apply(|batch| {
                // Fits in a page with room: written, then rolled back.
                batch.put_setting("kept-0", b"changed")?;
                for i in 0..20u8 {
                    batch.put_setting(&format!("lost-{i}"), &[i; 4000])?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::DiskFull), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the disk is full: nothing of this change was saved; free some space and try again"
        );

        // Every earlier row is whole, no row of the failed batch is there.
        for i in 0..20u8 {
            assert_eq!(store.load_setting(&format!("kept-{i}")).unwrap(), Some(vec![i; 500]));
            assert_eq!(store.load_setting(&format!("lost-{i}")).unwrap(), None);
        }
        store.integrity_check().unwrap();

        // Space freed: the same batch goes through.
        store.conn_mut().execute_batch("PRAGMA max_page_count = 1073741823").unwrap();
        store.apply(|batch| batch.put_setting("lost-0", &[0; 4000])).unwrap();
        drop(store);
        let store = Store::open(dir.path(), &key(1)).unwrap();
        assert_eq!(store.load_setting("kept-0").unwrap(), Some(vec![0; 500]));
        assert_eq!(store.load_setting("lost-0").unwrap(), Some(vec![0; 4000]));
    }

    #[test]
    fn newer_schema_is_refused_and_left_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(dir.path(), &key(1)).unwrap();
        let newer = crate::SCHEMA_VERSION + 1;
        store.conn_mut().execute_batch(&format!("PRAGMA user_version = {newer}")).unwrap();
        drop(store);
        let db = dir.path().join(DATABASE_FILE);
        let before = std::fs::read(&db).unwrap();

        let err = Store::open(dir.path(), &key(1)).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, supported }
                if found == newer && supported == crate::SCHEMA_VERSION),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "the database has schema version {newer}, newer than the {} this version of xchat knows: update xchat",
                crate::SCHEMA_VERSION
            )
        );
        assert_eq!(std::fs::read(&db).unwrap(), before);
    }
}
