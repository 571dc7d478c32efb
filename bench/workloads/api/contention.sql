-- Workload 4 through the API: every client retries the same 10 operations.
-- Rows live 1 second, so each id is in turn acquired, recorded, replayed
-- as completed by everybody else, and expired and replaced.
\set id random(1, 10)
SELECT (state = 'acquired')::int AS acquired, stripe_idempotency_key AS key
FROM @SCHEMA@.begin_stripe_idempotency('hot', :id, NULL, '1 second', '1 second') \gset
\if :acquired
SELECT recorded
FROM @SCHEMA@.record_stripe_idempotency('hot', :id, :key, 'ch_hot', NULL, '1 second');
\endif
