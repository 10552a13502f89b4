//! The outbox in memory, indexed by when each entry is next tried and by
//! the message it carries.
//!
//! A busy sender holds every message it sent until its delivery receipt:
//! tens of thousands of entries under load. The messenger asks the outbox,
//! after every input, when the next retry is due, which entries are due,
//! and which entries a receipt takes out; a scan of every entry for each of
//! those made a node's work grow with the square of its backlog. Here each
//! question is a lookup in an ordered index, kept beside the entries by the
//! only methods that change them.

use std::collections::{BTreeMap, BTreeSet};

use xchat_crypto::device::DeviceId;
use xchat_crypto::signature::VerifyingKey;
use xchat_proto::content::MessageId;

use crate::record::{OutboxEntry, OutboxId};
use crate::retry;
use crate::time::UnixMillis;

/// Outbox entries with their indexes.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    entries: BTreeMap<OutboxId, OutboxEntry>,
    /// Entries with an attempt on its way, and when it started: no other
    /// attempt starts until its outcome comes (or
    /// [`retry::ATTEMPT_TIMEOUT`] passed). Not persisted: after a restart
    /// nothing is on its way.
    attempting: BTreeMap<OutboxId, UnixMillis>,
    /// Every entry, by when it is next tried ([`Outbox::retry_at`]).
    schedule: BTreeSet<(UnixMillis, OutboxId)>,
    /// Every entry, by each message it carries.
    by_message: BTreeSet<(MessageId, OutboxId)>,
}

impl Outbox {
    /// The outbox holding `entries`, none of them on its way.
    pub(crate) fn new(entries: impl IntoIterator<Item = OutboxEntry>) -> Self {
        let mut outbox = Self::default();
        for entry in entries {
            outbox.insert(entry);
        }
        outbox
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn contains(&self, id: OutboxId) -> bool {
        self.entries.contains_key(&id)
    }

    pub(crate) fn get(&self, id: OutboxId) -> Option<&OutboxEntry> {
        self.entries.get(&id)
    }

    /// Adds `entry`, or replaces the entry of the same id.
    pub(crate) fn insert(&mut self, entry: OutboxEntry) {
        let id = entry.id;
        self.unindex(id);
        self.entries.insert(id, entry);
        self.index(id);
    }

    /// Takes an entry out, with its attempt on its way if any.
    pub(crate) fn remove(&mut self, id: OutboxId) -> Option<OutboxEntry> {
        self.unindex(id);
        self.attempting.remove(&id);
        self.entries.remove(&id)
    }

    /// Changes an entry in place (never its id) and re-indexes it.
    pub(crate) fn update<R>(
        &mut self,
        id: OutboxId,
        change: impl FnOnce(&mut OutboxEntry) -> R,
    ) -> Option<R> {
        self.unindex(id);
        let result = self.entries.get_mut(&id).map(|entry| {
            let result = change(entry);
            debug_assert_eq!(entry.id, id, "an entry's id never changes");
            entry.id = id;
            result
        });
        self.index(id);
        result
    }

    /// An attempt of `id` starts at `now`.
    pub(crate) fn attempt_started(&mut self, id: OutboxId, now: UnixMillis) {
        self.unindex(id);
        self.attempting.insert(id, now);
        self.index(id);
    }

    /// The node reported an attempt's outcome: whether one was on its way.
    pub(crate) fn attempt_ended(&mut self, id: OutboxId) -> bool {
        self.unindex(id);
        let was = self.attempting.remove(&id).is_some();
        self.index(id);
        was
    }

    /// When the earliest retry is due.
    pub(crate) fn next_due(&self) -> Option<UnixMillis> {
        self.schedule.first().map(|(at, _)| *at)
    }

    /// The entries whose retry is due at `now`, earliest first.
    pub(crate) fn due(&self, now: UnixMillis) -> Vec<OutboxId> {
        self.schedule.iter().take_while(|(at, _)| *at <= now).map(|(_, id)| *id).collect()
    }

    /// The entries that carry `message`.
    pub(crate) fn of_message(&self, message: MessageId) -> Vec<OutboxId> {
        self.by_message
            .range((message, OutboxId(0))..=(message, OutboxId(u64::MAX)))
            .map(|(_, id)| *id)
            .collect()
    }

    /// The entries for one device of one identity (a scan: for rare events
    /// such as a device coming back).
    pub(crate) fn to_device(&self, identity: &VerifyingKey, device: DeviceId) -> Vec<OutboxId> {
        self.entries
            .values()
            .filter(|e| e.identity == *identity && e.device == device)
            .map(|e| e.id)
            .collect()
    }

    /// When `entry` is next tried: when its backoff ends, but not before
    /// the attempt on its way ended or timed out.
    fn retry_at(&self, entry: &OutboxEntry) -> UnixMillis {
        match self.attempting.get(&entry.id) {
            Some(since) => entry.next_attempt_at.max(since.saturating_add(retry::ATTEMPT_TIMEOUT)),
            None => entry.next_attempt_at,
        }
    }

    fn index(&mut self, id: OutboxId) {
        if let Some(entry) = self.entries.get(&id) {
            self.schedule.insert((self.retry_at(entry), id));
            self.by_message.extend(entry.messages().map(|message| (message, id)));
        }
    }

    fn unindex(&mut self, id: OutboxId) {
        if let Some(entry) = self.entries.get(&id) {
            self.schedule.remove(&(self.retry_at(entry), id));
            for message in entry.messages() {
                self.by_message.remove(&(message, id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Awaits;
    use std::time::Duration;
    use xchat_crypto::signature::SigningKey;

    fn entry(id: u64, message: u8, next_attempt_at: u64) -> OutboxEntry {
        let identity = SigningKey::from_bytes(&[7; 32]).unwrap().verifying_key();
        OutboxEntry {
            id: OutboxId(id),
            message: MessageId::from_bytes([message; 16]),
            more: Vec::new(),
            identity,
            device: DeviceId::from_bytes([1; 16]),
            envelope: vec![id as u8],
            awaits: Awaits::Receipt,
            attempts: 1,
            next_attempt_at: UnixMillis(next_attempt_at),
            queued_at: UnixMillis(0),
            reached: None,
            mailbox_at: None,
        }
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn the_indexes_follow_every_change() {
        let mut outbox = Outbox::new([entry(1, 1, 300), entry(2, 1, 100), entry(3, 2, 200)]);
        assert_eq!(outbox.next_due(), Some(UnixMillis(100)));
        assert_eq!(outbox.due(UnixMillis(200)), vec![OutboxId(2), OutboxId(3)]);
        assert_eq!(
            outbox.of_message(MessageId::from_bytes([1; 16])),
            vec![OutboxId(1), OutboxId(2)]
        );

        // An attempt on its way holds its entry back until it times out.
        outbox.attempt_started(OutboxId(2), UnixMillis(50));
        let timeout = UnixMillis(50).saturating_add(retry::ATTEMPT_TIMEOUT);
        assert_eq!(outbox.next_due(), Some(UnixMillis(200)));
        assert_eq!(outbox.due(timeout), vec![OutboxId(3), OutboxId(1), OutboxId(2)]);
        assert!(outbox.attempt_ended(OutboxId(2)));
        assert!(!outbox.attempt_ended(OutboxId(2)));
        assert_eq!(outbox.next_due(), Some(UnixMillis(100)));

        // A change of schedule or message moves the entry in both indexes.
        outbox.update(OutboxId(2), |e| {
            e.next_attempt_at = UnixMillis(900);
            e.message = MessageId::from_bytes([3; 16]);
        });
        assert_eq!(outbox.due(UnixMillis(899)), vec![OutboxId(3), OutboxId(1)]);
        assert_eq!(outbox.of_message(MessageId::from_bytes([1; 16])), vec![OutboxId(1)]);
        assert_eq!(outbox.of_message(MessageId::from_bytes([3; 16])), vec![OutboxId(2)]);

        // An entry of several messages is found by each, until each leaves.
        outbox.update(OutboxId(2), |e| e.more = vec![MessageId::from_bytes([4; 16])]);
        assert_eq!(outbox.of_message(MessageId::from_bytes([4; 16])), vec![OutboxId(2)]);
        assert_eq!(outbox.of_message(MessageId::from_bytes([3; 16])), vec![OutboxId(2)]);
        let taken = outbox.update(OutboxId(2), |e| e.take(MessageId::from_bytes([3; 16])));
        assert_eq!(taken, Some(Some(false)));
        assert!(outbox.of_message(MessageId::from_bytes([3; 16])).is_empty());
        let taken = outbox.update(OutboxId(2), |e| e.take(MessageId::from_bytes([4; 16])));
        assert_eq!(taken, Some(Some(true)), "the last message leaves: the entry is done");
        assert_eq!(outbox.of_message(MessageId::from_bytes([4; 16])), vec![OutboxId(2)]);

        // A replaced or removed entry leaves nothing behind.
        outbox.insert(entry(3, 2, 1_000));
        outbox.attempt_started(OutboxId(1), UnixMillis(0));
        assert_eq!(outbox.remove(OutboxId(1)).map(|e| e.id), Some(OutboxId(1)));
        assert!(outbox.remove(OutboxId(1)).is_none());
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox.next_due(), Some(UnixMillis(900)));
        assert_eq!(outbox.due(UnixMillis(u64::MAX)), vec![OutboxId(2), OutboxId(3)]);
        assert!(outbox.of_message(MessageId::from_bytes([1; 16])).is_empty());
        let late = UnixMillis(0).saturating_add(Duration::from_secs(3600));
        assert_eq!(outbox.update(OutboxId(1), |_| ()), None);
        assert_eq!(outbox.due(late), vec![OutboxId(2), OutboxId(3)]);
    }
}
