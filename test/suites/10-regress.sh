#!/usr/bin/env bash
# majors: all
# pg_regress: sql/*.sql against expected/*.out in a temporary instance.
set -uo pipefail
source "$SRC/test/lib/cluster.sh"
cd "$SUITE_DIR"
PGXS_DIR=$(dirname "$(dirname "$(pg_config --pgxs)")")
"$PGXS_DIR/test/regress/pg_regress" \
	--bindir="$PGBIN" \
	--inputdir="$SRC" --outputdir="$SUITE_DIR" \
	--temp-instance="$SUITE_DIR/tmp_check" --port="$(free_port)" \
	--temp-config="$SRC/test/regress.conf" \
	$(cat "$SRC/test/regress_schedule") 2>&1 | tee pg_regress.out
[ -f regression.diffs ] && cat regression.diffs
# Every scheduled test that did not report "ok" counts as failed, so an
# aborted run can never look like a pass.
source "$SRC/test/lib/regress_output.sh"
total=$(wc -w <"$SRC/test/regress_schedule")
p=$(regress_passed pg_regress.out)
echo "SUITE_RESULT $p $((total - p))"
