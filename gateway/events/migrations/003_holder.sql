-- Which process holds a claimed ('delivering') event: the token of its session-level advisory lock
-- (gateway/events/holder.py). When that session ends, other workers take the event over at once
-- instead of waiting for locked_until. NULL (rows claimed before this migration): the lease alone.
ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS holder INTEGER;
