-- Workloads 1, 2 and 6 as plain SQL: the lookup the API performs.
\set id random(:lo, :hi)
SELECT status, stripe_idempotency_key, stripe_resource_id, response, created_at, expires_at
FROM raw_idem.stripe_idempotency_keys
WHERE operation_type = 'charge' AND operation_id = :id
  AND expires_at > statement_timestamp();
