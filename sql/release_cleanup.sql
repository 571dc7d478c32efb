--
-- release_stripe_idempotency and cleanup_expired_idempotency_keys.
--
\set VERBOSITY sqlstate

-- After a transient failure the holder releases the lease; the next begin
-- acquires at once, with the same key.
SELECT stripe_idempotency_key AS k FROM begin_stripe_idempotency('refund:create', 'rel_1') \gset
SELECT state FROM begin_stripe_idempotency('refund:create', 'rel_1');
SELECT release_stripe_idempotency('refund:create', 'rel_1', :'k') AS released;
-- (the lease ends now: when it ended is kept, see stripe_idem.settle_time)
SELECT status, locked_until <= statement_timestamp() AS lease_over
FROM stripe_idempotency_keys WHERE operation_id = 'rel_1';
SELECT state, stripe_idempotency_key = :'k' AS same_key, attempts
FROM begin_stripe_idempotency('refund:create', 'rel_1');

-- A takeover keeps the key, so a holder whose lease already ran out could
-- release the new holder's lease by key alone. Passing the attempts value
-- begin returned fences that off: only the current holder's release counts.
SELECT stripe_idempotency_key AS kf FROM begin_stripe_idempotency('refund:create', 'fence') \gset
UPDATE stripe_idempotency_keys SET locked_until = statement_timestamp() - interval '1 second'
WHERE operation_id = 'fence';
SELECT state, attempts FROM begin_stripe_idempotency('refund:create', 'fence');
SELECT release_stripe_idempotency('refund:create', 'fence', :'kf', 1) AS late_release;
SELECT state FROM begin_stripe_idempotency('refund:create', 'fence');
SELECT release_stripe_idempotency('refund:create', 'fence', :'kf', 2) AS holder_release;
SELECT state, attempts FROM begin_stripe_idempotency('refund:create', 'fence');

-- Releasing with the wrong key, an unknown operation or a completed one
-- does nothing and says so.
SELECT release_stripe_idempotency('refund:create', 'rel_1', 'refund:create:rel_1:other') AS wrong_key;
SELECT release_stripe_idempotency('refund:create', 'nope', :'k') AS unknown;
SELECT * FROM record_stripe_idempotency('refund:create', 'rel_1', :'k', 're_test_1', NULL);
SELECT release_stripe_idempotency('refund:create', 'rel_1', :'k') AS completed;
SELECT status, stripe_resource_id FROM stripe_idempotency_keys WHERE operation_id = 'rel_1';

-- Cleanup deletes expired rows without a live lease, and nothing else.
CREATE TEMP TABLE before_cleanup AS SELECT operation_type, operation_id FROM stripe_idempotency_keys;
INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status,
                                     stripe_resource_id, expires_at)
SELECT 'sweep:test', 'old_' || g, 'sweep:test:old_' || g, 'completed', 'ch_' || g,
       statement_timestamp() - g * interval '1 minute'
FROM generate_series(1, 25) g;
INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status,
                                     stripe_resource_id, expires_at)
SELECT 'sweep:test', 'live_' || g, 'sweep:test:live_' || g, 'completed', 'ch_' || g,
       statement_timestamp() + g * interval '1 minute'
FROM generate_series(1, 5) g;
-- An abandoned in_progress row that expired: its lease is gone too, but
-- nobody knows whether its key reached Stripe. It is unresolved, and kept
-- for stripe_idem.unresolved_retention (30 days) after it expired.
INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status,
                                     locked_until, expires_at)
VALUES ('sweep:test', 'abandoned', 'sweep:test:abandoned', 'in_progress',
        statement_timestamp() - interval '2 hours', statement_timestamp() - interval '1 hour');
-- One abandoned longer ago than the retention goes.
INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status,
                                     created_at, expires_at)
VALUES ('sweep:test', 'abandoned_long_ago', 'sweep:test:abandoned_long_ago', 'in_progress',
        statement_timestamp() - interval '32 days', statement_timestamp() - interval '31 days');

-- Small batches: the function keeps going until a batch comes back short.
SELECT cleanup_expired_idempotency_keys(4) AS deleted;
SELECT operation_id FROM stripe_idempotency_keys WHERE operation_type = 'sweep:test' ORDER BY 1;
SELECT cleanup_expired_idempotency_keys() AS deleted_again;
-- every earlier row is still there
SELECT count(*) AS missing FROM before_cleanup b
WHERE NOT EXISTS (SELECT 1 FROM stripe_idempotency_keys k
                  WHERE k.operation_type = b.operation_type AND k.operation_id = b.operation_id);

-- A batch exactly the size of what is expired, and one row in a huge batch.
INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status,
                                     stripe_resource_id, expires_at)
SELECT 'sweep:test', 'x_' || g, 'sweep:test:x_' || g, 'completed', 'ch', statement_timestamp() - interval '1 s'
FROM generate_series(1, 3) g;
SELECT cleanup_expired_idempotency_keys(3) AS deleted;
INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status,
                                     stripe_resource_id, expires_at)
VALUES ('sweep:test', 'y', 'sweep:test:y', 'completed', 'ch', statement_timestamp() - interval '1 s');
SELECT cleanup_expired_idempotency_keys(2147483647) AS deleted;
