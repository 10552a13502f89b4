//! Small named values of the profile (preferences, counters), as bytes the
//! caller encodes.

use rusqlite::OptionalExtension;

use crate::{Batch, Store, StoreError};

/// Longest setting name, in bytes.
pub const MAX_SETTING_KEY_BYTES: usize = 128;
/// Largest setting value, in bytes: settings are small; bulk data has its
/// own tables.
pub const MAX_SETTING_VALUE_BYTES: usize = 64 * 1024;

impl Batch<'_> {
    /// Saves `value` under `key`, replacing any earlier value.
    ///
    /// # Errors
    /// [`StoreError::TooLarge`] beyond [`MAX_SETTING_KEY_BYTES`] or
    /// [`MAX_SETTING_VALUE_BYTES`], and the errors of [`Store::apply`].
    pub fn put_setting(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        if value.len() > MAX_SETTING_VALUE_BYTES {
            return Err(StoreError::TooLarge {
                what: "setting value",
                len: value.len(),
                max: MAX_SETTING_VALUE_BYTES,
            });
        }
        self.conn().execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )?;
        Ok(())
    }

    /// Forgets the setting `key`; whether it was set.
    ///
    /// # Errors
    /// The errors of [`Store::apply`].
    pub fn delete_setting(&mut self, key: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute("DELETE FROM settings WHERE key = ?1", [key])? > 0)
    }
}

impl Store {
    /// The value of the setting `key`, if set.
    ///
    /// # Errors
    /// [`StoreError::TooLarge`] for a key beyond [`MAX_SETTING_KEY_BYTES`],
    /// [`StoreError::Corrupt`] for a damaged page.
    pub fn load_setting(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        Ok(self
            .conn()
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |row| row.get(0))
            .optional()?)
    }
}

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.len() > MAX_SETTING_KEY_BYTES {
        return Err(StoreError::TooLarge {
            what: "setting name",
            len: key.len(),
            max: MAX_SETTING_KEY_BYTES,
        });
    }
    Ok(())
}
