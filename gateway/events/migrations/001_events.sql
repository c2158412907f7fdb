-- The event table: audit log, outbox and dead-letter queue (see gateway/events/base.py).
CREATE TABLE IF NOT EXISTS webhook_events (
    id              BIGSERIAL PRIMARY KEY,
    provider        TEXT        NOT NULL,
    event_id        TEXT        NOT NULL,
    event_type      TEXT        NOT NULL DEFAULT '',
    received_at     TIMESTAMPTZ NOT NULL,
    status          TEXT        NOT NULL CHECK (status IN ('queued', 'delivering', 'delivered', 'dead')),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    locked_until    TIMESTAMPTZ,
    delivered_at    TIMESTAMPTZ,
    last_error      TEXT,
    client_ip       TEXT        NOT NULL DEFAULT '',
    headers         JSONB       NOT NULL DEFAULT '{}',
    body            BYTEA       NOT NULL,
    event           BYTEA       NOT NULL,
    UNIQUE (provider, event_id)
);
-- Delivery workers look for due work; partial so delivered history does not bloat it.
CREATE INDEX IF NOT EXISTS webhook_events_due ON webhook_events (next_attempt_at)
    WHERE status IN ('queued', 'delivering');
CREATE INDEX IF NOT EXISTS webhook_events_received ON webhook_events (received_at);
CREATE INDEX IF NOT EXISTS webhook_events_status ON webhook_events (status, id);

-- Rejected requests, folded: one row per minute, provider, source address and error code.
CREATE TABLE IF NOT EXISTS webhook_rejections (
    minute   TIMESTAMPTZ NOT NULL,
    provider TEXT        NOT NULL,
    source   TEXT        NOT NULL,
    code     TEXT        NOT NULL,
    count    BIGINT      NOT NULL,
    PRIMARY KEY (minute, provider, source, code)
);
