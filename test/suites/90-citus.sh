#!/usr/bin/env bash
# majors: all
# Citus: the keys distributed over a coordinator and two workers
# (test/citus/*.pl, PostgreSQL::Test::Cluster). Runs only where Citus is
# installed for the server under test; anywhere else it reports itself
# skipped, with the reason. Nothing in the extension needs Citus.
set -uo pipefail
source "$SRC/test/lib/cluster.sh"
if [ ! -f "$("$PGBIN/pg_config" --pkglibdir)/citus.so" ]; then
	echo "SUITE_SKIPPED Citus is not installed for PostgreSQL $PGMAJOR"
	echo "SUITE_RESULT 0 0 1"
	exit 0
fi
# What the run is recorded with in docs/CITUS.md.
echo "== citus extension version $(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$("$PGBIN/pg_config" --sharedir)/extension/citus.control") on PostgreSQL $("$PGBIN/postgres" --version | sed 's/^postgres (PostgreSQL) //')"
cd "$SRC/test"
PGXS_DIR=$(dirname "$(dirname "$("$PGBIN/pg_config" --pgxs)")")
export TESTDIR="$SUITE_DIR" PG_REGRESS="$PGXS_DIR/test/regress/pg_regress"
export PGPORT=$(free_port)
mkdir -p "$SUITE_DIR/tmp_check"
perl -I "$PGXS_DIR/test/perl" -I "$SRC/test/lib" "$SRC/test/lib/tap_run.pl" citus/*.pl
