#!/usr/bin/env bash
# The two editions side by side: the C extension against the managed
# edition (tle/stripe_idem_tle.sql, SQL and PL/pgSQL), the same calls
# through the same API workloads (bench/workloads/api), in one throwaway
# cluster, the variants alternating within each round.
#
#   bash bench/managed.sh [--smoke] [--out DIR] [--rounds N] [--seconds N]
#
# Variants:
#   c              the C extension (schema stripe_idem, preloaded)
#   managed        the managed edition as installed (schema managed_idem):
#                  every function carries SET search_path
#   managed_noset  the same functions with the SET removed and the schema
#                  put on the session's search_path instead. Not a way to
#                  run it (a caller's search_path would decide what the
#                  functions call): it is there to measure what the per-call
#                  SET costs.
# Workloads (pgbench -M prepared, 2 clients):
#   check_hit      check_stripe_idempotency on 10,000 completed operations
#   begin_replay   begin on those completed operations: the replay
#   begin_record   begin a new operation and record its result
#
# Outputs in DIR (default bench/out-managed): managed.csv (every pgbench
# run) and managed.md (median tps per workload and variant, and the
# managed edition's ratio to C). Needs the C extension installed in the
# PostgreSQL that pg_config names; started as root it runs the cluster as
# the postgres user.
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$BENCH/.." && pwd)
out="$BENCH/out-managed"
rounds=3
secs=10
orig=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--smoke) rounds=1; secs=2 ;;
		--out) out=$2; shift ;;
		--rounds) rounds=$2; shift ;;
		--seconds) secs=$2; shift ;;
		*) echo "bench/managed.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

if [ "$(id -u)" = 0 ]; then
	scratch=$(mktemp -d /tmp/stripe_idem_bench_managed.XXXXXX)
	mkdir -p "$scratch/tree/test/lib" "$scratch/tree/tle" "$scratch/out"
	cp -r "$BENCH" "$scratch/tree/bench"
	cp "$TOP/test/lib/cluster.sh" "$scratch/tree/test/lib/"
	cp "$TOP/tle/stripe_idem_tle.sql" "$scratch/tree/tle/"
	chown -R postgres: "$scratch"
	chmod 755 "$scratch"
	rc=0
	runuser -u postgres -- env HOME="$scratch" PATH="$PATH" \
		bash "$scratch/tree/bench/managed.sh" "${orig[@]}" --out "$scratch/out" || rc=$?
	mkdir -p "$out"
	cp -r "$scratch/out/." "$out/"
	rm -rf "$scratch"
	echo "results in $out"
	exit $rc
fi

PGBIN=$(pg_config --bindir)
export PGMAJOR=$(pg_config --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/') PGBIN
source "$TOP/test/lib/cluster.sh"
mkdir -p "$out"
work=$(mktemp -d /tmp/stripe_idem_bench_managed_work.XXXXXX)
cluster_start "$work/c" "shared_preload_libraries = 'stripe_idem'" "stripe_idem.sweep_interval = 0" \
	"shared_buffers = 128MB" "synchronous_commit = on"
q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

q -c "CREATE DATABASE bench"
q -d bench -c "CREATE SCHEMA stripe_idem" -c "CREATE EXTENSION stripe_idem SCHEMA stripe_idem"
for s in managed_idem managed_noset; do
	PGOPTIONS="-c search_path=$s -c client_min_messages=warning" \
		q -d bench -c "CREATE SCHEMA $s" -f "$TOP/tle/stripe_idem_tle.sql"
done
q -d bench <<'SQL'
DO $$
DECLARE f regprocedure;
BEGIN
	FOR f IN SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'managed_noset'::regnamespace
		AND p.proconfig IS NOT NULL
	LOOP
		EXECUTE format('ALTER FUNCTION %s RESET search_path', f);
	END LOOP;
END $$;
SQL
# 10,000 completed operations in each, ids 1..10000, through the API
for s in stripe_idem managed_idem managed_noset; do
	PGOPTIONS="-c search_path=$s,pg_catalog" q -d bench -c "
		SELECT count(*) FROM generate_series(1, 10000) g,
			LATERAL $s.record_stripe_idempotency('charge', g::text, 'charge:' || g || ':k',
				'ch_' || g, '{\"status\": \"succeeded\"}', '30 days') r" >/dev/null
done
q -d bench -c "VACUUM ANALYZE" -c "CHECKPOINT"

declare -A SCHEMA=([c]=stripe_idem [managed]=managed_idem [managed_noset]=managed_noset)
variants="c managed managed_noset"
mkdir -p "$work/scripts"
for v in $variants; do
	sed "s/@SCHEMA@/${SCHEMA[$v]}/g" "$BENCH/workloads/api/check.sql" >"$work/scripts/$v-check.sql"
	sed "s/@SCHEMA@/${SCHEMA[$v]}/g" "$BENCH/workloads/api/begin_record.sql" >"$work/scripts/$v-begin_record.sql"
	cat >"$work/scripts/$v-begin_replay.sql" <<EOF
\\set id random(1, 10000)
SELECT state FROM ${SCHEMA[$v]}.begin_stripe_idempotency('charge', :id);
EOF
done

echo "workload,variant,round,tps" >"$out/managed.csv"
run() {
	local wl=$1 v=$2 r=$3 script extra=() opts tps
	case $wl in
		check_hit) script="$work/scripts/$v-check.sql"; extra=(-D lo=1 -D hi=10000) ;;
		begin_replay) script="$work/scripts/$v-begin_replay.sql" ;;
		begin_record) script="$work/scripts/$v-begin_record.sql" ;;
	esac
	opts="-c client_min_messages=warning"
	[ "$v" = managed_noset ] && opts="$opts -c search_path=managed_noset,pg_catalog"
	PGOPTIONS="$opts" pgbench -n -M prepared -c 2 -j 2 -T "$secs" "${extra[@]}" \
		-f "$script" bench >"$work/pgbench.out" 2>&1 || true
	tps=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' "$work/pgbench.out" | tail -n 1)
	echo "$wl,$v,$r,${tps:-0}" >>"$out/managed.csv"
	echo "  $wl $v round $r: ${tps:-FAILED} tps"
	[ -n "$tps" ] || grep -m 3 -iE "error|ERROR" "$work/pgbench.out"
}
for r in $(seq 1 "$rounds"); do
	for wl in check_hit begin_replay begin_record; do
		for v in $variants; do run "$wl" "$v" "$r"; done
	done
done
cluster_stop
rm -rf "$work"

# Medians per workload and variant; the managed editions' ratio to C.
{
	echo "| workload | C tps | managed tps | managed / C | managed without SET search_path | SET's share |"
	echo "|---|---:|---:|---:|---:|---:|"
	awk -F, 'NR > 1 { v[$1 "," $2] = v[$1 "," $2] " " $4 }
		function median(s,   a, n, i, j, t) {
			n = split(s, a, " ")
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
			return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
		}
		END {
			split("check_hit begin_replay begin_record", w, " ")
			for (i = 1; i <= 3; i++) {
				c = median(v[w[i] ",c"]); m = median(v[w[i] ",managed"]); n = median(v[w[i] ",managed_noset"])
				printf "| %s | %.0f | %.0f | %.2f | %.0f | %.0f%% |\n", w[i], c, m, (c > 0 ? m / c : 0), n,
					(n > 0 ? 100 * (1 / m - 1 / n) / (1 / m) : 0)
			}
		}' "$out/managed.csv"
	echo
	echo "pgbench -M prepared, 2 clients, $secs s per run, $rounds round(s), variants alternating; medians."
	echo "SET's share: the part of a managed call's time that goes away without the per-call SET search_path."
} >"$out/managed.md"
cat "$out/managed.md"
