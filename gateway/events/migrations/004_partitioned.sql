-- webhook_events partitioned by day of received_at, so retention drops whole partitions instead of
-- deleting rows (gateway/events/partitions.py). Existing rows stay where they are: the old table
-- becomes the partition of everything before tomorrow (attaching it checks that range, one scan).
--
-- A unique constraint on a partitioned table must hold the partition key, so "one row per
-- (provider, event_id)" moves to a narrow table of its own, webhook_event_keys, written in the
-- same statement as the event (gateway/events/postgres.py, _INSERT).

ALTER TABLE webhook_events RENAME TO webhook_events_legacy;
ALTER INDEX IF EXISTS webhook_events_pkey RENAME TO webhook_events_legacy_pkey;
ALTER INDEX IF EXISTS webhook_events_provider_event_id_key RENAME TO webhook_events_legacy_provider_event_id_key;
ALTER INDEX IF EXISTS webhook_events_due RENAME TO webhook_events_legacy_due;
ALTER INDEX IF EXISTS webhook_events_received RENAME TO webhook_events_legacy_received;
ALTER INDEX IF EXISTS webhook_events_status RENAME TO webhook_events_legacy_status;
ALTER INDEX IF EXISTS webhook_events_secret_index RENAME TO webhook_events_legacy_secret_index;

CREATE TABLE webhook_events (
    id              BIGINT      NOT NULL DEFAULT nextval('webhook_events_id_seq'),
    provider        TEXT        NOT NULL,
    event_id        TEXT        NOT NULL,
    event_type      TEXT        NOT NULL DEFAULT '',
    received_at     TIMESTAMPTZ NOT NULL,
    status          TEXT        NOT NULL,
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    locked_until    TIMESTAMPTZ,
    delivered_at    TIMESTAMPTZ,
    last_error      TEXT,
    client_ip       TEXT        NOT NULL DEFAULT '',
    headers         JSONB       NOT NULL DEFAULT '{}',
    body            BYTEA       NOT NULL,
    event           BYTEA       NOT NULL,
    secret_index    SMALLINT,
    holder          INTEGER,
    CONSTRAINT webhook_events_status_check CHECK (status IN ('queued', 'delivering', 'delivered', 'dead')),
    PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);
-- The ids keep counting from where they were; the sequence must outlive the old partition.
ALTER SEQUENCE webhook_events_id_seq OWNED BY webhook_events.id;

CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE status IN ('queued', 'delivering');
CREATE INDEX webhook_events_received ON webhook_events (received_at);
CREATE INDEX webhook_events_status ON webhook_events (status, id);
CREATE INDEX webhook_events_event_id ON webhook_events (provider, event_id);
CREATE INDEX webhook_events_secret_index ON webhook_events (provider, secret_index, received_at)
    WHERE secret_index IS NOT NULL;

CREATE TABLE webhook_event_keys (
    provider    TEXT        NOT NULL,
    event_id    TEXT        NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX webhook_event_keys_received ON webhook_event_keys (received_at);
INSERT INTO webhook_event_keys (provider, event_id, received_at)
    SELECT provider, event_id, received_at FROM webhook_events_legacy;

-- The parent's primary key holds the partition key; the old table's (id alone) cannot stay.
ALTER TABLE webhook_events_legacy DROP CONSTRAINT webhook_events_legacy_pkey;
ALTER TABLE webhook_events_legacy ADD CONSTRAINT webhook_events_legacy_pkey PRIMARY KEY (id, received_at);

DO $$
DECLARE
    upper_bound TIMESTAMPTZ := greatest(
        date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 day',
        (SELECT date_trunc('day', max(received_at) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 day'
         FROM webhook_events_legacy));
BEGIN
    EXECUTE format('ALTER TABLE webhook_events ATTACH PARTITION webhook_events_legacy '
                   'FOR VALUES FROM (MINVALUE) TO (%L)', upper_bound);
END $$;
-- Rows outside every daily partition (a clock far off, or days the gateway was not running to
-- create them) land here rather than failing; retention deletes them row by row.
CREATE TABLE webhook_events_default PARTITION OF webhook_events DEFAULT;
