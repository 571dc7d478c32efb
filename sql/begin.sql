--
-- begin_stripe_idempotency: every state.
--
\set VERBOSITY sqlstate

-- First call: a new row, in_progress, with a fresh key and the lease taken.
SELECT state, stripe_idempotency_key ~ '^checkout:create:cs_1:[0-9a-f-]{36}$' AS key_ok,
       stripe_resource_id, response, retry_after, attempts
FROM begin_stripe_idempotency('checkout:create', 'cs_1', '{"cart": [1, 2]}');
SELECT stripe_idempotency_key AS key1 FROM stripe_idempotency_keys
WHERE operation_id = 'cs_1' \gset

SELECT status, attempts, request_fingerprint = encode(sha256('{"cart": [1, 2]}'::bytea), 'hex') AS fingerprint_is_sha256,
       locked_until - created_at AS lease, expires_at - created_at AS ttl
FROM stripe_idempotency_keys WHERE operation_id = 'cs_1';

-- A second caller while the lease is live: in_progress, told how long to
-- wait, and given no key to call Stripe with.
SELECT state, stripe_idempotency_key, retry_after > '0' AND retry_after <= '90s' AS retry_after_ok, attempts
FROM begin_stripe_idempotency('checkout:create', 'cs_1', '{"cart": [1, 2]}');

-- The same operation id with other parameters: mismatch, nothing returned,
-- nothing changed.
SELECT * FROM begin_stripe_idempotency('checkout:create', 'cs_1', '{"cart": [9]}');
SELECT attempts, stripe_idempotency_key = :'key1' AS same_key
FROM stripe_idempotency_keys WHERE operation_id = 'cs_1';

-- jsonb is compared in its canonical form: key order and spacing do not matter.
SELECT state FROM begin_stripe_idempotency('checkout:create', 'fp', '{"a": 1, "b": 2}');
SELECT state FROM begin_stripe_idempotency('checkout:create', 'fp', '{ "b":2,"a":1 }');

-- Without parameters there is nothing to compare: no mismatch either way.
SELECT state FROM begin_stripe_idempotency('checkout:create', 'fp');

-- The lease runs out (simulated by moving it into the past): the next
-- caller takes over with the SAME key, so Stripe replays the first call.
UPDATE stripe_idempotency_keys SET locked_until = statement_timestamp() - interval '1 second'
WHERE operation_id = 'cs_1';
SELECT state, stripe_idempotency_key = :'key1' AS same_key, attempts
FROM begin_stripe_idempotency('checkout:create', 'cs_1', '{"cart": [1, 2]}');
SELECT state FROM begin_stripe_idempotency('checkout:create', 'cs_1', '{"cart": [1, 2]}');

-- Record the result; from now on every begin replays it.
SELECT * FROM record_stripe_idempotency('checkout:create', 'cs_1', :'key1',
                                        'cs_test_a1', '{"id": "cs_test_a1", "url": "https://checkout"}');
SELECT state, stripe_idempotency_key = :'key1' AS same_key, stripe_resource_id, response, retry_after, attempts
FROM begin_stripe_idempotency('checkout:create', 'cs_1', '{"cart": [1, 2]}');
SELECT state, stripe_resource_id
FROM begin_stripe_idempotency('checkout:create', 'cs_1');
-- ...but not under other parameters.
SELECT state, stripe_resource_id
FROM begin_stripe_idempotency('checkout:create', 'cs_1', '{"cart": []}');

-- An expired row counts as absent: a new attempt under a NEW key.
UPDATE stripe_idempotency_keys SET expires_at = statement_timestamp() - interval '1 second'
WHERE operation_id = 'cs_1';
SELECT state, stripe_idempotency_key <> :'key1' AS new_key, stripe_resource_id, attempts
FROM begin_stripe_idempotency('checkout:create', 'cs_1', '{"cart": [5]}');
SELECT status, stripe_resource_id, response, attempts, completed_at
FROM stripe_idempotency_keys WHERE operation_id = 'cs_1';

-- Explicit lease and ttl.
SELECT state FROM begin_stripe_idempotency('payment_intent:create', 'pi_1', NULL, '5 minutes', '2 days');
SELECT locked_until - created_at AS lease, expires_at - created_at AS ttl
FROM stripe_idempotency_keys WHERE operation_id = 'pi_1';

-- Months and days are durations (30 days, 24 hours), not calendar steps.
SELECT state FROM begin_stripe_idempotency('payment_intent:create', 'pi_2', NULL, '1 day', '1 mon');
SELECT locked_until - created_at AS lease, expires_at - created_at AS ttl
FROM stripe_idempotency_keys WHERE operation_id = 'pi_2';

-- Defaults come from the settings.
SET stripe_idem.default_ttl = '1h';
SET stripe_idem.default_lease = '30s';
SELECT state FROM begin_stripe_idempotency('payment_intent:create', 'pi_3');
SELECT locked_until - created_at AS lease, expires_at - created_at AS ttl
FROM stripe_idempotency_keys WHERE operation_id = 'pi_3';
RESET stripe_idem.default_ttl;
RESET stripe_idem.default_lease;

-- A takeover near the end of the ttl moves expiry with the lease, so the
-- row cannot expire (and get a new key) under a caller still at work.
UPDATE stripe_idempotency_keys
SET locked_until = NULL, expires_at = statement_timestamp() + interval '10 seconds'
WHERE operation_id = 'pi_1';
SELECT state, attempts FROM begin_stripe_idempotency('payment_intent:create', 'pi_1', NULL, '5 minutes', '2 days');
SELECT expires_at = locked_until AS expiry_moved, locked_until - updated_at AS lease
FROM stripe_idempotency_keys WHERE operation_id = 'pi_1';

-- Refused inside an explicit transaction block (25001): a rollback after
-- the key was returned would lose it, and the retry would get a new key.
BEGIN;
SELECT state FROM begin_stripe_idempotency('refund:create', 're_1');
ROLLBACK;
-- A caller that commits before it uses the key says so, and may.
BEGIN;
SET LOCAL stripe_idem.allow_begin_in_transaction = on;
SELECT state FROM begin_stripe_idempotency('refund:create', 're_1');
SELECT state FROM begin_stripe_idempotency('refund:create', 're_1');
ROLLBACK;
SELECT count(*) AS rolled_back FROM stripe_idempotency_keys WHERE operation_id = 're_1';
-- Refused in a subtransaction as well: an exception handler around it
-- could roll the lease back.
DO $$
BEGIN
	PERFORM * FROM begin_stripe_idempotency('refund:create', 're_1');
EXCEPTION WHEN division_by_zero THEN NULL;
END
$$;

-- Called from the select list, as some drivers do.
SELECT (begin_stripe_idempotency('refund:create', 're_2')).state;
