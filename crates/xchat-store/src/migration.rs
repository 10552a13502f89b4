//! Schema migrations: `PRAGMA user_version` is the schema's version, and
//! each version has one SQL batch in `migrations/`, applied in order inside
//! one transaction (`docs/storage.md`, "Migrations").
//!
//! The rule: a released version's file never changes. A new table or column
//! is a new file, `migrations/000N_<what>.sql`, and a new entry at the end of
//! [`MIGRATIONS`]; a fixture database of every released version is kept in
//! `tests/fixtures/` and opened by a test. Version 1 is frozen since version
//! 2 exists (its fixture is migrated by `tests/fixture.rs`).

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;
use crate::error::CorruptPart;

/// One migration: the SQL that takes the schema from `version - 1` to
/// `version`.
pub(crate) struct Migration {
    pub(crate) version: u32,
    pub(crate) sql: &'static str,
}

/// Every migration, in order; the last one's version is the current schema.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, sql: include_str!("../migrations/0001_initial.sql") },
    Migration { version: 2, sql: include_str!("../migrations/0002_call_entries.sql") },
    Migration { version: 3, sql: include_str!("../migrations/0003_outbox_more_messages.sql") },
];

/// The schema version this build writes and reads.
// A handful of migrations: far below u32.
#[allow(clippy::cast_possible_truncation)]
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The file's schema version, `PRAGMA user_version`.
pub(crate) fn schema_version(conn: &Connection) -> Result<u32, StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    // SQLite keeps a signed 32-bit value; xchat never writes a negative one.
    u32::try_from(version).map_err(|_| StoreError::Corrupt(CorruptPart::Database))
}

/// Refuses a file of a schema newer than this build's, before anything is
/// written to it.
pub(crate) fn check_supported(version: u32) -> Result<(), StoreError> {
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found: version, supported: SCHEMA_VERSION });
    }
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`]; returns the version it found.
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    migrate_with(conn, MIGRATIONS)
}

/// Applies the steps of `migrations` above the file's version in one
/// transaction: all of them, or none (the file keeps its version).
pub(crate) fn migrate_with(
    conn: &mut Connection,
    migrations: &[Migration],
) -> Result<u32, StoreError> {
    let target = migrations.last().map_or(0, |last| last.version);
    // The write lock is taken first, so two processes opening one profile
    // cannot both run a step: the second waits, then sees the new version.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = schema_version(&tx)?;
    if found > target {
        return Err(StoreError::SchemaTooNew { found, supported: target });
    }
    if found == target {
        return Ok(found);
    }
    for step in migrations.iter().filter(|step| step.version > found) {
        tx.execute_batch(step.sql).map_err(|err| StoreError::migration(step.version, err))?;
    }
    // PRAGMA takes no bound parameter; `target` is an integer of this code.
    tx.execute_batch(&format!("PRAGMA user_version = {target}"))
        .map_err(|err| StoreError::migration(target, err))?;
    tx.commit().map_err(|err| StoreError::migration(target, err))?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Connection {
        Connection::open_in_memory().unwrap()
    }

    fn tables(conn: &Connection) -> Vec<String> {
        let mut statement = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap();
        statement.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (index, step) in MIGRATIONS.iter().enumerate() {
            assert_eq!(step.version as usize, index + 1);
        }
        assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
    }

    #[test]
    fn migration_files_leave_transactions_and_version_to_the_runner() {
        for step in MIGRATIONS {
            let code: String = step
                .sql
                .lines()
                .filter(|line| !line.trim().starts_with("--"))
                .collect::<String>()
                .to_ascii_uppercase();
            for word in ["BEGIN", "COMMIT", "ROLLBACK", "USER_VERSION", "VACUUM"] {
                assert!(!code.contains(word), "migration {} contains {word}", step.version);
            }
        }
    }

    #[test]
    fn migrating_an_empty_database_creates_schema_one() {
        let mut conn = memory();
        assert_eq!(migrate(&mut conn).unwrap(), 0);
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(
            tables(&conn),
            [
                "contacts",
                "conversations",
                "device",
                "identity",
                "messages",
                "outbox",
                "peer_devices",
                "prekeys",
                "received_ids",
                "seen_envelopes",
                "sessions",
                "settings",
                "transfers",
                "waiting"
            ]
        );
    }

    #[test]
    fn migrating_twice_changes_nothing() {
        let mut conn = memory();
        migrate(&mut conn).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn failed_step_leaves_the_previous_version_whole() {
        let steps = [
            Migration { version: 1, sql: "CREATE TABLE a (x INTEGER) STRICT;" },
            Migration {
                version: 2,
                sql: "CREATE TABLE b (x INTEGER) STRICT; INSERT INTO missing VALUES (1);",
            },
        ];
        let mut conn = memory();
        let err = migrate_with(&mut conn, &steps).unwrap_err();
        assert!(matches!(err, StoreError::Migration { version: 2, .. }), "{err:?}");
        assert_eq!(schema_version(&conn).unwrap(), 0);
        assert!(tables(&conn).is_empty(), "step 1 was rolled back with step 2");

        migrate_with(&mut conn, &steps[..1]).unwrap();
        let err = migrate_with(&mut conn, &steps).unwrap_err();
        assert!(matches!(err, StoreError::Migration { version: 2, .. }));
        assert_eq!(schema_version(&conn).unwrap(), 1);
        assert_eq!(tables(&conn), ["a"]);
    }

    #[test]
    fn newer_schema_is_refused_without_change() {
        let mut conn = memory();
        conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1)).unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(
            err,
            StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION } if found == SCHEMA_VERSION + 1
        ));
        assert!(tables(&conn).is_empty());
        assert!(check_supported(SCHEMA_VERSION).is_ok());
        assert!(check_supported(SCHEMA_VERSION + 1).is_err());
    }

    #[test]
    fn schema_enforces_key_lengths_and_known_devices() {
        let mut conn = memory();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        migrate(&mut conn).unwrap();
        let short_peer = conn.execute(
            "INSERT INTO peer_devices (peer, device, certificate) VALUES (?1, ?2, x'00')",
            (&[0u8; 31][..], &[0u8; 16][..]),
        );
        assert!(short_peer.is_err());
        let unknown_device = conn.execute(
            "INSERT INTO sessions (peer, device, record, updated_at) VALUES (?1, ?2, x'00', 0)",
            (&[0u8; 32][..], &[0u8; 16][..]),
        );
        assert!(unknown_device.is_err());
        let second_identity =
            conn.execute("INSERT INTO identity (id, record) VALUES (2, x'00')", []);
        assert!(second_identity.is_err());
    }
}
