--
-- Setup and key generation.
--
CREATE EXTENSION stripe_idem;

-- Everything the extension owns lives in one schema, and PUBLIC gets no
-- access to the table: the functions act with the caller's privileges.
-- (The implicit row types of its table and views, and their array types,
-- are left out: PostgreSQL 17 and 18 record them as members, 15 does not.)
SELECT pg_catalog.pg_describe_object(classid, objid, 0) AS object
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'stripe_idem')
  AND NOT EXISTS (SELECT FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem
                  WHERE classid = 'pg_type'::regclass AND t.oid = objid
                    AND (t.typrelid <> 0 OR e.typrelid <> 0))
ORDER BY 1;
SELECT privilege, has_table_privilege('public', 'stripe_idempotency_keys', privilege) AS public_has_it
FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS privilege;

-- The calls that touch the table run with the owner's rights (SECURITY
-- DEFINER: a caller needs EXECUTE, no table privilege, so it cannot write
-- a row by hand); none is STRICT (NULLs get 22004); volatility is what the
-- contract says. None sets search_path per call: every name they use is
-- schema-qualified (test/t/204_search_path.pl).
SELECT proname, prosecdef, proisstrict, provolatile, proparallel, proconfig
FROM pg_proc
WHERE pronamespace = 'public'::regnamespace
  AND proname IN ('new_stripe_idempotency_key', 'begin_stripe_idempotency',
                  'check_stripe_idempotency', 'record_stripe_idempotency',
                  'release_stripe_idempotency', 'restart_stripe_idempotency',
                  'cleanup_expired_idempotency_keys')
ORDER BY proname;

-- Nothing of the extension is executable by PUBLIC.
SELECT p.oid::regprocedure AS executable_by_public
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'stripe_idem')
  AND has_function_privilege('public', p.oid, 'EXECUTE');

-- pg_dump keeps the rows: the table is registered as configuration data.
SELECT extconfig::regclass[] AS dumped_tables, extcondition
FROM pg_extension WHERE extname = 'stripe_idem';

-- A key is "operation_type:operation_id:<uuid v4, lower case>".
SELECT new_stripe_idempotency_key('checkout:create', 'cs_42')
       ~ '^checkout:create:cs_42:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'
       AS well_formed;

-- Every call makes a new key.
SELECT count(DISTINCT new_stripe_idempotency_key('refund:create', 're_1')) AS distinct_keys
FROM generate_series(1, 1000);

-- The longest allowed type and id still give a key within Stripe's 255.
SELECT length(new_stripe_idempotency_key(repeat('t', 64), repeat('i', 128))) AS longest_key;

-- Settings and their defaults.
SHOW stripe_idem.default_ttl;
SHOW stripe_idem.default_lease;
-- Out of range: refused with 22023 (the message's wording is PostgreSQL's
-- own and differs between majors, so the SQLSTATE is what is pinned; the
-- range itself is read from pg_settings).
\set VERBOSITY sqlstate
SET stripe_idem.default_ttl = '0';
SET stripe_idem.default_lease = '366d';
\set VERBOSITY default
SELECT name, unit, min_val, max_val
FROM pg_catalog.pg_settings
WHERE name IN ('stripe_idem.default_ttl', 'stripe_idem.default_lease')
ORDER BY name;
RESET stripe_idem.default_ttl;
