-- A subscription's entitlement versions, newest first (the console's subscription page).
CREATE INDEX IF NOT EXISTS history_subscription
    ON entitlements.history (subscription_id, id) WHERE scope = 'subscription';
