-- Everything a recompute reads about a customer, in one round trip, read AFTER its row lock is
-- granted: the merged set (locked or created), its subscriptions' sets and inputs, its
-- overrides, and the version of a set stored before customers were recorded. A plain SQL
-- statement's snapshot predates the lock wait and would miss what the previous holder wrote;
-- in a VOLATILE PL/pgSQL function each statement takes a new snapshot.
CREATE FUNCTION entitlements.lock_customer_state(p_customer text, p_subscription text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    cust record;
    legacy jsonb;
BEGIN
    INSERT INTO entitlements.customer_sets AS c (customer_id, version, body) VALUES (p_customer, 0, '{}')
    ON CONFLICT (customer_id) DO UPDATE SET customer_id = c.customer_id
    RETURNING c.version, c.body, c.effective_at, c.next_boundary INTO cust;
    IF p_subscription IS NOT NULL THEN
        SELECT jsonb_build_array(s.version, s.lifecycle_version) INTO legacy
        FROM entitlements.entitlement_sets s WHERE s.subscription_id = p_subscription FOR UPDATE;
    END IF;
    RETURN jsonb_build_object(
        'version', cust.version,
        'body', cust.body,
        'effective_at', cust.effective_at,
        'next_boundary', cust.next_boundary,
        'legacy', legacy,
        'subscriptions', COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                'subscription_id', s.subscription_id, 'version', s.version,
                'lifecycle_version', s.lifecycle_version, 'body', s.body, 'inputs', s.inputs))
            FROM entitlements.entitlement_sets s WHERE s.customer_id = p_customer AND s.inputs IS NOT NULL
        ), '[]'::jsonb),
        'overrides', COALESCE((
            SELECT jsonb_agg(to_jsonb(o) ORDER BY o.override_id)
            FROM entitlements.overrides o WHERE o.customer_id = p_customer
        ), '[]'::jsonb)
    );
END
$$;
