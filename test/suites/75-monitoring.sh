#!/usr/bin/env bash
# Monitoring (examples/monitoring/): Debian's prometheus-postgres-exporter
# runs queries.yaml against a throwaway cluster holding one operation in
# each state, /metrics is scraped with curl and its names and values
# checked; the alert rules pass promtool check rules and promtool test
# rules (Debian's prometheus). Host only: the packages are the host's.
set -uo pipefail
source "$SRC/test/lib/tap.sh"
source "$SRC/test/lib/cluster.sh"
EXPORTER=$(command -v prometheus-postgres-exporter || echo /usr/bin/prometheus-postgres-exporter)
if [ ! -x "$EXPORTER" ] || ! command -v promtool >/dev/null || ! command -v curl >/dev/null; then
	skip_all "prometheus-postgres-exporter, prometheus (promtool) or curl is not installed; as root: apt-get install -y --no-install-recommends prometheus-postgres-exporter prometheus curl"
fi

cluster_start "$SUITE_DIR/cluster" \
	"shared_preload_libraries = 'stripe_idem'" \
	"stripe_idem.sweep_interval = '1h'"
cluster_psql -c "CREATE DATABASE shop"
cluster_psql -d shop <<'EOF'
CREATE SCHEMA payments;
CREATE EXTENSION stripe_idem SCHEMA payments;
CREATE ROLE exporter LOGIN IN ROLE pg_monitor;
GRANT USAGE ON SCHEMA payments TO exporter;
ALTER ROLE exporter SET search_path = payments, pg_catalog;
SELECT payments.stripe_idem_wake_sweeper();
EOF
# The pass that finds shop, before the expired row exists.
for _ in $(seq 1 100); do
	n=$(psql -X -At -d shop -c "SELECT count(*) FROM payments.stripe_idem_sweeper WHERE database = 'shop' AND passes > 0")
	[ "$n" = 1 ] && break
	sleep 0.2
done
cluster_psql -d shop <<'EOF'
-- completed
SELECT stripe_idempotency_key AS k FROM payments.begin_stripe_idempotency('checkout:create', 'c1') \gset
SELECT 1 FROM payments.record_stripe_idempotency('checkout:create', 'c1', :'k', 'cs_1');
-- in flight, a live lease
SELECT 1 FROM payments.begin_stripe_idempotency('checkout:create', 'f1', NULL, lease => '1 hour');
-- stalled: the holder died 10 minutes ago, its lease lapsed
INSERT INTO payments.stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key,
	status, attempts, created_at, updated_at, expires_at)
VALUES ('checkout:create', 's1', 'checkout:create:s1:x', 'in_progress', 4,
	now() - interval '10 minutes', now() - interval '10 minutes', now() + interval '1 day');
-- unresolved: the key is 30 hours old, nothing recorded
INSERT INTO payments.stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key,
	status, created_at, updated_at, expires_at)
VALUES ('refund:create', 'u1', 'refund:create:u1:x', 'in_progress',
	now() - interval '30 hours', now() - interval '30 hours', now() - interval '6 hours');
-- expired, waiting for the sweep
INSERT INTO payments.stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key,
	status, stripe_resource_id, created_at, updated_at, expires_at)
VALUES ('refund:create', 'e1', 'refund:create:e1:x', 'completed', 're_1',
	now() - interval '2 days', now() - interval '2 days', now() - interval '1 day');
EOF

check "pg_monitor reads the overview without any grant on the table" \
	test "$(psql -X -At -U exporter -d shop -c "SELECT string_agg(operation_type || ' ' || completed || ' ' || in_flight || ' ' || stalled || ' ' || unresolved || ' ' || expired || ' ' || max_attempts, ', ' ORDER BY 1) FROM stripe_idem_overview")" = \
	"checkout:create 1 1 1 0 0 4, refund:create 0 0 0 1 1 1"
check "and is refused the table itself" \
	bash -c "! psql -X -At -U exporter -d shop -c 'SELECT 1 FROM payments.stripe_idempotency_keys' 2>/dev/null"

port=$(free_port)
DATA_SOURCE_NAME="host=$PGHOST port=$PGPORT user=exporter dbname=shop sslmode=disable" \
	"$EXPORTER" --web.listen-address="127.0.0.1:$port" \
	--extend.query-path="$SRC/examples/monitoring/queries.yaml" \
	--disable-default-metrics --disable-settings-metrics >"$SUITE_DIR/exporter.log" 2>&1 &
exporter_pid=$!
trap 'kill $exporter_pid 2>/dev/null; cluster_stop' EXIT
metrics=""
for _ in $(seq 1 100); do
	metrics=$(curl -sf "http://127.0.0.1:$port/metrics") && [ -n "$metrics" ] && break
	sleep 0.2
done
printf '%s\n' "$metrics" >"$SUITE_DIR/metrics.txt"
kill "$exporter_pid" 2>/dev/null
wait "$exporter_pid" 2>/dev/null

# metric NAME LABEL-REGEX VALUE: one sample with these labels and this value
metric() {
	grep -E "^$1(\{[^}]*$2[^}]*\})? $3\$" "$SUITE_DIR/metrics.txt" >/dev/null
}
check "the exporter loaded queries.yaml" metric pg_exporter_user_queries_load_error 'filename=' 0
check "overview: completed" metric stripe_idem_overview_completed 'operation_type="checkout:create"' 1
check "overview: in_flight" metric stripe_idem_overview_in_flight 'operation_type="checkout:create"' 1
check "overview: stalled" metric stripe_idem_overview_stalled 'operation_type="checkout:create"' 1
check "overview: unresolved" metric stripe_idem_overview_unresolved 'operation_type="refund:create"' 1
check "overview: no unresolved checkout" metric stripe_idem_overview_unresolved 'operation_type="checkout:create"' 0
check "overview: expired" metric stripe_idem_overview_expired 'operation_type="refund:create"' 1
check "overview: max_attempts" metric stripe_idem_overview_max_attempts 'operation_type="checkout:create"' 4
check "overview: datname label" metric stripe_idem_overview_completed 'datname="shop"' 1
check "overview: oldest_in_flight_seconds is a number under the lease" \
	bash -c "grep -E '^stripe_idem_overview_oldest_in_flight_seconds\{[^}]*checkout:create[^}]*\} [0-9.e+-]+$' '$SUITE_DIR/metrics.txt' | awk '{ exit !(\$2 >= 0 && \$2 < 3600) }'"
check "sweeper: ok" metric stripe_idem_sweeper_ok 'database="shop"' 1
check "sweeper: scheduled" metric stripe_idem_sweeper_scheduled 'database="shop"' 1
check "sweeper: passes" metric stripe_idem_sweeper_passes 'database="shop"' '[1-9][0-9]*'
check "stats: acquired" metric stripe_idem_stats_acquired '' 2
check "stats: records" metric stripe_idem_stats_records '' 1
check "no scrape error" metric pg_exporter_last_scrape_error '' 0
# After a failure, what the exporter served and said (TAP_FAILED: tap.sh's
# count of failed assertions so far).
if [ "$TAP_FAILED" != 0 ]; then
	echo "--- metrics"; grep '^stripe_idem\|^pg_exporter' "$SUITE_DIR/metrics.txt"
	echo "--- exporter log"; tail -n 20 "$SUITE_DIR/exporter.log"
fi

cd "$SRC/examples/monitoring"
check "promtool check rules alerts.yml" promtool check rules alerts.yml
check "promtool test rules alerts_test.yml" promtool test rules alerts_test.yml

done_testing
