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
source "$SRC/test/lib/cluster.sh"
source "$SRC/test/lib/regress_output.sh"
cd "$SUITE_DIR"
PGXS_DIR=$(dirname "$(dirname "$(pg_config --pgxs)")")

pass=0
fail=0
skip=0

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
cluster_start "$SUITE_DIR/c" || { echo "SUITE_RESULT 0 1"; exit 0; }
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# the pg_tle registration carries the same file
# (and the Supabase example's hosted-path migration)
mig=examples/supabase/supabase/migrations/20250127000000_stripe_idem_managed.sql
bash "$SRC/tle/gen_install_pg_tle.sh" "$SUITE_DIR/install_pg_tle.sql" "$SUITE_DIR/migration.sql" &&
	cmp -s "$SUITE_DIR/install_pg_tle.sql" "$SRC/tle/install_pg_tle.sql" &&
	cmp -s "$SUITE_DIR/migration.sql" "$SRC/$mig" &&
	ok "tle/install_pg_tle.sql and $mig are up to date with tle/stripe_idem_tle.sql" ||
	bad "tle/install_pg_tle.sql or $mig is stale: run bash tle/gen_install_pg_tle.sh"
grep -q stripe_idem <<<"$(psql -XAtc 'SHOW shared_preload_libraries')" &&
	bad "stripe_idem is preloaded" || ok "stripe_idem is not preloaded"

for db in contrib_regression isolation_regression; do
	createdb "$db"
	if cluster_psql -d "$db" -f "$in/stripe_idem_tle.sql" >"install-$db.log" 2>&1; then
		ok "psql -f tle/stripe_idem_tle.sql into $db"
	else
		cat "install-$db.log"
		bad "psql -f tle/stripe_idem_tle.sql into $db"
	fi
done
# installed for real: no C library anywhere
n=$(psql -XAt -d contrib_regression -c "SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
	WHERE p.pronamespace = 'public'::regnamespace AND l.lanname = 'c'")
[ "$n" = 0 ] && ok "no C function in the edition" || bad "$n C functions in the edition"
# The installer learns how to sweep without pg_cron.
grep -q 'pg_cron is not installed' "install-contrib_regression.log" &&
	ok "without pg_cron the install says how to schedule the sweep" ||
	bad "no NOTICE about scheduling the sweep"

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
	bad "docs/MANAGED.md: the install or grant block failed"
fi

# ---- regression
"$PGXS_DIR/test/regress/pg_regress" --bindir="$PGBIN" --use-existing \
	--host="$PGHOST" --port="$PGPORT" --dbname=contrib_regression \
	--inputdir="$in" --outputdir="$SUITE_DIR/regress" $schedule 2>&1 | tee pg_regress.out
[ -f regress/regression.diffs ] && cat regress/regression.diffs
p=$(regress_passed pg_regress.out)
total=$(wc -w <<<"$schedule")
pass=$((pass + p))
fail=$((fail + total - p))

# ---- isolation
"$PGXS_DIR/test/isolation/pg_isolation_regress" --bindir="$PGBIN" --use-existing \
	--host="$PGHOST" --port="$PGPORT" --dbname=isolation_regression \
	--inputdir="$in/iso" --outputdir="$SUITE_DIR/isolation" $ispecs 2>&1 | tee pg_isolation.out
[ -f isolation/regression.diffs ] && cat isolation/regression.diffs
p=$(regress_passed pg_isolation.out)
total=$(wc -w <<<"$ispecs")
pass=$((pass + p))
fail=$((fail + total - p))
cluster_stop

# ---- the race and the fuzz (TAP), with STRIPE_IDEM_EDITION=managed
(
	cd "$SRC/test"
	export TESTDIR="$SUITE_DIR/tap" PG_REGRESS="$PGXS_DIR/test/regress/pg_regress"
	export PGPORT=$(free_port) STRIPE_IDEM_EDITION=managed
	mkdir -p "$SUITE_DIR/tap/tmp_check"
	perl -I "$PGXS_DIR/test/perl" -I "$SRC/test/lib" "$SRC/test/lib/tap_run.pl" \
		t/001_concurrency_smoke.pl t/203_fuzz.pl
) 2>&1 | tee tap.out
res=$(grep -E '^SUITE_RESULT [0-9]+ [0-9]+$' tap.out | tail -n 1)
if [ -n "$res" ]; then
	read -r _ p f <<<"$res"
	pass=$((pass + p))
	fail=$((fail + f))
else
	fail=$((fail + 1))
fi

# ---- the sweep with pg_cron
if [ -f "$(pg_config --pkglibdir)/pg_cron.so" ]; then
	bash "$SRC/test/managed/cron_sweep.sh" "$SUITE_DIR/cron" | tee cron.out
	pass=$((pass + $(grep -c '^ok ' cron.out)))
	fail=$((fail + $(grep -c '^FAIL ' cron.out)))
else
	skip=$((skip + 1))
	echo "SUITE_SKIPPED pg_cron is not installed for PostgreSQL $PGMAJOR (postgresql-$PGMAJOR-cron): the sweep job was not run"
fi

echo "SUITE_RESULT $pass $fail $skip"
