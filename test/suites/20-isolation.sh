#!/usr/bin/env bash
# majors: all
# pg_isolation_regress: test/specs/*.spec against test/expected/*.out.
set -uo pipefail
source "$SRC/test/lib/cluster.sh"
cd "$SUITE_DIR"
PGXS_DIR=$(dirname "$(dirname "$(pg_config --pgxs)")")
"$PGXS_DIR/test/isolation/pg_isolation_regress" \
	--bindir="$PGBIN" \
	--inputdir="$SRC/test" --outputdir="$SUITE_DIR" \
	--temp-instance="$SUITE_DIR/tmp_check" --port="$(free_port)" \
	--temp-config="$SRC/test/regress.conf" \
	$(cat "$SRC/test/isolation_schedule") 2>&1 | tee pg_isolation.out
[ -f regression.diffs ] && cat regression.diffs
# Every scheduled test that did not report "ok" counts as failed, so an
# aborted run can never look like a pass.
source "$SRC/test/lib/regress_output.sh"
total=$(wc -w <"$SRC/test/isolation_schedule")
p=$(regress_passed pg_isolation.out)
echo "SUITE_RESULT $p $((total - p))"
