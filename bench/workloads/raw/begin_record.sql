-- Workload 3 as plain SQL: the statements begin and record run for a new
-- operation, sent directly. The insert always wins for a new id; were it to
-- meet an existing row the record below would update nothing.
\set id random(1000000000, 9000000000000000000)
WITH ins AS (
	INSERT INTO raw_idem.stripe_idempotency_keys AS k
		(operation_type, operation_id, stripe_idempotency_key, request_fingerprint,
		 status, attempts, locked_until, created_at, updated_at, expires_at)
	VALUES ('charge', :id, 'charge:' || CAST(:id AS text) || ':' || gen_random_uuid(),
		encode(sha256(convert_to(CAST('{"amount": 2000, "currency": "usd", "customer": "cus_Nbench0000001"}' AS jsonb)::text, 'UTF8')), 'hex'),
		'in_progress', 1, statement_timestamp() + interval '90 seconds',
		statement_timestamp(), statement_timestamp(), statement_timestamp() + interval '1 day')
	ON CONFLICT (operation_type, operation_id) DO NOTHING
	RETURNING k.stripe_idempotency_key)
SELECT max(stripe_idempotency_key) AS key FROM ins \gset
UPDATE raw_idem.stripe_idempotency_keys AS k
SET status = 'completed', stripe_resource_id = 'ch_3Nbench0000000000000001',
	response = '{"id": "ch_3Nbench0000000000000001", "object": "charge", "amount": 2000, "status": "succeeded"}',
	locked_until = NULL, completed_at = statement_timestamp(), updated_at = statement_timestamp(),
	expires_at = statement_timestamp() + interval '1 day'
WHERE k.operation_type = 'charge' AND k.operation_id = :id
  AND k.stripe_idempotency_key = :key AND k.status = 'in_progress'
RETURNING true AS recorded, k.stripe_resource_id, k.response;
