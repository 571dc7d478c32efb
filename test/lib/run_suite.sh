#!/usr/bin/env bash
# run_suite.sh MAJOR SUITE: one suite of test/suites against PostgreSQL
# MAJOR, as make test runs it once test/lib/prepare_major.sh has built and
# installed that major. Its TAP goes to stdout, as the suite writes it.
#
# The suite runs as the postgres user (the servers refuse root), in the
# private copy of the tree, inside the major's chroot for 17 and 18, with
#   SRC        the private copy of the tree
#   SUITE_DIR  an empty scratch directory (also HOME) for its clusters and logs
#   PGMAJOR, PGBIN  the PostgreSQL under test
#   ASAN       1 under make test-asan
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
source test/lib/majors.sh
major=$1 suite=$2
work=${STRIPE_IDEM_WORK:-/tmp/stripe_idem_test}.pg$major
if [ ! -f "$work.ready" ]; then
	echo "1..1"
	echo "not ok 1 - not run: PostgreSQL $major was not set up (test/lib/prepare_major.sh $major)"
	exit 1
fi
if [ "$major" = "$SI_HOST_MAJOR" ]; then
	pgbin=${PGBIN:-/usr/lib/postgresql/$major/bin}
else
	pgbin=/usr/lib/postgresql/$major/bin
fi
cmd=$(printf '%q ' env SRC="$work" SUITE_DIR="$work/suites/$suite" HOME="$work/suites/$suite" \
	ASAN="${ASAN:-0}" STRIPE_IDEM_TAP_TESTS="${STRIPE_IDEM_TAP_TESTS:-}" \
	PG_TEST_TIMEOUT_DEFAULT="${PG_TEST_TIMEOUT_DEFAULT:-180}" PGMAJOR="$major" PGBIN="$pgbin" PATH="$pgbin:$PATH" \
	bash "$work/test/suites/$suite.sh")
# The scratch directory, emptied; the suite then runs as postgres.
inner="rm -rf $work/suites/$suite && mkdir -p $work/suites/$suite"
if [ "$(id -u)" = 0 ]; then
	inner="$inner && chown postgres: $work/suites/$suite && exec runuser -u postgres -- $cmd"
else
	inner="$inner && exec $cmd"
fi
if [ "$major" = "$SI_HOST_MAJOR" ]; then
	exec bash -c "$inner"
fi
source test/lib/chroot.sh
chroot_run "$(si_chroot_name "$major")" bash -c "$inner"
