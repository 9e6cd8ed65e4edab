-- The check API's projection asks every fraction of a second what changed in the last seconds:
-- by index, not by scanning every set.
CREATE INDEX IF NOT EXISTS customer_sets_updated ON entitlements.customer_sets (updated_at);
CREATE INDEX IF NOT EXISTS entitlement_sets_updated ON entitlements.entitlement_sets (updated_at);
CREATE INDEX IF NOT EXISTS subscription_users_updated ON entitlements.subscription_users (updated_at);
