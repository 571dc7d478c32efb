/* stripe_idem--1.2.sql: a fresh install of 1.2 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION stripe_idem" to load this file. \quit

--
-- One row per money-moving operation. The row is written, and its lease
-- taken, *before* the Stripe call, so that a retry after a crash finds the
-- same Idempotency-Key and Stripe replays instead of creating a second object.
--
-- The CHECK constraint repeats the rules the C functions enforce, so that
-- rows written by hand (or restored by pg_restore) obey them too.
--
CREATE TABLE stripe_idempotency_keys (
	-- The identifiers are ASCII tokens compared only for equality: the "C"
	-- collation makes every index comparison a memcmp instead of strcoll.
	operation_type			text COLLATE pg_catalog."C" NOT NULL,
	operation_id			text COLLATE pg_catalog."C" NOT NULL,
	stripe_idempotency_key	text COLLATE pg_catalog."C" NOT NULL,
	request_fingerprint		text,
	status					text		NOT NULL,
	stripe_resource_id		text,
	response				jsonb,
	attempts				integer		NOT NULL DEFAULT 1,
	locked_until			timestamptz,
	created_at				timestamptz	NOT NULL DEFAULT pg_catalog.statement_timestamp(),
	updated_at				timestamptz	NOT NULL DEFAULT pg_catalog.statement_timestamp(),
	completed_at			timestamptz,
	expires_at				timestamptz	NOT NULL,

	CONSTRAINT stripe_idempotency_keys_pkey
		PRIMARY KEY (operation_type, operation_id),
	CONSTRAINT stripe_idempotency_keys_key_key
		UNIQUE (stripe_idempotency_key)
);

--
-- Every rule a row must obey (formats, states and how they fit together),
-- in one function of the whole row for the table's one CHECK constraint;
-- src/row_rules.c lists the rules. The executor rebuilds each CHECK
-- expression from its stored text for every INSERT and UPDATE statement:
-- a call over one whole-row Var is the least there is to rebuild, far
-- less than the ten expressions of 1.0. Not executable by PUBLIC: rows
-- are written by the functions below, with the owner's rights.
--
CREATE FUNCTION stripe_idem_row_is_valid(stripe_idempotency_keys)
RETURNS boolean
AS 'MODULE_PATHNAME', 'stripe_idem_row_is_valid'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION stripe_idem_row_is_valid(stripe_idempotency_keys) IS
	'The rules of a stripe_idempotency_keys row, for its CHECK constraint (stripe_idem)';

REVOKE ALL ON FUNCTION stripe_idem_row_is_valid(stripe_idempotency_keys) FROM PUBLIC;

ALTER TABLE stripe_idempotency_keys
	ADD CONSTRAINT stripe_idempotency_keys_rules
		CHECK (@extschema@.stripe_idem_row_is_valid(stripe_idempotency_keys));

CREATE INDEX stripe_idempotency_keys_expires_at_idx
	ON stripe_idempotency_keys (expires_at);

COMMENT ON TABLE stripe_idempotency_keys IS
	'Stripe Idempotency-Keys, leases for in-flight calls and cached results (stripe_idem)';

-- pg_dump keeps the rows: they are application data, not extension setup.
SELECT pg_catalog.pg_extension_config_dump('stripe_idempotency_keys', '');

-- Nobody but the owner touches the table: applications call the functions
-- below, which run with the owner's rights.
REVOKE ALL ON TABLE stripe_idempotency_keys FROM PUBLIC;

--
-- The API. Not STRICT: a NULL where a value is required raises SQLSTATE
-- 22004 naming the argument, instead of silently returning NULL.
--
CREATE FUNCTION new_stripe_idempotency_key(operation_type text, operation_id text)
RETURNS text
AS 'MODULE_PATHNAME', 'new_stripe_idempotency_key'
LANGUAGE C VOLATILE PARALLEL SAFE;

-- key_window: how long after the key was made it may still be sent to
-- Stripe (stripe_idem.key_window when NULL). Past it, or past the ttl, an
-- operation whose outcome is unknown is answered "unresolved", never
-- "acquired" under a new key.
CREATE FUNCTION begin_stripe_idempotency(
	operation_type text,
	operation_id text,
	request_params jsonb DEFAULT NULL,
	lease interval DEFAULT NULL,
	ttl interval DEFAULT NULL,
	key_window interval DEFAULT NULL)
RETURNS TABLE (
	state text,
	stripe_idempotency_key text,
	stripe_resource_id text,
	response jsonb,
	retry_after interval,
	attempts integer)
AS 'MODULE_PATHNAME', 'begin_stripe_idempotency_1_2'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 1;

--
-- The reconcile path for "unresolved": the application asked Stripe and
-- found no object made with the stored key, so the operation starts over
-- under a fresh key (acquired, attempts 1). Anything but an unresolved row
-- under that key is refused (55000): there the old key may still be in use.
--
CREATE FUNCTION restart_stripe_idempotency(
	operation_type text,
	operation_id text,
	stripe_idempotency_key text,
	lease interval DEFAULT NULL,
	ttl interval DEFAULT NULL,
	key_window interval DEFAULT NULL)
RETURNS TABLE (
	state text,
	stripe_idempotency_key text,
	stripe_resource_id text,
	response jsonb,
	retry_after interval,
	attempts integer)
AS 'MODULE_PATHNAME', 'restart_stripe_idempotency'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 1;

CREATE FUNCTION check_stripe_idempotency(operation_type text, operation_id text)
RETURNS TABLE (
	found boolean,
	status text,
	stripe_idempotency_key text,
	stripe_resource_id text,
	response jsonb,
	created_at timestamptz,
	expires_at timestamptz)
AS 'MODULE_PATHNAME', 'check_stripe_idempotency'
LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER ROWS 1;

CREATE FUNCTION record_stripe_idempotency(
	operation_type text,
	operation_id text,
	stripe_idempotency_key text,
	stripe_resource_id text,
	response jsonb DEFAULT NULL,
	ttl interval DEFAULT NULL)
RETURNS TABLE (
	recorded boolean,
	stripe_resource_id text,
	response jsonb)
AS 'MODULE_PATHNAME', 'record_stripe_idempotency'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 1;

-- attempt, when given, is the attempts value begin returned with "acquired":
-- it fences off a caller whose lease already ran out and was taken over
-- (same key, higher attempts), so a late release cannot drop the new
-- holder's lease.
CREATE FUNCTION release_stripe_idempotency(
	operation_type text,
	operation_id text,
	stripe_idempotency_key text,
	attempt integer DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'release_stripe_idempotency'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER;

CREATE FUNCTION cleanup_expired_idempotency_keys(batch_size integer DEFAULT 10000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'cleanup_expired_idempotency_keys'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER;

--
-- Least privilege. The functions above run with the rights of the
-- extension's owner (SECURITY DEFINER), so a role needs EXECUTE on them and
-- no privilege on the table: it cannot write a row by hand, and so cannot
-- forge a completed answer that every retry would replay. They need no
-- "SET search_path": every statement they run names the table with the
-- extension's schema and every operator and function with pg_catalog
-- (src/plans.c), and a per-call SET would cost a GUC save and restore on
-- every call. Nothing is executable by PUBLIC: EXECUTE is granted role by
-- role (README, "Privileges"); cleanup is an operator's call.
--
REVOKE ALL ON FUNCTION new_stripe_idempotency_key(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION begin_stripe_idempotency(text, text, jsonb, interval, interval, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION restart_stripe_idempotency(text, text, text, interval, interval, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION check_stripe_idempotency(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION record_stripe_idempotency(text, text, text, text, jsonb, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION release_stripe_idempotency(text, text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION cleanup_expired_idempotency_keys(integer) FROM PUBLIC;

--
-- Adoption and operations (1.2): what a newcomer or on-call engineer needs
-- around the API. Without shared_preload_libraries nothing expires on its
-- own: say so where the extension is created, not only in the server log.
-- A WARNING: CREATE and ALTER EXTENSION raise client_min_messages to
-- WARNING while a script runs, so a NOTICE would never be seen.
-- The sweeper's settings exist only when the library is preloaded; they are
-- superuser-only, so a role that may not read them is simply not told.
--
DO $preload_notice$
BEGIN
	IF pg_catalog.current_setting('stripe_idem.sweep_interval', true) IS NULL THEN
		RAISE WARNING 'stripe_idem is not in shared_preload_libraries: expired keys will not be deleted on their own'
			USING DETAIL = 'Without the preload there is no background sweeper, and the views stripe_idem_stats and stripe_idem_sweeper raise an error.',
				  HINT = 'Add stripe_idem to shared_preload_libraries in postgresql.conf and restart the server (every database with the extension is then swept), or call cleanup_expired_idempotency_keys() from a scheduler.';
	END IF;
EXCEPTION
	WHEN insufficient_privilege THEN
		NULL;
END
$preload_notice$;

--
-- What on-call asks, per operation type, in this database: how many
-- operations are done, in flight, stalled (the holder's lease lapsed: the
-- next retry takes over with the same key), unresolved (DESIGN: no live
-- lease, and the key may no longer be sent: past its ttl, or a new default
-- lease would end after created_at + stripe_idem.key_window; counted from
-- the row's times whether or not anybody called begin since), expired and
-- waiting for the sweep; how long ago the oldest live lease was taken, and
-- the most attempts of an operation still in progress.
--
-- Cheap on a large table: only in_progress rows need the time tests, and
-- they are found through a partial index; expired rows through the
-- expires_at index; completed is counted on a small table and estimated
-- from the planner's statistics on a large one (below).
-- docs/OPERATIONS.md has the measurements on 10 million rows.
--
-- Readable by pg_monitor. The view runs with its owner's rights on the
-- table, so the monitoring role needs no privilege on it, and sees counts,
-- never keys or responses.
--
CREATE INDEX stripe_idempotency_keys_in_progress_idx
	ON stripe_idempotency_keys (operation_type)
	WHERE status OPERATOR(pg_catalog.=) 'in_progress';

CREATE VIEW stripe_idem_overview AS
WITH settings AS (
	SELECT pg_catalog.statement_timestamp() AS now,
		   COALESCE(pg_catalog.current_setting('stripe_idem.default_lease', true), '90s')::pg_catalog.interval AS lease,
		   COALESCE(pg_catalog.current_setting('stripe_idem.key_window', true), '1d')::pg_catalog.interval AS key_window,
		   COALESCE(pg_catalog.current_setting('stripe_idem.unresolved_retention', true), '30d')::pg_catalog.interval AS retention
),
size AS (
	SELECT c.reltuples FROM pg_catalog.pg_class c
	WHERE c.oid OPERATOR(pg_catalog.=) '@extschema@.stripe_idempotency_keys'::pg_catalog.regclass
),
-- Rows per operation type: counted while the table is small (under a
-- million rows at the last ANALYZE, or never analyzed); above that read
-- from the planner's statistics (the most common values of operation_type
-- and their frequencies, kept by autovacuum's ANALYZE), which costs nothing.
-- The one-time filter skips the scan that is not wanted.
counted AS (
	SELECT k.operation_type, pg_catalog.count(*) AS total
	FROM @extschema@.stripe_idempotency_keys k
	WHERE (SELECT reltuples FROM size) OPERATOR(pg_catalog.<) 1000000
	GROUP BY k.operation_type
),
estimated AS (
	SELECT v.operation_type COLLATE pg_catalog."C" AS operation_type,
		   (v.freq OPERATOR(pg_catalog.*) sz.reltuples)::pg_catalog.int8 AS total
	FROM size sz,
		 pg_catalog.pg_statistic st,
		 LATERAL ROWS FROM (pg_catalog.unnest(
			(CASE 1 WHEN st.stakind1 THEN st.stavalues1::pg_catalog.text WHEN st.stakind2 THEN st.stavalues2::pg_catalog.text
					WHEN st.stakind3 THEN st.stavalues3::pg_catalog.text WHEN st.stakind4 THEN st.stavalues4::pg_catalog.text
					WHEN st.stakind5 THEN st.stavalues5::pg_catalog.text END)::pg_catalog.text[]),
			pg_catalog.unnest(CASE 1 WHEN st.stakind1 THEN st.stanumbers1 WHEN st.stakind2 THEN st.stanumbers2
					WHEN st.stakind3 THEN st.stanumbers3 WHEN st.stakind4 THEN st.stanumbers4
					WHEN st.stakind5 THEN st.stanumbers5 END)) AS v(operation_type, freq)
	WHERE sz.reltuples OPERATOR(pg_catalog.>=) 1000000
	  AND st.starelid OPERATOR(pg_catalog.=) '@extschema@.stripe_idempotency_keys'::pg_catalog.regclass
	  AND st.staattnum OPERATOR(pg_catalog.=) (
			SELECT a.attnum FROM pg_catalog.pg_attribute a
			WHERE a.attrelid OPERATOR(pg_catalog.=) '@extschema@.stripe_idempotency_keys'::pg_catalog.regclass
			  AND a.attname OPERATOR(pg_catalog.=) 'operation_type')
	  AND NOT st.stainherit
),
-- Expired completed rows, waiting for the sweep, through the expires_at
-- index: ordered and limited so that the planner walks the index from its
-- start instead of guessing a third of the table (it cannot know
-- statement_timestamp() when it plans). More than a million is "a million":
-- the sweep is far behind either way.
past_expiry AS (
	SELECT p.operation_type,
		   pg_catalog.count(*) FILTER (WHERE p.status OPERATOR(pg_catalog.=) 'completed') AS completed_expired
	FROM (SELECT k.operation_type, k.status
		  FROM @extschema@.stripe_idempotency_keys k
		  WHERE k.expires_at OPERATOR(pg_catalog.<=) pg_catalog.statement_timestamp()
		  ORDER BY k.expires_at
		  LIMIT 1000000) p
	GROUP BY p.operation_type
),
open AS (
	SELECT k.operation_type,
		   pg_catalog.count(*) AS in_progress,
		   pg_catalog.count(*) FILTER (WHERE k.locked_until OPERATOR(pg_catalog.>) s.now) AS in_flight,
		   pg_catalog.count(*) FILTER (WHERE (k.locked_until IS NULL OR k.locked_until OPERATOR(pg_catalog.<=) s.now)
				AND k.expires_at OPERATOR(pg_catalog.>) s.now
				AND (s.now OPERATOR(pg_catalog.+) s.lease) OPERATOR(pg_catalog.<=) (k.created_at OPERATOR(pg_catalog.+) s.key_window)) AS stalled,
		   pg_catalog.count(*) FILTER (WHERE (k.locked_until IS NULL OR k.locked_until OPERATOR(pg_catalog.<=) s.now)
				AND (k.expires_at OPERATOR(pg_catalog.+) s.retention) OPERATOR(pg_catalog.>) s.now
				AND (k.expires_at OPERATOR(pg_catalog.<=) s.now
					 OR (s.now OPERATOR(pg_catalog.+) s.lease) OPERATOR(pg_catalog.>) (k.created_at OPERATOR(pg_catalog.+) s.key_window))) AS unresolved,
		   pg_catalog.count(*) FILTER (WHERE (k.locked_until IS NULL OR k.locked_until OPERATOR(pg_catalog.<=) s.now)
				AND (k.expires_at OPERATOR(pg_catalog.+) s.retention) OPERATOR(pg_catalog.<=) s.now) AS abandoned,
		   s.now OPERATOR(pg_catalog.-) (pg_catalog.min(k.updated_at) FILTER (WHERE k.locked_until OPERATOR(pg_catalog.>) s.now)) AS oldest_in_flight,
		   pg_catalog.max(k.attempts) AS max_attempts
	FROM @extschema@.stripe_idempotency_keys k, settings s
	WHERE k.status OPERATOR(pg_catalog.=) 'in_progress'
	GROUP BY k.operation_type, s.now
),
types AS (
	SELECT operation_type FROM counted
	UNION SELECT operation_type FROM estimated
	UNION SELECT operation_type FROM open
	UNION SELECT operation_type FROM past_expiry
)
SELECT t.operation_type,
	   GREATEST(COALESCE(c.total, e.total, 0)
				OPERATOR(pg_catalog.-) COALESCE(o.in_progress, 0)
				OPERATOR(pg_catalog.-) COALESCE(x.completed_expired, 0), 0) AS completed,
	   COALESCE(o.in_flight, 0) AS in_flight,
	   COALESCE(o.stalled, 0) AS stalled,
	   COALESCE(o.unresolved, 0) AS unresolved,
	   COALESCE(x.completed_expired, 0) OPERATOR(pg_catalog.+) COALESCE(o.abandoned, 0) AS expired,
	   o.oldest_in_flight,
	   COALESCE(o.max_attempts, 0) AS max_attempts
FROM types t
LEFT JOIN counted c ON c.operation_type OPERATOR(pg_catalog.=) t.operation_type
LEFT JOIN estimated e ON e.operation_type OPERATOR(pg_catalog.=) t.operation_type
LEFT JOIN open o ON o.operation_type OPERATOR(pg_catalog.=) t.operation_type
LEFT JOIN past_expiry x ON x.operation_type OPERATOR(pg_catalog.=) t.operation_type;

COMMENT ON VIEW stripe_idem_overview IS
	'Operations per type and state, for on-call and exporters (stripe_idem)';

REVOKE ALL ON stripe_idem_overview FROM PUBLIC;
GRANT SELECT ON stripe_idem_overview TO pg_monitor;

--
-- Coming from a hand-written table (README, "Coming from a hand-written
-- table"): copy its live rows into the extension's table, installed in a
-- schema of its own beside the old one. Columns are matched by name:
-- operation_type, operation_id and stripe_idempotency_key are required;
-- stripe_resource_id, response, status, created_at, expires_at,
-- completed_at and request_fingerprint are used when present.
--
--   - a row with a Stripe result (resource id or response) becomes
--     completed: retries replay it;
--   - a row with a key and no result becomes in_progress with a lapsed
--     lease and its OLD key, and keeps its created_at: the next begin hands
--     the same key to Stripe, which replays whatever that key created, or
--     answers "unresolved" once the key is older than the key window;
--   - expired rows are skipped: a completed one past its expires_at, one
--     without a result only once it would count as absent (past expires_at
--     + stripe_idem.unresolved_retention), since until then its outcome is
--     unknown;
--   - operations the extension already holds are left alone, so a second
--     run copies nothing it copied before.
-- Every row is checked first (the table's rules, a key owned by another
-- operation): a bad source raises an error naming the row, and nothing is
-- written. Returns how many rows were copied. The table is locked against
-- writers for the copy (SHARE ROW EXCLUSIVE: begin waits, reads go on).
-- An operator's call: superusers, and whoever they grant it to.
--
CREATE FUNCTION stripe_idem_import(source regclass)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $import$
DECLARE
	tbl constant text := '@extschema@.stripe_idempotency_keys';
	required constant text[] := ARRAY['operation_type', 'operation_id', 'stripe_idempotency_key'];
	optional constant text[] := ARRAY['stripe_resource_id', 'response', 'status', 'created_at',
									  'expires_at', 'completed_at', 'request_fingerprint'];
	present text[];
	col text;
	expr text[] := ARRAY[]::text[];
	ttl interval := COALESCE(current_setting('stripe_idem.default_ttl', true), '1d')::interval;
	key_window interval := COALESCE(current_setting('stripe_idem.key_window', true), '1d')::interval;
	retention interval := COALESCE(current_setting('stripe_idem.unresolved_retention', true), '30d')::interval;
	bad record;
	copied bigint;
BEGIN
	IF source IS NULL THEN
		RAISE EXCEPTION 'source must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF source OPERATOR(pg_catalog.=) tbl::regclass THEN
		RAISE EXCEPTION 'cannot import % into itself', source
			USING ERRCODE = '22023',
				  HINT = 'Pass the hand-written table, e.g. stripe_idem_import(''public.stripe_idempotency_keys'') with the extension in another schema.';
	END IF;

	SELECT array_agg(attname::text) INTO present
	FROM pg_attribute
	WHERE attrelid OPERATOR(pg_catalog.=) source AND attnum OPERATOR(pg_catalog.>) 0
	  AND NOT attisdropped;

	FOREACH col IN ARRAY required LOOP
		IF NOT col OPERATOR(pg_catalog.=) ANY (present) THEN
			RAISE EXCEPTION 'column "%" does not exist in %', col, source
				USING ERRCODE = '42703',
					  DETAIL = 'stripe_idem_import() needs operation_type, operation_id and stripe_idempotency_key.',
					  HINT = 'Rename the column, or import from a view that names the columns so.';
		END IF;
	END LOOP;

	-- Each column as the extension's type; NULL when the source lacks it.
	FOREACH col IN ARRAY (required OPERATOR(pg_catalog.||) optional) LOOP
		IF col OPERATOR(pg_catalog.=) ANY (present) THEN
			expr := expr OPERATOR(pg_catalog.||) format('s.%I::%s AS %I', col,
				CASE col WHEN 'response' THEN 'jsonb'
						 WHEN 'operation_type' THEN 'text COLLATE pg_catalog."C"'
						 WHEN 'operation_id' THEN 'text COLLATE pg_catalog."C"'
						 WHEN 'stripe_idempotency_key' THEN 'text COLLATE pg_catalog."C"'
						 WHEN 'created_at' THEN 'timestamptz'
						 WHEN 'expires_at' THEN 'timestamptz'
						 WHEN 'completed_at' THEN 'timestamptz'
						 ELSE 'text' END, col);
		ELSE
			expr := expr OPERATOR(pg_catalog.||) format('NULL::%s AS %I',
				CASE col WHEN 'response' THEN 'jsonb'
						 WHEN 'created_at' THEN 'timestamptz'
						 WHEN 'expires_at' THEN 'timestamptz'
						 WHEN 'completed_at' THEN 'timestamptz'
						 ELSE 'text' END, col);
		END IF;
	END LOOP;

	EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', tbl);

	-- The rows as they would be written, one per source row, in a scratch
	-- table that lives until the end of the transaction.
	IF to_regclass('pg_temp.stripe_idem_import_rows') IS NOT NULL THEN
		DROP TABLE pg_temp.stripe_idem_import_rows;
	END IF;
	EXECUTE format($q$
		CREATE TEMP TABLE stripe_idem_import_rows ON COMMIT DROP AS
		WITH src AS (SELECT %s FROM %s s),
		shaped AS (
			SELECT src.*,
				   (src.stripe_resource_id IS NOT NULL OR src.response IS NOT NULL) AS has_result,
				   COALESCE(src.created_at,
							CASE WHEN src.stripe_resource_id IS NULL AND src.response IS NULL
								 -- a key of unknown age: treat it as at the end of the window
								 THEN (statement_timestamp() OPERATOR(pg_catalog.-) $1)
								 ELSE statement_timestamp() END) AS made_at
			FROM src)
		SELECT row_number() OVER () AS n, shaped.*,
			   COALESCE(shaped.expires_at, shaped.made_at OPERATOR(pg_catalog.+) $2) AS expires
		FROM shaped$q$, array_to_string(expr, ', '), source)
	USING key_window, ttl;

	DELETE FROM pg_temp.stripe_idem_import_rows r
	WHERE CASE WHEN r.has_result THEN r.expires OPERATOR(pg_catalog.<=) statement_timestamp()
			   ELSE (r.expires OPERATOR(pg_catalog.+) retention) OPERATOR(pg_catalog.<=) statement_timestamp() END;

	-- Every rule, before anything is written; the first bad row is named.
	FOR bad IN
		SELECT r.*
		FROM pg_temp.stripe_idem_import_rows r
		WHERE r.operation_type IS NULL OR r.operation_id IS NULL OR r.stripe_idempotency_key IS NULL
		   OR NOT @extschema@.stripe_idem_row_is_valid(ROW(r.operation_type, r.operation_id,
				r.stripe_idempotency_key, r.request_fingerprint,
				CASE WHEN r.has_result THEN 'completed' ELSE 'in_progress' END,
				r.stripe_resource_id, r.response, 1, NULL, r.made_at, statement_timestamp(),
				CASE WHEN r.has_result THEN COALESCE(r.completed_at, r.made_at) END,
				r.expires)::@extschema@.stripe_idempotency_keys)
		ORDER BY r.n
		LIMIT 1
	LOOP
		RAISE EXCEPTION 'row % of % breaks the rules of stripe_idempotency_keys', bad.n, source
			USING ERRCODE = '22023',
				  DETAIL = format('Operation %s/%s: %s. Nothing was imported.',
					left(coalesce(bad.operation_type, 'NULL'), 64), left(coalesce(bad.operation_id, 'NULL'), 128),
					CASE
					  WHEN bad.operation_type IS NULL OR bad.operation_type !~ '^[A-Za-z0-9_.:-]{1,64}$'
						THEN 'operation_type must be 1 to 64 of A-Z a-z 0-9 _ . : -'
					  WHEN bad.operation_id IS NULL OR bad.operation_id !~ '^[!-~]{1,128}$'
						THEN 'operation_id must be 1 to 128 printable ASCII characters'
					  WHEN bad.stripe_idempotency_key IS NULL OR bad.stripe_idempotency_key !~ '^[!-~]{1,255}$'
						THEN 'stripe_idempotency_key must be 1 to 255 printable ASCII characters'
					  WHEN bad.request_fingerprint !~ '^[0-9a-f]{64}$'
						THEN 'request_fingerprint must be NULL or 64 lower-case hex digits'
					  WHEN length(bad.stripe_resource_id) NOT BETWEEN 1 AND 255
						THEN 'stripe_resource_id must be NULL or 1 to 255 characters'
					  ELSE 'its times do not fit together (expires_at, created_at)' END),
				  HINT = 'Fix or delete that row in the source, or import from a view that leaves it out.';
	END LOOP;

	FOR bad IN
		SELECT r.n, r.operation_type, r.operation_id
		FROM pg_temp.stripe_idem_import_rows r
		WHERE EXISTS (SELECT FROM pg_temp.stripe_idem_import_rows o
					  WHERE o.stripe_idempotency_key OPERATOR(pg_catalog.=) r.stripe_idempotency_key
						AND o.n OPERATOR(pg_catalog.<>) r.n)
		   OR EXISTS (SELECT FROM pg_temp.stripe_idem_import_rows o
					  WHERE o.operation_type OPERATOR(pg_catalog.=) r.operation_type
						AND o.operation_id OPERATOR(pg_catalog.=) r.operation_id
						AND o.n OPERATOR(pg_catalog.<>) r.n)
		ORDER BY r.n
		LIMIT 1
	LOOP
		RAISE EXCEPTION 'row % of % repeats an operation or a stripe_idempotency_key of another row', bad.n, source
			USING ERRCODE = '23505',
				  DETAIL = format('Operation %s/%s. Nothing was imported.', bad.operation_type, bad.operation_id);
	END LOOP;

	EXECUTE format($q$
		SELECT r.n, r.operation_type, r.operation_id
		FROM pg_temp.stripe_idem_import_rows r
		JOIN %s k ON k.stripe_idempotency_key OPERATOR(pg_catalog.=) r.stripe_idempotency_key
		WHERE NOT (k.operation_type OPERATOR(pg_catalog.=) r.operation_type
				   AND k.operation_id OPERATOR(pg_catalog.=) r.operation_id)
		ORDER BY r.n LIMIT 1$q$, tbl) INTO bad;
	IF bad.n IS NOT NULL THEN
		RAISE EXCEPTION 'row % of % has a stripe_idempotency_key another operation owns', bad.n, source
			USING ERRCODE = '23505',
				  DETAIL = format('Operation %s/%s. Nothing was imported.', bad.operation_type, bad.operation_id);
	END IF;

	EXECUTE format($q$
		INSERT INTO %s AS k (operation_type, operation_id, stripe_idempotency_key,
			request_fingerprint, status, stripe_resource_id, response, attempts,
			locked_until, created_at, updated_at, completed_at, expires_at)
		SELECT r.operation_type, r.operation_id, r.stripe_idempotency_key,
			   r.request_fingerprint,
			   CASE WHEN r.has_result THEN 'completed' ELSE 'in_progress' END,
			   r.stripe_resource_id, r.response, 1, NULL, r.made_at, statement_timestamp(),
			   CASE WHEN r.has_result THEN COALESCE(r.completed_at, r.made_at) END,
			   r.expires
		FROM pg_temp.stripe_idem_import_rows r
		ORDER BY r.n
		ON CONFLICT (operation_type, operation_id) DO NOTHING$q$, tbl);
	GET DIAGNOSTICS copied = ROW_COUNT;
	DROP TABLE pg_temp.stripe_idem_import_rows;
	RETURN copied;
END
$import$;

COMMENT ON FUNCTION stripe_idem_import(regclass) IS
	'Copy the live rows of a hand-written idempotency table into the extension''s (stripe_idem)';

REVOKE ALL ON FUNCTION stripe_idem_import(regclass) FROM PUBLIC;

--
-- Cumulative counters, kept in shared memory (needs shared_preload_libraries).
--
CREATE FUNCTION stripe_idem_stats(
	OUT acquired bigint,
	OUT completed_replays bigint,
	OUT in_progress_conflicts bigint,
	OUT mismatches bigint,
	OUT records bigint,
	OUT releases bigint,
	OUT rows_swept bigint,
	OUT unresolved bigint,
	OUT stats_reset timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'stripe_idem_stats'
LANGUAGE C VOLATILE PARALLEL SAFE;

CREATE VIEW stripe_idem_stats AS SELECT * FROM stripe_idem_stats();

CREATE FUNCTION stripe_idem_stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'stripe_idem_stats_reset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Monitoring roles may read the counters (as with stripe_idem_sweeper);
-- resetting them stays with superusers.
REVOKE ALL ON FUNCTION stripe_idem_stats() FROM PUBLIC;
REVOKE ALL ON FUNCTION stripe_idem_stats_reset() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION stripe_idem_stats() TO pg_monitor;
GRANT SELECT ON stripe_idem_stats TO pg_monitor;

--
-- The background sweeper (needs shared_preload_libraries): one row per
-- database in stripe_idem.databases, and a way to start a pass now.
--
CREATE FUNCTION stripe_idem_sweeper(
	OUT database name,
	OUT last_started timestamptz,
	OUT last_finished timestamptz,
	OUT last_rows_deleted bigint,
	OUT total_rows_deleted bigint,
	OUT passes bigint,
	OUT last_error text,
	OUT next_pass_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stripe_idem_sweeper'
LANGUAGE C VOLATILE PARALLEL SAFE ROWS 4;

CREATE VIEW stripe_idem_sweeper AS SELECT * FROM stripe_idem_sweeper();

-- Who may read it: monitoring roles, not everybody. The view reports on
-- every swept database of the cluster, not only the one it is read in, and
-- last_error repeats server errors about the keys table; that is the same
-- audience as other sessions' activity in pg_stat_activity, so pg_monitor.
-- A function called through a view is checked against the caller, so the
-- function needs the grant as well as the view.
REVOKE ALL ON FUNCTION stripe_idem_sweeper() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION stripe_idem_sweeper() TO pg_monitor;
GRANT SELECT ON stripe_idem_sweeper TO pg_monitor;

-- Starts a pass at once (also while sweep_interval is 0). An operator's
-- action: superusers, and whoever they grant it to.
CREATE FUNCTION stripe_idem_wake_sweeper()
RETURNS boolean
AS 'MODULE_PATHNAME', 'stripe_idem_wake_sweeper'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

REVOKE EXECUTE ON FUNCTION stripe_idem_wake_sweeper() FROM PUBLIC;

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
-- distributes the table by operation_id and sends every begin, restart,
-- check, record and release call to the node holding that operation's shard.
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
		'@extschema@.begin_stripe_idempotency(text, text, jsonb, interval, interval, interval)',
		'@extschema@.restart_stripe_idempotency(text, text, text, interval, interval, interval)',
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

-- Dropping the extension while Citus distributes its table
--
-- DROP EXTENSION drops the table, and on a Citus coordinator what becomes
-- of the table's shards is then up to Citus, which decides from how the
-- PostgreSQL major reports the dropped table: on 15 the shards stayed and
-- the command failed, on 17 every shard on every node is dropped with the
-- keys in it. This event trigger refuses, before anything is dropped and
-- the same way on every major, a DROP EXTENSION naming stripe_idem while
-- Citus lists shards of its table (2BP01; src/drop_guard.c). The hint names
-- the deliberate way: citus_drop_all_shards() first (docs/CITUS.md).
-- Without Citus it returns at once. Nobody calls the function but the
-- event trigger, which is not checked for EXECUTE: PUBLIC gets nothing.
--
CREATE FUNCTION stripe_idem_drop_guard()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'stripe_idem_drop_guard'
LANGUAGE C;

REVOKE ALL ON FUNCTION stripe_idem_drop_guard() FROM PUBLIC;

CREATE EVENT TRIGGER stripe_idem_drop_guard ON ddl_command_start
	WHEN TAG IN ('DROP EXTENSION')
	EXECUTE FUNCTION @extschema@.stripe_idem_drop_guard();
