-- Which configured key verified each stored event (0 = the first in the provider's secrets, then
-- its public keys), for `webhook-gateway check`: a key that has not matched for a while can be retired.
ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS secret_index SMALLINT;
CREATE INDEX IF NOT EXISTS webhook_events_secret_index ON webhook_events (provider, secret_index, received_at)
    WHERE secret_index IS NOT NULL;
