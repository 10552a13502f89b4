//! xchat's encrypted store: one SQLCipher database per profile.
//!
//! This crate is the layer that touches the disk (`docs/architecture.md`):
//! the node opens a profile's [`Store`] and applies every `Write` effect of
//! one input of the messenger core in one [`Store::apply`] transaction,
//! before it sends or notifies anything for that input. It holds no rules of
//! the messenger; the cryptographic state goes in and out through the crypto
//! crate's versioned records, which the store never looks inside. Like the
//! layers below it, it reads no clock and no OS randomness: times and an RNG
//! are parameters (only `xchat-node` touches the OS for them).
//!
//! - [`DatabaseKey`]: Argon2id of the user's passphrase ([`KdfParams`]), or a
//!   32-byte key file, given to SQLCipher as a raw key;
//! - [`Store`]: create, open (checking the key, migrating the schema to
//!   [`SCHEMA_VERSION`]), read; [`Batch`]: the writes of one transaction;
//! - [`StoreError`]: distinct `WrongKey`, `DiskFull`, `Corrupt` and `Busy`,
//!   each with a message for the user.
//!
//! The files, pragmas, key derivation and error mapping are described in
//! `docs/storage.md`.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use rand_core::SeedableRng;
//! use xchat_store::{DatabaseKey, KdfParams, Store, StoreError};
//!
//! let dir = tempfile::tempdir()?;
//! // The node passes the OS random generator.
//! let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
//! let key = DatabaseKey::new_from_passphrase("correct horse", KdfParams::DESKTOP, &mut rng)?;
//! let mut store = Store::create(dir.path(), &key)?;
//! store.apply(|batch| batch.put_setting("theme", b"dark"))?;
//! drop(store);
//!
//! let store = Store::open_with_passphrase(dir.path(), "correct horse")?;
//! assert_eq!(store.load_setting("theme")?.as_deref(), Some(&b"dark"[..]));
//! assert!(matches!(
//!     Store::open_with_passphrase(dir.path(), "wrong horse"),
//!     Err(StoreError::WrongKey)
//! ));
//! # Ok(())
//! # }
//! ```

mod backup;
mod crypto_state;
mod error;
mod files;
mod header;
mod key;
mod messenger;
mod migration;
mod settings;
mod store;

pub use backup::{BackupSummary, MAX_BACKUP_IMAGE_BYTES};
pub use crypto_state::PeerDevice;
pub use error::{CorruptPart, DatabaseError, RecordKind, StoreError};
pub use header::HEADER_FILE;
pub use key::{
    DatabaseKey, KEY_BYTES, KEY_FILE_BYTES, KdfParams, KeyKind, MAX_KDF_ITERATIONS, MAX_KDF_LANES,
    MAX_KDF_MEMORY_KIB, MAX_PASSPHRASE_BYTES, SALT_BYTES,
};
pub use messenger::MAX_HISTORY_PAGE;
pub use migration::SCHEMA_VERSION;
pub use settings::{MAX_SETTING_KEY_BYTES, MAX_SETTING_VALUE_BYTES};
pub use store::{BUSY_TIMEOUT, Batch, DATABASE_FILE, JOURNAL_SIZE_LIMIT_BYTES, Store};
