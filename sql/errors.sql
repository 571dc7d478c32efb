--
-- Bad input: the documented SQLSTATE, and nothing written.
--   22004  a required argument is NULL
--   22023  a value breaks a rule (length, characters, ttl/lease range, batch_size)
--
\set VERBOSITY sqlstate

-- A fingerprint of the whole table, to show that failed calls write nothing.
CREATE FUNCTION pg_temp.table_digest() RETURNS text LANGUAGE sql AS
$$ SELECT md5(coalesce(string_agg(k::text, '|' ORDER BY operation_type, operation_id), ''))
   FROM stripe_idempotency_keys k $$;
SELECT stripe_idempotency_key AS k FROM begin_stripe_idempotency('err:test', 'held') \gset
SELECT pg_temp.table_digest() AS digest_before \gset

-- NULL where a value is required: 22004 from every function.
SELECT new_stripe_idempotency_key(NULL, 'a');
SELECT new_stripe_idempotency_key('a', NULL);
SELECT * FROM begin_stripe_idempotency(NULL, 'a');
SELECT * FROM begin_stripe_idempotency('a', NULL);
SELECT * FROM check_stripe_idempotency(NULL, 'a');
SELECT * FROM check_stripe_idempotency('a', NULL);
SELECT * FROM record_stripe_idempotency(NULL, 'a', 'k', 'r');
SELECT * FROM record_stripe_idempotency('a', NULL, 'k', 'r');
SELECT * FROM record_stripe_idempotency('a', 'b', NULL, 'r');
SELECT * FROM record_stripe_idempotency('err:test', 'held', :'k', NULL, NULL);
SELECT release_stripe_idempotency(NULL, 'a', 'k');
SELECT release_stripe_idempotency('a', NULL, 'k');
SELECT release_stripe_idempotency('a', 'b', NULL);
SELECT cleanup_expired_idempotency_keys(NULL);

-- operation_type: 1-64 characters of [A-Za-z0-9_.:-].
SELECT * FROM begin_stripe_idempotency('', 'a');
SELECT * FROM begin_stripe_idempotency(repeat('t', 65), 'a');
SELECT * FROM begin_stripe_idempotency('checkout create', 'a');
SELECT * FROM begin_stripe_idempotency('checkout/create', 'a');
SELECT * FROM begin_stripe_idempotency('caf' || chr(233), 'a');
SELECT * FROM check_stripe_idempotency('a;DROP TABLE x', 'a');
SELECT new_stripe_idempotency_key('', 'a');
-- the longest allowed passes
SELECT state FROM begin_stripe_idempotency(repeat('t', 64), 'a');

-- operation_id: 1-128 printable ASCII characters (0x21-0x7E).
SELECT * FROM begin_stripe_idempotency('a', '');
SELECT * FROM begin_stripe_idempotency('a', repeat('i', 129));
SELECT * FROM begin_stripe_idempotency('a', 'has space');
SELECT * FROM begin_stripe_idempotency('a', E'tab\there');
SELECT * FROM begin_stripe_idempotency('a', E'new\nline');
SELECT * FROM begin_stripe_idempotency('a', 'caf' || chr(233));
SELECT * FROM begin_stripe_idempotency('a', repeat('x', 10000));
SELECT release_stripe_idempotency('a', '', 'k');
SELECT state FROM begin_stripe_idempotency('a', repeat('i', 128));
SELECT state FROM begin_stripe_idempotency('a', $$'";--/*!~$$);

-- stripe_idempotency_key: 1-255 printable ASCII characters.
SELECT * FROM record_stripe_idempotency('a', 'b', '', 'r');
SELECT * FROM record_stripe_idempotency('a', 'b', repeat('k', 256), 'r');
SELECT * FROM record_stripe_idempotency('a', 'b', 'key with space', 'r');
SELECT release_stripe_idempotency('a', 'b', repeat('k', 256));

-- stripe_resource_id: 1-255 characters.
SELECT * FROM record_stripe_idempotency('a', 'b', 'k', '');
SELECT * FROM record_stripe_idempotency('a', 'b', 'k', repeat('r', 256));

-- ttl: 1 second to 365 days; lease: 1 second up to the ttl.
SELECT * FROM begin_stripe_idempotency('a', 'ttl', NULL, NULL, '0');
SELECT * FROM begin_stripe_idempotency('a', 'ttl', NULL, NULL, '999 milliseconds');
SELECT * FROM begin_stripe_idempotency('a', 'ttl', NULL, NULL, '-1 day');
SELECT * FROM begin_stripe_idempotency('a', 'ttl', NULL, NULL, '366 days');
SELECT * FROM begin_stripe_idempotency('a', 'ttl', NULL, NULL, '13 mons');
SELECT * FROM begin_stripe_idempotency('a', 'ttl', NULL, NULL, '178000000 years');
SELECT * FROM begin_stripe_idempotency('a', 'ttl', NULL, '0', NULL);
SELECT * FROM begin_stripe_idempotency('a', 'ttl', NULL, '-5 seconds', NULL);
SELECT * FROM begin_stripe_idempotency('a', 'ttl', NULL, '2 hours', '1 hour');
-- a default lease (90s) longer than a short ttl given by the caller
SELECT * FROM begin_stripe_idempotency('a', 'ttl', NULL, NULL, '10 seconds');
SELECT * FROM record_stripe_idempotency('a', 'b', 'k', 'r', NULL, '0');
SELECT * FROM record_stripe_idempotency('a', 'b', 'k', 'r', NULL, '400 days');
-- the edges pass
SELECT state FROM begin_stripe_idempotency('a', 'ttl_edge', NULL, '1 second', '1 second');
-- the lease must also end inside the key window (default 24 hours)
SELECT state FROM begin_stripe_idempotency('a', 'window', NULL, '25 hours', '2 days');
SELECT state FROM begin_stripe_idempotency('a', 'window', NULL, NULL, NULL, '0');
SELECT state FROM begin_stripe_idempotency('a', 'window', NULL, NULL, NULL, '366 days');
SELECT state FROM begin_stripe_idempotency('a', 'ttl_max', NULL, '365 days', '365 days', '365 days');

-- batch_size must be at least 1.
SELECT cleanup_expired_idempotency_keys(0);
SELECT cleanup_expired_idempotency_keys(-1);

-- Malformed jsonb never reaches the function: the cast fails first.
SELECT * FROM begin_stripe_idempotency('a', 'j', '{"a":');

-- Rows written by hand obey the same rules.
INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status, expires_at)
VALUES ('bad type', 'x', 'k1', 'in_progress', now() + '1h');
INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status, expires_at)
VALUES ('a', 'x', 'k2', 'pending', now() + '1h');
INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status, expires_at)
VALUES ('a', 'x', 'k3', 'completed', now() + '1h');
INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status, locked_until, expires_at)
VALUES ('a', 'x', 'k4', 'in_progress', now() + '2h', now() + '1h');
INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status, request_fingerprint, expires_at)
VALUES ('a', 'x', 'k5', 'in_progress', 'not-a-sha256', now() + '1h');

-- Sizes (54000, before any work): request_params and response are bounded
-- by stripe_idem.max_request_params_size and max_response_size (1MB each,
-- measured as stored, uncompressed); the bound itself passes.
SELECT * FROM begin_stripe_idempotency('err:test', 'huge',
	jsonb_build_object('p', repeat('x', 1024 * 1024)));
SELECT * FROM record_stripe_idempotency('err:test', 'held', :'k', 'cs_1',
	jsonb_build_object('p', repeat('x', 1024 * 1024)));
SET stripe_idem.max_request_params_size = '1kB';
SELECT pg_column_size(jsonb_build_object('p', repeat('x', 1011))) - 4 AS bytes_at_the_bound;
SELECT state FROM begin_stripe_idempotency('err:test', 'bound', jsonb_build_object('p', repeat('x', 1011)));
SELECT state FROM begin_stripe_idempotency('err:test', 'over', jsonb_build_object('p', repeat('x', 1012)));
RESET stripe_idem.max_request_params_size;

-- restart_stripe_idempotency: the same argument rules as begin, and 55000
-- for anything but an unresolved operation under the key given.
SELECT * FROM restart_stripe_idempotency(NULL, 'a', 'k');
SELECT * FROM restart_stripe_idempotency('a', 'b', NULL);
SELECT * FROM restart_stripe_idempotency('a', 'b', 'k k');
SELECT * FROM restart_stripe_idempotency('a', 'b', 'k', '2 hours', '1 hour');
SELECT * FROM restart_stripe_idempotency('a', 'no_such_operation', 'k');
SELECT * FROM restart_stripe_idempotency('err:test', 'held', :'k');
SELECT * FROM restart_stripe_idempotency('err:test', 'held', 'another-key');

-- The successful calls above added their own rows; the failed ones nothing.
DELETE FROM stripe_idempotency_keys
WHERE (operation_type, operation_id) IN ((repeat('t', 64), 'a'), ('a', repeat('i', 128)),
                                         ('a', $$'";--/*!~$$), ('a', 'ttl_edge'), ('a', 'ttl_max'),
                                         ('err:test', 'bound'));
SELECT pg_temp.table_digest() = :'digest_before' AS table_unchanged;

-- The messages say which rule failed, without echoing the value.
\set VERBOSITY default
SELECT * FROM begin_stripe_idempotency('checkout create', 'a');
SELECT * FROM begin_stripe_idempotency('a', repeat('x', 10000));
SELECT * FROM begin_stripe_idempotency('a', 'ttl', NULL, '2 hours', '1 hour');
SELECT * FROM begin_stripe_idempotency('a', 'ttl', NULL, NULL, '10 seconds');
SELECT * FROM record_stripe_idempotency('a', 'b', 'k', NULL);
SELECT cleanup_expired_idempotency_keys(0);
SELECT * FROM begin_stripe_idempotency('err:test', 'huge',
	jsonb_build_object('p', repeat('x', 1024 * 1024)));
SELECT * FROM restart_stripe_idempotency('err:test', 'held', :'k');

-- stripe_idem_distribute() is for a Citus coordinator: without Citus it
-- refuses (55000) before it changes anything; the table keeps its global
-- UNIQUE on the key and its whole-row CHECK.
\set VERBOSITY sqlstate
SELECT stripe_idem_distribute(4);
\set VERBOSITY default
SELECT stripe_idem_distribute();
-- (NOT NULL constraints left out: 18 lists them in pg_constraint too.)
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = 'stripe_idempotency_keys'::regclass AND contype <> 'n' ORDER BY conname;
