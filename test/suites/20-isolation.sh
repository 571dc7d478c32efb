#!/usr/bin/env bash
# majors: all
# pg_isolation_regress: test/specs/*.spec against test/expected/*.out.
set -uo pipefail
source "$SRC/test/lib/tap.sh"
source "$SRC/test/lib/cluster.sh"
source "$SRC/test/lib/regress_tap.sh"
cd "$SUITE_DIR"
PGXS_DIR=$(dirname "$(dirname "$(pg_config --pgxs)")")
"$PGXS_DIR/test/isolation/pg_isolation_regress" \
	--bindir="$PGBIN" \
	--inputdir="$SRC/test" --outputdir="$SUITE_DIR" \
	--temp-instance="$SUITE_DIR/tmp_check" --port="$(free_port)" \
	--temp-config="$SRC/test/regress.conf" \
	$(cat "$SRC/test/isolation_schedule")
regress_tap isolation "$SRC/test/isolation_schedule" "$SRC/test" "$SUITE_DIR" $?
done_testing
