-- Workload 4 as plain SQL: the statements begin runs (insert; on conflict
-- read the row; replace it if expired or take over a lapsed lease), sent
-- directly, each a round trip, and the record when acquired.
\set id random(1, 10)
WITH ins AS (
	INSERT INTO raw_idem.stripe_idempotency_keys AS k
		(operation_type, operation_id, stripe_idempotency_key, status, attempts,
		 locked_until, created_at, updated_at, expires_at)
	VALUES ('hot', :id, 'hot:' || CAST(:id AS text) || ':' || gen_random_uuid(), 'in_progress', 1,
		statement_timestamp() + interval '1 second', statement_timestamp(), statement_timestamp(),
		statement_timestamp() + interval '1 second')
	ON CONFLICT (operation_type, operation_id) DO NOTHING
	RETURNING k.stripe_idempotency_key)
SELECT count(*) AS acquired, max(stripe_idempotency_key) AS key FROM ins \gset
\if :acquired = 0
SELECT coalesce((k.expires_at <= statement_timestamp())::int, 0) AS expired,
	   coalesce((k.status = 'in_progress' AND (k.locked_until IS NULL OR k.locked_until <= statement_timestamp()))::int, 0) AS lapsed,
	   k.stripe_idempotency_key AS key, k.stripe_resource_id, k.response, k.attempts
FROM (SELECT 1) AS one
LEFT JOIN raw_idem.stripe_idempotency_keys AS k ON k.operation_type = 'hot' AND k.operation_id = :id \gset
\if :expired
WITH upd AS (
	UPDATE raw_idem.stripe_idempotency_keys AS k
	SET stripe_idempotency_key = 'hot:' || CAST(:id AS text) || ':' || gen_random_uuid(),
		request_fingerprint = NULL, status = 'in_progress', stripe_resource_id = NULL,
		response = NULL, attempts = 1, locked_until = statement_timestamp() + interval '1 second',
		created_at = statement_timestamp(), updated_at = statement_timestamp(), completed_at = NULL,
		expires_at = statement_timestamp() + interval '1 second'
	WHERE k.operation_type = 'hot' AND k.operation_id = :id AND k.expires_at <= statement_timestamp()
	RETURNING k.stripe_idempotency_key)
SELECT count(*) AS acquired, max(stripe_idempotency_key) AS key FROM upd \gset
\elif :lapsed
WITH upd AS (
	UPDATE raw_idem.stripe_idempotency_keys AS k
	SET attempts = k.attempts + 1, locked_until = statement_timestamp() + interval '1 second',
		expires_at = greatest(k.expires_at, statement_timestamp() + interval '1 second'),
		updated_at = statement_timestamp()
	WHERE k.operation_type = 'hot' AND k.operation_id = :id AND k.stripe_idempotency_key = :key
	  AND k.status = 'in_progress' AND (k.locked_until IS NULL OR k.locked_until <= statement_timestamp())
	  AND k.expires_at > statement_timestamp()
	RETURNING k.stripe_idempotency_key)
SELECT count(*) AS acquired, max(stripe_idempotency_key) AS key FROM upd \gset
\endif
\endif
\if :acquired
UPDATE raw_idem.stripe_idempotency_keys AS k
SET status = 'completed', stripe_resource_id = 'ch_hot', response = NULL,
	locked_until = NULL, completed_at = statement_timestamp(), updated_at = statement_timestamp(),
	expires_at = statement_timestamp() + interval '1 second'
WHERE k.operation_type = 'hot' AND k.operation_id = :id
  AND k.stripe_idempotency_key = :key AND k.status = 'in_progress'
RETURNING true AS recorded, k.stripe_resource_id, k.response;
\endif
