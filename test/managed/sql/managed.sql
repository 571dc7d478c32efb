\set SHOW_CONTEXT never
--
-- What only the managed edition has, or does its own way
-- (docs/MANAGED.md, "Differences from the C extension").
--
\set VERBOSITY sqlstate
TRUNCATE stripe_idempotency_keys;

-- 1. The refusal in transaction blocks sees a transaction that already
--    wrote something: begin and restart are refused there (25001) ...
CREATE TEMP TABLE scratch (x int);
BEGIN;
INSERT INTO scratch VALUES (1);
SELECT state FROM begin_stripe_idempotency('m:test', 'in_block');
ROLLBACK;
BEGIN;
INSERT INTO scratch VALUES (1);
SELECT * FROM restart_stripe_idempotency('m:test', 'in_block', 'm:test:in_block:k');
ROLLBACK;
-- ... unless the caller says it commits before it uses the key
BEGIN;
INSERT INTO scratch VALUES (1);
SET LOCAL stripe_idem.allow_begin_in_transaction = on;
SELECT state FROM begin_stripe_idempotency('m:test', 'in_block');
ROLLBACK;
-- a multi-statement string whose first statement wrote is refused too
INSERT INTO scratch VALUES (2)\; SELECT state FROM begin_stripe_idempotency('m:test', 'multi');
-- many begins in one statement are one caller, not a transaction block
SELECT count(*) FILTER (WHERE state = 'acquired') AS acquired
FROM generate_series(1, 5) g, LATERAL begin_stripe_idempotency('m:test', 'lateral_' || g) b;
SELECT count(*) AS rows_written FROM stripe_idempotency_keys WHERE operation_type = 'm:test';

-- 2. Settings are checked where a call uses them, with the C extension's
--    ranges and messages.
SET stripe_idem.default_ttl = '0';
SELECT state FROM begin_stripe_idempotency('m:test', 'setting');
\set VERBOSITY default
SELECT state FROM begin_stripe_idempotency('m:test', 'setting');
SET stripe_idem.default_ttl = 'soon';
SELECT state FROM begin_stripe_idempotency('m:test', 'setting');
\set VERBOSITY sqlstate
SET stripe_idem.default_ttl = '2h';
SELECT state FROM begin_stripe_idempotency('m:test', 'setting');
SELECT expires_at - created_at AS ttl FROM stripe_idempotency_keys WHERE operation_id = 'setting';
RESET stripe_idem.default_ttl;
SET stripe_idem.unresolved_retention = '1h';
SELECT found FROM check_stripe_idempotency('m:test', 'setting');
RESET stripe_idem.unresolved_retention;
SET stripe_idem.max_response_size = '1kB';
SELECT recorded FROM record_stripe_idempotency('m:test', 'setting', 'k', 'ch_1',
	jsonb_build_object('a', repeat('x', 1100)));
RESET stripe_idem.max_response_size;

-- 3. Names: every function is pinned to pg_catalog, its schema, pg_temp;
--    a temporary table and a function in a schema first on search_path
--    change nothing.
SELECT count(*) AS unpinned FROM pg_proc
WHERE pronamespace = 'public'::regnamespace
  AND (proname LIKE '%stripe_idem%' OR proname LIKE '%idempotency%')
  AND prokind = 'f'
  AND proconfig IS DISTINCT FROM ARRAY['search_path=pg_catalog, public, pg_temp'];
CREATE TEMP TABLE stripe_idempotency_keys (LIKE public.stripe_idempotency_keys);
CREATE SCHEMA hostile;
CREATE FUNCTION hostile.gen_random_uuid() RETURNS uuid LANGUAGE sql AS $$ SELECT '00000000-0000-4000-8000-000000000000'::uuid $$;
SET search_path = hostile, public;
SELECT state, stripe_idempotency_key NOT LIKE '%00000000-0000-4000-8000-000000000000' AS real_uuid
FROM begin_stripe_idempotency('m:test', 'hostile');
RESET search_path;
SELECT count(*) AS temp_rows FROM pg_temp.stripe_idempotency_keys;
SELECT count(*) AS real_rows FROM public.stripe_idempotency_keys WHERE operation_id = 'hostile';
DROP TABLE pg_temp.stripe_idempotency_keys;
DROP FUNCTION hostile.gen_random_uuid();
DROP SCHEMA hostile;

-- 4. The summary view: counts by state, judged like check ('settling':
-- past the key window, but its lease ended less than the settle time ago,
-- so still in progress).
TRUNCATE stripe_idempotency_keys;
INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status,
	stripe_resource_id, locked_until, created_at, expires_at) VALUES
	('m:s', 'live', 'm:s:live', 'completed', 'ch', NULL, now(), now() + interval '1 day'),
	('m:s', 'expired', 'm:s:expired', 'completed', 'ch', NULL, now() - interval '2 days', now() - interval '1 day'),
	('m:s', 'leased', 'm:s:leased', 'in_progress', NULL, now() + interval '1 minute', now(), now() + interval '1 day'),
	('m:s', 'lost', 'm:s:lost', 'in_progress', NULL, NULL, now() - interval '2 days', now() - interval '1 day'),
	('m:s', 'settling', 'm:s:settling', 'in_progress', NULL, now() - interval '1 minute', now() - interval '1 day', now() + interval '1 hour'),
	('m:s', 'gone', 'm:s:gone', 'in_progress', NULL, NULL, now() - interval '40 days', now() - interval '31 days');
SELECT in_progress, completed, unresolved, expired FROM stripe_idem_summary;
SELECT has_table_privilege('pg_monitor', 'stripe_idem_summary', 'SELECT') AS monitor_reads_it;

-- 5. The sweep pg_cron runs: batches, each committed; the C sweeper's rule.
CALL stripe_idem_sweep(1, 10);
SELECT operation_id FROM stripe_idempotency_keys ORDER BY 1;
CALL stripe_idem_sweep(0, 1);
TRUNCATE stripe_idempotency_keys;
