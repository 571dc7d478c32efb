#!/usr/bin/env bash
# majors: all
# Citus: the keys distributed over a coordinator and two workers
# (test/citus/*.pl, PostgreSQL::Test::Cluster). Runs only where Citus is
# installed for the server under test; anywhere else it reports itself
# skipped, with the reason. Nothing in the extension needs Citus.
set -uo pipefail
source "$SRC/test/lib/tap.sh"
source "$SRC/test/lib/cluster.sh"
[ -f "$("$PGBIN/pg_config" --pkglibdir)/citus.so" ] ||
	skip_all "Citus is not installed for PostgreSQL $PGMAJOR"
# What the run is recorded with in docs/CITUS.md.
diag "citus extension version $(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$("$PGBIN/pg_config" --sharedir)/extension/citus.control") on PostgreSQL $("$PGBIN/postgres" --version | sed 's/^postgres (PostgreSQL) //')"
cd "$SRC/test"
PGXS_DIR=$(dirname "$(dirname "$("$PGBIN/pg_config" --pgxs)")")
export TESTDIR="$SUITE_DIR" PG_REGRESS="$PGXS_DIR/test/regress/pg_regress"
export PGPORT=$(free_port)
mkdir -p "$SUITE_DIR/tmp_check"
for f in citus/*.pl; do
	tap_from "$f" perl -I "$PGXS_DIR/test/perl" -I "$SRC/test/lib" "$f"
done
done_testing
