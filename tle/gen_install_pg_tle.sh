#!/usr/bin/env bash
# Writes, from tle/stripe_idem_tle.sql:
#   tle/install_pg_tle.sql: the edition as a pg_tle extension, one
#     self-contained file that a SQL editor (Supabase's, RDS Query Editor)
#     or psql runs as is;
#   examples/supabase/supabase/migrations/20250127000000_stripe_idem_managed.sql:
#     the same registration as a Supabase migration, made only where the C
#     extension is not available (the hosted path of the example).
# Run it after changing stripe_idem_tle.sql; test/suites/15-managed.sh
# fails while they differ.
#   bash tle/gen_install_pg_tle.sh [OUTPUT [MIGRATION]]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
body="$here/stripe_idem_tle.sql"
out=${1:-$here/install_pg_tle.sql}
migration=${2:-$here/../examples/supabase/supabase/migrations/20250127000000_stripe_idem_managed.sql}
delim='$stripe_idem_tle_1_2$'
if grep -qF "$delim" "$body"; then
	echo "$body contains $delim" >&2
	exit 1
fi
{
	cat <<'HEAD'
-- install_pg_tle.sql: stripe_idem 1.2, the managed edition, registered with
-- pg_tle (Trusted Language Extensions: hosted Supabase, Amazon RDS and
-- Aurora for PostgreSQL 15.2+, 16.1+, 17.1+), so that CREATE EXTENSION
-- works where no C extension can be loaded. Written by
-- tle/gen_install_pg_tle.sh from tle/stripe_idem_tle.sql: edit that file.
--
-- As a role with pgtle_admin (on RDS, rds_superuser; on Supabase, postgres),
-- in the database that will use it:
--
--     CREATE EXTENSION IF NOT EXISTS pg_tle;
--     \i tle/install_pg_tle.sql        (or paste this file into a SQL editor)
--     CREATE EXTENSION stripe_idem;    (optionally SCHEMA payments)
--
-- A later version is registered with pgtle.install_extension_version_sql
-- and pgtle.install_update_path('stripe_idem', '1.2', '<next>', <script>),
-- then ALTER EXTENSION stripe_idem UPDATE. docs/MANAGED.md has the details.
SELECT pgtle.install_extension(
	'stripe_idem',
	'1.2',
	'Stripe idempotency keys with leases (managed edition: SQL and PL/pgSQL)',
HEAD
	printf '%s\n' "$delim"
	cat "$body"
	printf '%s\n' "$delim"
	printf ');\n'
} >"$out"

{
	cat <<'HEAD'
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
HEAD
	printf '%s\n' "$delim"
	cat "$body"
	printf '%s);\nEND\n$migration$;\n' "$delim"
} >"$migration"
