#!/usr/bin/env bash
# majors: all
# The managed edition (tle/stripe_idem_tle.sql, SQL and PL/pgSQL only)
# held to the C extension's contract: installed with psql -f into a
# throwaway cluster that does not load stripe_idem, it runs
#   - the regression tests of test/managed/regress_schedule (the C
#     extension's, and test/managed/sql/managed.sql for what only the
#     managed edition has),
#   - the isolation specs of test/isolation_schedule,
#   - the race (t/001_concurrency_smoke.pl) and the fuzz (t/203_fuzz.pl),
#     with STRIPE_IDEM_EDITION=managed,
#   - the sweep scheduled with pg_cron, when pg_cron is installed,
# from the C extension's own inputs. The inputs are copied with two
# mechanical changes, so that every assertion stays the same:
#   - a line "CREATE EXTENSION [IF NOT EXISTS] stripe_idem;" becomes
#     "\i in/setup.sql", which installs the edition from the file when the
#     database has none (test/managed/setup.sql); in a spec, whose setup
#     cannot run psql, it goes, and "DROP EXTENSION stripe_idem;" becomes
#     "TRUNCATE stripe_idempotency_keys;";
#   - each regression test starts with "\set SHOW_CONTEXT never":
#     PL/pgSQL adds a CONTEXT line to its errors, C functions do not.
# Parts that test what only the C extension has (its 1.0 script, Citus)
# are left out, from the line test/managed/cut names to the end of the
# file. The expected files get the same changes. Where the editions answer
# differently, test/managed/expected/NAME.out is the expected output
# instead; each such difference is listed and explained in docs/MANAGED.md.
set -uo pipefail
source "$SRC/test/lib/tap.sh"
source "$SRC/test/lib/cluster.sh"
source "$SRC/test/lib/regress_tap.sh"
cd "$SUITE_DIR"
PGXS_DIR=$(dirname "$(dirname "$(pg_config --pgxs)")")

# ---- the inputs
in="$SUITE_DIR/in"
mkdir -p "$in/sql" "$in/expected" "$in/specs"
cp "$SRC/tle/stripe_idem_tle.sql" "$SRC/test/managed/setup.sql" "$in/"
schedule=$(cat "$SRC/test/managed/regress_schedule")
# upto FILE NAME: FILE up to the line test/managed/cut names for test NAME
upto() {
	local line
	line=$(grep -F "$2|" "$SRC/test/managed/cut" | cut -d'|' -f2-)
	if [ -n "$line" ]; then
		awk -v stop="$line" '$0 == stop { exit } { print }' "$1"
	else
		cat "$1"
	fi
}
for t in $schedule; do
	# a test of the managed edition alone is taken as it is
	if [ -f "$SRC/test/managed/sql/$t.sql" ]; then
		cp "$SRC/test/managed/sql/$t.sql" "$in/sql/$t.sql"
		cp "$SRC/test/managed/expected/$t.out" "$in/expected/$t.out" 2>/dev/null || : >"$in/expected/$t.out"
		continue
	fi
	upto "$SRC/sql/$t.sql" "$t" |
		sed -E 's/^CREATE EXTENSION (IF NOT EXISTS )?stripe_idem;$/\\i in\/setup.sql/' |
		sed '1i \\\\set SHOW_CONTEXT never' >"$in/sql/$t.sql"
	if [ -f "$SRC/test/managed/expected/$t.out" ]; then
		cp "$SRC/test/managed/expected/$t.out" "$in/expected/$t.out"
	else
		# the setup line is echoed with the first line of setup.sql; the
		# C extension's "already exists" notice has no counterpart
		upto "$SRC/expected/$t.out" "$t" |
			sed -E 's/^CREATE EXTENSION (IF NOT EXISTS )?stripe_idem;$/\\i in\/setup.sql\n\\set ECHO none/' |
			sed -E '/^\\set ECHO none$/{n;/^NOTICE:  (42710|extension "stripe_idem" already exists, skipping)$/d}' |
			sed '1i \\\\set SHOW_CONTEXT never' >"$in/expected/$t.out"
	fi
done
ispecs=$(cat "$SRC/test/isolation_schedule")
mkdir -p "$in/iso/specs" "$in/iso/expected"
for t in $ispecs; do
	sed -e 's/^\tCREATE EXTENSION IF NOT EXISTS stripe_idem;$//' \
		-e 's/^\tDROP EXTENSION stripe_idem;$/\tTRUNCATE stripe_idempotency_keys;/' \
		"$SRC/test/specs/$t.spec" >"$in/iso/specs/$t.spec"
	if [ -f "$SRC/test/managed/expected/$t.out" ]; then
		cp "$SRC/test/managed/expected/$t.out" "$in/iso/expected/$t.out"
	else
		cp "$SRC/test/expected/$t.out" "$in/iso/expected/$t.out"
	fi
done

# ---- a cluster without stripe_idem; the edition from the file
if ! cluster_start "$SUITE_DIR/c"; then
	not_ok "a cluster without stripe_idem for the managed edition"
	done_testing
fi

# the pg_tle registration carries the same file
# (and the Supabase example's hosted-path migration)
mig=examples/supabase/supabase/migrations/20250127000000_stripe_idem_managed.sql
if bash "$SRC/tle/gen_install_pg_tle.sh" "$SUITE_DIR/install_pg_tle.sql" "$SUITE_DIR/migration.sql" &&
	cmp -s "$SUITE_DIR/install_pg_tle.sql" "$SRC/tle/install_pg_tle.sql" &&
	cmp -s "$SUITE_DIR/migration.sql" "$SRC/$mig"; then
	ok "tle/install_pg_tle.sql and $mig are up to date with tle/stripe_idem_tle.sql"
else
	not_ok "tle/install_pg_tle.sql or $mig is stale: run bash tle/gen_install_pg_tle.sh"
fi
if grep -q stripe_idem <<<"$(psql -XAtc 'SHOW shared_preload_libraries')"; then
	not_ok "stripe_idem is not preloaded"
else
	ok "stripe_idem is not preloaded"
fi

for db in contrib_regression isolation_regression; do
	createdb "$db"
	if cluster_psql -d "$db" -f "$in/stripe_idem_tle.sql" >"install-$db.log" 2>&1; then
		ok "psql -f tle/stripe_idem_tle.sql into $db"
	else
		cat "install-$db.log"
		not_ok "psql -f tle/stripe_idem_tle.sql into $db"
	fi
done
# installed for real: no C library anywhere
n=$(psql -XAt -d contrib_regression -c "SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
	WHERE p.pronamespace = 'public'::regnamespace AND l.lanname = 'c'")
if [ "$n" = 0 ]; then
	ok "no C function in the edition"
else
	not_ok "no C function in the edition (${n:-the count failed}${n:+ found})"
fi
# The installer learns how to sweep without pg_cron.
check "without pg_cron the install says how to schedule the sweep" \
	grep -q 'pg_cron is not installed' "install-contrib_regression.log"

# ---- docs/MANAGED.md's install and grant blocks, run as written
# block HEADING LANG: the first ```LANG block after the line HEADING
block() {
	awk -v h="$1" -v l="$2" '$0 == h { s = 1; next }
		s == 1 && $0 == "```" l { s = 2; next }
		s == 2 && $0 == "```" { exit }
		s == 2 { print }' "$SRC/docs/MANAGED.md"
}
createdb docs
psql -XAqc "CREATE ROLE app LOGIN"
if (cd "$SRC" && PGDATABASE=docs bash -c "$(block '### As a plain SQL file (migration)' sh)") >docs-install.log 2>&1 &&
	block '### Privileges' sql | psql -X -q -v ON_ERROR_STOP=1 -d docs >>docs-install.log 2>&1 &&
	[ "$(psql -XAt -U app -d docs -c "SELECT state FROM payments.begin_stripe_idempotency('docs:test', '1')")" = acquired ] &&
	! psql -XAt -U app -d docs -c "SELECT count(*) FROM payments.stripe_idempotency_keys" >/dev/null 2>&1; then
	ok "docs/MANAGED.md: the install into payments and the grants work as written"
else
	cat docs-install.log
	not_ok "docs/MANAGED.md: the install into payments and the grants work as written"
fi

# ---- regression: one verdict per test, from its result file
"$PGXS_DIR/test/regress/pg_regress" --bindir="$PGBIN" --use-existing \
	--host="$PGHOST" --port="$PGPORT" --dbname=contrib_regression \
	--inputdir="$in" --outputdir="$SUITE_DIR/regress" $schedule
regress_tap "managed regress" "$SRC/test/managed/regress_schedule" "$in" "$SUITE_DIR/regress" $?

# ---- isolation
"$PGXS_DIR/test/isolation/pg_isolation_regress" --bindir="$PGBIN" --use-existing \
	--host="$PGHOST" --port="$PGPORT" --dbname=isolation_regression \
	--inputdir="$in/iso" --outputdir="$SUITE_DIR/isolation" $ispecs
regress_tap "managed isolation" "$SRC/test/isolation_schedule" "$in/iso" "$SUITE_DIR/isolation" $?
cluster_stop

# ---- the race and the fuzz (TAP), with STRIPE_IDEM_EDITION=managed; each
# file's assertions join this suite's, and a file that dies or exits
# non-zero adds a failure (tap_from)
mkdir -p "$SUITE_DIR/tap/tmp_check"
cd "$SRC/test"
for t in t/001_concurrency_smoke.pl t/203_fuzz.pl; do
	tap_from "managed $(basename "$t" .pl)" env TESTDIR="$SUITE_DIR/tap" \
		PG_REGRESS="$PGXS_DIR/test/regress/pg_regress" PGPORT="$(free_port)" STRIPE_IDEM_EDITION=managed \
		perl -I "$PGXS_DIR/test/perl" -I "$SRC/test/lib" "$t"
done
cd "$SUITE_DIR"

# ---- the sweep with pg_cron (test/managed/cron_sweep.sh writes TAP)
if [ -f "$(pg_config --pkglibdir)/pg_cron.so" ]; then
	tap_from "pg_cron sweep" bash "$SRC/test/managed/cron_sweep.sh" "$SUITE_DIR/cron"
else
	skip "the sweep scheduled with pg_cron (test/managed/cron_sweep.sh)" \
		"pg_cron is not installed for PostgreSQL $PGMAJOR (postgresql-$PGMAJOR-cron)"
fi

done_testing
