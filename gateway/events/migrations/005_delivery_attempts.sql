-- Each try to deliver an event (gateway/events/attempts.py): the dashboard's timeline and the API's
-- event detail. No foreign key to webhook_events: that table may be partitioned by time, and a key
-- to it would have to carry its partition column. Rows name their event by webhook_events.id; the
-- retention job deletes them by time, and discarding an event deletes its attempts.
-- Written on every delivery, so it carries no key and no sequence of its own: two indexes, one of
-- them a BRIN on the time (rows arrive in time order), keep the cost per row small.
CREATE TABLE IF NOT EXISTS webhook_delivery_attempts (
    record_id  BIGINT      NOT NULL,
    attempt    INTEGER     NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    result     TEXT        NOT NULL,
    status     SMALLINT,
    latency_ms REAL        NOT NULL,
    response   TEXT        NOT NULL DEFAULT '',
    error      TEXT
);
CREATE INDEX IF NOT EXISTS webhook_delivery_attempts_record ON webhook_delivery_attempts (record_id, at);
CREATE INDEX IF NOT EXISTS webhook_delivery_attempts_at ON webhook_delivery_attempts USING brin (at);
