//! Encrypted backups of a whole profile (`docs/storage.md`, "Backups").
//!
//! A backup is the profile's database (every table: identity, device,
//! prekeys, contacts, sessions, history, outbox, settings) without its
//! vanishing messages, as one SQLite image encrypted by
//! `xchat_crypto::backup` under the identity's backup key, which only the
//! recovery phrase gives. Restoring needs the phrase (to derive the key and
//! to check that the backup is this identity's) and makes a new profile
//! with a new database key.
//!
//! The image is built in memory: SQLCipher exports the encrypted database
//! into an attached in-memory database, the vanishing messages are deleted
//! there, and the image is serialized and encrypted chunk by chunk into the
//! file. The decrypted image exists only in memory, never on disk (SQLite
//! frees its copy without wiping it, as it does its page cache).

use std::io::{BufWriter, Cursor, Read, Write};
use std::path::Path;

use rand_core::CryptoRng;
use rusqlite::{Connection, MAIN_DB, OptionalExtension};
use xchat_crypto::backup::{self as crypto_backup, BackupError};
use xchat_crypto::identity::Identity;
use zeroize::Zeroizing;

use crate::error::RecordKind;
use crate::migration;
use crate::{DatabaseKey, Store, StoreError, files};

/// Largest database image a backup may hold, in bytes (4 GiB): restoring
/// holds it in memory.
pub const MAX_BACKUP_IMAGE_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// The attached in-memory database an image is built in or read from.
const IMAGE_SCHEMA: &str = "backup_image";
/// [`IMAGE_SCHEMA`] for SQLite's C interface.
const IMAGE_SCHEMA_C: &std::ffi::CStr = c"backup_image";

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSummary {
    /// Contacts in it.
    pub contacts: u64,
    /// Messages of the history in it.
    pub messages: u64,
    /// Vanishing messages left out.
    pub vanishing_left_out: u64,
    /// Bytes of the database image (before encryption).
    pub image_bytes: u64,
}

impl Store {
    /// Writes a backup of this profile to `path` (a new file, written whole
    /// and then renamed into place, so a crash leaves no partial backup
    /// under that name). Vanishing messages are left out.
    ///
    /// # Errors
    /// [`StoreError::Record`] without a saved identity,
    /// [`StoreError::AlreadyExists`] when `path` exists, [`StoreError::Io`],
    /// [`StoreError::DiskFull`].
    pub fn export_backup(
        &mut self,
        path: &Path,
        rng: &mut impl CryptoRng,
    ) -> Result<BackupSummary, StoreError> {
        let identity = self.load_identity()?.ok_or_else(|| {
            StoreError::record(RecordKind::Identity, std::io::Error::other("no identity saved"))
        })?;
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(StoreError::AlreadyExists);
        }
        let conn = self.conn_mut();
        attach_image(conn)?;
        let result = build_image(conn).and_then(|summary| {
            let image = conn.serialize(IMAGE_SCHEMA_C)?;
            let summary = BackupSummary { image_bytes: image.len() as u64, ..summary };
            write_new_file(path, |file| {
                crypto_backup::encrypt(identity.backup_key(), &image[..], file, rng)
                    .map(|_| ())
                    .map_err(|err| match err {
                        xchat_crypto::file::FileError::Io(err) => StoreError::from(err),
                        other => StoreError::Io(std::io::Error::other(other)),
                    })
            })?;
            Ok(summary)
        });
        let detached = detach_image(conn);
        let summary = result?;
        detached?;
        Ok(summary)
    }

    /// Makes a new profile in `dir` keyed with `key` from the backup
    /// `reader` gives, for `identity` (restored from the recovery phrase).
    ///
    /// # Errors
    /// [`StoreError::Backup`] for a file that is not a backup, or does not
    /// decrypt with this identity's backup key (another phrase, or damage);
    /// [`StoreError::BackupOfAnotherIdentity`]; [`StoreError::TooLarge`]
    /// past [`MAX_BACKUP_IMAGE_BYTES`]; [`StoreError::SchemaTooNew`] for a
    /// backup of a newer xchat; the errors of [`Store::create`]. On an error
    /// after the profile was created, it holds nothing of the backup: delete
    /// `dir` and try again.
    pub fn import_backup(
        dir: &Path,
        key: &DatabaseKey,
        identity: &Identity,
        reader: impl Read,
    ) -> Result<Self, StoreError> {
        let image = decrypt_image(identity, reader)?;
        // Bring the image to this build's schema in a connection of its own.
        let mut staging = Connection::open_in_memory()?;
        let len = image.len();
        staging.deserialize_read_exact(MAIN_DB, Cursor::new(&image[..]), len, false)?;
        drop(image);
        migration::check_supported(migration::schema_version(&staging)?)?;
        migration::migrate(&mut staging)?;
        let theirs: Option<Vec<u8>> = staging
            .query_row("SELECT record FROM identity WHERE id = 1", [], |row| row.get(0))
            .optional()?;
        let theirs = Zeroizing::new(theirs.ok_or(StoreError::BackupOfAnotherIdentity)?);
        let theirs = Identity::from_record(&theirs)
            .map_err(|err| StoreError::record(RecordKind::Identity, err))?;
        if theirs.public() != identity.public() {
            return Err(StoreError::BackupOfAnotherIdentity);
        }
        let mut store = Self::create(dir, key)?;
        copy_between(&staging, store.conn_mut())?;
        Ok(store)
    }
}

/// Copies every row of every table of `from` into the same table of `to`
/// (same schema version), value by value, in one transaction of `to` whose
/// foreign keys are checked at its commit.
fn copy_between(from: &Connection, to: &mut Connection) -> Result<(), StoreError> {
    let tx = to.transaction()?;
    tx.execute_batch("PRAGMA defer_foreign_keys = ON")?;
    for table in table_names(from, "main")? {
        let mut select = from.prepare(&format!("SELECT * FROM main.\"{table}\""))?;
        let columns = select.column_count();
        let placeholders = vec!["?"; columns].join(", ");
        let mut insert =
            tx.prepare(&format!("INSERT INTO main.\"{table}\" VALUES ({placeholders})"))?;
        let mut rows = select.query([])?;
        while let Some(row) = rows.next()? {
            let values = (0..columns)
                .map(|column| row.get::<_, rusqlite::types::Value>(column))
                .collect::<Result<Vec<_>, _>>()?;
            insert.execute(rusqlite::params_from_iter(values))?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The tables of `schema`, quoted for use as names (they come from a
/// schema our migrations made; quoting keeps an odd name a name).
fn table_names(conn: &Connection, schema: &str) -> Result<Vec<String>, StoreError> {
    let mut statement = conn.prepare(&format!(
        "SELECT name FROM {schema}.sqlite_schema
         WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ))?;
    let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
    let names: Vec<String> = rows.collect::<Result<_, _>>()?;
    Ok(names.into_iter().map(|name| name.replace('"', "\"\"")).collect())
}

/// Attaches an empty in-memory plaintext database as [`IMAGE_SCHEMA`].
fn attach_image(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(&format!("ATTACH DATABASE ':memory:' AS {IMAGE_SCHEMA} KEY ''"))?;
    Ok(())
}

fn detach_image(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(&format!("DETACH DATABASE {IMAGE_SCHEMA}"))?;
    Ok(())
}

/// Copies the profile into the image and deletes its vanishing messages
/// there (with what refers to them).
fn build_image(conn: &mut Connection) -> Result<BackupSummary, StoreError> {
    // The schema first: tables, then their indexes (SQLite keeps each
    // statement as it was written by the migrations).
    let statements: Vec<String> = {
        let mut statement = conn.prepare(
            "SELECT sql FROM main.sqlite_schema
             WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'
             ORDER BY type = 'table' DESC, rowid",
        )?;
        let rows = statement.query_map([], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for sql in statements {
        let qualified = ["CREATE TABLE ", "CREATE INDEX ", "CREATE UNIQUE INDEX "]
            .iter()
            .find_map(|prefix| {
                sql.strip_prefix(prefix).map(|rest| format!("{prefix}{IMAGE_SCHEMA}.{rest}"))
            })
            .ok_or(StoreError::Corrupt(crate::CorruptPart::Database))?;
        conn.execute_batch(&qualified)?;
    }
    let tx = conn.transaction()?;
    tx.execute_batch("PRAGMA defer_foreign_keys = ON")?;
    copy_rows(&tx, "main", IMAGE_SCHEMA)?;
    tx.commit()?;
    let version = migration::schema_version(conn)?;
    let s = IMAGE_SCHEMA;
    conn.execute_batch(&format!(
        "PRAGMA {s}.user_version = {version};
         CREATE TEMP TABLE vanishing AS SELECT id FROM {s}.messages WHERE timer_seconds != 0;
         DELETE FROM {s}.seen_envelopes WHERE message IN (SELECT id FROM temp.vanishing);
         DELETE FROM {s}.outbox WHERE message IN (SELECT id FROM temp.vanishing);
         DELETE FROM {s}.waiting WHERE message IN (SELECT id FROM temp.vanishing);
         DELETE FROM {s}.transfers WHERE message IN (SELECT id FROM temp.vanishing);
         DELETE FROM {s}.messages WHERE id IN (SELECT id FROM temp.vanishing);"
    ))?;
    let count = |sql: &str| -> Result<u64, StoreError> {
        let n: i64 = conn.query_row(sql, [], |row| row.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    let summary = BackupSummary {
        contacts: count(&format!("SELECT count(*) FROM {s}.contacts"))?,
        messages: count(&format!("SELECT count(*) FROM {s}.messages"))?,
        vanishing_left_out: count("SELECT count(*) FROM temp.vanishing")?,
        image_bytes: 0,
    };
    conn.execute_batch(&format!("DROP TABLE temp.vanishing; VACUUM {s};"))?;
    Ok(summary)
}

/// Copies the rows of every table of schema `from` into the same table of
/// schema `to` of the same connection.
fn copy_rows(conn: &Connection, from: &str, to: &str) -> Result<(), StoreError> {
    for table in table_names(conn, from)? {
        conn.execute_batch(&format!(
            "INSERT INTO {to}.\"{table}\" SELECT * FROM {from}.\"{table}\""
        ))?;
    }
    Ok(())
}

/// Decrypts a backup into memory, refusing more than
/// [`MAX_BACKUP_IMAGE_BYTES`].
fn decrypt_image(identity: &Identity, reader: impl Read) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    struct Limited(Zeroizing<Vec<u8>>);
    impl Write for Limited {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if (self.0.len() + buf.len()) as u64 > MAX_BACKUP_IMAGE_BYTES {
                return Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, "backup image"));
            }
            // Grow by hand, so no reallocation leaves a copy behind unwiped.
            if self.0.capacity() < self.0.len() + buf.len() {
                let mut grown =
                    Zeroizing::new(Vec::with_capacity((self.0.len() + buf.len()).max(1 << 20) * 2));
                grown.extend_from_slice(&self.0);
                self.0 = grown;
            }
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut image = Limited(Zeroizing::new(Vec::new()));
    match crypto_backup::decrypt(identity.backup_key(), reader, &mut image) {
        Ok(_) => Ok(image.0),
        Err(BackupError::Io(err)) if err.kind() == std::io::ErrorKind::FileTooLarge => {
            Err(StoreError::TooLarge {
                what: "backup image",
                len: usize::MAX,
                max: usize::try_from(MAX_BACKUP_IMAGE_BYTES).unwrap_or(usize::MAX),
            })
        }
        Err(BackupError::Io(err)) => Err(StoreError::from(err)),
        Err(err) => Err(StoreError::Backup(err)),
    }
}

/// Writes a new owner-only file at `path` through a temporary file in the
/// same directory: synced, then renamed into place, then the directory
/// synced.
fn write_new_file(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<std::fs::File>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".partial");
    let temporary = std::path::PathBuf::from(temporary);
    let result = (|| {
        let file = files::create_new_private(&temporary)?;
        let mut writer = BufWriter::new(file);
        write(&mut writer)?;
        let file = writer.into_inner().map_err(|err| StoreError::from(err.into_error()))?;
        file.sync_all().map_err(StoreError::from)?;
        std::fs::rename(&temporary, path).map_err(StoreError::from)?;
        files::sync_parent(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}
