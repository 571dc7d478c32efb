\set ECHO none
-- Stands in for CREATE EXTENSION stripe_idem in the managed edition's
-- runs of the regression tests (test/suites/15-managed.sh): installs
-- tle/stripe_idem_tle.sql with psql when this database has no edition yet,
-- quietly, so that the test's output is the same as the C extension's.
-- PL/pgSQL adds a CONTEXT line to each error it raises; the C functions
-- raise theirs without one, so psql is told not to print it.
SET client_min_messages = warning;
SELECT pg_catalog.to_regclass('stripe_idempotency_keys') IS NULL AS stripe_idem_need_install \gset
\if :stripe_idem_need_install
\ir stripe_idem_tle.sql
\endif
RESET client_min_messages;
\set ECHO all
