-- The outbox is read only by service, in id order (the relay's claim), so its key is (service, id):
-- one index per row instead of the id primary key plus a (service, id) index. Every event is
-- inserted and deleted within moments, so each index costs an insert, a WAL record and vacuum work
-- per event (7 events per order).
ALTER TABLE messaging.outbox
    DROP CONSTRAINT outbox_pkey,
    ADD CONSTRAINT outbox_pkey PRIMARY KEY (service, id);
DROP INDEX messaging.outbox_service_id;
