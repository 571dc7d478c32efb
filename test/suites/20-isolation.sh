#!/usr/bin/env bash
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
p=$(grep -cE '\.\.\. ok' pg_isolation.out)
f=$(grep -cE '\.\.\. FAILED' pg_isolation.out)
echo "SUITE_RESULT $p $f"
