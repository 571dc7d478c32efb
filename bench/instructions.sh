#!/usr/bin/env bash
# Instructions per call, counted by valgrind's callgrind in a single-user
# backend (postgres --single): the same number on every run, unlike time on
# a shared machine. Part of make bench (bench/run.sh runs it); alone:
#
#   bash bench/instructions.sh [--smoke] [--out DIR] [--calls N] [--keys K] [--only "begin_new:c ..."]
#
# For each call and variant the backend runs N and then 2N statements, each
# one call, from a fresh copy of the same data directory; instructions per
# call = (count(2N) - count(N)) / N, so start-up, loading and shutdown
# cancel. The calls (prepared once, then EXECUTEd, as pgbench -M prepared
# and most drivers do):
#   check_hit      check_stripe_idempotency on a stored, live operation
#   begin_replay   begin_stripe_idempotency on a completed operation, with
#                  the request_params it was begun with
#   begin_new      begin_stripe_idempotency on a new operation, with
#                  request_params (each call commits, as in autocommit)
#   probe          the same lookup as check inside one statement, a
#                  nested-loop index probe per id: no per-call executor
# Variants: c (the extension) and plpgsql (bench/sql/plpgsql_idem.sql over
# its own plain table, bench/sql/plain_table.sql); probe is plain SQL on
# the extension's table.
#
# Two numbers per call: "in the call", the instructions of the function
# call itself (ExecMakeTableFunctionResult, inclusive: arguments, the
# function, its statements, the result rows), and "per statement", all of
# the backend's work for the statement around it (EXECUTE, transaction,
# output of the row), which is the same for both variants.
# The table holds K stored, completed keys (default 200,000).
#
# Outputs in DIR: instructions.csv, instructions.md (the table, ratios),
# callgrind.<call>.<variant>.n.out and .2n.out (the two runs; bench/
# profile.sh shows what one call costs, function by function, from them).
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$BENCH/.." && pwd)

mode=full
out=""
calls=""
keys=""
jobs="check_hit:c check_hit:plpgsql probe:raw begin_replay:c begin_replay:plpgsql begin_new:c begin_new:plpgsql"
orig_args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--smoke) mode=smoke ;;
		--out) out=$2; shift ;;
		--calls) calls=$2; shift ;;
		--keys) keys=$2; shift ;;
		--only) jobs=$2; shift ;;
		-h|--help) sed -n '2,25p' "$0"; exit 0 ;;
		*) echo "bench/instructions.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
[ -n "$out" ] || out="$BENCH/out"

# ---------------------------------------------------------------- as root
if [ "$(id -u)" = 0 ]; then
	bash "$TOP/test/lib/ensure_deps.sh" --bench || exit 1
	scratch=$(mktemp -d /tmp/stripe_idem_instr.XXXXXX)
	mkdir -p "$scratch/tree/test/lib" "$scratch/out"
	cp -r "$BENCH" "$scratch/tree/bench"
	rm -rf "$scratch/tree/bench/out"
	cp "$TOP/test/lib/cluster.sh" "$scratch/tree/test/lib/"
	chown -R postgres: "$scratch"
	chmod 755 "$scratch"
	rc=0
	runuser -u postgres -- env HOME="$scratch" PATH="$PATH" \
		bash "$scratch/tree/bench/instructions.sh" "${orig_args[@]}" --out "$scratch/out" || rc=$?
	mkdir -p "$out"
	cp -r "$scratch/out/." "$out/"
	rm -rf "$scratch"
	exit $rc
fi

if [ "$mode" = smoke ]; then
	N=${calls:-100}
	K=${keys:-2000}
else
	N=${calls:-3000}
	K=${keys:-200000}
fi

# The server that pg_config on PATH names: the one the extension is installed in.
PGBIN=$(pg_config --bindir)
export PGBIN
source "$TOP/test/lib/cluster.sh"
command -v valgrind >/dev/null || { echo "bench/instructions.sh: valgrind is not installed" >&2; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/instructions.* "$out"/callgrind.*
WORK=$(mktemp -d /tmp/stripe_idem_instr_run.XXXXXX)
trap 'cluster_stop 2>/dev/null; rm -rf "$WORK"' EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

PARAMS='{"amount": 2000, "currency": "usd", "customer": "cus_Nbench0000001"}'

# ---------------------------------------------------------------- data
log "instructions: $K stored keys per variant, $N and $((2 * N)) calls, server $("$PGBIN/postgres" --version)"
cluster_start "$WORK/cluster" "shared_preload_libraries = 'stripe_idem'" "stripe_idem.sweep_interval = 0" \
	"fsync = off" "autovacuum = off" "jit = off" "shared_buffers = 256MB" "log_min_messages = warning"
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE bench"
psql -X -q -v ON_ERROR_STOP=1 -d bench \
	-c "CREATE SCHEMA stripe_idem" -c "CREATE EXTENSION stripe_idem SCHEMA stripe_idem" \
	-v schema=plpgsql_idem -f "$BENCH/sql/plain_table.sql" -f "$BENCH/sql/plpgsql_idem.sql"
ext_version=$(psql -X -qAt -d bench -c "SELECT extversion FROM pg_extension WHERE extname = 'stripe_idem'")
# Completed operations charge:1..K, begun with PARAMS: the same rows in both
# tables (the fingerprint is what both implementations compute for PARAMS).
for t in stripe_idem plpgsql_idem; do
	psql -X -q -v ON_ERROR_STOP=1 -d bench -c "
		INSERT INTO $t.stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key,
			request_fingerprint, status, stripe_resource_id, response, attempts,
			created_at, updated_at, completed_at, expires_at)
		SELECT 'charge', g::text, 'charge:' || g || ':' || md5(g::text)::uuid,
			encode(sha256(convert_to('$PARAMS'::jsonb::text, 'UTF8')), 'hex'),
			'completed', 'ch_3N' || lpad(g::text, 22, '0'),
			jsonb_build_object('id', 'ch_3N' || lpad(g::text, 22, '0'), 'object', 'charge',
				'amount', 2000, 'currency', 'usd', 'status', 'succeeded'),
			1, now(), now(), now(), now() + interval '1 day'
		FROM generate_series(1, $K) g"
done
psql -X -q -v ON_ERROR_STOP=1 -d bench -c "VACUUM (ANALYZE, FREEZE)" -c "CHECKPOINT"
cluster_stop
cp -a "$CLUSTER_DATA" "$WORK/template"

# statements CALL VARIANT COUNT: the input of one single-user run
statements() {
	local call=$1 v=$2 n=$3 s
	[ "$v" = c ] && s=stripe_idem || s=plpgsql_idem
	case $call in
		check_hit)
			echo "PREPARE p(text) AS SELECT * FROM $s.check_stripe_idempotency('charge', \$1);"
			awk -v n="$n" -v k="$K" 'BEGIN { for (i = 1; i <= n; i++) printf "EXECUTE p(%c%d%c);\n", 39, (i * 7919) % k + 1, 39 }'
			;;
		begin_replay)
			echo "PREPARE p(text, jsonb) AS SELECT * FROM $s.begin_stripe_idempotency('charge', \$1, \$2);"
			awk -v n="$n" -v k="$K" -v p="$PARAMS" 'BEGIN { for (i = 1; i <= n; i++) printf "EXECUTE p(%c%d%c, %c%s%c);\n", 39, (i * 7919) % k + 1, 39, 39, p, 39 }'
			;;
		begin_new)
			echo "PREPARE p(text, jsonb) AS SELECT * FROM $s.begin_stripe_idempotency('charge', \$1, \$2);"
			awk -v n="$n" -v p="$PARAMS" 'BEGIN { for (i = 1; i <= n; i++) printf "EXECUTE p(%cnew-%d%c, %c%s%c);\n", 39, i, 39, 39, p, 39 }'
			;;
		probe)
			echo "SELECT count(*) FROM generate_series(1, $n) g, LATERAL (SELECT k.status, k.stripe_idempotency_key,
				k.stripe_resource_id, k.response, k.created_at, k.expires_at FROM stripe_idem.stripe_idempotency_keys k
				WHERE k.operation_type = 'charge' AND k.operation_id = ((g * 7919) % $K + 1)::text
				AND k.expires_at > statement_timestamp() OFFSET 0) c;" | tr '\n\t' '  '
			echo
			;;
	esac
}

# incl FILE FUNCTION: the inclusive instructions of FUNCTION in a callgrind file
incl() {
	callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
		awk -v f="$2" '{ for (i = 1; i <= NF; i++) if ($i ~ (":" f "$")) { gsub(",", "", $1); print $1; exit } }'
}

# count CALL VARIANT COUNT: run it; prints "total in_call"
count() {
	local call=$1 v=$2 n=$3 cg res kept
	cg="$WORK/cg.$call.$v.$n"
	rm -rf "$CLUSTER_DATA"
	cp -a "$WORK/template" "$CLUSTER_DATA"
	statements "$call" "$v" "$n" >"$WORK/input.sql"
	valgrind --tool=callgrind --callgrind-out-file="$cg" \
		"$PGBIN/postgres" --single -D "$CLUSTER_DATA" -F bench <"$WORK/input.sql" >"$WORK/output.txt" 2>"$WORK/valgrind.txt" || {
		log "single-user run failed: $call $v $n"; tail -n 20 "$WORK/valgrind.txt" >&2; return 1; }
	if grep -q 'ERROR:' "$WORK/output.txt"; then
		log "a statement failed: $call $v $n"; grep -m 3 'ERROR:' "$WORK/output.txt" >&2; return 1
	fi
	res=$(sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$cg" | head -n 1)
	[ -n "$res" ] || { log "no totals in $cg"; return 1; }
	[ "$n" = $((2 * N)) ] && kept="$out/callgrind.$call.$v.2n.out" || kept="$out/callgrind.$call.$v.n.out"
	cp "$cg" "$kept"
	if [ "$call" = probe ]; then
		echo "$res $res"
	else
		echo "$res $(incl "$cg" ExecMakeTableFunctionResult)"
	fi
}

echo "call,variant,extension_version,keys,calls,instructions_n,instructions_2n,per_statement,in_call_n,in_call_2n,in_call" >"$out/instructions.csv"
declare -A PER CALL
for job in check_hit:c check_hit:plpgsql probe:raw begin_replay:c begin_replay:plpgsql begin_new:c begin_new:plpgsql; do
	PER[$job]=0
	CALL[$job]=0
done
for job in $jobs; do
	call=${job%%:*}
	v=${job#*:}
	read -r a ia < <(count "$call" "$v" "$N")
	read -r b ib < <(count "$call" "$v" $((2 * N)))
	PER[$job]=$(( (b - a) / N ))
	CALL[$job]=$(( (ib - ia) / N ))
	echo "$call,$v,$ext_version,$K,$N,$a,$b,${PER[$job]},$ia,$ib,${CALL[$job]}" >>"$out/instructions.csv"
	log "$(printf '%-13s %-8s %10s in the call, %10s per statement' "$call" "$v" "${CALL[$job]}" "${PER[$job]}")"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "" }'; }
fmt() { echo "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
{
	echo "### Instructions per call (callgrind, single-user backend, extension $ext_version)"
	echo
	echo "$K stored keys; per call = (instructions with $((2 * N)) calls - with $N calls) / $N."
	echo "In the call: the function call itself; per statement: everything the backend did for"
	echo "the statement that made it (the same EXECUTE, transaction and output for both variants)."
	echo
	echo "| call | C | PL/pgSQL | C / PL/pgSQL | C per statement | PL/pgSQL per statement | ratio |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for call in check_hit begin_replay begin_new; do
		case $call in
			check_hit) label="check, hit" ;;
			begin_replay) label="begin, replaying a completed operation" ;;
			begin_new) label="begin, new operation (with request_params)" ;;
		esac
		echo "| $label | $(fmt "${CALL[$call:c]}") | $(fmt "${CALL[$call:plpgsql]}") | $(ratio "${CALL[$call:c]}" "${CALL[$call:plpgsql]}") | $(fmt "${PER[$call:c]}") | $(fmt "${PER[$call:plpgsql]}") | $(ratio "${PER[$call:c]}" "${PER[$call:plpgsql]}") |"
	done
	echo "| the same lookup inside one statement (nested-loop probe, no per-call executor) | $(fmt "${CALL[probe:raw]}") | | | | | |"
} >"$out/instructions.md"
cat "$out/instructions.md"
