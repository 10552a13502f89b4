-- Calls in a conversation's history (xchat_core::record::CallEntry): the
-- call's id, how it went (`call_outcome` 1: missed) and whether it was a
-- video call (`call_video` 0 or 1). Such a message's text is empty; the
-- three columns are set, or none.
ALTER TABLE messages ADD COLUMN call_id BLOB CHECK (length(call_id) = 16);
ALTER TABLE messages ADD COLUMN call_outcome INTEGER CHECK (call_outcome IN (1));
ALTER TABLE messages ADD COLUMN call_video INTEGER CHECK (call_video IN (0, 1));
