-- The check API's projection reads what changed since its last refresh by the writing
-- transaction's id, not by updated_at: updated_at is the transaction's START, so a transaction
-- that commits late carries a time the reader has already passed, and a time window wide enough
-- for that re-read thousands of rows five times a second under load. Every transaction still
-- in progress when the reader's snapshot was taken has an id at or above that snapshot's xmin,
-- so "changed_xid >= the previous snapshot's xmin" misses nothing and re-reads little.
CREATE FUNCTION entitlements.stamp_changed_xid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;

ALTER TABLE entitlements.customer_sets ADD COLUMN changed_xid xid8;
ALTER TABLE entitlements.entitlement_sets ADD COLUMN changed_xid xid8;
ALTER TABLE entitlements.subscription_users ADD COLUMN changed_xid xid8;

CREATE TRIGGER customer_sets_changed_xid BEFORE INSERT OR UPDATE ON entitlements.customer_sets
    FOR EACH ROW EXECUTE FUNCTION entitlements.stamp_changed_xid();
CREATE TRIGGER entitlement_sets_changed_xid BEFORE INSERT OR UPDATE ON entitlements.entitlement_sets
    FOR EACH ROW EXECUTE FUNCTION entitlements.stamp_changed_xid();
CREATE TRIGGER subscription_users_changed_xid BEFORE INSERT OR UPDATE ON entitlements.subscription_users
    FOR EACH ROW EXECUTE FUNCTION entitlements.stamp_changed_xid();

CREATE INDEX customer_sets_changed_xid ON entitlements.customer_sets (changed_xid);
CREATE INDEX entitlement_sets_changed_xid ON entitlements.entitlement_sets (changed_xid);
CREATE INDEX subscription_users_changed_xid ON entitlements.subscription_users (changed_xid);
