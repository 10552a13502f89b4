-- An outbox entry whose envelope carries several texts
-- (xchat_core::record::OutboxEntry::more): the ids after the first, 16
-- bytes each, in order. Empty for an envelope of one message.
ALTER TABLE outbox ADD COLUMN more_messages BLOB NOT NULL DEFAULT x''
    CHECK (length(more_messages) % 16 = 0);
