#!/usr/bin/env bash
# What one call costs, function by function: the inclusive instructions of
# each function in the 2N run minus those in the N run, divided by N, from
# the callgrind files bench/instructions.sh leaves behind.
#
#   bash bench/profile.sh OUT_DIR CALL VARIANT [LINES]
#   e.g. bash bench/profile.sh bench/out begin_new c 40
set -euo pipefail
dir=$1 call=$2 v=$3 lines=${4:-40}
a="$dir/callgrind.$call.$v.n.out"
b="$dir/callgrind.$call.$v.2n.out"
n=$(awk -F, -v c="$call" -v v="$v" '$1 == c && $2 == v { print $5 }' "$dir/instructions.csv")
[ -n "$n" ] || { echo "bench/profile.sh: no $call $v in $dir/instructions.csv" >&2; exit 1; }
incl() {
	callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
		sed -n 's/^ *\([0-9,]*\) ([ 0-9.]*%)  *\(.*\)$/\1\t\2/p' | tr -d ','
}
join -t "$(printf '\t')" -1 2 -2 2 -a 2 -e 0 -o '0,1.1,2.1' \
	<(incl "$a" | sort -t "$(printf '\t')" -k2,2) <(incl "$b" | sort -t "$(printf '\t')" -k2,2) |
	awk -F '\t' -v n="$n" '{ d = ($3 - $2) / n; if (d >= 50) printf "%10.0f  %s\n", d, $1 }' |
	sed 's/ \[[^]]*\]$//' | sort -rn | head -n "$lines"
