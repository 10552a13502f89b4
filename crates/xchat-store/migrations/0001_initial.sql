-- Schema version 1 of a profile's store (docs/storage.md, "Schema").
--
-- Runs inside the migration's transaction: no BEGIN, COMMIT or
-- PRAGMA user_version here (src/migration.rs sets the version).
--
-- Records are the crypto crate's versioned `*_record` encodings; the store
-- never looks inside them. Peers are 32-byte x-only identity keys, devices
-- 16-byte device ids. Times are milliseconds since the Unix epoch, given by
-- the caller (the store reads no clock).

-- Our identity (Identity::to_record): one row.
CREATE TABLE identity (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    record BLOB NOT NULL
) STRICT;

-- This device's keys and certificate (Device::to_record): one row.
CREATE TABLE device (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    record BLOB NOT NULL
) STRICT;

-- This device's secret prekeys (PreKeys::to_record): one row.
CREATE TABLE prekeys (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    record BLOB NOT NULL
) STRICT;

-- The devices of other identities (and of our own identity's other devices),
-- each with its identity's certificate (DeviceCertificate::to_bytes) and the
-- time from which a verified revocation revokes it.
CREATE TABLE peer_devices (
    peer        BLOB NOT NULL CHECK (length(peer) = 32),
    device      BLOB NOT NULL CHECK (length(device) = 16),
    certificate BLOB NOT NULL,
    revoked_at  INTEGER CHECK (revoked_at >= 0),
    PRIMARY KEY (peer, device)
) STRICT;

-- One Double Ratchet session per peer device (Session::to_record). A session
-- exists only with a certified device: forgetting the device forgets it.
CREATE TABLE sessions (
    peer       BLOB NOT NULL CHECK (length(peer) = 32),
    device     BLOB NOT NULL CHECK (length(device) = 16),
    record     BLOB NOT NULL,
    updated_at INTEGER NOT NULL CHECK (updated_at >= 0),
    PRIMARY KEY (peer, device),
    FOREIGN KEY (peer, device) REFERENCES peer_devices (peer, device) ON DELETE CASCADE
) STRICT;

-- Small values of the profile, by name.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) STRICT;
