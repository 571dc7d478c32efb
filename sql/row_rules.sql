--
-- The table's one CHECK constraint keeps every rule of 1.0's ten: a row
-- written by hand that breaks any of them is refused with 23514, and a row
-- at each limit is accepted.
--
\set VERBOSITY sqlstate
CREATE EXTENSION IF NOT EXISTS stripe_idem;
TRUNCATE stripe_idempotency_keys;

-- one CHECK constraint, besides the keys (18 also lists NOT NULL ones)
SELECT conname, contype FROM pg_constraint
WHERE conrelid = 'stripe_idempotency_keys'::regclass AND contype IN ('c', 'p', 'u')
ORDER BY conname;

-- A valid in_progress row, changed in one column at a time; each case is
-- its own INSERT, so each error is caught on its own.
CREATE FUNCTION pg_temp.case_(label text, col text, val text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	cols text[] := ARRAY['operation_type', 'operation_id', 'stripe_idempotency_key',
		'request_fingerprint', 'status', 'stripe_resource_id', 'response', 'attempts',
		'locked_until', 'expires_at'];
	sel text := '';
	c text;
BEGIN
	FOREACH c IN ARRAY cols LOOP
		sel := sel || CASE WHEN sel = '' THEN '' ELSE ', ' END
			|| CASE WHEN c = col THEN val ELSE 'r0.' || c END || ' AS ' || c;
	END LOOP;
	BEGIN
		EXECUTE format('INSERT INTO stripe_idempotency_keys (%s) SELECT %s FROM'
			' (SELECT ''t:ok''::text AS operation_type, ''id-'' || md5(%L) AS operation_id,'
			' ''key-'' || md5(%L) AS stripe_idempotency_key,'
			' repeat(''ab'', 32) AS request_fingerprint, ''in_progress''::text AS status,'
			' NULL::text AS stripe_resource_id, NULL::jsonb AS response, 1 AS attempts,'
			' now() + interval ''1 minute'' AS locked_until,'
			' now() + interval ''1 day'' AS expires_at) r0',
			array_to_string(cols, ', '), sel, label, label);
		RETURN label || ': accepted';
	EXCEPTION WHEN check_violation THEN
		RETURN label || ': refused (' || SQLSTATE || ')';
	END;
END;
$$;

CREATE TEMP TABLE single_cases (n serial, label text, col text, val text);
INSERT INTO single_cases (label, col, val) VALUES
	('valid row',                   'attempts', '1'),
	-- operation_type: 1 to 64 of [A-Za-z0-9_.:-]
	('type at 64',                  'operation_type', 'repeat(''a'', 64)'),
	('type of 65',                  'operation_type', 'repeat(''a'', 65)'),
	('type empty',                  'operation_type', ''''''),
	('type with a space',           'operation_type', '''a b'''),
	('type with a slash',           'operation_type', '''a/b'''),
	('type non-ASCII',              'operation_type', '''caf'' || chr(233)'),
	-- operation_id: 1 to 128 printable ASCII
	('id at 128',                   'operation_id', 'repeat(''x'', 127) || ''!'''),
	('id of 129',                   'operation_id', 'repeat(''x'', 129)'),
	('id empty',                    'operation_id', ''''''),
	('id with a space',             'operation_id', '''a b'''),
	('id with a tab',               'operation_id', '''a'' || chr(9)'),
	('id non-ASCII',                'operation_id', 'chr(26085)'),
	-- stripe_idempotency_key: 1 to 255 printable ASCII
	('key at 255',                  'stripe_idempotency_key', 'repeat(''k'', 255)'),
	('key of 256',                  'stripe_idempotency_key', 'repeat(''k'', 256)'),
	('key empty',                   'stripe_idempotency_key', ''''''),
	('key with DEL',                'stripe_idempotency_key', '''k'' || chr(127)'),
	-- request_fingerprint: NULL or 64 lower-case hex digits
	('fingerprint NULL',            'request_fingerprint', 'NULL'),
	('fingerprint of 63',           'request_fingerprint', 'repeat(''a'', 63)'),
	('fingerprint of 65',           'request_fingerprint', 'repeat(''a'', 65)'),
	('fingerprint upper case',      'request_fingerprint', 'repeat(''AB'', 32)'),
	('fingerprint not hex',         'request_fingerprint', 'repeat(''ag'', 32)'),
	-- status
	('status other',                'status', '''done'''),
	('status upper case',           'status', '''COMPLETED'''),
	-- stripe_resource_id: NULL or 1 to 255 characters (any)
	('resource id at 255 chars',    'stripe_resource_id', 'repeat(chr(233), 255)'),
	('resource id of 256',          'stripe_resource_id', 'repeat(''r'', 256)'),
	('resource id empty',           'stripe_resource_id', ''''''),
	-- attempts
	('attempts 0',                  'attempts', '0'),
	('attempts -1',                 'attempts', '-1'),
	-- a lease never outlives the row
	('lease at expiry',             'locked_until', 'now() + interval ''1 day'''),
	('lease past expiry',           'locked_until', 'now() + interval ''1 day 1 second'''),
	('no lease',                    'locked_until', 'NULL');
CREATE TEMP TABLE verdicts AS
	SELECT n, pg_temp.case_(label, col, val) AS result FROM single_cases ORDER BY n;
SELECT result FROM verdicts ORDER BY n;

-- completed rows: a result, and no lease
CREATE FUNCTION pg_temp.completed(label text, resource text, response text, lease text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('INSERT INTO stripe_idempotency_keys (operation_type, operation_id,'
		' stripe_idempotency_key, status, stripe_resource_id, response, locked_until, expires_at)'
		' VALUES (''t:done'', %L, %L, ''completed'', %s, %s, %s, now() + interval ''1 day'')',
		md5(label), 'key-' || md5(label), resource, response, lease);
	RETURN label || ': accepted';
EXCEPTION WHEN check_violation THEN
	RETURN label || ': refused (' || SQLSTATE || ')';
END;
$$;
CREATE TEMP TABLE completed_cases (n serial, label text, r text, j text, l text);
INSERT INTO completed_cases (label, r, j, l) VALUES
	('with resource id',        '''ch_1''', 'NULL',           'NULL'),
	('with response',           'NULL',     '''{"e": 1}''',   'NULL'),
	('with neither',            'NULL',     'NULL',           'NULL'),
	('with a lease',            '''ch_1''', 'NULL',           'now() + interval ''1 minute''');
CREATE TEMP TABLE completed_verdicts AS
	SELECT n, pg_temp.completed(label, r, j, l) AS result FROM completed_cases ORDER BY n;
SELECT result FROM completed_verdicts ORDER BY n;

-- Updates are held to the same rules.
UPDATE stripe_idempotency_keys SET attempts = 0 WHERE operation_type = 't:done';
UPDATE stripe_idempotency_keys SET status = 'completed', locked_until = NULL
WHERE operation_type = 't:ok' AND operation_id = 'id-' || md5('valid row');

SELECT count(*) AS rows_kept FROM stripe_idempotency_keys;

-- The same cases against 1.0's ten constraints get the same verdicts:
-- no case differs.
DROP EXTENSION stripe_idem;
CREATE EXTENSION stripe_idem VERSION '1.0';
SELECT count(*) AS check_constraints_in_1_0 FROM pg_constraint
WHERE conrelid = 'stripe_idempotency_keys'::regclass AND contype = 'c';
SELECT c.label, v.result AS in_1_1 FROM single_cases c JOIN verdicts v USING (n)
WHERE pg_temp.case_(c.label, c.col, c.val) IS DISTINCT FROM v.result;
SELECT c.label, v.result AS in_1_1 FROM completed_cases c JOIN completed_verdicts v USING (n)
WHERE pg_temp.completed(c.label, c.r, c.j, c.l) IS DISTINCT FROM v.result;

-- back to a fresh install of the default version for the tests after this
DROP EXTENSION stripe_idem;
CREATE EXTENSION stripe_idem;
