#!/usr/bin/env bash
# make bench-smoke inside make test: the whole benchmark harness on tiny
# data, so that it cannot rot. Passes when every workload produced numbers
# for every variant; speed itself is never asserted.
set -uo pipefail
source "$SRC/test/lib/tap.sh"
cd "$SUITE_DIR"

out="$SUITE_DIR/bench-out"
bash "$SRC/bench/run.sh" --smoke --out "$out" >bench.log 2>&1
rc=$?
tail -n 40 bench.log

[ $rc = 0 ] && ok "bench/run.sh --smoke exited 0" || not_ok "bench/run.sh --smoke exited $rc (log: $SUITE_DIR/bench.log)"

variants="c plpgsql raw"

# has FILE AWK-CONDITION: some line of the CSV satisfies the condition
has() { [ -f "$1" ] && awk -F, "NR > 1 && ($2) { found = 1 } END { exit !found }" "$1"; }

for v in $variants; do
	for w in "check_hit" "check_miss" "begin_record,sync_off" "begin_record,sync_on" "contention"; do
		wl=${w%%,*}
		setting=${w#*,}
		[ "$setting" = "$w" ] && setting=""
		cond="\$1 == \"$wl\" && \$4 == \"$v\" && \$6 + 0 > 0"
		[ -n "$setting" ] && cond="$cond && \$2 == \"$setting\""
		has "$out/results.csv" "$cond" && ok "$wl ${setting:+$setting }$v: tps measured" || not_ok "$wl ${setting:+$setting }$v: no tps"
	done
	has "$out/sweep.csv" "\$1 == \"$v\" && \$4 + 0 > 0 && \$6 + 0 > 0" &&
		ok "sweep $v: rows deleted and rate measured" || not_ok "sweep $v: no sweep numbers"
	has "$out/sizes.csv" "\$2 == \"$v\" && \$7 + 0 > 0" && ok "bytes per key $v" || not_ok "bytes per key $v: missing"
done

for f in check_hit check_miss; do
	for v in $variants; do
		has "$out/server.csv" "\$1 == \"$f\" && \$2 == \"$v\" && \$6 + 0 > 0" &&
			ok "server-side $f $v" || not_ok "server-side $f $v: missing"
	done
done
for f in begin_new begin_busy record; do
	for v in c plpgsql; do
		has "$out/server.csv" "\$1 == \"$f\" && \$2 == \"$v\" && \$6 + 0 > 0" &&
			ok "server-side $f $v" || not_ok "server-side $f $v: missing"
	done
done

# the scale workload: both table sizes measured
n=$(awk -F, 'NR > 1 && $1 == "scale" && $6 + 0 > 0 { s[$2] = 1 } END { print length(s) }' "$out/results.csv" 2>/dev/null)
[ "${n:-0}" -ge 2 ] && ok "scale: both table sizes measured" || not_ok "scale: ${n:-0} table size(s) measured"

# instructions per call (callgrind): every call, both variants, in the call
# and per statement, and the probe
for call in check_hit begin_replay begin_new; do
	for v in c plpgsql; do
		has "$out/instructions.csv" "\$1 == \"$call\" && \$2 == \"$v\" && \$8 + 0 > 0 && \$11 + 0 > 0" &&
			ok "instructions $call $v" || not_ok "instructions $call $v: missing"
	done
done
has "$out/instructions.csv" "\$1 == \"probe\" && \$11 + 0 > 0" && ok "instructions probe" || not_ok "instructions probe: missing"
[ -s "$out/callgrind.begin_new.c.2n.out" ] && ok "callgrind profile kept" || not_ok "callgrind profile missing"
grep -q '^| begin, new operation' "$out/summary.md" 2>/dev/null &&
	ok "summary.md has the instructions table" || not_ok "summary.md without the instructions table"

if grep -q '^| target | measured' "$out/summary.md" 2>/dev/null; then
	ok "summary.md has the targets table"
else
	not_ok "summary.md missing or without targets"
fi
if command -v gnuplot >/dev/null; then
	[ -s "$out/sweep_latency.png" ] && ok "sweep chart drawn" || not_ok "sweep chart missing"
else
	skip "sweep chart drawn" "gnuplot is not installed (apt-get install gnuplot-nox)"
fi

done_testing
