--
-- Installed into a non-public schema, dropped and created again in one
-- session: the cached plans follow the extension, never search_path.
--
\set VERBOSITY sqlstate

DROP EXTENSION stripe_idem;
CREATE SCHEMA payments;
CREATE EXTENSION stripe_idem SCHEMA payments;

-- Not found by an unqualified name: the schema is not in search_path.
SELECT * FROM begin_stripe_idempotency('s:t', 'one');
SELECT state FROM payments.begin_stripe_idempotency('s:t', 'one');
SELECT operation_id FROM payments.stripe_idempotency_keys;

-- A decoy table with the same name first in search_path is never touched.
CREATE TABLE public.stripe_idempotency_keys (LIKE payments.stripe_idempotency_keys);
SET search_path = public, payments;
SELECT state FROM begin_stripe_idempotency('s:t', 'two');
SELECT state FROM check_stripe_idempotency('s:t', 'two') AS c(found, state);
SELECT count(*) AS decoy_rows FROM public.stripe_idempotency_keys;
SELECT count(*) AS real_rows FROM payments.stripe_idempotency_keys;
RESET search_path;

-- Drop and create again, in another schema, in the same session: the plans
-- cached above must not follow the old schema name.
DROP EXTENSION stripe_idem;
CREATE SCHEMA billing;
CREATE EXTENSION stripe_idem SCHEMA billing;
SELECT state FROM billing.begin_stripe_idempotency('s:t', 'three');
SELECT operation_id FROM billing.stripe_idempotency_keys;
SELECT count(*) AS decoy_rows FROM public.stripe_idempotency_keys;

-- Renaming the schema is followed too.
ALTER SCHEMA billing RENAME TO billing2;
SELECT state FROM billing2.begin_stripe_idempotency('s:t', 'four');
SELECT operation_id FROM billing2.stripe_idempotency_keys ORDER BY 1;

-- Dropped for good: a clear error, not a crash or a stale plan.
DROP EXTENSION stripe_idem;
CREATE EXTENSION stripe_idem SCHEMA payments;
DROP TABLE public.stripe_idempotency_keys;
-- and the table is gone with the extension
SELECT count(*) FROM pg_class WHERE relname = 'stripe_idempotency_keys';
SELECT state FROM payments.begin_stripe_idempotency('s:t', 'five');
DROP EXTENSION stripe_idem;
DROP SCHEMA payments, billing2;
