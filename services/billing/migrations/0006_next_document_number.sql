-- The next gapless number of a series in one round trip. The series' transaction-scoped
-- advisory lock serializes issuers as before; the number must be read AFTER the lock is
-- granted, which one plain SQL statement cannot do (its snapshot predates the wait). In a
-- VOLATILE PL/pgSQL function each statement takes a new snapshot, so the INSERT sees the
-- previous holder's commit.
CREATE FUNCTION billing.next_document_number(p_series text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    issued bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('billing.document_numbers:' || p_series));
    INSERT INTO billing.document_numbers (series, number)
    SELECT p_series, COALESCE(max(number), 0) + 1 FROM billing.document_numbers WHERE series = p_series
    RETURNING number INTO issued;
    RETURN issued;
END
$$;
