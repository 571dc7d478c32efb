/* stripe_idem--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION stripe_idem UPDATE TO '1.1'" to load this file. \quit

--
-- 1.1 keeps the API of 1.0 and adds stripe_idem_wake_sweeper(hurry), for
-- the pauses a pass now makes between its batches (a new C symbol: the 1.0
-- function keeps its own). The table's ten CHECK constraints become one
-- (the executor rebuilt all ten expressions for every INSERT and UPDATE
-- statement). The rules are the same, now in stripe_idem_row_is_valid
-- (src/row_rules.c), a function of the whole row. Adding the constraint
-- checks every existing row, in the same ALTER TABLE that drops the old
-- ones, so the table is never without its rules; a row the old
-- constraints let through is never refused by the new one.
--
CREATE FUNCTION stripe_idem_row_is_valid(stripe_idempotency_keys)
RETURNS boolean
AS 'MODULE_PATHNAME', 'stripe_idem_row_is_valid'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION stripe_idem_row_is_valid(stripe_idempotency_keys) IS
	'The rules of a stripe_idempotency_keys row, for its CHECK constraint (stripe_idem)';

ALTER TABLE stripe_idempotency_keys
	DROP CONSTRAINT operation_type_format,
	DROP CONSTRAINT operation_id_format,
	DROP CONSTRAINT stripe_idempotency_key_format,
	DROP CONSTRAINT request_fingerprint_format,
	DROP CONSTRAINT status_value,
	DROP CONSTRAINT stripe_resource_id_length,
	DROP CONSTRAINT attempts_positive,
	DROP CONSTRAINT completed_has_result,
	DROP CONSTRAINT lease_only_in_progress,
	DROP CONSTRAINT lease_within_expiry,
	ADD CONSTRAINT stripe_idempotency_keys_rules
		CHECK (@extschema@.stripe_idem_row_is_valid(stripe_idempotency_keys));

-- The same with hurry: the pass it starts skips the pauses between batches
-- (stripe_idem.sweep_batch_delay), and so does a pass already running.
-- A second function, not a default argument, so that grants made on the
-- one above are kept by ALTER EXTENSION UPDATE.
CREATE FUNCTION stripe_idem_wake_sweeper(hurry boolean)
RETURNS boolean
AS 'MODULE_PATHNAME', 'stripe_idem_wake_sweeper_1_1'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

REVOKE EXECUTE ON FUNCTION stripe_idem_wake_sweeper(boolean) FROM PUBLIC;

--
-- Citus (docs/CITUS.md). Run once on the coordinator of a Citus cluster:
-- distributes the table by operation_id and sends every begin, check,
-- record and release call to the node holding that operation's shard.
-- PL/pgSQL so that Citus is reached by name only, when it is installed:
-- nothing here needs Citus on a server without it.
--
-- What it changes first, because Citus cannot keep them:
--   - the global UNIQUE (stripe_idempotency_key) becomes
--     UNIQUE (operation_id, stripe_idempotency_key): Citus allows no unique
--     index without the distribution column. record still refuses a key
--     another operation owns (23505), looking it up in every shard, but two
--     concurrent calls recording one client-chosen key for two operations
--     in different shards can both succeed;
--   - the CHECK constraint names its columns instead of the whole row:
--     Citus cannot rename a whole-row reference when it creates a shard.
-- Neither can be undone (see docs/CITUS.md), nor can the distribution.
--
CREATE FUNCTION stripe_idem_distribute(shard_count integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $distribute$
DECLARE
	tbl constant text := '@extschema@.stripe_idempotency_keys';
	fn text;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension
				   WHERE extname OPERATOR(pg_catalog.=) 'citus') THEN
		RAISE EXCEPTION 'extension "citus" is not installed in this database'
			USING ERRCODE = '55000',
				  HINT = 'stripe_idem_distribute() is for a Citus cluster: run CREATE EXTENSION citus on every node first.';
	END IF;
	IF shard_count IS NOT NULL AND (shard_count < 1 OR shard_count > 64000) THEN
		RAISE EXCEPTION 'shard_count must be between 1 and 64000'
			USING ERRCODE = '22023',
				  DETAIL = pg_catalog.format('shard_count was %s.', shard_count);
	END IF;
	IF NOT pg_catalog.citus_is_coordinator() THEN
		RAISE EXCEPTION 'stripe_idem_distribute() must run on the Citus coordinator'
			USING ERRCODE = '55000',
				  HINT = 'Connect to the coordinator and call it there, once.';
	END IF;
	IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition
			   WHERE logicalrelid OPERATOR(pg_catalog.=) tbl::pg_catalog.regclass) THEN
		RAISE EXCEPTION 'table "%" is already distributed', tbl
			USING ERRCODE = '42710',
				  HINT = 'stripe_idem_distribute() runs once; the distribution cannot be changed or undone.';
	END IF;

	EXECUTE pg_catalog.format($$ALTER TABLE %s
		DROP CONSTRAINT stripe_idempotency_keys_key_key,
		ADD CONSTRAINT stripe_idempotency_keys_id_key_key
			UNIQUE (operation_id, stripe_idempotency_key),
		DROP CONSTRAINT stripe_idempotency_keys_rules,
		ADD CONSTRAINT stripe_idempotency_keys_rules
			CHECK (@extschema@.stripe_idem_row_is_valid(ROW(operation_type,
				operation_id, stripe_idempotency_key, request_fingerprint,
				status, stripe_resource_id, response, attempts, locked_until,
				created_at, updated_at, completed_at,
				expires_at)::@extschema@.stripe_idempotency_keys))$$, tbl);

	IF shard_count IS NULL THEN
		PERFORM pg_catalog.create_distributed_table(tbl, 'operation_id');
	ELSE
		PERFORM pg_catalog.create_distributed_table(tbl, 'operation_id',
													shard_count => shard_count);
	END IF;

	FOREACH fn IN ARRAY ARRAY[
		'@extschema@.begin_stripe_idempotency(text, text, jsonb, interval, interval)',
		'@extschema@.check_stripe_idempotency(text, text)',
		'@extschema@.record_stripe_idempotency(text, text, text, text, jsonb, interval)',
		'@extschema@.release_stripe_idempotency(text, text, text, integer)']
	LOOP
		PERFORM pg_catalog.create_distributed_function(fn::pg_catalog.regprocedure,
													   'operation_id',
													   colocate_with => tbl);
	END LOOP;
END
$distribute$;

COMMENT ON FUNCTION stripe_idem_distribute(integer) IS
	'Distribute the keys on a Citus cluster by operation_id, once, on the coordinator (stripe_idem)';

REVOKE EXECUTE ON FUNCTION stripe_idem_distribute(integer) FROM PUBLIC;
