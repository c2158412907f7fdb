-- Room on each page for a row's next version. Every queued event is updated at least once (its
-- delivered-mark; a retry or a claim once more). A row of a 1.7 KB Stripe event and its envelope
-- takes about 2.9 KB, so at the default fillfactor of 100 two rows filled a page, the new version
-- found no room beside the old one, and each mark wrote the whole row to another page (and to the
-- WAL). With half of each page left free at insert time, the new version stays on its page.
-- bench/pgstore.py (32-row batches of 1.5 KB Stripe events, one backend): the server's CPU per
-- delivered-mark fell from 167-181 to 66-78 us and the WAL per event from 6.0 to 4.6 KB; the heap
-- per row grew from 3.3 to 4.1 KB (before vacuum). Small rows take up to twice the heap. Only
-- pages written from now on keep the space; partitions created later get it from
-- gateway/events/partitions.py.
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'webhook_events'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 50)', part);
    END LOOP;
END $$;
