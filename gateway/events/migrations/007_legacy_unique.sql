-- Since 004, "one row per (provider, event_id)" is kept by webhook_event_keys. The pre-004 table's
-- own unique constraint stayed on it when it became the partition webhook_events_legacy, beside the
-- parent's (provider, event_id) index: every row written there (on a fresh install, every event of
-- its first day) paid two indexes on the same columns and a uniqueness check, on insert and again on
-- each status change. Dropped; the partition keeps the parent's index. Retention may have dropped
-- the partition already.
ALTER TABLE IF EXISTS webhook_events_legacy DROP CONSTRAINT IF EXISTS webhook_events_legacy_provider_event_id_key;
