-- stripe_idem on hosted Supabase: the managed edition (SQL and PL/pgSQL,
-- tle/stripe_idem_tle.sql in the stripe_idem repository) registered with
-- pg_tle, so that the next migration's
--     CREATE EXTENSION IF NOT EXISTS stripe_idem SCHEMA payments;
-- works on a hosted project, which loads no C extension. Where the C
-- extension is installed (self-hosted Supabase, any PostgreSQL with the
-- package) this does nothing and the next migration creates the C
-- extension. Written by tle/gen_install_pg_tle.sh: do not edit.
-- The managed edition's differences from the C extension, and its sweep
-- (pg_cron job "stripe_idem_sweep", when pg_cron is enabled before the next
-- migration runs): docs/MANAGED.md.
DO $migration$
BEGIN
	IF EXISTS (SELECT FROM pg_catalog.pg_available_extensions WHERE name = 'stripe_idem') THEN
		RAISE NOTICE 'stripe_idem: the C extension is installed on this server; the managed edition is not registered';
		RETURN;
	END IF;
	CREATE EXTENSION IF NOT EXISTS pg_tle;
	IF EXISTS (SELECT FROM pgtle.available_extensions() WHERE name = 'stripe_idem') THEN
		RETURN;
	END IF;
	PERFORM pgtle.install_extension(
		'stripe_idem',
		'1.2',
		'Stripe idempotency keys with leases (managed edition: SQL and PL/pgSQL)',
$stripe_idem_tle_1_2$
/*
 * stripe_idem_tle.sql: stripe_idem 1.2, the managed edition.
 *
 * The API of the C extension (begin, check, record, release, restart,
 * cleanup, new key; the states acquired, completed, in_progress, mismatch
 * and unresolved; the key window, the retention, the size bounds; the
 * same SQLSTATEs) in SQL and PL/pgSQL only: no C library, nothing in
 * shared_preload_libraries, no superuser at run time. For servers that
 * load no C extension: hosted Supabase and Amazon RDS / Aurora through
 * pg_tle (tle/install_pg_tle.sql registers this file), and Cloud SQL,
 * Azure, Neon or any PostgreSQL 15+ as a plain migration:
 *
 *     psql -v ON_ERROR_STOP=1 -f tle/stripe_idem_tle.sql
 *
 * It installs into the first schema on search_path, as CREATE EXTENSION
 * without SCHEMA does. Where it differs from the C extension is listed in
 * docs/MANAGED.md; the regression and isolation suites run against both
 * (test/suites/15-managed.sh).
 *
 * When pg_cron is installed in this database and the installing role may
 * use it, a sweep job is scheduled (job "stripe_idem_sweep", every minute,
 * batches of 1000 rows); otherwise a NOTICE says how to schedule one.
 *
 * This file is plain SQL (no psql meta-commands): pg_tle registers it as
 * the extension's install script, and migration tools run it as is.
 *
 * Names: the functions below name the table and each other without a
 * schema; at the end of the file every function gets
 * SET search_path = pg_catalog, <this schema>, pg_temp (see there).
 */

--
-- One row per money-moving operation: the same table, columns and indexes
-- as the C extension's, so a database can move between the editions with
-- its rows.
--
CREATE TABLE stripe_idempotency_keys (
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
		UNIQUE (stripe_idempotency_key),
	--
	-- The rules of src/row_rules.c as one SQL CHECK expression (what the C
	-- extension evaluates in stripe_idem_row_is_valid): formats and lengths
	-- (bytes for the ASCII tokens, characters for the resource id), the two
	-- states, a completed row carries a result and no lease, the lease never
	-- outlives the row. A NULL passes, as in C: NOT NULL reports it.
	--
	CONSTRAINT stripe_idempotency_keys_rules CHECK (
		pg_catalog.octet_length(operation_type) OPERATOR(pg_catalog.<=) 64
		AND operation_type OPERATOR(pg_catalog.~) '^[A-Za-z0-9_.:-]+$'
		AND pg_catalog.octet_length(operation_id) OPERATOR(pg_catalog.<=) 128
		AND operation_id OPERATOR(pg_catalog.~) '^[!-~]+$'
		AND pg_catalog.octet_length(stripe_idempotency_key) OPERATOR(pg_catalog.<=) 255
		AND stripe_idempotency_key OPERATOR(pg_catalog.~) '^[!-~]+$'
		AND pg_catalog.octet_length(request_fingerprint) OPERATOR(pg_catalog.=) 64
		AND request_fingerprint OPERATOR(pg_catalog.~) '^[0-9a-f]+$'
		AND status OPERATOR(pg_catalog.=) ANY (ARRAY['in_progress', 'completed'])
		AND pg_catalog.char_length(stripe_resource_id) OPERATOR(pg_catalog.<=) 255
		AND stripe_resource_id OPERATOR(pg_catalog.<>) ''
		AND attempts OPERATOR(pg_catalog.>=) 1
		AND (status OPERATOR(pg_catalog.<>) 'completed'
			 OR stripe_resource_id IS NOT NULL OR response IS NOT NULL)
		AND (locked_until IS NULL OR status OPERATOR(pg_catalog.=) 'in_progress')
		AND locked_until OPERATOR(pg_catalog.<=) expires_at)
);

CREATE INDEX stripe_idempotency_keys_expires_at_idx
	ON stripe_idempotency_keys (expires_at);

COMMENT ON TABLE stripe_idempotency_keys IS
	'Stripe Idempotency-Keys, leases for in-flight calls and cached results (stripe_idem, managed edition)';

-- Nobody but the owner touches the table: applications call the functions
-- below, which run with the owner's rights.
REVOKE ALL ON TABLE stripe_idempotency_keys FROM PUBLIC;

-- Under CREATE EXTENSION (pg_tle) the table is the extension's, and
-- pg_dump would leave its rows out: they are application data, so it is
-- registered as configuration data, as the C extension's is. Installed
-- with psql the table is an ordinary table, dumped as any other.
DO $dump$
BEGIN
	-- run by CREATE EXTENSION: the table is already the extension's member
	IF EXISTS (SELECT FROM pg_catalog.pg_depend
			   WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass
				 AND objid = pg_catalog.format('%I.stripe_idempotency_keys',
											   current_schema())::pg_catalog.regclass
				 AND deptype = 'e') THEN
		PERFORM pg_catalog.pg_extension_config_dump('stripe_idempotency_keys', '');
	END IF;
END
$dump$;

--
-- Settings. The C extension defines them as server settings with checked
-- ranges; here they are read, when set, from the custom settings of the
-- same names (SET stripe_idem.default_ttl = '1h' works as before) and
-- checked where they are used. Unset, the C defaults apply.
--
-- A duration setting in seconds, as a pure-time interval: the text forms a
-- server setting with unit "s" accepts (a number of seconds, or a number
-- with us, ms, s, min, h or d).
CREATE FUNCTION _stripe_idem_setting_secs(name text, default_secs bigint)
RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $fn$
DECLARE
	v text := current_setting(name, true);
	m text[];
BEGIN
	IF v IS NULL OR v = '' THEN
		RETURN default_secs;
	END IF;
	m := regexp_match(v, '^\s*([-+]?[0-9]+(?:\.[0-9]*)?)\s*(us|ms|s|min|h|d)?\s*$');
	IF m IS NULL THEN
		RAISE EXCEPTION 'invalid value for parameter "%": "%"', name, v
			USING ERRCODE = '22023',
				  HINT = 'Valid units for this parameter are "us", "ms", "s", "min", "h", and "d".';
	END IF;
	RETURN round(m[1]::numeric * CASE coalesce(m[2], 's')
		WHEN 'us' THEN 0.000001 WHEN 'ms' THEN 0.001 WHEN 's' THEN 1
		WHEN 'min' THEN 60 WHEN 'h' THEN 3600 ELSE 86400 END);
END
$fn$;

-- A size setting in bytes (B, kB, MB, GB, TB, as for unit "B").
CREATE FUNCTION _stripe_idem_setting_bytes(name text, default_bytes bigint)
RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $fn$
DECLARE
	v text := current_setting(name, true);
	m text[];
	b bigint;
BEGIN
	IF v IS NULL OR v = '' THEN
		RETURN default_bytes;
	END IF;
	m := regexp_match(v, '^\s*([0-9]+(?:\.[0-9]*)?)\s*(B|kB|MB|GB|TB)?\s*$');
	IF m IS NULL THEN
		RAISE EXCEPTION 'invalid value for parameter "%": "%"', name, v
			USING ERRCODE = '22023',
				  HINT = 'Valid units for this parameter are "B", "kB", "MB", "GB", and "TB".';
	END IF;
	b := round(m[1]::numeric * CASE coalesce(m[2], 'B')
		WHEN 'B' THEN 1 WHEN 'kB' THEN 1024 WHEN 'MB' THEN 1048576
		WHEN 'GB' THEN 1073741824 ELSE 1099511627776 END);
	IF b < 1024 OR b > 1073741824 THEN
		RAISE EXCEPTION '% is out of range', name
			USING ERRCODE = '22023',
				  DETAIL = format('%s must be between 1024 and 1073741824 bytes.', name);
	END IF;
	RETURN b;
END
$fn$;

-- Rows that expired before this are absent (stripe_idem.unresolved_retention,
-- 1 day to 3650 days, default 30 days).
CREATE FUNCTION _stripe_idem_retention_cutoff()
RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $fn$
DECLARE
	s bigint := _stripe_idem_setting_secs('stripe_idem.unresolved_retention', 2592000);
BEGIN
	IF s < 86400 OR s > 315360000 THEN
		RAISE EXCEPTION 'stripe_idem.unresolved_retention is out of range'
			USING ERRCODE = '22023',
				  DETAIL = 'stripe_idem.unresolved_retention must be at least 1 day and at most 3650 days.';
	END IF;
	RETURN statement_timestamp() - make_interval(secs => s);
END
$fn$;

-- How long after a lease ended Stripe may still act on a request sent
-- under it (stripe_idem.settle_time, 0 to 1 day, default 10 minutes):
-- takeovers keep this much of the key window free, and an operation whose
-- last lease ended less than this ago is not unresolved yet.
CREATE FUNCTION _stripe_idem_settle_secs()
RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $fn$
DECLARE
	s bigint := _stripe_idem_setting_secs('stripe_idem.settle_time', 600);
BEGIN
	IF s < 0 OR s > 86400 THEN
		RAISE EXCEPTION 'stripe_idem.settle_time is out of range'
			USING ERRCODE = '22023',
				  DETAIL = 'stripe_idem.settle_time must be at least 0 and at most 1 day.';
	END IF;
	RETURN s;
END
$fn$;

--
-- Argument checks, with the C extension's messages (src/validate.c). The
-- callers test the common case inline and come here only to raise.
--
-- An ASCII token that failed its check: say which rule it broke.
CREATE FUNCTION _stripe_idem_bad_token(argname text, value text, maxlen integer,
									   pattern text, rule text)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $fn$
DECLARE
	bytes bytea := convert_to(value, getdatabaseencoding());
	len integer := octet_length(bytes);
	b integer;
BEGIN
	IF len < 1 OR len > maxlen THEN
		RAISE EXCEPTION 'invalid %', argname
			USING ERRCODE = '22023',
				  DETAIL = format('%s must be 1 to %s characters long, but it is %s bytes long.',
								  argname, maxlen, len),
				  HINT = rule;
	END IF;
	FOR i IN 0 .. len - 1 LOOP
		b := get_byte(bytes, i);
		IF b >= 128 OR chr(b) !~ pattern THEN
			RAISE EXCEPTION 'invalid %', argname
				USING ERRCODE = '22023',
					  DETAIL = format('Character %s of %s (byte 0x%s) is not allowed.',
									  i + 1, argname, lpad(to_hex(b), 2, '0')),
					  HINT = rule;
		END IF;
	END LOOP;
END
$fn$;

CREATE FUNCTION _stripe_idem_check_type(value text)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $fn$
BEGIN
	IF octet_length(value) BETWEEN 1 AND 64 AND value ~ '^[A-Za-z0-9_.:-]+$' THEN
		RETURN;
	END IF;
	PERFORM _stripe_idem_bad_token('operation_type', value, 64, '^[A-Za-z0-9_.:-]$',
		'Use letters, digits, "_", ".", ":" and "-", for example "checkout:create".');
END
$fn$;

CREATE FUNCTION _stripe_idem_check_id(value text)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $fn$
BEGIN
	IF octet_length(value) BETWEEN 1 AND 128 AND value ~ '^[!-~]+$' THEN
		RETURN;
	END IF;
	PERFORM _stripe_idem_bad_token('operation_id', value, 128, '^[!-~]$',
		'Use printable ASCII characters without spaces (0x21 to 0x7E).');
END
$fn$;

CREATE FUNCTION _stripe_idem_check_key(value text)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $fn$
BEGIN
	IF octet_length(value) BETWEEN 1 AND 255 AND value ~ '^[!-~]+$' THEN
		RETURN;
	END IF;
	PERFORM _stripe_idem_bad_token('stripe_idempotency_key', value, 255, '^[!-~]$',
		'Pass the key begin_stripe_idempotency returned; Stripe accepts 1 to 255 printable ASCII characters.');
END
$fn$;

-- An optional duration argument (ttl, lease, key_window) as a pure-time
-- interval between 1 second and max: months count 30 days and days 24
-- hours, as interval comparison (and the C extension) counts them. A NULL
-- takes the setting's value, which is checked too.
CREATE FUNCTION _stripe_idem_interval(value interval, argname text, setting text,
									  default_secs bigint, max interval, max_name text)
RETURNS interval
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $fn$
DECLARE
	v interval := value;
BEGIN
	IF v IS NULL THEN
		v := make_interval(secs => _stripe_idem_setting_secs(setting, default_secs));
	END IF;
	IF v < interval '1 second' OR v > max THEN
		RAISE EXCEPTION '% is out of range', argname
			USING ERRCODE = '22023',
				  DETAIL = format('%s must be at least 1 second and at most %s%s.', argname, max_name,
								  CASE WHEN value IS NULL
									   THEN ' (the value came from the stripe_idem setting)'
									   ELSE '' END);
	END IF;
	-- extract(epoch) counts a year as 365.25 days; the C extension as 360
	RETURN make_interval(secs => extract(epoch FROM v) - extract(year FROM v) * 453600);
END
$fn$;

-- A jsonb argument larger than the limit (its size uncompressed, as
-- stored) is refused before anything is done with it.
CREATE FUNCTION _stripe_idem_check_size(value jsonb, argname text, setting text)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $fn$
DECLARE
	size bigint;
	limit_bytes bigint;
BEGIN
	IF value IS NULL THEN
		RETURN;
	END IF;
	size := pg_column_size(value) - 4;
	IF size <= 1024 THEN
		RETURN;
	END IF;
	limit_bytes := _stripe_idem_setting_bytes(setting, 1048576);
	IF size > limit_bytes THEN
		RAISE EXCEPTION '% is too large', argname
			USING ERRCODE = '54000',
				  DETAIL = format('%s is %s bytes; the limit is %s bytes.', argname, size, limit_bytes),
				  HINT = format('The limit is the setting %s.', setting);
	END IF;
END
$fn$;

--
-- The refusal in transaction blocks (25001). The C extension asks the
-- server (IsTransactionBlock, IsSubTransaction); PL/pgSQL cannot. What it
-- can see: whether the transaction already has a transaction id, that is,
-- whether something was written in it before this call. In autocommit
-- begin is the first thing that writes, so a transaction id at entry means
-- an earlier statement of an open transaction wrote: refused. An earlier
-- call of the same statement (begin over several rows) is recognised by a
-- transaction-local marker holding the statement's start time. What it
-- cannot see: a transaction block or a savepoint in which nothing was
-- written yet (BEGIN; SELECT begin_stripe_idempotency(...)) is not refused
-- (docs/MANAGED.md). Returns whether the transaction had no id at entry.
--
CREATE FUNCTION _stripe_idem_refuse_in_transaction_block(funcname text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $fn$
DECLARE
	allow text := current_setting('stripe_idem.allow_begin_in_transaction', true);
BEGIN
	IF pg_current_xact_id_if_assigned() IS NULL THEN
		RETURN true;
	END IF;
	IF allow IS NOT NULL AND allow <> '' AND allow::boolean THEN
		RETURN false;
	END IF;
	IF current_setting('stripe_idem_managed.statement_start', true)
		IS NOT DISTINCT FROM extract(epoch FROM statement_timestamp())::text THEN
		RETURN false;
	END IF;
	RAISE EXCEPTION '% cannot run inside a transaction block', funcname
		USING ERRCODE = '25001',
			  DETAIL = 'A rollback after the key was returned would lose it, and the retry would get a new key: Stripe would create a second object.',
			  HINT = 'Call it as a statement of its own in autocommit mode (psycopg: connection.autocommit = True). '
					 'If the transaction always commits before the key is sent to Stripe, SET LOCAL stripe_idem.allow_begin_in_transaction = on first.';
END
$fn$;

-- After a call that wrote: the statement marker above, and a commit that
-- reaches the disk even under synchronous_commit = off (an acquired key must
-- survive a crash once the caller has seen it; C: ForceSyncCommit).
CREATE FUNCTION _stripe_idem_after_write(xid_was_unassigned boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $fn$
BEGIN
	IF xid_was_unassigned THEN
		PERFORM set_config('stripe_idem_managed.statement_start',
						   extract(epoch FROM statement_timestamp())::text, true);
	END IF;
	IF current_setting('synchronous_commit') = 'off' THEN
		PERFORM set_config('synchronous_commit', 'local', true);
	END IF;
END
$fn$;

--
-- The API. Not STRICT: a NULL where a value is required raises SQLSTATE
-- 22004 naming the argument.
--
CREATE FUNCTION new_stripe_idempotency_key(operation_type text, operation_id text)
RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL SAFE
AS $fn$
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'operation_type must not be null' USING ERRCODE = '22004';
	END IF;
	IF $2 IS NULL THEN
		RAISE EXCEPTION 'operation_id must not be null' USING ERRCODE = '22004';
	END IF;
	PERFORM _stripe_idem_check_type($1);
	PERFORM _stripe_idem_check_id($2);
	RETURN $1 || ':' || $2 || ':' || gen_random_uuid()::text;
END
$fn$;

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
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 1
AS $fn$
#variable_conflict use_column
DECLARE
	v_type text := $1;
	v_id text := $2;
	v_params jsonb := $3;
	v_now timestamptz := statement_timestamp();
	v_ttl interval;
	v_window interval;
	v_lease interval;
	v_fp text;
	v_key text;
	v_cutoff timestamptz;
	v_settle interval;
	v_fresh boolean;
	v_found boolean;
	r stripe_idempotency_keys;
BEGIN
	-- Everything is checked before anything is read or written.
	v_fresh := _stripe_idem_refuse_in_transaction_block('begin_stripe_idempotency');
	IF v_type IS NULL THEN
		RAISE EXCEPTION 'operation_type must not be null' USING ERRCODE = '22004';
	END IF;
	IF v_id IS NULL THEN
		RAISE EXCEPTION 'operation_id must not be null' USING ERRCODE = '22004';
	END IF;
	IF NOT (octet_length(v_type) BETWEEN 1 AND 64 AND v_type ~ '^[A-Za-z0-9_.:-]+$') THEN
		PERFORM _stripe_idem_check_type(v_type);
	END IF;
	IF NOT (octet_length(v_id) BETWEEN 1 AND 128 AND v_id ~ '^[!-~]+$') THEN
		PERFORM _stripe_idem_check_id(v_id);
	END IF;
	PERFORM _stripe_idem_check_size(v_params, 'request_params',
												'stripe_idem.max_request_params_size');
	v_ttl := _stripe_idem_interval($5, 'ttl', 'stripe_idem.default_ttl', 86400,
											   interval '365 days', '365 days');
	v_window := _stripe_idem_interval($6, 'key_window', 'stripe_idem.key_window', 86400,
												  interval '365 days', '365 days');
	IF v_window < v_ttl THEN
		v_lease := _stripe_idem_interval($4, 'lease', 'stripe_idem.default_lease', 90,
													 v_window, 'the key_window');
	ELSE
		v_lease := _stripe_idem_interval($4, 'lease', 'stripe_idem.default_lease', 90,
													 v_ttl, 'the ttl');
	END IF;
	IF v_params IS NOT NULL THEN
		v_fp := encode(sha256(convert_to(v_params::text, getdatabaseencoding())), 'hex');
	END IF;
	v_settle := make_interval(secs => _stripe_idem_settle_secs());

	FOR round IN 0 .. 5 LOOP
		IF round = 5 THEN
			RAISE EXCEPTION 'could not begin operation because it kept changing concurrently'
				USING ERRCODE = '40001',
					  DETAIL = 'The row was changed by other sessions 5 times in a row.',
					  HINT = 'Retry the call.';
		END IF;

		-- Read the row first, without a row lock: an existing operation is
		-- answered from the row as last committed, without waiting for a
		-- caller that is changing it.
		v_key := v_type || ':' || v_id || ':' || gen_random_uuid()::text;
		SELECT k.* INTO r FROM stripe_idempotency_keys k
		WHERE k.operation_type = v_type AND k.operation_id = v_id;
		IF NOT FOUND THEN
			-- None: insert the operation or read its row, in one statement:
			-- NULL when the insert went in, the existing row otherwise,
			-- nothing when that row was committed after the statement's
			-- snapshot (read it again).
			WITH ins AS (
				INSERT INTO stripe_idempotency_keys
					(operation_type, operation_id, stripe_idempotency_key, request_fingerprint,
					 status, attempts, locked_until, created_at, updated_at, expires_at)
				VALUES (v_type, v_id, v_key, v_fp, 'in_progress', 1, v_now + v_lease,
						v_now, v_now, v_now + v_ttl)
				ON CONFLICT (operation_type, operation_id) DO NOTHING
				RETURNING 1)
			SELECT (x).* FROM (
				SELECT NULL::stripe_idempotency_keys AS x FROM ins
				UNION ALL
				SELECT k FROM stripe_idempotency_keys k
				WHERE k.operation_type = v_type AND k.operation_id = v_id) s
			INTO r;
			v_found := FOUND;
			IF v_found AND r.operation_type IS NULL THEN
				state := 'acquired';
				stripe_idempotency_key := v_key;
				attempts := 1;
				PERFORM _stripe_idem_after_write(v_fresh);
				RETURN NEXT;
				RETURN;
			END IF;
			IF NOT v_found THEN
				SELECT k.* INTO r FROM stripe_idempotency_keys k
				WHERE k.operation_type = v_type AND k.operation_id = v_id;
				CONTINUE WHEN NOT FOUND;	-- deleted since the insert met it
			END IF;
		END IF;

		-- Absent: completed and expired, or expired longer than the retention.
		IF r.expires_at <= v_now
		   AND (r.status = 'completed' OR r.expires_at <= _stripe_idem_retention_cutoff()) THEN
			UPDATE stripe_idempotency_keys k
			SET stripe_idempotency_key = v_key, request_fingerprint = v_fp,
				status = 'in_progress', stripe_resource_id = NULL, response = NULL,
				attempts = 1, locked_until = v_now + v_lease, created_at = v_now,
				updated_at = v_now, completed_at = NULL, expires_at = v_now + v_ttl
			WHERE k.operation_type = v_type AND k.operation_id = v_id
			  AND k.expires_at <= v_now
			  AND (k.status = 'completed'
				   OR k.expires_at <= _stripe_idem_retention_cutoff());
			IF FOUND THEN
				state := 'acquired';
				stripe_idempotency_key := v_key;
				attempts := 1;
				PERFORM _stripe_idem_after_write(v_fresh);
				RETURN NEXT;
				RETURN;
			END IF;
			CONTINUE;
		END IF;

		-- The same operation id with other parameters: nothing but the verdict.
		IF v_fp IS NOT NULL AND r.request_fingerprint IS NOT NULL
		   AND r.request_fingerprint <> v_fp THEN
			state := 'mismatch';
			RETURN NEXT;
			RETURN;
		END IF;

		IF r.status = 'completed' THEN
			state := 'completed';
			stripe_idempotency_key := r.stripe_idempotency_key;
			stripe_resource_id := r.stripe_resource_id;
			response := r.response;
			attempts := r.attempts;
			RETURN NEXT;
			RETURN;
		END IF;

		-- Somebody holds it: no key to call Stripe with.
		IF r.locked_until > v_now THEN
			state := 'in_progress';
			retry_after := r.locked_until - v_now;
			attempts := r.attempts;
			RETURN NEXT;
			RETURN;
		END IF;

		-- Unresolved: expired, or a new lease and the settle time after it
		-- would end after the key window.
		v_cutoff := v_now + v_lease + v_settle - v_window;
		IF (r.expires_at <= v_now OR r.created_at < v_cutoff)
		   AND r.locked_until > v_now - v_settle THEN
			-- but a request sent under the last lease may still be acted on
			-- by Stripe: nobody gets the key until the settle time has passed
			state := 'in_progress';
			retry_after := r.locked_until + v_settle - v_now;
			attempts := r.attempts;
			RETURN NEXT;
			RETURN;
		END IF;
		IF r.expires_at <= v_now OR r.created_at < v_cutoff THEN
			state := 'unresolved';
			stripe_idempotency_key := r.stripe_idempotency_key;
			attempts := r.attempts;
			RETURN NEXT;
			RETURN;
		END IF;

		-- The lease ran out or was released: take over, keeping the key.
		UPDATE stripe_idempotency_keys k
		SET attempts = k.attempts + 1,
			locked_until = v_now + v_lease,
			expires_at = greatest(k.expires_at, v_now + v_lease),
			updated_at = v_now
		WHERE k.operation_type = v_type AND k.operation_id = v_id
		  AND k.status = 'in_progress'
		  AND k.stripe_idempotency_key = r.stripe_idempotency_key
		  AND (k.locked_until IS NULL OR k.locked_until <= v_now)
		  AND k.expires_at > v_now
		  AND k.created_at >= v_cutoff
		RETURNING k.attempts INTO attempts;
		IF FOUND THEN
			state := 'acquired';
			stripe_idempotency_key := r.stripe_idempotency_key;
			PERFORM _stripe_idem_after_write(v_fresh);
			RETURN NEXT;
			RETURN;
		END IF;
	END LOOP;
END
$fn$;

--
-- The reconcile path for "unresolved": the application asked Stripe and
-- found no object made with the stored key. 55000 for anything else.
--
-- (PL/pgSQL refuses an argument and a result column of the same name, as
-- stripe_idempotency_key is here: the API function is a SQL wrapper.)
CREATE FUNCTION _stripe_idem_restart(
	p_operation_type text,
	p_operation_id text,
	p_stripe_idempotency_key text,
	p_lease interval,
	p_ttl interval,
	p_key_window interval)
RETURNS TABLE (
	state text,
	stripe_idempotency_key text,
	stripe_resource_id text,
	response jsonb,
	retry_after interval,
	attempts integer)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE ROWS 1
AS $fn$
#variable_conflict use_column
DECLARE
	v_type text := $1;
	v_id text := $2;
	v_old text := $3;
	v_now timestamptz := statement_timestamp();
	v_ttl interval;
	v_window interval;
	v_lease interval;
	v_new text;
	v_fresh boolean;
	v_why text;
	v_settle_secs bigint;
	v_settle interval;
	r stripe_idempotency_keys;
BEGIN
	v_fresh := _stripe_idem_refuse_in_transaction_block('restart_stripe_idempotency');
	IF v_type IS NULL THEN
		RAISE EXCEPTION 'operation_type must not be null' USING ERRCODE = '22004';
	END IF;
	IF v_id IS NULL THEN
		RAISE EXCEPTION 'operation_id must not be null' USING ERRCODE = '22004';
	END IF;
	IF v_old IS NULL THEN
		RAISE EXCEPTION 'stripe_idempotency_key must not be null' USING ERRCODE = '22004';
	END IF;
	PERFORM _stripe_idem_check_type(v_type);
	PERFORM _stripe_idem_check_id(v_id);
	PERFORM _stripe_idem_check_key(v_old);
	v_ttl := _stripe_idem_interval($5, 'ttl', 'stripe_idem.default_ttl', 86400,
											   interval '365 days', '365 days');
	v_window := _stripe_idem_interval($6, 'key_window', 'stripe_idem.key_window', 86400,
												  interval '365 days', '365 days');
	IF v_window < v_ttl THEN
		v_lease := _stripe_idem_interval($4, 'lease', 'stripe_idem.default_lease', 90,
													 v_window, 'the key_window');
	ELSE
		v_lease := _stripe_idem_interval($4, 'lease', 'stripe_idem.default_lease', 90,
													 v_ttl, 'the ttl');
	END IF;
	v_new := v_type || ':' || v_id || ':' || gen_random_uuid()::text;
	v_settle_secs := _stripe_idem_settle_secs();
	v_settle := make_interval(secs => v_settle_secs);

	FOR round IN 0 .. 5 LOOP
		IF round = 5 THEN
			RAISE EXCEPTION 'could not restart operation because it kept changing concurrently'
				USING ERRCODE = '40001',
					  DETAIL = 'The row was changed by other sessions 5 times in a row.',
					  HINT = 'Retry the call.';
		END IF;
		SELECT k.* INTO r FROM stripe_idempotency_keys k
		WHERE k.operation_type = v_type AND k.operation_id = v_id;
		v_why := NULL;
		IF NOT FOUND OR (r.expires_at <= v_now
						 AND (r.status = 'completed'
							  OR r.expires_at <= _stripe_idem_retention_cutoff())) THEN
			v_why := 'There is no such operation, or it has expired: begin_stripe_idempotency starts it under a new key.';
		ELSIF r.stripe_idempotency_key <> v_old THEN
			v_why := 'It is under another key: it was restarted or begun anew since.';
		ELSIF r.status = 'completed' THEN
			v_why := 'It is completed: its recorded result is the answer.';
		ELSIF r.locked_until > v_now THEN
			v_why := 'A caller holds its lease and may be sending the key to Stripe now.';
		ELSIF NOT (r.expires_at <= v_now
				   OR r.created_at < v_now + v_lease + v_settle - v_window) THEN
			v_why := 'Its key may still be sent to Stripe: begin_stripe_idempotency takes it over with the same key.';
		END IF;
		IF v_why IS NOT NULL THEN
			RAISE EXCEPTION 'operation %/% is not unresolved under this stripe_idempotency_key', v_type, v_id
				USING ERRCODE = '55000',
					  DETAIL = v_why,
					  HINT = 'Call begin_stripe_idempotency and act on the state it returns.';
		END IF;
		IF r.locked_until > v_now - v_settle THEN
			RAISE EXCEPTION 'operation %/% cannot be restarted yet', v_type, v_id
				USING ERRCODE = '55000',
					  DETAIL = format('Its last lease ended less than stripe_idem.settle_time (%s s) ago: Stripe may still act on a request sent under it.',
									  v_settle_secs),
					  HINT = 'Ask Stripe again once that time has passed, then restart or record.';
		END IF;

		UPDATE stripe_idempotency_keys k
		SET stripe_idempotency_key = v_new, attempts = 1,
			locked_until = v_now + v_lease, created_at = v_now, updated_at = v_now,
			completed_at = NULL, expires_at = v_now + v_ttl
		WHERE k.operation_type = v_type AND k.operation_id = v_id
		  AND k.status = 'in_progress'
		  AND k.stripe_idempotency_key = v_old
		  AND (k.locked_until IS NULL OR k.locked_until <= v_now - v_settle);
		IF FOUND THEN
			state := 'acquired';
			stripe_idempotency_key := v_new;
			attempts := 1;
			PERFORM _stripe_idem_after_write(v_fresh);
			RETURN NEXT;
			RETURN;
		END IF;
		-- changed since we read it: judge it again
	END LOOP;
END
$fn$;

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
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 1
AS $fn$ SELECT * FROM _stripe_idem_restart($1, $2, $3, $4, $5, $6) $fn$;

--
-- A read-only look at an operation. An absent row is not found; an
-- unresolved one (judged with the default lease and key window) is found
-- with status 'unresolved' once settled (its last lease ended at least
-- stripe_idem.settle_time ago), 'in_progress' until then.
--
CREATE FUNCTION check_stripe_idempotency(operation_type text, operation_id text)
RETURNS TABLE (
	found boolean,
	status text,
	stripe_idempotency_key text,
	stripe_resource_id text,
	response jsonb,
	created_at timestamptz,
	expires_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER ROWS 1
AS $fn$
#variable_conflict use_column
DECLARE
	v_type text := $1;
	v_id text := $2;
	v_now timestamptz := statement_timestamp();
	v_cutoff timestamptz;
	v_settled timestamptz;
	v_retention timestamptz;
	v_rows bigint;
BEGIN
	IF v_type IS NULL THEN
		RAISE EXCEPTION 'operation_type must not be null' USING ERRCODE = '22004';
	END IF;
	IF v_id IS NULL THEN
		RAISE EXCEPTION 'operation_id must not be null' USING ERRCODE = '22004';
	END IF;
	IF NOT (octet_length(v_type) BETWEEN 1 AND 64 AND v_type ~ '^[A-Za-z0-9_.:-]+$') THEN
		PERFORM _stripe_idem_check_type(v_type);
	END IF;
	IF NOT (octet_length(v_id) BETWEEN 1 AND 128 AND v_id ~ '^[!-~]+$') THEN
		PERFORM _stripe_idem_check_id(v_id);
	END IF;
	v_settled := v_now - make_interval(secs => _stripe_idem_settle_secs());
	v_cutoff := v_now
		+ make_interval(secs => _stripe_idem_setting_secs('stripe_idem.default_lease', 90))
		+ make_interval(secs => _stripe_idem_settle_secs())
		- make_interval(secs => _stripe_idem_setting_secs('stripe_idem.key_window', 86400));
	v_retention := _stripe_idem_retention_cutoff();
	-- ("found is a result column here: ROW_COUNT, not FOUND, says whether
	-- the query returned the row)
	RETURN QUERY
		SELECT true,
			   CASE WHEN k.status = 'in_progress'
						 AND (k.locked_until IS NULL OR k.locked_until <= v_settled)
						 AND (k.expires_at <= v_now OR k.created_at < v_cutoff)
					THEN 'unresolved' ELSE k.status END,
			   k.stripe_idempotency_key, k.stripe_resource_id, k.response,
			   k.created_at, k.expires_at
		FROM stripe_idempotency_keys k
		WHERE k.operation_type = v_type AND k.operation_id = v_id
		  AND (k.expires_at > v_now
			   OR (k.status = 'in_progress' AND k.expires_at > v_retention));
	GET DIAGNOSTICS v_rows = ROW_COUNT;
	IF v_rows = 0 THEN
		RETURN QUERY SELECT false, NULL::text, NULL::text, NULL::text, NULL::jsonb,
							NULL::timestamptz, NULL::timestamptz;
	END IF;
END
$fn$;

--
-- Store what Stripe answered. The first recorded result wins; a key
-- another operation owns, or another key than an in_progress row's, is
-- refused with 23505.
--
CREATE FUNCTION _stripe_idem_record(
	p_operation_type text,
	p_operation_id text,
	p_stripe_idempotency_key text,
	p_stripe_resource_id text,
	p_response jsonb,
	p_ttl interval)
RETURNS TABLE (
	recorded boolean,
	stripe_resource_id text,
	response jsonb)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE ROWS 1
AS $fn$
#variable_conflict use_column
DECLARE
	v_type text := $1;
	v_id text := $2;
	v_key text := $3;
	v_resource text := $4;
	v_response jsonb := $5;
	v_now timestamptz := statement_timestamp();
	v_ttl interval;
	v_key_checked boolean := false;
	v_owner_type text;
	v_owner_id text;
	r stripe_idempotency_keys;
BEGIN
	IF v_type IS NULL THEN
		RAISE EXCEPTION 'operation_type must not be null' USING ERRCODE = '22004';
	END IF;
	IF v_id IS NULL THEN
		RAISE EXCEPTION 'operation_id must not be null' USING ERRCODE = '22004';
	END IF;
	IF v_key IS NULL THEN
		RAISE EXCEPTION 'stripe_idempotency_key must not be null' USING ERRCODE = '22004';
	END IF;
	IF v_resource IS NULL AND v_response IS NULL THEN
		RAISE EXCEPTION 'stripe_resource_id and response must not both be null'
			USING ERRCODE = '22004',
				  DETAIL = 'A completed operation must carry the Stripe object id, the response, or both.';
	END IF;
	PERFORM _stripe_idem_check_type(v_type);
	PERFORM _stripe_idem_check_id(v_id);
	PERFORM _stripe_idem_check_key(v_key);
	IF v_resource IS NOT NULL AND NOT (char_length(v_resource) BETWEEN 1 AND 255) THEN
		RAISE EXCEPTION 'invalid stripe_resource_id'
			USING ERRCODE = '22023',
				  DETAIL = format('stripe_resource_id must be 1 to 255 characters long, but it is %s characters long.',
								  char_length(v_resource));
	END IF;
	PERFORM _stripe_idem_check_size(v_response, 'response', 'stripe_idem.max_response_size');
	v_ttl := _stripe_idem_interval($6, 'ttl', 'stripe_idem.default_ttl', 86400,
											   interval '365 days', '365 days');

	FOR round IN 0 .. 5 LOOP
		IF round = 5 THEN
			RAISE EXCEPTION 'could not record operation because it kept changing concurrently'
				USING ERRCODE = '40001',
					  DETAIL = 'The row was changed by other sessions 5 times in a row.',
					  HINT = 'Retry the call.';
		END IF;

		-- The caller's own in_progress row: one statement.
		UPDATE stripe_idempotency_keys k
		SET status = 'completed', stripe_resource_id = v_resource, response = v_response,
			locked_until = NULL, completed_at = v_now, updated_at = v_now,
			expires_at = v_now + v_ttl
		WHERE k.operation_type = v_type AND k.operation_id = v_id
		  AND k.status = 'in_progress' AND k.stripe_idempotency_key = v_key;
		EXIT WHEN FOUND;

		IF NOT v_key_checked THEN
			SELECT k.operation_type, k.operation_id INTO v_owner_type, v_owner_id
			FROM stripe_idempotency_keys k
			WHERE k.stripe_idempotency_key = v_key;
			IF FOUND AND (v_owner_type <> v_type OR v_owner_id <> v_id) THEN
				RAISE EXCEPTION 'stripe_idempotency_key is already used by operation %/%', v_owner_type, v_owner_id
					USING ERRCODE = '23505',
						  DETAIL = format('It cannot be recorded for operation %s/%s.', v_type, v_id),
						  HINT = 'Record each operation with the key begin_stripe_idempotency returned for it.';
			END IF;
			v_key_checked := true;
		END IF;

		-- The check-then-record flow: no begin, a completed row.
		INSERT INTO stripe_idempotency_keys
			(operation_type, operation_id, stripe_idempotency_key, status, stripe_resource_id,
			 response, attempts, created_at, updated_at, completed_at, expires_at)
		VALUES (v_type, v_id, v_key, 'completed', v_resource, v_response, 1,
				v_now, v_now, v_now, v_now + v_ttl)
		ON CONFLICT (operation_type, operation_id) DO NOTHING;
		EXIT WHEN FOUND;

		SELECT k.* INTO r FROM stripe_idempotency_keys k
		WHERE k.operation_type = v_type AND k.operation_id = v_id;
		CONTINUE WHEN NOT FOUND;	-- deleted meanwhile: insert again

		IF r.expires_at <= v_now
		   AND (r.status = 'completed' OR r.expires_at <= _stripe_idem_retention_cutoff()) THEN
			UPDATE stripe_idempotency_keys k
			SET stripe_idempotency_key = v_key, request_fingerprint = NULL, status = 'completed',
				stripe_resource_id = v_resource, response = v_response, attempts = 1,
				locked_until = NULL, created_at = v_now, updated_at = v_now,
				completed_at = v_now, expires_at = v_now + v_ttl
			WHERE k.operation_type = v_type AND k.operation_id = v_id
			  AND k.expires_at <= v_now
			  AND (k.status = 'completed'
				   OR k.expires_at <= _stripe_idem_retention_cutoff());
			EXIT WHEN FOUND;
			CONTINUE;
		END IF;

		IF r.status = 'completed' THEN
			-- First result wins; hand it back unchanged.
			recorded := false;
			stripe_resource_id := r.stripe_resource_id;
			response := r.response;
			RETURN NEXT;
			RETURN;
		END IF;

		CONTINUE WHEN r.stripe_idempotency_key = v_key;	-- ours after all; it changed under us

		RAISE EXCEPTION 'operation %/% is in progress under a different stripe_idempotency_key', v_type, v_id
			USING ERRCODE = '23505',
				  DETAIL = 'Only the key returned by begin_stripe_idempotency can complete it.',
				  HINT = 'Call begin_stripe_idempotency and use the key it returns.';
	END LOOP;

	recorded := true;
	stripe_resource_id := v_resource;
	response := v_response;
	IF current_setting('synchronous_commit') = 'off' THEN
		PERFORM set_config('synchronous_commit', 'local', true);
	END IF;
	RETURN NEXT;
END
$fn$;

-- A SQL wrapper, as for restart: the arguments stripe_resource_id and
-- response are result columns too.
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
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 1
AS $fn$ SELECT * FROM _stripe_idem_record($1, $2, $3, $4, $5, $6) $fn$;

-- attempt, when given, fences off a caller whose lease was taken over.
CREATE FUNCTION release_stripe_idempotency(
	operation_type text,
	operation_id text,
	stripe_idempotency_key text,
	attempt integer DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
AS $fn$
#variable_conflict use_column
DECLARE
	v_now timestamptz := statement_timestamp();
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'operation_type must not be null' USING ERRCODE = '22004';
	END IF;
	IF $2 IS NULL THEN
		RAISE EXCEPTION 'operation_id must not be null' USING ERRCODE = '22004';
	END IF;
	IF $3 IS NULL THEN
		RAISE EXCEPTION 'stripe_idempotency_key must not be null' USING ERRCODE = '22004';
	END IF;
	PERFORM _stripe_idem_check_type($1);
	PERFORM _stripe_idem_check_id($2);
	PERFORM _stripe_idem_check_key($3);
	UPDATE stripe_idempotency_keys k
	SET locked_until = v_now, updated_at = v_now	-- the lease ends now: when is kept
	WHERE k.operation_type = $1 AND k.operation_id = $2
	  AND k.status = 'in_progress' AND k.stripe_idempotency_key = $3
	  AND ($4 IS NULL OR k.attempts = $4)
	  AND k.expires_at > v_now;
	RETURN FOUND;
END
$fn$;

--
-- One batch of the sweep: at most batch_size expired rows without a live
-- lease (completed, or expired longer than the retention), oldest first,
-- from lower_bound on; SKIP LOCKED, so it never waits behind a caller.
-- Returns the count and the newest expires_at deleted.
--
CREATE FUNCTION _stripe_idem_cleanup_batch(batch_size integer, lower_bound timestamptz,
										   OUT deleted bigint, OUT newest timestamptz)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
AS $fn$
DECLARE
	v_now timestamptz := statement_timestamp();
	v_retention timestamptz := _stripe_idem_retention_cutoff();
BEGIN
	WITH gone AS (
		DELETE FROM stripe_idempotency_keys
		WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM stripe_idempotency_keys k
			WHERE k.expires_at <= v_now
			  AND k.expires_at >= lower_bound
			  AND (k.locked_until IS NULL OR k.locked_until <= v_now)
			  AND (k.status = 'completed' OR k.expires_at <= v_retention)
			ORDER BY k.expires_at LIMIT batch_size FOR UPDATE SKIP LOCKED))
		RETURNING expires_at)
	SELECT count(*), max(expires_at) INTO deleted, newest FROM gone;
END
$fn$;

CREATE FUNCTION cleanup_expired_idempotency_keys(batch_size integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
AS $fn$
DECLARE
	v_lower timestamptz := '-infinity';
	v_total bigint := 0;
	b record;
BEGIN
	IF batch_size IS NULL THEN
		RAISE EXCEPTION 'batch_size must not be null' USING ERRCODE = '22004';
	END IF;
	IF batch_size < 1 THEN
		RAISE EXCEPTION 'batch_size must be at least 1'
			USING ERRCODE = '22023', DETAIL = format('batch_size was %s.', batch_size);
	END IF;
	LOOP
		b := _stripe_idem_cleanup_batch(batch_size, v_lower);
		v_total := v_total + b.deleted;
		IF b.newest IS NOT NULL THEN
			v_lower := b.newest;
		END IF;
		EXIT WHEN b.deleted < batch_size;
	END LOOP;
	RETURN v_total;
END
$fn$;

--
-- The sweep pg_cron runs: batches of batch_size, each committed on its own
-- (as the C sweeper does), at most max_batches per run. A procedure without
-- SECURITY DEFINER or SET, so that it may commit: it runs as the job's
-- owner, the role that installed the edition; it names its batch function
-- with the schema, written in when it is created.
--
DO $proc$
BEGIN
	EXECUTE format($sql$
CREATE PROCEDURE stripe_idem_sweep(batch_size integer DEFAULT 1000, max_batches integer DEFAULT 100)
LANGUAGE plpgsql
AS $body$
DECLARE
	v_lower timestamptz := '-infinity';
	b record;
BEGIN
	IF batch_size IS NULL OR batch_size < 1 OR max_batches IS NULL OR max_batches < 1 THEN
		RAISE EXCEPTION 'batch_size and max_batches must be at least 1' USING ERRCODE = '22023';
	END IF;
	FOR i IN 1 .. max_batches LOOP
		b := %1$I._stripe_idem_cleanup_batch(batch_size, v_lower);
		COMMIT;
		EXIT WHEN b.deleted < batch_size;
		v_lower := b.newest;
	END LOOP;
END
$body$$sql$, current_schema());
END
$proc$;

--
-- What an operator asks: how many operations are in each state, the
-- oldest in flight, how many wait for the sweep (expired: completed and
-- expired, or in progress and expired longer than the retention). Computed from the table
-- (the C extension's cumulative counters need shared memory). Judged with
-- the default lease and key window, like check_stripe_idempotency.
--
CREATE FUNCTION stripe_idem_summary(
	OUT in_progress bigint,
	OUT completed bigint,
	OUT unresolved bigint,
	OUT expired bigint,
	OUT oldest_in_progress timestamptz,
	OUT oldest_unresolved timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
AS $fn$
DECLARE
	v_now timestamptz := statement_timestamp();
	v_settle interval := make_interval(secs => _stripe_idem_settle_secs());
	v_cutoff timestamptz := v_now
		+ make_interval(secs => _stripe_idem_setting_secs('stripe_idem.default_lease', 90))
		+ v_settle
		- make_interval(secs => _stripe_idem_setting_secs('stripe_idem.key_window', 86400));
	v_retention timestamptz := _stripe_idem_retention_cutoff();
BEGIN
	SELECT count(*) FILTER (WHERE s = 'in_progress'),
		   count(*) FILTER (WHERE s = 'completed'),
		   count(*) FILTER (WHERE s = 'unresolved'),
		   count(*) FILTER (WHERE s = 'expired'),
		   min(created_at) FILTER (WHERE s = 'in_progress'),
		   min(created_at) FILTER (WHERE s = 'unresolved')
	INTO in_progress, completed, unresolved, expired, oldest_in_progress, oldest_unresolved
	FROM (SELECT k.created_at,
				 CASE WHEN k.status = 'completed' AND k.expires_at <= v_now THEN 'expired'
					  WHEN k.status = 'completed' THEN 'completed'
					  WHEN k.locked_until > v_now THEN 'in_progress'
					  WHEN k.expires_at <= v_retention THEN 'expired'
					  WHEN (k.expires_at <= v_now OR k.created_at < v_cutoff)
						   AND (k.locked_until IS NULL OR k.locked_until <= v_now - v_settle)
					  THEN 'unresolved'
					  ELSE 'in_progress' END AS s
		  FROM stripe_idempotency_keys k) t;
END
$fn$;

CREATE VIEW stripe_idem_summary AS SELECT * FROM stripe_idem_summary();

--
-- Every function reads the table and its helpers through a search_path
-- fixed at install: pg_catalog first (no built-in can be overridden), then
-- the edition's schema, pg_temp last (no temporary object can stand in for
-- the table). PL/pgSQL cannot qualify names with a schema it learns only at
-- install time the way the C extension does (src/plans.c), so the schema
-- is written into each function's SET clause here; like the C extension,
-- the schema must not be CREATE-able by application roles.
--
DO $pin$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN
		SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
		WHERE p.pronamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
		  AND p.prokind = 'f'
		  AND (p.proname LIKE '\_stripe\_idem\_%' OR p.proname IN (
			'new_stripe_idempotency_key', 'begin_stripe_idempotency',
			'restart_stripe_idempotency', 'check_stripe_idempotency',
			'record_stripe_idempotency', 'release_stripe_idempotency',
			'cleanup_expired_idempotency_keys', 'stripe_idem_summary'))
	LOOP
		EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
					   f, current_schema());
	END LOOP;
END
$pin$;

--
-- Least privilege: nothing is executable by PUBLIC. An application role
-- needs USAGE on the schema and EXECUTE on begin, check, record, release
-- and restart (and new_stripe_idempotency_key if used); cleanup is an
-- operator's; the summary is pg_monitor's.
--
REVOKE ALL ON FUNCTION _stripe_idem_setting_secs(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION _stripe_idem_setting_bytes(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION _stripe_idem_retention_cutoff() FROM PUBLIC;
REVOKE ALL ON FUNCTION _stripe_idem_settle_secs() FROM PUBLIC;
REVOKE ALL ON FUNCTION _stripe_idem_bad_token(text, text, integer, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _stripe_idem_check_type(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _stripe_idem_check_id(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _stripe_idem_check_key(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _stripe_idem_interval(interval, text, text, bigint, interval, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _stripe_idem_check_size(jsonb, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _stripe_idem_refuse_in_transaction_block(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _stripe_idem_after_write(boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION _stripe_idem_cleanup_batch(integer, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION _stripe_idem_restart(text, text, text, interval, interval, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION _stripe_idem_record(text, text, text, text, jsonb, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION new_stripe_idempotency_key(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION begin_stripe_idempotency(text, text, jsonb, interval, interval, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION restart_stripe_idempotency(text, text, text, interval, interval, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION check_stripe_idempotency(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION record_stripe_idempotency(text, text, text, text, jsonb, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION release_stripe_idempotency(text, text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION cleanup_expired_idempotency_keys(integer) FROM PUBLIC;
REVOKE ALL ON PROCEDURE stripe_idem_sweep(integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION stripe_idem_summary() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION stripe_idem_summary() TO pg_monitor;
GRANT SELECT ON stripe_idem_summary TO pg_monitor;

--
-- Sweeping with pg_cron: job "stripe_idem_sweep", every minute, batches of
-- 1000 rows, at most 100 batches a run. Scheduled when pg_cron is
-- installed in this database (or, with pg_cron 1.4+, in the database named
-- by cron.database_name, in which case the job runs here) and this role
-- may use it; otherwise a NOTICE says how.
--
-- The messages are NOTICEs when the file runs with psql, WARNINGs under
-- CREATE EXTENSION (pg_tle), which shows nothing below WARNING.
DO $sweep$
DECLARE
	cmd text := format('CALL %I.stripe_idem_sweep(1000, 100)', current_schema());
	job bigint;
	as_extension boolean := EXISTS (
		SELECT FROM pg_catalog.pg_depend
		WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass
		  AND objid = pg_catalog.format('%I.stripe_idempotency_keys',
										current_schema())::pg_catalog.regclass
		  AND deptype = 'e');
	msg text;
	hint text;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
		msg := 'stripe_idem: pg_cron is not installed, so expired keys are not swept';
		hint := format('Install pg_cron and run: SELECT cron.schedule(%L, %L, %L); '
					   'or run %s from any scheduler.',
					   'stripe_idem_sweep', '* * * * *', cmd, cmd);
		IF as_extension THEN
			RAISE WARNING '%', msg USING HINT = hint;
		ELSE
			RAISE NOTICE '%', msg USING HINT = hint;
		END IF;
		RETURN;
	END IF;
	BEGIN
		IF current_database() = current_setting('cron.database_name', true) THEN
			EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job
				USING 'stripe_idem_sweep', '* * * * *', cmd;
		ELSE
			EXECUTE 'SELECT cron.schedule_in_database($1, $2, $3, $4)' INTO job
				USING 'stripe_idem_sweep', '* * * * *', cmd, current_database();
		END IF;
		RAISE NOTICE 'stripe_idem: pg_cron job % "stripe_idem_sweep" sweeps expired keys every minute', job;
	EXCEPTION WHEN OTHERS THEN
		msg := format('stripe_idem: could not schedule the sweep with pg_cron: %s', SQLERRM);
		hint := format('As a role that may use pg_cron, run: SELECT cron.schedule(%L, %L, %L);',
					   'stripe_idem_sweep', '* * * * *', cmd);
		IF as_extension THEN
			RAISE WARNING '%', msg USING HINT = hint;
		ELSE
			RAISE NOTICE '%', msg USING HINT = hint;
		END IF;
	END;
END
$sweep$;
$stripe_idem_tle_1_2$);
END
$migration$;
