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
-- each with its identity's certificate (DeviceCertificate::to_bytes), the
-- time from which a verified revocation revokes it, our handshake
-- initiation until the device answers it, and the ephemeral keys of the
-- initiations from it that we accepted (32 bytes each, concatenated).
CREATE TABLE peer_devices (
    peer                 BLOB NOT NULL CHECK (length(peer) = 32),
    device               BLOB NOT NULL CHECK (length(device) = 16),
    certificate          BLOB NOT NULL,
    revoked_at           INTEGER CHECK (revoked_at >= 0),
    initiation           BLOB,
    accepted_initiations BLOB NOT NULL DEFAULT x''
                         CHECK (length(accepted_initiations) % 32 = 0),
    PRIMARY KEY (peer, device)
) STRICT;

-- Double Ratchet sessions with a peer device (Session::to_record): slot 0
-- is the current session, slots 1 to 3 the sessions it replaced, newest
-- first. A session exists only with a certified device: forgetting the
-- device forgets its sessions.
CREATE TABLE sessions (
    peer   BLOB NOT NULL CHECK (length(peer) = 32),
    device BLOB NOT NULL CHECK (length(device) = 16),
    slot   INTEGER NOT NULL CHECK (slot BETWEEN 0 AND 3),
    record BLOB NOT NULL,
    PRIMARY KEY (peer, device, slot),
    FOREIGN KEY (peer, device) REFERENCES peer_devices (peer, device) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- The contact book. `previous_identity` is the identity before a key change
-- the user has not acknowledged yet (nothing is sent to the contact while
-- it is set).
CREATE TABLE contacts (
    id                BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    name              TEXT NOT NULL,
    identity          BLOB NOT NULL CHECK (length(identity) = 32),
    verified          INTEGER NOT NULL CHECK (verified IN (0, 1)),
    previous_identity BLOB CHECK (length(previous_identity) = 32),
    added_at          INTEGER NOT NULL CHECK (added_at >= 0)
) STRICT, WITHOUT ROWID;

-- A conversation's vanishing timer for new messages, in seconds (0: off).
CREATE TABLE conversations (
    contact       BLOB PRIMARY KEY NOT NULL REFERENCES contacts (id),
    timer_seconds INTEGER NOT NULL CHECK (timer_seconds >= 0)
) STRICT, WITHOUT ROWID;

-- The history. `direction`: 0 outgoing, 1 incoming. `status`: 1 pending,
-- 2 sent, 3 in mailbox, 4 delivered, 5 read, 6 failed (`fail_reason`:
-- 1 undeliverable, 2 no session), 7 unread, 8 seen. A vanished message's
-- row is deleted (secure_delete overwrites it).
CREATE TABLE messages (
    id            BLOB NOT NULL UNIQUE CHECK (length(id) = 16),
    contact       BLOB NOT NULL REFERENCES contacts (id),
    direction     INTEGER NOT NULL CHECK (direction IN (0, 1)),
    sent_at       INTEGER NOT NULL CHECK (sent_at >= 0),
    received_at   INTEGER NOT NULL CHECK (received_at >= 0),
    text          TEXT NOT NULL,
    file          BLOB CHECK (length(file) = 16),
    status        INTEGER NOT NULL CHECK (status BETWEEN 1 AND 8),
    fail_reason   INTEGER CHECK (fail_reason IN (1, 2)),
    timer_seconds INTEGER NOT NULL CHECK (timer_seconds >= 0),
    expires_at    INTEGER CHECK (expires_at >= 0)
) STRICT;

-- A page of a conversation, newest first: the order every device shows.
CREATE INDEX messages_history ON messages (contact, sent_at, id);
-- Messages that may still change on their own: outgoing ones that may get
-- a receipt, incoming ones not read yet (loaded at startup).
CREATE INDEX messages_open ON messages (id)
    WHERE (direction = 0 AND status NOT IN (5, 6)) OR (direction = 1 AND status = 7);
-- Messages whose vanishing timer runs.
CREATE INDEX messages_expiring ON messages (expires_at) WHERE expires_at IS NOT NULL;

-- Files offered in conversations (xchat_core::transfer): the descriptor's
-- fields (the key decrypts the file: this table is as secret as the
-- history), the device that offered a received file, and where the transfer
-- stands. `direction` as in `messages`; `state`: 1 offered, 2 accepted,
-- 3 transferring, 4 complete, 5 failed (`fail_reason`: 1 unreachable,
-- 2 corrupt, 3 cancelled, 4 no space).
CREATE TABLE transfers (
    file        BLOB PRIMARY KEY NOT NULL CHECK (length(file) = 16),
    message     BLOB NOT NULL CHECK (length(message) = 16),
    contact     BLOB NOT NULL REFERENCES contacts (id),
    direction   INTEGER NOT NULL CHECK (direction IN (0, 1)),
    source      BLOB CHECK (length(source) = 16),
    name        TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    size        INTEGER NOT NULL CHECK (size >= 0),
    hash        BLOB NOT NULL CHECK (length(hash) = 32),
    key         BLOB NOT NULL CHECK (length(key) = 32),
    state       INTEGER NOT NULL CHECK (state BETWEEN 1 AND 5),
    fail_reason INTEGER CHECK (fail_reason BETWEEN 1 AND 4),
    chunks_done INTEGER NOT NULL CHECK (chunks_done >= 0),
    updated_at  INTEGER NOT NULL CHECK (updated_at >= 0)
) STRICT, WITHOUT ROWID;

-- Transfers the messenger follows (all but complete ones), loaded at startup.
CREATE INDEX transfers_open ON transfers (file) WHERE state != 4;

-- Ids of received messages, oldest first, to refuse a duplicate even after
-- the message vanished; the newest `MAX_REMEMBERED_IDS` are kept.
CREATE TABLE received_ids (
    seq INTEGER PRIMARY KEY,
    id  BLOB NOT NULL UNIQUE CHECK (length(id) = 16)
) STRICT;

-- SHA-256 of processed envelopes that carried a text, oldest first, with
-- their conversation and message: a retried envelope is acknowledged again.
CREATE TABLE seen_envelopes (
    seq     INTEGER PRIMARY KEY,
    hash    BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    contact BLOB NOT NULL CHECK (length(contact) = 16),
    message BLOB NOT NULL CHECK (length(message) = 16)
) STRICT;

-- Sealed envelopes waiting for delivery, one per recipient device.
-- `awaits`: 1 a delivery receipt, 2 the network's acknowledgement.
-- `reached`: 1 direct, 2 mailbox; `mailbox_at`: when a mailbox last took it.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    message         BLOB NOT NULL CHECK (length(message) = 16),
    identity        BLOB NOT NULL CHECK (length(identity) = 32),
    device          BLOB NOT NULL CHECK (length(device) = 16),
    envelope        BLOB NOT NULL,
    awaits          INTEGER NOT NULL CHECK (awaits IN (1, 2)),
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL CHECK (next_attempt_at >= 0),
    queued_at       INTEGER NOT NULL CHECK (queued_at >= 0),
    reached         INTEGER CHECK (reached IN (1, 2)),
    mailbox_at      INTEGER CHECK (mailbox_at >= 0)
) STRICT;

-- Messages waiting for a session with their contact: the encoded content
-- (xchat_proto::content::Content) to encrypt once a bundle arrives.
CREATE TABLE waiting (
    message BLOB PRIMARY KEY NOT NULL CHECK (length(message) = 16),
    contact BLOB NOT NULL REFERENCES contacts (id),
    content BLOB NOT NULL,
    awaits  INTEGER NOT NULL CHECK (awaits IN (1, 2))
) STRICT, WITHOUT ROWID;

-- Small values of the profile, by name.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) STRICT;
