//! The cryptographic state of a profile: our identity, our device and its
//! prekeys, and the peer devices their identities certified (with their
//! revocations). Sessions are written with the messenger's peer records
//! (`messenger.rs`).
//!
//! Everything secret goes through the crypto crate's versioned records
//! (`to_record`/`from_record`); the store never looks inside them. A record
//! is read straight from SQLite's row buffer into `from_record`, without an
//! owned copy on our side; what `to_record` returns is wiped when dropped.

use rusqlite::{OptionalExtension, Row};
use xchat_crypto::bundle::PreKeys;
use xchat_crypto::device::{
    Device, DeviceCertificate, DeviceId, Revocation, UnverifiedDeviceCertificate,
};
use xchat_crypto::identity::Identity;
use xchat_crypto::signature::VerifyingKey;

use crate::error::{CorruptPart, RecordKind};
use crate::{Batch, Store, StoreError};

/// A peer's device as stored: its verified certificate, and from when it is
/// revoked, if it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDevice {
    certificate: DeviceCertificate,
    revoked_at_ms: Option<u64>,
}

impl PeerDevice {
    /// The identity's certificate of the device, verified again on load.
    pub fn certificate(&self) -> &DeviceCertificate {
        &self.certificate
    }

    /// From when the device is revoked, in ms since the Unix epoch.
    pub fn revoked_at_ms(&self) -> Option<u64> {
        self.revoked_at_ms
    }
}

impl Batch<'_> {
    /// Saves our identity (replacing the one saved before).
    ///
    /// # Errors
    /// The errors of [`Store::apply`].
    pub fn put_identity(&mut self, identity: &Identity) -> Result<(), StoreError> {
        self.put_single("identity", &identity.to_record())
    }

    /// Saves this device's keys and certificate.
    ///
    /// # Errors
    /// The errors of [`Store::apply`].
    pub fn put_device(&mut self, device: &Device) -> Result<(), StoreError> {
        self.put_single("device", &device.to_record())
    }

    /// Saves this device's prekeys; after every change to them (a one-time
    /// prekey consumed must never be used again).
    ///
    /// # Errors
    /// The errors of [`Store::apply`].
    pub fn put_prekeys(&mut self, prekeys: &PreKeys) -> Result<(), StoreError> {
        self.put_single("prekeys", &prekeys.to_record())
    }

    /// Saves a peer's device under the identity that certified it. A device
    /// saved again gets the new certificate and keeps its revocation: a
    /// revoked device stays revoked.
    ///
    /// # Errors
    /// The errors of [`Store::apply`].
    pub fn put_peer_device(&mut self, certificate: &DeviceCertificate) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO peer_devices (peer, device, certificate) VALUES (?1, ?2, ?3)
             ON CONFLICT (peer, device) DO UPDATE SET certificate = excluded.certificate",
            (
                &certificate.identity().to_bytes()[..],
                &certificate.device_id().as_bytes()[..],
                &certificate.to_bytes()[..],
            ),
        )?;
        Ok(())
    }

    /// Marks a peer's device revoked from the time of a verified revocation
    /// (the earliest, if revoked twice). Returns whether the device is known;
    /// a revocation of an unknown device is not kept.
    ///
    /// # Errors
    /// The errors of [`Store::apply`].
    pub fn revoke_peer_device(&mut self, revocation: &Revocation) -> Result<bool, StoreError> {
        let updated = self.conn().execute(
            "UPDATE peer_devices SET revoked_at = min(coalesce(revoked_at, ?3), ?3)
             WHERE peer = ?1 AND device = ?2",
            (
                &revocation.identity().to_bytes()[..],
                &revocation.device_id().as_bytes()[..],
                sql_ms(revocation.revoked_at_ms()),
            ),
        )?;
        Ok(updated > 0)
    }

    /// Replaces the one row of `table` (a name of this module, never input).
    pub(crate) fn put_single(
        &mut self,
        table: &'static str,
        record: &[u8],
    ) -> Result<(), StoreError> {
        self.conn().execute(
            &format!(
                "INSERT INTO {table} (id, record) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record"
            ),
            [record],
        )?;
        Ok(())
    }
}

impl Store {
    /// Our identity, if saved.
    ///
    /// # Errors
    /// [`StoreError::Record`] for a record the crypto crate refuses,
    /// [`StoreError::Corrupt`] for a damaged page.
    pub fn load_identity(&self) -> Result<Option<Identity>, StoreError> {
        self.load_single("identity", |record| {
            Identity::from_record(record)
                .map_err(|err| StoreError::record(RecordKind::Identity, err))
        })
    }

    /// This device, if saved; `identity` is our identity's signing key, which
    /// certified it (`Device::from_record` checks the certificate).
    ///
    /// # Errors
    /// As [`Store::load_identity`].
    pub fn load_device(&self, identity: &VerifyingKey) -> Result<Option<Device>, StoreError> {
        self.load_single("device", |record| {
            Device::from_record(record, identity)
                .map_err(|err| StoreError::record(RecordKind::Device, err))
        })
    }

    /// This device's prekeys, if saved.
    ///
    /// # Errors
    /// As [`Store::load_identity`].
    pub fn load_prekeys(&self) -> Result<Option<PreKeys>, StoreError> {
        self.load_single("prekeys", |record| {
            PreKeys::from_record(record).map_err(|err| StoreError::record(RecordKind::PreKeys, err))
        })
    }

    /// The device `device` of `peer`, its certificate verified again against
    /// `peer`.
    ///
    /// # Errors
    /// [`StoreError::Record`] for a certificate that does not verify, and as
    /// [`Store::load_identity`].
    pub fn load_peer_device(
        &self,
        peer: &VerifyingKey,
        device: DeviceId,
    ) -> Result<Option<PeerDevice>, StoreError> {
        self.conn()
            .query_row(
                "SELECT certificate, revoked_at FROM peer_devices WHERE peer = ?1 AND device = ?2",
                (&peer.to_bytes()[..], &device.as_bytes()[..]),
                |row| Ok(peer_device_of(row, peer)),
            )
            .optional()?
            .transpose()
    }

    /// Every device of `peer`, by device id.
    ///
    /// # Errors
    /// As [`Store::load_peer_device`].
    pub fn load_peer_devices(&self, peer: &VerifyingKey) -> Result<Vec<PeerDevice>, StoreError> {
        let mut statement = self.conn().prepare_cached(
            "SELECT certificate, revoked_at FROM peer_devices WHERE peer = ?1 ORDER BY device",
        )?;
        let mut rows = statement.query([&peer.to_bytes()[..]])?;
        let mut devices = Vec::new();
        while let Some(row) = rows.next()? {
            devices.push(peer_device_of(row, peer)?);
        }
        Ok(devices)
    }

    /// Restores the one row of `table` with `restore`.
    fn load_single<T>(
        &self,
        table: &'static str,
        restore: impl FnOnce(&[u8]) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.conn()
            .query_row(&format!("SELECT record FROM {table} WHERE id = 1"), [], |row| {
                Ok(blob(row, 0).and_then(restore))
            })
            .optional()?
            .transpose()
    }
}

fn peer_device_of(row: &Row<'_>, peer: &VerifyingKey) -> Result<PeerDevice, StoreError> {
    let certificate = UnverifiedDeviceCertificate::from_bytes(blob(row, 0)?)
        .map_err(|err| StoreError::record(RecordKind::PeerDevice, err))?
        .verify(peer)
        .map_err(|err| StoreError::record(RecordKind::PeerDevice, err))?;
    let revoked_at: Option<i64> = row.get(1)?;
    // The schema keeps it non-negative.
    let revoked_at_ms = revoked_at.map(u64::try_from).transpose().map_err(|_| corrupt())?;
    Ok(PeerDevice { certificate, revoked_at_ms })
}

/// The blob in `column`, borrowed from SQLite's row buffer (no copy).
pub(crate) fn blob<'a>(row: &'a Row<'_>, column: usize) -> Result<&'a [u8], StoreError> {
    Ok(row.get_ref(column)?.as_blob().map_err(rusqlite::Error::from)?)
}

fn corrupt() -> StoreError {
    StoreError::Corrupt(CorruptPart::Database)
}

/// A time in ms as SQLite's signed 64-bit integer; past `i64::MAX` ms (292
/// million years) it saturates, which keeps times in order.
pub(crate) fn sql_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}
