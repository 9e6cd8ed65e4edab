-- The operator console pages subscriptions newest change first with keyset pagination
-- (updated_at, subscription_id), alone or filtered by one column: one index per access path.
CREATE INDEX subscriptions_by_recency ON lifecycle.subscriptions (updated_at DESC, subscription_id DESC);
CREATE INDEX subscriptions_by_status_recency
    ON lifecycle.subscriptions (status, updated_at DESC, subscription_id DESC);
CREATE INDEX subscriptions_by_channel_recency
    ON lifecycle.subscriptions (channel, updated_at DESC, subscription_id DESC);
CREATE INDEX subscriptions_by_customer_recency
    ON lifecycle.subscriptions (customer_id, updated_at DESC, subscription_id DESC);
CREATE INDEX subscriptions_by_plan_recency
    ON lifecycle.subscriptions (plan_id, updated_at DESC, subscription_id DESC);
-- The approvals queue: pending_approval, oldest first.
CREATE INDEX subscriptions_pending_by_age
    ON lifecycle.subscriptions (created_at, subscription_id) WHERE status = 'pending_approval';
-- Free-text search by e-mail.
CREATE INDEX subscription_users_by_email ON lifecycle.subscription_users (lower(email));
