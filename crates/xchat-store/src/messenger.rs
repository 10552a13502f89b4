//! The messenger core's records: how each `xchat_core::io::Write` maps onto
//! the schema's tables, how a [`State`] is loaded back at startup, and the
//! queries the UI asks (a page of history, the contact book).
//!
//! The store holds none of the messenger's rules: a write is applied as the
//! core stated it. What the store adds is bounded bookkeeping the core would
//! otherwise lose at a restart (the received ids and envelope hashes it
//! remembers, pruned to the same bounds the core keeps in memory).
//!
//! Enumerations are stored as small integers whose meaning is fixed by the
//! schema's comments (`migrations/0001_initial.sql`); a value the schema does
//! not know reads back as [`StoreError::Corrupt`].

use std::collections::HashSet;

use rusqlite::{OptionalExtension, Row, params};
use xchat_core::contact::{Contact, ContactId};
use xchat_core::io::Write;
use xchat_core::messenger::{MAX_REMEMBERED_IDS, PeerDevice, State};
use xchat_core::record::{
    Awaits, CallEntry, CallOutcome, ConversationRecord, Direction, FailReason, MessageRecord,
    OutboxEntry, OutboxId, PeerRecord, Settings, Status, UnreadRecord, Waiting,
};
use xchat_core::retry::Route;
use xchat_core::time::UnixMillis;
use xchat_core::transfer::{TransferFailure, TransferRecord, TransferState};
use xchat_crypto::device::{DeviceId, UnverifiedDeviceCertificate};
use xchat_crypto::file::{FileDigest, FileKey};
use xchat_crypto::ratchet::Session;
use xchat_crypto::signature::VerifyingKey;
use xchat_proto::content::{
    CallId, FileDescriptor, FileId, FileName, MediaType, MessageId, VanishingTimer,
};
use zeroize::Zeroizing;

use crate::crypto_state::{blob, sql_ms};
use crate::error::{CorruptPart, RecordKind};
use crate::{Batch, Store, StoreError};

/// The setting that holds [`Settings::read_receipts`] (one byte, 0 or 1).
const READ_RECEIPTS_SETTING: &str = "messenger.read_receipts";
/// Bytes of an accepted initiation's ephemeral key.
const INITIATION_KEY_BYTES: usize = 32;
/// The remembered ids and envelope hashes are pruned to
/// [`MAX_REMEMBERED_IDS`] once every this many inserts, not at each one.
const PRUNE_EVERY: i64 = 1024;

/// For each of `writes`, whether a later one replaces all it would do
/// (see [`Batch::write_all`]).
fn replaced_later(writes: &[&Write]) -> Vec<bool> {
    let mut peers = HashSet::new();
    let mut outbox = HashSet::new();
    let mut statuses = HashSet::new();
    let mut replaced: Vec<bool> = writes
        .iter()
        .rev()
        .map(|write| match write {
            Write::Peer(peer) => !peers.insert((peer.identity.to_bytes(), peer.device)),
            Write::Outbox(entry) => !outbox.insert(entry.id),
            Write::DeleteOutbox(id) => {
                outbox.insert(*id);
                false
            }
            Write::Status { id, .. } => !statuses.insert(*id),
            _ => false,
        })
        .collect();
    replaced.reverse();
    replaced
}

/// The columns `transfer_record` reads, in its order.
const TRANSFER_COLUMNS: &str = "SELECT file, message, contact, direction, source, name, media_type,
     size, hash, key, state, fail_reason, chunks_done, updated_at FROM transfers";

/// Most messages one history page returns.
pub const MAX_HISTORY_PAGE: usize = 1000;

impl Batch<'_> {
    /// Applies the core's `writes` in order. Call it inside one
    /// [`Store::apply`] with all the writes of one input (or of several, in
    /// their order), before any send or notification of those inputs is
    /// carried out.
    ///
    /// A write that a later one of the same call replaces whole is skipped,
    /// since the transaction commits only the end state: a device's peer
    /// record and sessions written again (the ratchet advances with every
    /// message), an outbox entry written again or deleted, a message's
    /// status set again. A burst of messages to one device then writes its
    /// sessions once, not once per message.
    ///
    /// # Errors
    /// The errors of [`Store::apply`]; the whole batch is then rolled back.
    pub fn write_all<'w>(
        &mut self,
        writes: impl IntoIterator<Item = &'w Write>,
    ) -> Result<(), StoreError> {
        let writes: Vec<&Write> = writes.into_iter().collect();
        for (write, replaced) in writes.iter().zip(replaced_later(&writes)) {
            if !replaced {
                self.write(write)?;
            }
        }
        Ok(())
    }

    /// Applies one of the core's writes.
    ///
    /// # Errors
    /// The errors of [`Store::apply`].
    pub fn write(&mut self, write: &Write) -> Result<(), StoreError> {
        match write {
            Write::PreKeys(record) => self.put_single("prekeys", record),
            Write::Contact(contact) => self.put_contact(contact),
            Write::Peer(peer) => self.put_peer(peer),
            Write::Message(message) => self.put_message(message),
            Write::Status { id, status } => {
                let (code, reason) = status_code(*status);
                self.execute(
                    "UPDATE messages SET status = ?2, fail_reason = ?3 WHERE id = ?1",
                    params![&id.as_bytes()[..], code, reason],
                )
            }
            Write::Expiry { id, expires_at } => self.execute(
                "UPDATE messages SET expires_at = ?2 WHERE id = ?1",
                params![&id.as_bytes()[..], sql_ms(expires_at.0)],
            ),
            Write::DeleteMessage(id) => {
                self.execute("DELETE FROM messages WHERE id = ?1", [&id.as_bytes()[..]])
            }
            Write::SeenEnvelope { hash, contact, message } => {
                self.execute(
                    "INSERT INTO seen_envelopes (hash, contact, message) VALUES (?1, ?2, ?3)",
                    params![&hash[..], &contact.0[..], &message.as_bytes()[..]],
                )?;
                self.prune("seen_envelopes")
            }
            Write::Conversation(conversation) => self.execute(
                "INSERT INTO conversations (contact, timer_seconds) VALUES (?1, ?2)
                 ON CONFLICT (contact) DO UPDATE SET timer_seconds = excluded.timer_seconds",
                params![&conversation.contact.0[..], conversation.timer.as_secs()],
            ),
            Write::Waiting(waiting) => self.execute(
                "INSERT INTO waiting (message, contact, content, awaits) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (message) DO UPDATE SET contact = excluded.contact,
                     content = excluded.content, awaits = excluded.awaits",
                params![
                    &waiting.message.as_bytes()[..],
                    &waiting.contact.0[..],
                    &waiting.content[..],
                    awaits_code(waiting.awaits),
                ],
            ),
            Write::DeleteWaiting(id) => {
                self.execute("DELETE FROM waiting WHERE message = ?1", [&id.as_bytes()[..]])
            }
            Write::Outbox(entry) => self.put_outbox(entry),
            Write::DeleteOutbox(id) => {
                self.execute("DELETE FROM outbox WHERE id = ?1", [outbox_key(*id)])
            }
            Write::Settings(settings) => {
                self.put_setting(READ_RECEIPTS_SETTING, &[u8::from(settings.read_receipts)])
            }
            Write::Transfer(transfer) => self.put_transfer(transfer),
            Write::DeleteTransfer(file) => {
                self.execute("DELETE FROM transfers WHERE file = ?1", [&file.as_bytes()[..]])
            }
        }
    }

    fn put_contact(&mut self, contact: &Contact) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO contacts (id, name, identity, verified, previous_identity, added_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, identity = excluded.identity,
                 verified = excluded.verified, previous_identity = excluded.previous_identity,
                 added_at = excluded.added_at",
            params![
                &contact.id.0[..],
                contact.name,
                &contact.identity.to_bytes()[..],
                contact.verified,
                contact.unacknowledged_change.map(|key| key.to_bytes().to_vec()),
                sql_ms(contact.added_at.0),
            ],
        )
    }

    /// Saves a peer device and its sessions. A device saved again keeps its
    /// revocation; a row whose values did not change is not rewritten (every
    /// message advances only the current session).
    fn put_peer(&mut self, peer: &PeerRecord) -> Result<(), StoreError> {
        let identity = peer.identity.to_bytes();
        let device = peer.device;
        let accepted: Vec<u8> = peer.accepted_initiations.concat();
        self.execute(
            "INSERT INTO peer_devices (peer, device, certificate, initiation, accepted_initiations)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (peer, device) DO UPDATE SET certificate = excluded.certificate,
                 initiation = excluded.initiation,
                 accepted_initiations = excluded.accepted_initiations
             WHERE certificate IS NOT excluded.certificate
                 OR initiation IS NOT excluded.initiation
                 OR accepted_initiations IS NOT excluded.accepted_initiations",
            params![
                &identity[..],
                &device.as_bytes()[..],
                &peer.certificate,
                peer.initiation,
                accepted
            ],
        )?;
        let slots = peer.session.iter().map(|record| (0, record)).chain(
            // At most MAX_ARCHIVED_SESSIONS (3): the schema checks the slot.
            (1_i64..).zip(peer.archived.iter()),
        );
        for (slot, record) in slots {
            self.execute(
                "INSERT INTO sessions (peer, device, slot, record) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (peer, device, slot) DO UPDATE SET record = excluded.record
                 WHERE record IS NOT excluded.record",
                params![&identity[..], &device.as_bytes()[..], slot, &record[..]],
            )?;
        }
        // Slots the record no longer has: no current session, fewer archived.
        let archived = i64::try_from(peer.archived.len()).unwrap_or(i64::MAX);
        self.execute(
            "DELETE FROM sessions WHERE peer = ?1 AND device = ?2
                 AND ((slot = 0 AND NOT ?3) OR slot > ?4)",
            params![&identity[..], &device.as_bytes()[..], peer.session.is_some(), archived],
        )?;
        Ok(())
    }

    fn put_message(&mut self, message: &MessageRecord) -> Result<(), StoreError> {
        let (status, reason) = status_code(message.status);
        self.execute(
            "INSERT INTO messages (id, contact, direction, sent_at, received_at, text, status,
                 fail_reason, timer_seconds, expires_at, file, call_id, call_outcome, call_video)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (id) DO UPDATE SET contact = excluded.contact,
                 direction = excluded.direction, sent_at = excluded.sent_at,
                 received_at = excluded.received_at, text = excluded.text,
                 status = excluded.status, fail_reason = excluded.fail_reason,
                 timer_seconds = excluded.timer_seconds, expires_at = excluded.expires_at,
                 file = excluded.file, call_id = excluded.call_id,
                 call_outcome = excluded.call_outcome, call_video = excluded.call_video",
            params![
                &message.id.as_bytes()[..],
                &message.contact.0[..],
                direction_code(message.direction),
                sql_ms(message.sent_at.0),
                sql_ms(message.received_at.0),
                message.text,
                status,
                reason,
                message.timer.as_secs(),
                message.expires_at.map(|at| sql_ms(at.0)),
                message.file.map(|file| file.as_bytes().to_vec()),
                message.call.map(|call| call.call_id.as_bytes().to_vec()),
                message.call.map(|call| call_outcome_code(call.outcome)),
                message.call.map(|call| call.video),
            ],
        )?;
        // A call's entry was written here: its id was never on the wire.
        if message.direction == Direction::Incoming && message.call.is_none() {
            self.execute(
                "INSERT INTO received_ids (id) VALUES (?1)",
                [&message.id.as_bytes()[..]],
            )?;
            self.prune("received_ids")?;
        }
        Ok(())
    }

    fn put_transfer(&mut self, transfer: &TransferRecord) -> Result<(), StoreError> {
        let descriptor = &transfer.descriptor;
        let (state, reason) = transfer_state_code(transfer.state);
        self.execute(
            "INSERT INTO transfers (file, message, contact, direction, source, name, media_type,
                 size, hash, key, state, fail_reason, chunks_done, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (file) DO UPDATE SET state = excluded.state,
                 fail_reason = excluded.fail_reason, chunks_done = excluded.chunks_done,
                 updated_at = excluded.updated_at",
            params![
                &descriptor.id().as_bytes()[..],
                &transfer.message.as_bytes()[..],
                &transfer.contact.0[..],
                direction_code(transfer.direction),
                transfer.source.map(|device| device.as_bytes().to_vec()),
                descriptor.name().as_str(),
                descriptor.media_type().as_str(),
                sql_ms(descriptor.size()),
                &descriptor.digest().hash()[..],
                &descriptor.key().to_bytes()[..],
                state,
                reason,
                sql_ms(transfer.chunks_done),
                sql_ms(transfer.updated_at.0),
            ],
        )
    }

    fn put_outbox(&mut self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO outbox (id, message, identity, device, envelope, awaits, attempts,
                 next_attempt_at, queued_at, reached, mailbox_at, more_messages)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (id) DO UPDATE SET message = excluded.message,
                 more_messages = excluded.more_messages,
                 identity = excluded.identity, device = excluded.device,
                 envelope = excluded.envelope, awaits = excluded.awaits,
                 attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at,
                 queued_at = excluded.queued_at, reached = excluded.reached,
                 mailbox_at = excluded.mailbox_at",
            params![
                outbox_key(entry.id),
                &entry.message.as_bytes()[..],
                &entry.identity.to_bytes()[..],
                &entry.device.as_bytes()[..],
                &entry.envelope,
                awaits_code(entry.awaits),
                entry.attempts,
                sql_ms(entry.next_attempt_at.0),
                sql_ms(entry.queued_at.0),
                entry.reached.map(route_code),
                entry.mailbox_at.map(|at| sql_ms(at.0)),
                entry.more.iter().flat_map(|id| *id.as_bytes()).collect::<Vec<u8>>(),
            ],
        )
    }

    /// Keeps the newest [`MAX_REMEMBERED_IDS`] rows of `table` (a name of
    /// this module, never input), checking once every [`PRUNE_EVERY`] rows.
    fn prune(&mut self, table: &'static str) -> Result<(), StoreError> {
        let seq = self.conn().last_insert_rowid();
        if seq % PRUNE_EVERY != 0 {
            return Ok(());
        }
        let keep = i64::try_from(MAX_REMEMBERED_IDS).unwrap_or(i64::MAX);
        self.execute(&format!("DELETE FROM {table} WHERE seq <= ?1"), [seq - keep])
    }

    fn execute(&mut self, sql: &str, params: impl rusqlite::Params) -> Result<(), StoreError> {
        self.conn().prepare_cached(sql)?.execute(params)?;
        Ok(())
    }
}

impl Store {
    /// Everything the messenger core is made of besides its identity, device
    /// and prekeys (see [`Store::load_identity`]): what `Messenger::new`
    /// takes. Certificates are verified again and sessions restored from
    /// their records.
    ///
    /// # Errors
    /// [`StoreError::Record`] for a record the crypto crate refuses,
    /// [`StoreError::Corrupt`] for a value the schema does not allow.
    pub fn load_state(&self) -> Result<State, StoreError> {
        let mut sent = Vec::new();
        let mut unread = Vec::new();
        let open = self.collect(
            "SELECT id, contact, direction, timer_seconds, call_id IS NULL
             FROM messages INDEXED BY messages_open
             WHERE (direction = 0 AND status NOT IN (5, 6)) OR (direction = 1 AND status = 7)
             ORDER BY received_at",
            [],
            |row| {
                let id = (message_id(row, 0)?, contact_id(row, 1)?);
                Ok((id, row.get::<_, i64>(2)? == 0, timer(row, 3)?, row.get::<_, bool>(4)?))
            },
        )?;
        for ((id, contact), outgoing, timer, receipt) in open {
            if outgoing {
                sent.push((id, contact));
            } else {
                // A call's entry was written here, not sent: no receipt for it.
                unread.push(UnreadRecord { id, contact, timer, receipt });
            }
        }
        Ok(State {
            contacts: self.load_contacts()?,
            peers: self.load_peers()?,
            conversations: self.collect(
                "SELECT contact, timer_seconds FROM conversations",
                [],
                |row| {
                    Ok(ConversationRecord { contact: contact_id(row, 0)?, timer: timer(row, 1)? })
                },
            )?,
            outbox: self.collect(
                "SELECT id, message, identity, device, envelope, awaits, attempts,
                     next_attempt_at, queued_at, reached, mailbox_at, more_messages
                 FROM outbox",
                [],
                outbox_entry,
            )?,
            waiting: self.collect(
                "SELECT message, contact, content, awaits FROM waiting",
                [],
                |row| {
                    Ok(Waiting {
                        message: message_id(row, 0)?,
                        contact: contact_id(row, 1)?,
                        content: Zeroizing::new(blob(row, 2)?.to_vec()),
                        awaits: awaits(row.get(3)?)?,
                    })
                },
            )?,
            sent,
            unread,
            expiring: self.collect(
                "SELECT id, expires_at FROM messages WHERE expires_at IS NOT NULL",
                [],
                |row| Ok((message_id(row, 0)?, UnixMillis(ms(row, 1)?))),
            )?,
            received: self
                .collect(
                    "SELECT id FROM received_ids ORDER BY seq DESC LIMIT ?1",
                    [remembered()],
                    |row| message_id(row, 0),
                )?
                .into_iter()
                .rev()
                .collect(),
            envelopes: self
                .collect(
                    "SELECT hash, contact, message FROM seen_envelopes ORDER BY seq DESC LIMIT ?1",
                    [remembered()],
                    |row| {
                        let hash: [u8; 32] = blob(row, 0)?.try_into().map_err(|_| corrupt())?;
                        Ok((hash, contact_id(row, 1)?, message_id(row, 2)?))
                    },
                )?
                .into_iter()
                .rev()
                .collect(),
            settings: self.load_settings()?,
            transfers: self.collect(
                &format!("{TRANSFER_COLUMNS} INDEXED BY transfers_open WHERE state != 4"),
                [],
                transfer_record,
            )?,
            attachments: self.collect(
                "SELECT id, file FROM messages WHERE file IS NOT NULL AND timer_seconds != 0",
                [],
                |row| {
                    let file = FileId::from_bytes(blob(row, 1)?.try_into().map_err(|_| corrupt())?);
                    Ok((message_id(row, 0)?, file))
                },
            )?,
        })
    }

    /// Every contact, by name.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a value the schema does not allow.
    pub fn load_contacts(&self) -> Result<Vec<Contact>, StoreError> {
        self.collect(
            "SELECT id, name, identity, verified, previous_identity, added_at
             FROM contacts ORDER BY name",
            [],
            |row| {
                Ok(Contact {
                    id: contact_id(row, 0)?,
                    name: row.get(1)?,
                    identity: verifying_key(blob(row, 2)?)?,
                    verified: row.get(3)?,
                    unacknowledged_change: row
                        .get_ref(4)?
                        .as_blob_or_null()
                        .map_err(rusqlite::Error::from)?
                        .map(verifying_key)
                        .transpose()?,
                    added_at: UnixMillis(ms(row, 5)?),
                })
            },
        )
    }

    /// The profile's settings (the defaults when never set).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a value the schema does not allow.
    pub fn load_settings(&self) -> Result<Settings, StoreError> {
        let mut settings = Settings::default();
        if let Some(value) = self.load_setting(READ_RECEIPTS_SETTING)? {
            settings.read_receipts = match value.as_slice() {
                [0] => false,
                [1] => true,
                _ => return Err(corrupt()),
            };
        }
        Ok(settings)
    }

    /// A page of a conversation's history, newest first: at most `limit`
    /// messages (capped at [`MAX_HISTORY_PAGE`]) ordered before `before`
    /// (a message's `order_key`), or the newest without it.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a value the schema does not allow.
    pub fn history(
        &self,
        contact: ContactId,
        before: Option<(UnixMillis, MessageId)>,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let limit = i64::try_from(limit.min(MAX_HISTORY_PAGE)).unwrap_or(0);
        const COLUMNS: &str = "SELECT id, contact, direction, sent_at, received_at, text, status,
                 fail_reason, timer_seconds, expires_at, file, call_id, call_outcome, call_video
                 FROM messages INDEXED BY messages_history";
        match before {
            Some((sent_at, id)) => self.collect(
                &format!(
                    "{COLUMNS} WHERE contact = ?1 AND (sent_at, id) < (?2, ?3)
                     ORDER BY sent_at DESC, id DESC LIMIT ?4"
                ),
                params![&contact.0[..], sql_ms(sent_at.0), &id.as_bytes()[..], limit],
                message_record,
            ),
            None => self.collect(
                &format!("{COLUMNS} WHERE contact = ?1 ORDER BY sent_at DESC, id DESC LIMIT ?2"),
                params![&contact.0[..], limit],
                message_record,
            ),
        }
    }

    /// The transfer of `file`, whatever its state.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a value the schema does not allow.
    pub fn transfer(&self, file: FileId) -> Result<Option<TransferRecord>, StoreError> {
        self.conn()
            .prepare_cached(&format!("{TRANSFER_COLUMNS} WHERE file = ?1"))?
            .query_row([&file.as_bytes()[..]], |row| Ok(transfer_record(row)))
            .optional()?
            .transpose()
    }

    /// Every transfer of a conversation, newest first.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a value the schema does not allow.
    pub fn transfers(&self, contact: ContactId) -> Result<Vec<TransferRecord>, StoreError> {
        self.collect(
            &format!("{TRANSFER_COLUMNS} WHERE contact = ?1 ORDER BY updated_at DESC"),
            [&contact.0[..]],
            transfer_record,
        )
    }

    /// One message of the history, if it is there.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a value the schema does not allow.
    pub fn message(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT id, contact, direction, sent_at, received_at, text, status, fail_reason,
                     timer_seconds, expires_at, file, call_id, call_outcome, call_video
                 FROM messages WHERE id = ?1",
            )?
            .query_row([&id.as_bytes()[..]], |row| Ok(message_record(row)))
            .optional()?
            .transpose()
    }

    fn load_peers(&self) -> Result<Vec<(VerifyingKey, PeerDevice)>, StoreError> {
        let mut peers = self.collect(
            "SELECT peer, certificate, initiation, accepted_initiations FROM peer_devices
             ORDER BY peer, device",
            [],
            |row| {
                let identity = verifying_key(blob(row, 0)?)?;
                let certificate = UnverifiedDeviceCertificate::from_bytes(blob(row, 1)?)
                    .map_err(|err| StoreError::record(RecordKind::PeerDevice, err))?
                    .verify(&identity)
                    .map_err(|err| StoreError::record(RecordKind::PeerDevice, err))?;
                let accepted = blob(row, 3)?;
                let accepted_initiations = accepted
                    .chunks_exact(INITIATION_KEY_BYTES)
                    .map(|key| key.try_into().map_err(|_| corrupt()))
                    .collect::<Result<_, _>>()?;
                let device = PeerDevice {
                    certificate,
                    session: None,
                    archived: Vec::new(),
                    initiation: row.get(2)?,
                    accepted_initiations,
                    reachable: false,
                };
                Ok((identity, device))
            },
        )?;
        let mut statement = self.conn().prepare_cached(
            "SELECT slot, record FROM sessions WHERE peer = ?1 AND device = ?2 ORDER BY slot",
        )?;
        for (identity, device) in &mut peers {
            let id = device.certificate.device_id();
            let mut rows =
                statement.query(params![&identity.to_bytes()[..], &id.as_bytes()[..]])?;
            while let Some(row) = rows.next()? {
                let slot: i64 = row.get(0)?;
                let session = Session::from_record(blob(row, 1)?)
                    .map_err(|err| StoreError::record(RecordKind::Session, err))?;
                if slot == 0 {
                    device.session = Some(session);
                } else {
                    device.archived.push(session);
                }
            }
        }
        Ok(peers)
    }

    /// Runs a query and maps every row.
    fn collect<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        mut map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut statement = self.conn().prepare_cached(sql)?;
        let mut rows = statement.query(params)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(map(row)?);
        }
        Ok(out)
    }
}

fn message_record(row: &Row<'_>) -> Result<MessageRecord, StoreError> {
    Ok(MessageRecord {
        id: message_id(row, 0)?,
        contact: contact_id(row, 1)?,
        direction: match row.get::<_, i64>(2)? {
            0 => Direction::Outgoing,
            1 => Direction::Incoming,
            _ => return Err(corrupt()),
        },
        sent_at: UnixMillis(ms(row, 3)?),
        received_at: UnixMillis(ms(row, 4)?),
        text: row.get(5)?,
        status: status(row.get(6)?, row.get(7)?)?,
        timer: timer(row, 8)?,
        expires_at: row.get::<_, Option<i64>>(9)?.map(to_ms).transpose()?.map(UnixMillis),
        file: row
            .get_ref(10)?
            .as_blob_or_null()
            .map_err(rusqlite::Error::from)?
            .map(|bytes| bytes.try_into().map(FileId::from_bytes).map_err(|_| corrupt()))
            .transpose()?,
        call: call_entry(row, 11)?,
    })
}

/// The call entry in columns `column` (its id), `column + 1` (its
/// outcome) and `column + 2` (video or not): all set, or none.
fn call_entry(row: &Row<'_>, column: usize) -> Result<Option<CallEntry>, StoreError> {
    let id = row.get_ref(column)?.as_blob_or_null().map_err(rusqlite::Error::from)?;
    let outcome = row.get::<_, Option<i64>>(column + 1)?;
    let video = row.get::<_, Option<bool>>(column + 2)?;
    match (id, outcome, video) {
        (None, None, None) => Ok(None),
        (Some(id), Some(outcome), Some(video)) => Ok(Some(CallEntry {
            call_id: CallId::from_bytes(id.try_into().map_err(|_| corrupt())?),
            outcome: match outcome {
                1 => CallOutcome::Missed,
                _ => return Err(corrupt()),
            },
            video,
        })),
        _ => Err(corrupt()),
    }
}

fn call_outcome_code(outcome: CallOutcome) -> i64 {
    match outcome {
        CallOutcome::Missed => 1,
    }
}

fn transfer_record(row: &Row<'_>) -> Result<TransferRecord, StoreError> {
    let file = FileId::from_bytes(blob(row, 0)?.try_into().map_err(|_| corrupt())?);
    let name = FileName::new(row.get(5)?).map_err(|_| corrupt())?;
    let media_type = MediaType::new(row.get(6)?).map_err(|_| corrupt())?;
    let hash: [u8; 32] = blob(row, 8)?.try_into().map_err(|_| corrupt())?;
    let key: &[u8; 32] = blob(row, 9)?.try_into().map_err(|_| corrupt())?;
    let digest = FileDigest::new(ms(row, 7)?, hash);
    let descriptor = FileDescriptor::new(file, name, media_type, FileKey::from_bytes(key), digest)
        .map_err(|_| corrupt())?;
    Ok(TransferRecord {
        descriptor,
        message: message_id(row, 1)?,
        contact: contact_id(row, 2)?,
        direction: match row.get::<_, i64>(3)? {
            0 => Direction::Outgoing,
            1 => Direction::Incoming,
            _ => return Err(corrupt()),
        },
        source: row
            .get_ref(4)?
            .as_blob_or_null()
            .map_err(rusqlite::Error::from)?
            .map(|bytes| bytes.try_into().map(DeviceId::from_bytes).map_err(|_| corrupt()))
            .transpose()?,
        state: transfer_state(row.get(10)?, row.get(11)?)?,
        chunks_done: ms(row, 12)?,
        updated_at: UnixMillis(ms(row, 13)?),
    })
}

fn transfer_state_code(state: TransferState) -> (i64, Option<i64>) {
    match state {
        TransferState::Offered => (1, None),
        TransferState::Accepted => (2, None),
        TransferState::Transferring => (3, None),
        TransferState::Complete => (4, None),
        TransferState::Failed(TransferFailure::Unreachable) => (5, Some(1)),
        TransferState::Failed(TransferFailure::Corrupt) => (5, Some(2)),
        TransferState::Failed(TransferFailure::Cancelled) => (5, Some(3)),
        TransferState::Failed(TransferFailure::NoSpace) => (5, Some(4)),
    }
}

fn transfer_state(code: i64, reason: Option<i64>) -> Result<TransferState, StoreError> {
    Ok(match (code, reason) {
        (1, None) => TransferState::Offered,
        (2, None) => TransferState::Accepted,
        (3, None) => TransferState::Transferring,
        (4, None) => TransferState::Complete,
        (5, Some(1)) => TransferState::Failed(TransferFailure::Unreachable),
        (5, Some(2)) => TransferState::Failed(TransferFailure::Corrupt),
        (5, Some(3)) => TransferState::Failed(TransferFailure::Cancelled),
        (5, Some(4)) => TransferState::Failed(TransferFailure::NoSpace),
        _ => return Err(corrupt()),
    })
}

fn outbox_entry(row: &Row<'_>) -> Result<OutboxEntry, StoreError> {
    let device: [u8; 16] = blob(row, 3)?.try_into().map_err(|_| corrupt())?;
    Ok(OutboxEntry {
        id: OutboxId(u64::from_be_bytes(row.get::<_, i64>(0)?.to_be_bytes())),
        message: message_id(row, 1)?,
        identity: verifying_key(blob(row, 2)?)?,
        device: DeviceId::from_bytes(device),
        envelope: row.get(4)?,
        awaits: awaits(row.get(5)?)?,
        attempts: row.get(6)?,
        next_attempt_at: UnixMillis(ms(row, 7)?),
        queued_at: UnixMillis(ms(row, 8)?),
        reached: match row.get::<_, Option<i64>>(9)? {
            None => None,
            Some(1) => Some(Route::Direct),
            Some(2) => Some(Route::Mailbox),
            Some(_) => return Err(corrupt()),
        },
        mailbox_at: row.get::<_, Option<i64>>(10)?.map(to_ms).transpose()?.map(UnixMillis),
        more: blob(row, 11)?
            .chunks(16)
            .map(|id| id.try_into().map(MessageId::from_bytes).map_err(|_| corrupt()))
            .collect::<Result<_, _>>()?,
    })
}

/// An outbox id (any `u64`) as SQLite's signed integer key, bit for bit.
fn outbox_key(id: OutboxId) -> i64 {
    i64::from_be_bytes(id.0.to_be_bytes())
}

fn status_code(status: Status) -> (i64, Option<i64>) {
    match status {
        Status::Pending => (1, None),
        Status::Sent => (2, None),
        Status::InMailbox => (3, None),
        Status::Delivered => (4, None),
        Status::Read => (5, None),
        Status::Failed(FailReason::Undeliverable) => (6, Some(1)),
        Status::Failed(FailReason::NoSession) => (6, Some(2)),
        Status::Unread => (7, None),
        Status::Seen => (8, None),
    }
}

fn status(code: i64, reason: Option<i64>) -> Result<Status, StoreError> {
    Ok(match (code, reason) {
        (1, None) => Status::Pending,
        (2, None) => Status::Sent,
        (3, None) => Status::InMailbox,
        (4, None) => Status::Delivered,
        (5, None) => Status::Read,
        (6, Some(1)) => Status::Failed(FailReason::Undeliverable),
        (6, Some(2)) => Status::Failed(FailReason::NoSession),
        (7, None) => Status::Unread,
        (8, None) => Status::Seen,
        _ => return Err(corrupt()),
    })
}

fn direction_code(direction: Direction) -> i64 {
    match direction {
        Direction::Outgoing => 0,
        Direction::Incoming => 1,
    }
}

fn awaits_code(awaits: Awaits) -> i64 {
    match awaits {
        Awaits::Receipt => 1,
        Awaits::Transport => 2,
    }
}

fn awaits(code: i64) -> Result<Awaits, StoreError> {
    match code {
        1 => Ok(Awaits::Receipt),
        2 => Ok(Awaits::Transport),
        _ => Err(corrupt()),
    }
}

fn route_code(route: Route) -> i64 {
    match route {
        Route::Direct => 1,
        Route::Mailbox => 2,
    }
}

fn message_id(row: &Row<'_>, column: usize) -> Result<MessageId, StoreError> {
    Ok(MessageId::from_bytes(blob(row, column)?.try_into().map_err(|_| corrupt())?))
}

fn contact_id(row: &Row<'_>, column: usize) -> Result<ContactId, StoreError> {
    Ok(ContactId(blob(row, column)?.try_into().map_err(|_| corrupt())?))
}

fn verifying_key(bytes: &[u8]) -> Result<VerifyingKey, StoreError> {
    let bytes: &[u8; 32] = bytes.try_into().map_err(|_| corrupt())?;
    VerifyingKey::from_bytes(bytes).map_err(|_| corrupt())
}

fn timer(row: &Row<'_>, column: usize) -> Result<VanishingTimer, StoreError> {
    VanishingTimer::from_secs(row.get(column)?).map_err(|_| corrupt())
}

fn ms(row: &Row<'_>, column: usize) -> Result<u64, StoreError> {
    to_ms(row.get(column)?)
}

fn to_ms(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt())
}

fn remembered() -> i64 {
    i64::try_from(MAX_REMEMBERED_IDS).unwrap_or(i64::MAX)
}

fn corrupt() -> StoreError {
    StoreError::Corrupt(CorruptPart::Database)
}
