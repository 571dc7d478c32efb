--
-- check_stripe_idempotency and record_stripe_idempotency.
--
\set VERBOSITY sqlstate

-- Unknown operation: exactly one row, found = false.
SELECT * FROM check_stripe_idempotency('checkout:create', 'nope');

-- The check-then-record flow: no begin, record inserts a completed row.
SELECT new_stripe_idempotency_key('checkout:create', 'cr_1') AS k1 \gset
SELECT * FROM record_stripe_idempotency('checkout:create', 'cr_1', :'k1', 'cs_test_cr1', '{"id": "cs_test_cr1"}');
SELECT found, status, stripe_idempotency_key = :'k1' AS same_key, stripe_resource_id, response,
       expires_at - created_at AS ttl
FROM check_stripe_idempotency('checkout:create', 'cr_1');

-- Recording again (a retried request, or a racing one) changes nothing:
-- recorded = false and the FIRST result comes back.
SELECT * FROM record_stripe_idempotency('checkout:create', 'cr_1', :'k1', 'cs_test_other', '{"id": "cs_test_other"}');
SELECT new_stripe_idempotency_key('checkout:create', 'cr_1') AS k1b \gset
SELECT * FROM record_stripe_idempotency('checkout:create', 'cr_1', :'k1b', 'cs_test_third', NULL);
SELECT stripe_resource_id, attempts FROM stripe_idempotency_keys WHERE operation_id = 'cr_1';

-- The begin/record flow: record completes the caller's in_progress row.
SELECT stripe_idempotency_key AS k2
FROM begin_stripe_idempotency('checkout:create', 'cr_2', '{"x": 1}') \gset
SELECT * FROM record_stripe_idempotency('checkout:create', 'cr_2', :'k2', 'cs_test_cr2', NULL, '7 days');
SELECT status, locked_until, completed_at IS NOT NULL AS has_completed_at,
       expires_at - completed_at AS ttl, request_fingerprint IS NOT NULL AS kept_fingerprint
FROM stripe_idempotency_keys WHERE operation_id = 'cr_2';

-- Only the response, no resource id (a definitive error, say card_declined).
SELECT stripe_idempotency_key AS k3 FROM begin_stripe_idempotency('payment_intent:confirm', 'pi_9') \gset
SELECT * FROM record_stripe_idempotency('payment_intent:confirm', 'pi_9', :'k3', NULL,
                                        '{"error": {"type": "card_error", "code": "card_declined"}}');
SELECT state, stripe_resource_id, response -> 'error' ->> 'code' AS replayed_code
FROM begin_stripe_idempotency('payment_intent:confirm', 'pi_9');

-- A key another operation owns is refused (23505), naming the operation.
SELECT * FROM record_stripe_idempotency('checkout:create', 'cr_3', :'k1', 'cs_test_x', NULL);
\set VERBOSITY default
SELECT * FROM record_stripe_idempotency('checkout:create', 'cr_3', :'k1', 'cs_test_x', NULL);
\set VERBOSITY sqlstate
SELECT count(*) AS cr_3_rows FROM stripe_idempotency_keys WHERE operation_id = 'cr_3';

-- So is recording an in_progress operation under a different key than the
-- one begin handed out: that key's Stripe object would be lost.
SELECT stripe_idempotency_key AS k4 FROM begin_stripe_idempotency('checkout:create', 'cr_4') \gset
SELECT * FROM record_stripe_idempotency('checkout:create', 'cr_4', 'checkout:create:cr_4:forged', 'cs_test_y', NULL);
\set VERBOSITY default
SELECT * FROM record_stripe_idempotency('checkout:create', 'cr_4', 'checkout:create:cr_4:forged', 'cs_test_y', NULL);
\set VERBOSITY sqlstate
SELECT status, stripe_idempotency_key = :'k4' AS same_key FROM stripe_idempotency_keys WHERE operation_id = 'cr_4';

-- Recording over an expired row replaces it (the old key's result is gone
-- with the row anyway).
UPDATE stripe_idempotency_keys SET expires_at = statement_timestamp() - interval '1 second'
WHERE operation_id = 'cr_1';
SELECT found FROM check_stripe_idempotency('checkout:create', 'cr_1');
SELECT new_stripe_idempotency_key('checkout:create', 'cr_1') AS k5 \gset
SELECT * FROM record_stripe_idempotency('checkout:create', 'cr_1', :'k5', 'cs_test_new', NULL);
SELECT stripe_idempotency_key = :'k5' AS new_key, stripe_resource_id, response, attempts
FROM stripe_idempotency_keys WHERE operation_id = 'cr_1';

-- check shows in_progress operations too, with their key.
SELECT found, status, stripe_idempotency_key = :'k4' AS same_key
FROM check_stripe_idempotency('checkout:create', 'cr_4');

-- check is STABLE: usable in a query over many operations.
SELECT o.id, c.found, c.status
FROM (VALUES ('cr_1'), ('cr_2'), ('cr_4'), ('zz')) AS o(id),
     LATERAL check_stripe_idempotency('checkout:create', o.id) AS c
ORDER BY o.id;
