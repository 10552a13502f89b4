//! The store's one error type, and how SQLite's result codes map onto it.
//!
//! Each variant needs a different answer from the user (`docs/storage.md`,
//! "Errors"): a wrong passphrase is typed again, a full disk is freed, a
//! corrupt database is restored from a backup, a busy one is closed in the
//! other program. Messages are lowercase and never hold a passphrase, a key,
//! a record or a plaintext.

use rusqlite::ErrorCode;

/// What went wrong opening, reading or writing a profile's store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The passphrase or key file is not the one this profile was created
    /// with. Nothing was read or written.
    #[error("wrong passphrase or key file")]
    WrongKey,
    /// The profile is opened with a passphrase but a key file was given, or
    /// the other way round.
    #[error("this profile is opened with {expected}, not {given}")]
    WrongKeyKind {
        /// How the profile is opened.
        expected: crate::KeyKind,
        /// What was given.
        given: crate::KeyKind,
    },
    /// The disk (or the database's size limit) is full. The write was
    /// rolled back whole; everything saved before is intact.
    #[error("the disk is full: nothing of this change was saved; free some space and try again")]
    DiskFull,
    /// A file of the profile is damaged: restore it from a backup.
    #[error("the profile's {0} is corrupt")]
    Corrupt(CorruptPart),
    /// Another connection holds the database's write lock for longer than
    /// the busy timeout: another xchat process has this profile open.
    #[error("the database is in use by another process")]
    Busy,
    /// No profile in this directory.
    #[error("no profile in this directory")]
    NotFound,
    /// A profile already exists in this directory.
    #[error("a profile already exists in this directory")]
    AlreadyExists,
    /// The database was written by a newer xchat whose schema this build
    /// does not know. Nothing was changed.
    #[error(
        "the database has schema version {found}, newer than the {supported} this version of xchat knows: update xchat"
    )]
    SchemaTooNew {
        /// `PRAGMA user_version` of the file.
        found: u32,
        /// [`crate::SCHEMA_VERSION`].
        supported: u32,
    },
    /// A migration step failed; the database stays at its previous version.
    #[error("migration to schema version {version} failed")]
    Migration {
        /// The version the failed step would have reached.
        version: u32,
        /// SQLite's error.
        #[source]
        source: DatabaseError,
    },
    /// A stored record that the crypto crate refuses to restore.
    #[error("the stored {kind} record cannot be restored")]
    Record {
        /// Which record.
        kind: RecordKind,
        /// The crypto crate's reason (it names no secret).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A backup file that is not one, of an unknown version, or that does
    /// not decrypt with this recovery phrase's key.
    #[error(transparent)]
    Backup(xchat_crypto::backup::BackupError),
    /// A backup that decrypts but holds another identity than the recovery
    /// phrase's.
    #[error("the backup is of another identity than this recovery phrase's")]
    BackupOfAnotherIdentity,
    /// A value longer than the store accepts.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// What was too long.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// An empty passphrase protects nothing: use a key file instead.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// Key derivation parameters outside the accepted range.
    #[error("key derivation parameters out of range: {0}")]
    KdfParams(&'static str),
    /// Argon2id failed (it could not allocate its memory).
    #[error("key derivation failed: {0}")]
    KeyDerivation(argon2::Error),
    /// A key file that others can read or write.
    #[error("the key file is accessible to other users (mode {mode:o}): make it 0600")]
    KeyFilePermissions {
        /// The file's permission bits.
        mode: u32,
    },
    /// A key file that is not exactly [`crate::KEY_FILE_BYTES`] bytes.
    #[error("the key file has {len} bytes, not {expected}")]
    KeyFileLength {
        /// Its length.
        len: u64,
        /// [`crate::KEY_FILE_BYTES`].
        expected: usize,
    },
    /// A file-system error outside SQLite.
    #[error("i/o error: {0}")]
    Io(#[source] std::io::Error),
    /// Any other SQLite error: a bug of xchat or of the system, not of the
    /// user's data.
    #[error("database error: {0}")]
    Database(#[source] DatabaseError),
}

/// Which file or part of the profile is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptPart {
    /// The database's pages (SQLITE_CORRUPT, or a page whose SQLCipher HMAC
    /// does not verify).
    Database,
    /// The key header checks the key, but the database's first page does not
    /// open with it: the file is damaged or is not this profile's.
    DatabaseHeader,
    /// The database file is missing while its key header is there.
    MissingDatabase,
    /// The plaintext key header next to the database.
    KeyHeader,
}

impl std::fmt::Display for CorruptPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Database => "database",
            Self::DatabaseHeader => {
                "database (its first page does not open with the profile's key)"
            }
            Self::MissingDatabase => "database (the file is missing)",
            Self::KeyHeader => "key header",
        })
    }
}

/// Which crypto record failed to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordKind {
    /// `identity`.
    Identity,
    /// `device`.
    Device,
    /// `prekeys`.
    PreKeys,
    /// A row of `sessions`.
    Session,
    /// A certificate in `peer_devices`.
    PeerDevice,
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Identity => "identity",
            Self::Device => "device",
            Self::PreKeys => "prekeys",
            Self::Session => "session",
            Self::PeerDevice => "peer device",
        })
    }
}

/// An SQLite error that is none of the conditions [`StoreError`] names.
/// Opaque, so the public API does not expose rusqlite's types; its message
/// is SQLite's (a result code and text such as "UNIQUE constraint failed:
/// sessions.peer"), which holds no user data because every value is bound.
#[derive(Debug)]
pub struct DatabaseError(rusqlite::Error);

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// SQLite's primary result code of `err`, if it came from SQLite.
fn sqlite_code(err: &rusqlite::Error) -> Option<ErrorCode> {
    match err {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.code),
        _ => None,
    }
}

impl From<rusqlite::Error> for StoreError {
    /// The mapping of `docs/storage.md`: SQLITE_NOTADB is a key that does not
    /// decrypt the first page, SQLITE_FULL a full disk or a reached
    /// `max_page_count`, SQLITE_CORRUPT a damaged page, SQLITE_BUSY and
    /// SQLITE_LOCKED another connection's lock.
    fn from(err: rusqlite::Error) -> Self {
        match sqlite_code(&err) {
            Some(ErrorCode::NotADatabase) => Self::WrongKey,
            Some(ErrorCode::DiskFull) => Self::DiskFull,
            Some(ErrorCode::DatabaseCorrupt) => Self::Corrupt(CorruptPart::Database),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Self::Busy,
            _ => Self::Database(DatabaseError(err)),
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(err: std::io::Error) -> Self {
        match err.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Self::DiskFull,
            _ => Self::Io(err),
        }
    }
}

impl StoreError {
    /// The error of a failed migration step: the conditions the user must act
    /// on keep their own variant, anything else names the step.
    pub(crate) fn migration(version: u32, err: rusqlite::Error) -> Self {
        match Self::from(err) {
            Self::Database(source) => Self::Migration { version, source },
            other => other,
        }
    }

    /// A crypto crate's refusal of a stored record.
    pub(crate) fn record(
        kind: RecordKind,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Record { kind, source: Box::new(source) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn sqlite_codes_map_to_the_conditions_the_user_acts_on() {
        use rusqlite::ffi;
        assert!(matches!(StoreError::from(failure(ffi::SQLITE_NOTADB)), StoreError::WrongKey));
        assert!(matches!(StoreError::from(failure(ffi::SQLITE_FULL)), StoreError::DiskFull));
        assert!(matches!(
            StoreError::from(failure(ffi::SQLITE_CORRUPT)),
            StoreError::Corrupt(CorruptPart::Database)
        ));
        assert!(matches!(StoreError::from(failure(ffi::SQLITE_BUSY)), StoreError::Busy));
        assert!(matches!(StoreError::from(failure(ffi::SQLITE_LOCKED)), StoreError::Busy));
        // Extended codes keep their primary meaning.
        assert!(matches!(StoreError::from(failure(ffi::SQLITE_BUSY_SNAPSHOT)), StoreError::Busy));
        assert!(matches!(
            StoreError::from(failure(ffi::SQLITE_CORRUPT_INDEX)),
            StoreError::Corrupt(CorruptPart::Database)
        ));
        assert!(matches!(
            StoreError::from(failure(ffi::SQLITE_CONSTRAINT)),
            StoreError::Database(_)
        ));
    }

    #[test]
    fn a_full_disk_outside_sqlite_is_disk_full() {
        let err = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(matches!(StoreError::from(err), StoreError::DiskFull));
    }

    #[test]
    fn a_failed_migration_keeps_the_conditions_the_user_acts_on() {
        assert!(matches!(
            StoreError::migration(1, failure(rusqlite::ffi::SQLITE_FULL)),
            StoreError::DiskFull
        ));
        assert!(matches!(
            StoreError::migration(1, failure(rusqlite::ffi::SQLITE_ERROR)),
            StoreError::Migration { version: 1, .. }
        ));
    }
}
