#!/usr/bin/env bash
# majors: all
# pg_regress: sql/*.sql against expected/*.out in a temporary instance.
set -uo pipefail
source "$SRC/test/lib/tap.sh"
source "$SRC/test/lib/cluster.sh"
source "$SRC/test/lib/regress_tap.sh"
cd "$SUITE_DIR"
PGXS_DIR=$(dirname "$(dirname "$(pg_config --pgxs)")")
"$PGXS_DIR/test/regress/pg_regress" \
	--bindir="$PGBIN" \
	--inputdir="$SRC" --outputdir="$SUITE_DIR" \
	--temp-instance="$SUITE_DIR/tmp_check" --port="$(free_port)" \
	--temp-config="$SRC/test/regress.conf" \
	$(cat "$SRC/test/regress_schedule")
regress_tap regress "$SRC/test/regress_schedule" "$SRC" "$SUITE_DIR" $?
done_testing
