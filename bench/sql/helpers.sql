-- Loading helpers for bench/run.sh, in schema bench_util of every
-- benchmark database. Not part of what is measured.
--
-- Rows are made in bulk by SQL (no per-row round trips) and look like the
-- rows the API writes: completed charges with a key, a fingerprint, a
-- Stripe id and a small response document.
--
-- The table's CHECK constraints run regular expressions that cost tens to
-- hundreds of microseconds per row on this kind of machine, which would
-- make loading 10,000,000 rows take hours. The loaders therefore lift the
-- constraints (and, for an empty table, the indexes) for the load and put
-- them back afterwards: indexes rebuilt, CHECK constraints re-added NOT
-- VALID, which enforces them for every row written from then on, exactly
-- as before; only the rows loaded here skip the check (they satisfy it).
CREATE SCHEMA bench_util;

-- The DDL that puts back what lift_constraints took away.
CREATE TABLE bench_util.lifted (
	tbl		regclass NOT NULL,
	ord		integer NOT NULL,
	ddl		text NOT NULL
);

-- Drop the CHECK constraints of tbl, and with with_indexes also its primary
-- key, unique constraints and other indexes, remembering how to recreate them.
CREATE FUNCTION bench_util.lift_constraints(tbl regclass, with_indexes boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	r record;
	n integer := 0;
BEGIN
	FOR r IN
		SELECT c.conname, c.contype, pg_get_constraintdef(c.oid) AS def
		FROM pg_constraint c
		WHERE c.conrelid = tbl
		  AND (c.contype = 'c' OR (with_indexes AND c.contype IN ('p', 'u')))
		ORDER BY c.contype DESC, c.conname
	LOOP
		n := n + 1;
		INSERT INTO bench_util.lifted VALUES (tbl, n,
			format('ALTER TABLE %s ADD CONSTRAINT %I %s%s', tbl, r.conname, r.def,
				   CASE WHEN r.contype = 'c' THEN ' NOT VALID' ELSE '' END));
		EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', tbl, r.conname);
	END LOOP;
	IF with_indexes THEN
		FOR r IN
			SELECT i.indexrelid::regclass AS idx, pg_get_indexdef(i.indexrelid) AS def
			FROM pg_index i
			WHERE i.indrelid = tbl
		LOOP
			n := n + 1;
			INSERT INTO bench_util.lifted VALUES (tbl, n, r.def);
			EXECUTE format('DROP INDEX %s', r.idx);
		END LOOP;
	END IF;
END;
$$;

CREATE FUNCTION bench_util.restore_constraints(tbl regclass)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT l.ddl FROM bench_util.lifted l WHERE l.tbl = $1 ORDER BY l.ord LOOP
		EXECUTE r.ddl;
	END LOOP;
	DELETE FROM bench_util.lifted l WHERE l.tbl = $1;
END;
$$;

-- Add completed operations op_type:first..op_type:last. Live rows expire
-- between 23 hours and a few hours more from now, expired ones went out
-- within the last hour; every expires_at is distinct, as in real traffic.
CREATE FUNCTION bench_util.add_rows(tbl regclass, op_type text, first bigint, last bigint,
									expired boolean)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format($q$
		INSERT INTO %s
			(operation_type, operation_id, stripe_idempotency_key, request_fingerprint,
			 status, stripe_resource_id, response, attempts, locked_until,
			 created_at, updated_at, completed_at, expires_at)
		SELECT %L, g::text,
			%L || ':' || g || ':' || substr(m, 1, 8) || '-' || substr(m, 9, 4) || '-4'
				|| substr(m, 14, 3) || '-a' || substr(m, 18, 3) || '-' || substr(m, 21, 12),
			m || md5(m),
			'completed', ch,
			('{"id": "' || ch || '", "object": "charge", "amount": 2000, "currency": "usd", "status": "succeeded"}')::jsonb,
			1, NULL, t0 - interval '1 hour', t0 - interval '1 hour', t0 - interval '1 hour',
			CASE WHEN %L THEN t0 - interval '1 hour' + g * interval '1 microsecond'
				 ELSE t0 + interval '23 hours' + g * interval '1 millisecond' END
		FROM generate_series(%s::bigint, %s::bigint) AS g,
			LATERAL (SELECT md5(%L || g) AS m, 'ch_3N' || lpad(g::text, 22, '0') AS ch) AS x,
			(SELECT statement_timestamp() AS t0) AS t
		$q$, tbl, op_type, op_type, expired, first, last, op_type);
END;
$$;

-- Rows made once and copied into every variant's table (and, for the
-- expired ones, again before every sweep), sorted by operation id.
CREATE FUNCTION bench_util.make_staging(like_tbl regclass, n_live bigint, n_expired bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('CREATE UNLOGGED TABLE bench_util.live_rows (LIKE %s)', like_tbl);
	EXECUTE format('CREATE UNLOGGED TABLE bench_util.expired_rows (LIKE %s)', like_tbl);
	CREATE TEMP TABLE staging_tmp (LIKE bench_util.live_rows);
	PERFORM bench_util.add_rows('staging_tmp', 'charge', 1, n_live, false);
	INSERT INTO bench_util.live_rows SELECT * FROM staging_tmp ORDER BY operation_id;
	TRUNCATE staging_tmp;
	PERFORM bench_util.add_rows('staging_tmp', 'expired', 1, n_expired, true);
	INSERT INTO bench_util.expired_rows SELECT * FROM staging_tmp ORDER BY operation_id;
	DROP TABLE staging_tmp;
END;
$$;

-- An empty table filled with n live rows (copies of bench_util.live_rows
-- when n is a multiple of its size): indexes built after the load, as a restore would. With
-- wal_level = minimal the truncate makes the load skip the WAL. Run it in
-- one transaction.
CREATE FUNCTION bench_util.bulk_load(tbl regclass, n bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	m bigint := 0;
BEGIN
	EXECUTE format('TRUNCATE %s', tbl);
	PERFORM bench_util.lift_constraints(tbl, true);
	IF to_regclass('bench_util.live_rows') IS NOT NULL THEN
		SELECT count(*) INTO m FROM bench_util.live_rows;
	END IF;
	IF m > 0 AND n % m = 0 THEN
		-- Copies of the staged rows under new ids (id + k * m) and keys:
		-- much cheaper than making every row afresh.
		FOR k IN 0 .. n / m - 1 LOOP
			EXECUTE format($q$
				INSERT INTO %s
				SELECT operation_type, new_id,
					operation_type || ':' || new_id || ':' || split_part(stripe_idempotency_key, ':', 3),
					request_fingerprint, status, stripe_resource_id, response, attempts,
					locked_until, created_at, updated_at, completed_at,
					expires_at + %s * interval '1 millisecond'
				FROM bench_util.live_rows,
					LATERAL (SELECT (operation_id::bigint + %s)::text AS new_id) AS x
				$q$, tbl, k * m, k * m);
		END LOOP;
	ELSE
		PERFORM bench_util.add_rows(tbl, 'charge', 1, n, false);
	END IF;
	PERFORM bench_util.restore_constraints(tbl);
END;
$$;

-- The expired rows of bench_util.expired_rows added to a table in use
-- (indexes kept up to date).
CREATE FUNCTION bench_util.add_expired(tbl regclass)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM bench_util.lift_constraints(tbl, false);
	EXECUTE format('INSERT INTO %s SELECT * FROM bench_util.expired_rows', tbl);
	PERFORM bench_util.restore_constraints(tbl);
END;
$$;
