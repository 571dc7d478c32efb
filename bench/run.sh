#!/usr/bin/env bash
# The benchmarks behind docs/BENCHMARKS.md: the extension's C functions
# against the same API hand-written in PL/pgSQL and against the plain SQL
# statements sent by the client, in one throwaway cluster, in one run.
#
#   bash bench/run.sh              full run (make bench), under 20 minutes on 2 cores
#   bash bench/run.sh --smoke      the same steps on tiny data, in seconds (make bench-smoke)
#
# Options:
#   --out DIR           where results go (default bench/out)
#   --variants "c plpgsql raw"    which implementations to compare
#   --only "check begin contention server sizes scale sweep instructions"   which parts to run
#
# Variants: c (the extension, schema stripe_idem), plpgsql (bench/sql/
# plpgsql_idem.sql), raw (the statements of bench/workloads/raw sent by
# pgbench). Each workload runs with pgbench -M prepared, round after round,
# the variants alternating within each round (c plpgsql raw c plpgsql raw
# ...), so that drift of the machine hits every variant alike.
#
# Outputs in DIR: results.csv (every pgbench run), server.csv (server-side
# cost per call), sweep.csv, sizes.csv, settings.txt, summary.md (the
# tables, medians and ratios, targets), sweep_latency.png, run.log, and
# from bench/instructions.sh (instructions per call under callgrind)
# instructions.csv, instructions.md and the callgrind files.
#
# Started as root it installs what is missing (gnuplot-nox) and runs the
# cluster work as the postgres user in a scratch directory, then copies
# the results back.
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$BENCH/.." && pwd)

mode=full
out=""
variants="c plpgsql raw"
only="check begin contention server sizes scale sweep instructions"
orig_args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--smoke) mode=smoke ;;
		--out) out=$2; shift ;;
		--variants) variants=$2; shift ;;
		--only) only=$2; shift ;;
		-h|--help) sed -n '2,30p' "$0"; exit 0 ;;
		*) echo "bench/run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
[ -n "$out" ] || out="$BENCH/out"

# ---------------------------------------------------------------- as root
if [ "$(id -u)" = 0 ]; then
	if [ -f "$TOP/test/lib/ensure_deps.sh" ]; then
		bash "$TOP/test/lib/ensure_deps.sh" --bench || exit 1
	fi
	so="$(pg_config --pkglibdir 2>/dev/null)/stripe_idem.so"
	newest_src=$(ls -t "$TOP"/src/*.c 2>/dev/null | head -n 1 || true)
	if [ -f "$so" ] && [ -n "$newest_src" ] && [ "$newest_src" -nt "$so" ]; then
		echo "bench/run.sh: warning: $newest_src is newer than the installed $so: measuring the installed build" >&2
	fi
	scratch=$(mktemp -d /tmp/stripe_idem_bench.XXXXXX)
	mkdir -p "$scratch/tree/test/lib" "$scratch/out"
	cp -r "$BENCH" "$scratch/tree/bench"
	rm -rf "$scratch/tree/bench/out"
	cp "$TOP/test/lib/cluster.sh" "$scratch/tree/test/lib/"
	chown -R postgres: "$scratch"
	chmod 755 "$scratch"
	rest=()
	for a in "${orig_args[@]}"; do rest+=("$a"); done
	# --out given twice: the last one (the scratch copy) wins.
	rc=0
	runuser -u postgres -- env HOME="$scratch" \
		bash "$scratch/tree/bench/run.sh" "${rest[@]}" --out "$scratch/out" || rc=$?
	mkdir -p "$out"
	cp -r "$scratch/out/." "$out/"
	rm -rf "$scratch"
	echo "results in $out"
	exit $rc
fi

# ---------------------------------------------------------------- settings
PGMAJOR=${PGMAJOR:-15}
# The server that pg_config on PATH names (the one the extension was
# installed into by make install), not a fixed system path.
PGBIN=$(pg_config --bindir)
PGSHARE=$(pg_config --sharedir)
export PGBIN
if [ "$mode" = smoke ]; then
	DUR=1                   # seconds per pgbench run
	ROUNDS=1
	CLIENTS="2"
	HOT_CLIENTS=4           # workload 4
	NKEYS=2000              # workloads 1-4
	SCALE_SMALL=100
	SCALE_LARGE=5000
	SWEEP_ROWS=5000
	SWEEP_CLIENTS=2
	SWEEP_LEAD=2            # seconds of workload 3 before the sweep starts
	SWEEP_MAX=60
	SERVER_CALLS=1000
	SERVER_WRITE_CALLS=1000
	SHARED_BUFFERS=128MB
else
	DUR=${BENCH_DURATION:-2}
	ROUNDS=${BENCH_ROUNDS:-3}
	CLIENTS="1 4 16"
	HOT_CLIENTS=16
	NKEYS=1000000
	SCALE_SMALL=10000
	SCALE_LARGE=10000000
	SWEEP_ROWS=1000000
	SWEEP_CLIENTS=4
	SWEEP_LEAD=4
	SWEEP_MAX=300
	SERVER_CALLS=100000
	# Writes are fewer: each costs a few hundred microseconds here (see
	# docs/BENCHMARKS.md), and 100,000 of each per variant and round would
	# take a quarter of an hour. BENCH_WRITE_CALLS=100000 to do it anyway.
	SERVER_WRITE_CALLS=${BENCH_WRITE_CALLS:-5000}
	SHARED_BUFFERS=8GB
fi

declare -A SCHEMA=([c]=stripe_idem [plpgsql]=plpgsql_idem [raw]=raw_idem)
declare -A LABEL=([c]="C" [plpgsql]="PL/pgSQL" [raw]="raw SQL")

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/*.csv "$out"/*.md "$out"/*.png "$out"/*.txt "$out"/*.log "$out"/*.dat
WORK=$(mktemp -d /tmp/stripe_idem_bench_run.XXXXXX)
LOG="$out/run.log"
started=$(date +%s)

log() { echo "[$(date +%H:%M:%S) +$(($(date +%s) - started))s] $*" | tee -a "$LOG" >&2; }
want() { [[ " $only " == *" $1 "* ]]; }
has_variant() { [[ " $variants " == *" $1 "* ]]; }

source "$TOP/test/lib/cluster.sh"

ext_sql="$PGSHARE/extension/stripe_idem--1.0.sql"
have_ext=0
have_sweeper=0
if [ -f "$PGSHARE/extension/stripe_idem.control" ]; then
	have_ext=1
	grep -q "stripe_idem_wake_sweeper" "$ext_sql" 2>/dev/null && have_sweeper=1
fi
if has_variant c && [ $have_ext = 0 ]; then
	echo "bench/run.sh: the extension is not installed; run 'make && make install' as root first" >&2
	echo "  (or compare the baselines alone with --variants \"plpgsql raw\")" >&2
	exit 1
fi
if [ $have_ext = 1 ]; then
	so="$(pg_config --pkglibdir)/stripe_idem.so"
	newest_src=$(ls -t "$TOP"/src/*.c 2>/dev/null | head -n 1 || true)
	if [ -n "$newest_src" ] && [ "$newest_src" -nt "$so" ]; then
		log "warning: $newest_src is newer than the installed $so: measuring the installed build"
	fi
fi

# ---------------------------------------------------------------- cluster
conf=(
	"shared_buffers = $SHARED_BUFFERS"
	"max_wal_size = 20GB"
	"min_wal_size = 1GB"
	"checkpoint_timeout = 30min"
	"wal_level = minimal"
	"max_wal_senders = 0"
	"autovacuum = off"
	"jit = off"
	"maintenance_work_mem = 1GB"
	"max_parallel_maintenance_workers = 2"
	"work_mem = 64MB"
	"log_min_messages = warning"
)
if [ $have_ext = 1 ]; then
	conf+=("shared_preload_libraries = 'stripe_idem'")
	if [ $have_sweeper = 1 ]; then
		conf+=("stripe_idem.databases = 'bench'" "stripe_idem.sweep_interval = 0"
			"stripe_idem.log_sweeps = off")
		# BENCH_SWEEP_BATCH_DELAY: the sweeper's pause after each batch, in ms
		# (default -1: half the time the batch took), for the trade-off
		# between the sweep's rate and the clients' latency.
		[ -n "${BENCH_SWEEP_BATCH_DELAY:-}" ] &&
			conf+=("stripe_idem.sweep_batch_delay = ${BENCH_SWEEP_BATCH_DELAY}")
	fi
fi
log "mode $mode; variants: $variants; parts: $only"
cluster_start "$WORK/cluster" "${conf[@]}"
trap 'cluster_stop; rm -rf "$WORK"' EXIT

psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_v() { psql -X -qAt -v ON_ERROR_STOP=1 "$@"; }

{
	echo "## machine"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores"
	echo "memory: $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
	echo "kernel: $(uname -sr)"
	. /etc/os-release 2>/dev/null && echo "os: ${PRETTY_NAME:-?}"
	echo "server: $(psql_v -c 'select version()')"
	echo "pgbench: $(pgbench --version)"
	echo
	echo "## run"
	echo "mode: $mode; variants: $variants; rounds: $ROUNDS; seconds per pgbench run: $DUR"
	echo "clients: $CLIENTS (contention: $HOT_CLIENTS; sweep: $SWEEP_CLIENTS)"
	echo "keys: $NKEYS (scale: $SCALE_SMALL and $SCALE_LARGE; sweep: $SWEEP_ROWS expired)"
	echo "server-side calls per statement: $SERVER_CALLS reads, $SERVER_WRITE_CALLS writes"
	echo "pgbench: -n -M prepared -j min(clients, $(nproc))"
	echo
	echo "## server settings (changed from the defaults)"
	psql_v -F ' = ' -c "select name, setting || coalesce(' ' || unit, '') from pg_settings
		where source not in ('default', 'override') and name not in ('port', 'unix_socket_directories')
		order by name"
} >"$out/settings.txt"
sed 's/^/    /' "$out/settings.txt" >&2

# ---------------------------------------------------------------- databases
create_db() {
	local db=$1
	shift
	local vs=("$@")
	psql_q -c "CREATE DATABASE $db"
	psql_q -d "$db" -c "CREATE EXTENSION pg_prewarm" -f "$BENCH/sql/helpers.sql"
	if [ $have_ext = 1 ]; then
		psql_q -d "$db" -c "CREATE SCHEMA stripe_idem" -c "CREATE EXTENSION stripe_idem SCHEMA stripe_idem"
	fi
	local v
	for v in "${vs[@]}"; do
		case $v in
			c) ;;
			plpgsql|raw)
				# The baselines' own plain table (plain_table.sql), not a
				# copy of the extension's.
				psql_q -d "$db" -v schema="${SCHEMA[$v]}" -f "$BENCH/sql/plain_table.sql"
				if [ "$v" = plpgsql ]; then
					psql_q -d "$db" -f "$BENCH/sql/plpgsql_idem.sql"
				fi
				;;
		esac
	done
}

tbl() { echo "${SCHEMA[$1]}.stripe_idempotency_keys"; }

prewarm() {
	local db=$1
	shift
	local v q=""
	for v in "$@"; do
		q+="SELECT count(pg_prewarm(x)) FROM (SELECT '$(tbl "$v")'::regclass AS x UNION ALL
			SELECT indexrelid::regclass FROM pg_index WHERE indrelid = '$(tbl "$v")'::regclass) s;"
	done
	psql_v -d "$db" -c "$q" >/dev/null
}

# One pgbench script per variant: the API scripts with the schema filled in.
mkdir -p "$WORK/scripts"
script() {
	local v=$1 name=$2 f="$WORK/scripts/$1-$2.sql"
	if [ ! -f "$f" ]; then
		if [ "$v" = raw ]; then
			cp "$BENCH/workloads/raw/$name.sql" "$f"
		else
			sed "s/@SCHEMA@/${SCHEMA[$v]}/g" "$BENCH/workloads/api/$name.sql" >"$f"
		fi
	fi
	echo "$f"
}

# ---------------------------------------------------------------- pgbench
echo "workload,setting,clients,variant,round,tps,latency_ms,transactions,failed" >"$out/results.csv"
echo "function,variant,round,calls,ms,us_per_call" >"$out/server.csv"
failures=0

# run_pgbench WORKLOAD SETTING CLIENTS VARIANT ROUND DB SCRIPT [pgbench args]
run_pgbench() {
	local workload=$1 setting=$2 clients=$3 v=$4 round=$5 db=$6 sql=$7
	shift 7
	local jobs=$clients
	[ "$jobs" -gt "$(nproc)" ] && jobs=$(nproc)
	local res="$WORK/pgbench.out" rc=0
	pgbench -n -M prepared -c "$clients" -j "$jobs" -T "$DUR" -f "$sql" "$@" "$db" >"$res" 2>&1 || rc=$?
	local tps lat tx failed
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial.*/\1/p' "$res")
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$res")
	tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$res")
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$res")
	if [ $rc != 0 ] || [ -z "$tps" ] || [ "${tx:-0}" = 0 ]; then
		log "pgbench failed: $workload $setting c=$clients $v round $round (exit $rc)"
		grep -v '^progress' "$res" | tail -n 5 | tee -a "$LOG" >&2
		failures=$((failures + 1))
		tps="" lat=""
	fi
	echo "$workload,$setting,$clients,$v,$round,$tps,$lat,${tx:-0},${failed:-0}" >>"$out/results.csv"
	printf '    %-12s %-8s c=%-3s %-8s r%s  %10s tps  %8s ms\n' "$workload" "$setting" "$clients" "$v" \
		"$round" "${tps:-FAIL}" "${lat:-}" >&2
}

# alternate WORKLOAD SETTING CLIENTS DB SCRIPTNAME [pgbench args]: every
# variant once per round, in turn.
alternate() {
	local workload=$1 setting=$2 clients=$3 db=$4 name=$5
	shift 5
	local r v
	for ((r = 1; r <= ROUNDS; r++)); do
		for v in $variants; do
			run_pgbench "$workload" "$setting" "$clients" "$v" "$r" "$db" "$(script "$v" "$name")" "$@"
		done
	done
}

# ---------------------------------------------------------------- load
t0=$(date +%s)
log "creating database bench, $NKEYS keys per variant"
create_db bench $variants
first_variant=${variants%% *}
expired_rows=0
want sweep && expired_rows=$SWEEP_ROWS
psql_q -d bench -c "SELECT bench_util.make_staging('$(tbl "$first_variant")', $NKEYS, $expired_rows)" >/dev/null
pids=()
for v in $variants; do
	psql_q -d bench -1 -c "SELECT bench_util.bulk_load('$(tbl "$v")', $NKEYS)" >/dev/null &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
psql_q -d bench -c "VACUUM (ANALYZE)" -c "CHECKPOINT"
log "loaded in $(($(date +%s) - t0))s"

echo "database,variant,keys,heap_bytes,index_bytes,total_bytes,bytes_per_key,note" >"$out/sizes.csv"
# sizes DB VARIANT NOTE
sizes() {
	psql_v -d "$1" -F , -c "SELECT '$1', '$2', n, pg_table_size(t), pg_indexes_size(t),
			pg_total_relation_size(t), round(pg_total_relation_size(t)::numeric / greatest(n, 1)), '$3'
		FROM (SELECT '$(tbl "$2")'::regclass AS t,
			(SELECT count(*) FROM $(tbl "$2")) AS n) s" >>"$out/sizes.csv"
}
if want sizes; then
	for v in $variants; do sizes bench "$v" "bulk loaded; indexes built after the load"; done
fi

# ---------------------------------------------------------------- workloads 1, 2
if want check; then
	prewarm bench $variants
	log "workload 1: check hit"
	for c in $CLIENTS; do
		alternate check_hit "${NKEYS}" "$c" bench check -D lo=1 -D hi="$NKEYS"
	done
	log "workload 2: check miss"
	for c in $CLIENTS; do
		alternate check_miss "${NKEYS}" "$c" bench check -D lo=$((NKEYS + 1)) -D hi=$((2 * NKEYS))
	done
fi

# ---------------------------------------------------------------- workload 3
if want begin; then
	prewarm bench $variants
	log "workload 3: begin + record, synchronous_commit off"
	for c in $CLIENTS; do
		PGOPTIONS="-c synchronous_commit=off" alternate begin_record sync_off "$c" bench begin_record
	done
	psql_q -d bench -c "CHECKPOINT"
	log "workload 3: begin + record, synchronous_commit on"
	for c in $CLIENTS; do
		PGOPTIONS="-c synchronous_commit=on" alternate begin_record sync_on "$c" bench begin_record
	done
	psql_q -d bench -c "VACUUM (ANALYZE)" -c "CHECKPOINT"
fi

# ---------------------------------------------------------------- workload 4
if want contention; then
	log "workload 4: contention, $HOT_CLIENTS clients on 10 operations"
	alternate contention hot10 "$HOT_CLIENTS" bench contention
	psql_q -d bench -c "VACUUM (ANALYZE)"
fi

# ---------------------------------------------------------------- server side
# A single statement calls the function SERVER_CALLS times; EXPLAIN ANALYZE
# (TIMING OFF) reports the execution time, without client round trips.
# The measuring session first reads the variant's table and indexes with
# pg_prewarm, so they are in shared buffers whatever ran before. (It does not
# spare the backend its first-touch page faults on those buffers: see
# "scale" in docs/BENCHMARKS.md.)
warm_sql() {
	echo "SELECT count(pg_prewarm(x)) FROM (SELECT '$1'::regclass AS x UNION ALL
		SELECT indexrelid::regclass FROM pg_index WHERE indrelid = '$1'::regclass) s"
}
server_cost() {
	local fn=$1 v=$2 r=$3 calls=$4 sql=$5 setup=${6:-} db=${7:-bench}
	local ms warm=""
	[ "$v" != none ] && warm=$(warm_sql "$(tbl "$v")")
	ms=$(psql_v -d "$db" ${warm:+-c "$warm"} ${setup:+-c "$setup"} -c "EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) $sql" |
		sed -n 's/^Execution Time: \([0-9.]*\) ms/\1/p')
	if [ -z "$ms" ]; then
		log "server-side $fn $v failed"
		failures=$((failures + 1))
		echo "$fn,$v,$r,$calls,," >>"$out/server.csv"
		return
	fi
	echo "$fn,$v,$r,$calls,$ms,$(awk -v m="$ms" -v n="$calls" 'BEGIN { printf "%.3f", m * 1000 / n }')" \
		>>"$out/server.csv"
	printf '    %-12s %-8s r%s %10s ms  %8s us/call\n' "$fn" "$v" "$r" "$ms" \
		"$(awk -v m="$ms" -v n="$calls" 'BEGIN { printf "%.3f", m * 1000 / n }')" >&2
}
if want server; then
	log "server-side cost per call"
	prewarm bench $variants
	params="'{\"amount\": 2000, \"currency\": \"usd\", \"customer\": \"cus_Nbench0000001\"}'"
	for ((r = 1; r <= ROUNDS; r++)); do
		for v in $variants; do
			s=${SCHEMA[$v]}
			hit="((g * 7919) % $NKEYS + 1)::text"
			miss="((g * 7919) % $NKEYS + $NKEYS + 1)::text"
			if [ "$v" = raw ]; then
				look="SELECT k.status, k.stripe_idempotency_key, k.stripe_resource_id, k.response,
					k.created_at, k.expires_at FROM raw_idem.stripe_idempotency_keys k
					WHERE k.operation_type = 'charge' AND k.operation_id ="
				# OFFSET 0 keeps the subquery a per-row index lookup, as a
				# client's statement is (else it becomes one hash join).
				server_cost check_hit raw "$r" "$SERVER_CALLS" "SELECT count(*) FROM generate_series(1, $SERVER_CALLS) g,
					LATERAL ($look $hit AND k.expires_at > statement_timestamp() OFFSET 0) c"
				server_cost check_miss raw "$r" "$SERVER_CALLS" "SELECT count(c.status) FROM generate_series(1, $SERVER_CALLS) g
					LEFT JOIN LATERAL ($look $miss AND k.expires_at > statement_timestamp() OFFSET 0) c ON true"
				continue
			fi
			server_cost check_hit "$v" "$r" "$SERVER_CALLS" "SELECT count(*) FROM generate_series(1, $SERVER_CALLS) g,
				LATERAL $s.check_stripe_idempotency('charge', $hit) c WHERE c.found"
			server_cost check_miss "$v" "$r" "$SERVER_CALLS" "SELECT count(*) FROM generate_series(1, $SERVER_CALLS) g,
				LATERAL $s.check_stripe_idempotency('charge', $miss) c WHERE NOT c.found"
			server_cost begin_new "$v" "$r" "$SERVER_WRITE_CALLS" "SELECT count(*) FROM generate_series(1, $SERVER_WRITE_CALLS) g,
				LATERAL $s.begin_stripe_idempotency('srv', 'b$r-' || g, $params) b WHERE b.state = 'acquired'"
			server_cost begin_busy "$v" "$r" "$SERVER_WRITE_CALLS" "SELECT count(*) FROM generate_series(1, $SERVER_WRITE_CALLS) g,
				LATERAL $s.begin_stripe_idempotency('srv', 'b$r-' || g, $params) b WHERE b.state = 'in_progress'"
			server_cost record "$v" "$r" "$SERVER_WRITE_CALLS" "SELECT count(*) FROM keys,
				LATERAL $s.record_stripe_idempotency('srv', keys.id, keys.key, 'ch_3Nbench0000000000000001',
					'{\"id\": \"ch_3Nbench0000000000000001\", \"status\": \"succeeded\"}') rec WHERE rec.recorded" \
				"CREATE TEMP TABLE keys AS SELECT 'b$r-' || g AS id, k.stripe_idempotency_key AS key
					FROM generate_series(1, $SERVER_WRITE_CALLS) g
					JOIN $(tbl "$v") k ON k.operation_type = 'srv' AND k.operation_id = 'b$r-' || g"
		done
	done
	# the empty loop, for reference
	server_cost empty_loop none 1 "$SERVER_CALLS" "SELECT count(*) FROM generate_series(1, $SERVER_CALLS) g,
		LATERAL (SELECT ((g * 7919) % $NKEYS + 1)::text AS id) c"
	psql_q -d bench -c "VACUUM (ANALYZE)" -c "CHECKPOINT"
fi

# ---------------------------------------------------------------- workload 6
if want scale; then
	# One variant carries the scale test: the extension when it is compared.
	sv=c
	has_variant c || sv=${variants%% *}
	log "workload 6: scale, $sv with $SCALE_SMALL and $SCALE_LARGE keys"
	for n in $SCALE_SMALL $SCALE_LARGE; do
		t0=$(date +%s)
		create_db "scale_$n" "$sv"
		psql_q -d "scale_$n" -c "SELECT bench_util.make_staging('$(tbl "$sv")', $(( n < NKEYS ? n : NKEYS )), 0)" >/dev/null
		psql_q -d "scale_$n" -1 -c "SET LOCAL maintenance_work_mem = '4GB'" \
			-c "SELECT bench_util.bulk_load('$(tbl "$sv")', $n)" >/dev/null
		psql_q -d "scale_$n" -c "ANALYZE" -c "CHECKPOINT"
		log "scale_$n loaded in $(($(date +%s) - t0))s"
		want sizes && sizes "scale_$n" "$sv" "bulk loaded; indexes built after the load"
	done
	for n in $SCALE_SMALL $SCALE_LARGE; do prewarm "scale_$n" "$sv"; done
	for c in $CLIENTS; do
		for ((r = 1; r <= ROUNDS; r++)); do
			for n in $SCALE_SMALL $SCALE_LARGE; do
				run_pgbench scale "$n" "$c" "$sv" "$r" "scale_$n" "$(script "$sv" check)" -D lo=1 -D hi="$n"
			done
		done
	done
	# The same lookups server-side: no client round trips, the table in
	# shared buffers (see warm_sql).
	for ((r = 1; r <= ROUNDS; r++)); do
		for n in $SCALE_SMALL $SCALE_LARGE; do
			if [ "$sv" = raw ]; then
				q="SELECT count(*) FROM generate_series(1, $SERVER_CALLS) g, LATERAL (SELECT k.status
					FROM raw_idem.stripe_idempotency_keys k WHERE k.operation_type = 'charge'
					AND k.operation_id = ((g * 7919) % $n + 1)::text AND k.expires_at > statement_timestamp() OFFSET 0) c"
			else
				q="SELECT count(*) FROM generate_series(1, $SERVER_CALLS) g,
					LATERAL ${SCHEMA[$sv]}.check_stripe_idempotency('charge', ((g * 7919) % $n + 1)::text) c WHERE c.found"
			fi
			server_cost "scale_check_$n" "$sv" "$r" "$SERVER_CALLS" "$q" "" "scale_$n"
		done
	done
	for n in $SCALE_SMALL $SCALE_LARGE; do psql_q -c "DROP DATABASE scale_$n"; done
fi

# ---------------------------------------------------------------- workload 5
# Each round adds SWEEP_ROWS expired rows to every variant's table (next to
# the live rows already there), then, per variant, starts workload 3 with
# SWEEP_CLIENTS clients, lets it run SWEEP_LEAD seconds, and sweeps:
#   c        the background sweeper (stripe_idem_wake_sweeper()), batches of
#            stripe_idem.sweep_batch_size rows, a transaction each
#   plpgsql  SELECT plpgsql_idem.cleanup_expired_idempotency_keys()
#   raw      DELETE FROM raw_idem.stripe_idempotency_keys WHERE expires_at <= now()
# Every transaction's latency is logged (pgbench --log); p50 and p99 before
# the sweep (the first second left out) are compared with p50 and p99 while
# it ran.
echo "variant,method,round,rows,seconds,rows_per_s,tx_before,p50_before_ms,p99_before_ms,tx_during,p50_during_ms,p99_during_ms" \
	>"$out/sweep.csv"

now_epoch() { date +%s.%N; }

# pctl P: the P-th percentile of the numbers on stdin (nearest rank)
pctl() { sort -n | awk -v p="$1" '{ v[NR] = $1 } END { if (NR == 0) { print ""; exit } i = int(p / 100 * NR + 0.999999); if (i < 1) i = 1; printf "%.3f\n", v[i] }'; }

sweep_once() {
	local v=$1 r=$2
	local dir="$WORK/sweep-$v-$r"
	mkdir -p "$dir"
	local method rows t_start t_end
	PGOPTIONS="-c synchronous_commit=on" pgbench -n -M prepared -c "$SWEEP_CLIENTS" -j "$(nproc)" -T "$SWEEP_MAX" \
		-f "$(script "$v" begin_record)" --log --log-prefix="$dir/tx" bench >"$dir/pgbench.out" 2>&1 &
	local pg_pid=$!
	local pg_start
	pg_start=$(now_epoch)
	sleep "$SWEEP_LEAD"
	case $v in
		c)
			if [ $have_sweeper = 1 ]; then
				method=sweeper
				local before
				before=$(psql_v -d bench -c "SELECT coalesce(sum(passes), 0) FROM stripe_idem.stripe_idem_sweeper WHERE database = 'bench'")
				psql_v -d bench -c "SELECT stripe_idem.stripe_idem_wake_sweeper()" >/dev/null
				local i state=""
				for ((i = 0; i < SWEEP_MAX * 10; i++)); do
					state=$(psql_v -d bench -F ' ' -c "SELECT passes, extract(epoch FROM last_started),
							extract(epoch FROM last_finished), last_rows_deleted, coalesce(last_error, '')
						FROM stripe_idem.stripe_idem_sweeper WHERE database = 'bench'
						  AND passes > $before AND last_finished >= last_started")
					[ -n "$state" ] && break
					sleep 0.1
				done
				if [ -z "$state" ]; then
					log "sweeper pass did not finish within ${SWEEP_MAX}s"
				else
					read -r _ t_start t_end rows err <<<"$state"
					[ -n "${err:-}" ] && log "sweeper error: $err"
				fi
			else
				method=cleanup_function
				read -r t_start rows t_end < <(psql_v -d bench -c "SELECT extract(epoch FROM clock_timestamp())" \
					-c "SELECT stripe_idem.cleanup_expired_idempotency_keys()" \
					-c "SELECT extract(epoch FROM clock_timestamp())" | tr '\n' ' ') || true
			fi
			;;
		plpgsql)
			method=cleanup_function
			read -r t_start rows t_end < <(psql_v -d bench -c "SELECT extract(epoch FROM clock_timestamp())" \
				-c "SELECT plpgsql_idem.cleanup_expired_idempotency_keys()" \
				-c "SELECT extract(epoch FROM clock_timestamp())" | tr '\n' ' ') || true
			;;
		raw)
			method=single_delete
			read -r t_start rows t_end < <(psql_v -d bench -c "SELECT extract(epoch FROM clock_timestamp())" \
				-c "WITH d AS (DELETE FROM raw_idem.stripe_idempotency_keys WHERE expires_at <= now() RETURNING 1)
					SELECT count(*) FROM d" \
				-c "SELECT extract(epoch FROM clock_timestamp())" | tr '\n' ' ') || true
			;;
	esac
	sleep 1
	kill -TERM "$pg_pid" 2>/dev/null || true
	wait "$pg_pid" 2>/dev/null || true
	if [ -z "${t_start:-}" ] || [ -z "${t_end:-}" ] || [ -z "${rows:-}" ]; then
		failures=$((failures + 1))
		echo "$v,$method,$r,,,,,,,,," >>"$out/sweep.csv"
		return
	fi
	# completion time (s since the epoch) and latency (ms) of every transaction
	# (pgbench is stopped by a signal: the last line of each log may be cut short)
	local f
	for f in "$dir"/tx.*; do
		head -n -1 "$f"
	done | awk 'NF >= 6 { printf "%.6f %.3f\n", $5 + $6 / 1e6, $3 / 1000 }' >"$dir/tx.dat"
	local secs rate before_lat during_lat
	secs=$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.3f", b - a }')
	rate=$(awk -v n="$rows" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0) ? n / s : 0 }')
	awk -v a="$pg_start" -v b="$t_start" '$1 >= a + 1 && $1 < b { print $2 }' "$dir/tx.dat" >"$dir/before"
	awk -v a="$t_start" -v b="$t_end" '$1 >= a && $1 <= b { print $2 }' "$dir/tx.dat" >"$dir/during"
	echo "$v,$method,$r,$rows,$secs,$rate,$(wc -l <"$dir/before"),$(pctl 50 <"$dir/before"),$(pctl 99 <"$dir/before"),$(wc -l <"$dir/during"),$(pctl 50 <"$dir/during"),$(pctl 99 <"$dir/during")" \
		>>"$out/sweep.csv"
	tail -n 1 "$out/sweep.csv" | sed 's/^/    /' >&2
	# latency series for the chart: seconds from the sweep's start, latency
	awk -v a="$t_start" '{ printf "%.4f %s\n", $1 - a, $2 }' "$dir/tx.dat" >"$out/sweep-$v-$r.dat"
	echo "$t_end $t_start" | awk '{ printf "%.3f\n", $1 - $2 }' >"$out/sweep-$v-$r.window"
}

if want sweep; then
	log "workload 5: sweep $SWEEP_ROWS expired rows under workload 3 ($SWEEP_CLIENTS clients, synchronous_commit on)"
	for ((r = 1; r <= ROUNDS; r++)); do
		t0=$(date +%s)
		pids=()
		for v in $variants; do
			psql_q -d bench -c "SELECT bench_util.add_expired('$(tbl "$v")')" \
				-c "ANALYZE $(tbl "$v")" >/dev/null &
			pids+=($!)
		done
		for p in "${pids[@]}"; do wait "$p"; done
		prewarm bench $variants
		psql_q -d bench -c "CHECKPOINT"
		log "round $r: expired rows added in $(($(date +%s) - t0))s"
		for v in $variants; do
			sweep_once "$v" "$r"
		done
		pids=()
		for v in $variants; do
			psql_q -d bench -c "VACUUM $(tbl "$v")" &
			pids+=($!)
		done
		for p in "${pids[@]}"; do wait "$p"; done
	done
fi

# ---------------------------------------------------------------- instructions
# Instructions per call under callgrind, in their own single-user backend
# (bench/instructions.sh); the cluster above is not used.
if want instructions && has_variant c && has_variant plpgsql; then
	log "instructions per call (callgrind)"
	smoke_arg=()
	[ "$mode" = smoke ] && smoke_arg=(--smoke)
	if ! bash "$BENCH/instructions.sh" "${smoke_arg[@]}" --out "$out" >>"$LOG" 2>&1; then
		log "instructions failed"
		failures=$((failures + 1))
	fi
fi

# ---------------------------------------------------------------- report
log "report"
if ! bash "$BENCH/report.sh" "$out" "$variants" >"$out/summary.md"; then
	log "report failed"
	failures=$((failures + 1))
fi
if [ -f "$out/instructions.md" ]; then
	{ echo; cat "$out/instructions.md"; } >>"$out/summary.md"
fi
cat "$out/summary.md"
log "done in $(($(date +%s) - started))s, $failures failure(s)"
[ "$failures" = 0 ]
