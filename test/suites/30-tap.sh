#!/usr/bin/env bash
# majors: all
# TAP tests (test/t/*.pl) with PostgreSQL::Test::Cluster, each file's
# results taken into this suite's TAP as "t/NAME.pl: ...".
set -uo pipefail
source "$SRC/test/lib/tap.sh"
source "$SRC/test/lib/cluster.sh"
cd "$SRC/test"
PGXS_DIR=$(dirname "$(dirname "$(pg_config --pgxs)")")
export TESTDIR="$SUITE_DIR" PG_REGRESS="$PGXS_DIR/test/regress/pg_regress"
export PGPORT=$(free_port)
mkdir -p "$SUITE_DIR/tmp_check"
# STRIPE_IDEM_TAP_TESTS picks files while working on them (default: all).
for f in ${STRIPE_IDEM_TAP_TESTS:-t/*.pl}; do
	tap_from "$f" perl -I "$PGXS_DIR/test/perl" -I "$SRC/test/lib" "$f"
done
done_testing
