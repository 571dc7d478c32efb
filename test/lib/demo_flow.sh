#!/usr/bin/env bash
# The demo itself, run as the cluster's owner by test/demo.sh.
set -euo pipefail
DEMO=$1
source "$DEMO/cluster.sh"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
sql() {
	printf '%s\n' "$1" | sed 's/^/  sql> /'
	cluster_psql -P pager=off -c "$1"
}

say "starting a throwaway cluster in $DEMO (port chosen at random)"
cluster_start "$DEMO/cluster" \
	"shared_preload_libraries = 'stripe_idem'" \
	"stripe_idem.sweep_interval = '2s'" \
	"stripe_idem.settle_time = '1s'"
echo "  listening on $PGHOST, port $PGPORT: PostgreSQL $(cluster_psql -At -c "SHOW server_version")"
echo "  (stripe_idem.databases is not set: the sweeper sweeps every database that has the extension)"
echo "  (stripe_idem.settle_time is 1 s instead of 10 min, so that 6c need not wait)"
sql "CREATE EXTENSION stripe_idem;"

say "1. a browser posts checkout cs_demo_1: begin before calling Stripe"
sql "SELECT state, stripe_idempotency_key, attempts
     FROM begin_stripe_idempotency('checkout:create', 'cs_demo_1', '{\"price\": \"price_123\", \"qty\": 2}');"
KEY=$(cluster_psql -At -c "SELECT stripe_idempotency_key FROM stripe_idempotency_keys WHERE operation_id = 'cs_demo_1'")
echo "  -> acquired: the app now calls stripe.checkout.sessions.create(params, { idempotencyKey: '$KEY' })"

say "2. the user double-clicks: a second request arrives while the first is still talking to Stripe"
sql "SELECT state, stripe_idempotency_key, retry_after
     FROM begin_stripe_idempotency('checkout:create', 'cs_demo_1', '{\"price\": \"price_123\", \"qty\": 2}');"
echo "  -> in_progress: no key handed out, answer 409 with Retry-After; Stripe is not called twice"

say "3. Stripe answered cs_test_a1B2c3: record it"
sql "SELECT * FROM record_stripe_idempotency('checkout:create', 'cs_demo_1', '$KEY',
       'cs_test_a1B2c3', '{\"id\": \"cs_test_a1B2c3\", \"url\": \"https://checkout.stripe.com/c/pay/cs_test_a1B2c3\"}');"

say "4. the browser retries: same session id, no Stripe call"
sql "SELECT state, stripe_resource_id, response ->> 'url' AS url
     FROM begin_stripe_idempotency('checkout:create', 'cs_demo_1', '{\"price\": \"price_123\", \"qty\": 2}');"

say "5. the same checkout id with a different cart is refused"
sql "SELECT state FROM begin_stripe_idempotency('checkout:create', 'cs_demo_1', '{\"price\": \"price_999\", \"qty\": 1}');"

say "6. a process dies after Stripe answered but before record; once the lease runs out the retry gets the SAME key"
sql "SELECT state, stripe_idempotency_key FROM begin_stripe_idempotency('checkout:create', 'cs_demo_2', NULL, lease => '1 second');"
sleep 1.2
sql "SELECT state, stripe_idempotency_key, attempts FROM begin_stripe_idempotency('checkout:create', 'cs_demo_2', NULL, lease => '1 second');"
echo "  -> same key: Stripe replays the first call instead of creating a second session"

say "6b. Stripe answered 503 (transient): release the lease, so the retry goes ahead at once, with the same key"
sql "SELECT state, stripe_idempotency_key, attempts FROM begin_stripe_idempotency('checkout:create', 'cs_demo_3');"
KEY3=$(cluster_psql -At -c "SELECT stripe_idempotency_key FROM stripe_idempotency_keys WHERE operation_id = 'cs_demo_3'")
sql "SELECT release_stripe_idempotency('checkout:create', 'cs_demo_3', '$KEY3', 1) AS released;"
sql "SELECT state, stripe_idempotency_key, attempts FROM begin_stripe_idempotency('checkout:create', 'cs_demo_3');"

say "6c. a holder died and its key is older than the key window (2 s here, 24 h by default): unresolved"
sql "SELECT state, attempts FROM begin_stripe_idempotency('checkout:create', 'cs_demo_4', NULL,
       lease => '1 second', key_window => '2 seconds');"
sleep 2.5
sql "SELECT state, stripe_idempotency_key, attempts FROM begin_stripe_idempotency('checkout:create', 'cs_demo_4', NULL,
       lease => '1 second', key_window => '2 seconds');"
KEY4=$(cluster_psql -At -c "SELECT stripe_idempotency_key FROM stripe_idempotency_keys WHERE operation_id = 'cs_demo_4'")
echo "  -> the key may have reached Stripe and may be forgotten: no new key, no lease. The app asks Stripe"
echo "     whether an object exists for '$KEY4'; it does not, so it restarts the operation:"
sql "SELECT state, stripe_idempotency_key, attempts FROM restart_stripe_idempotency('checkout:create', 'cs_demo_4', '$KEY4',
       lease => '1 second', key_window => '2 seconds');"

say "6d. the application's role: EXECUTE on the API, nothing on the table"
sql "CREATE ROLE demo_app LOGIN;
     GRANT USAGE ON SCHEMA public TO demo_app;
     GRANT EXECUTE ON FUNCTION begin_stripe_idempotency(text, text, jsonb, interval, interval, interval),
         restart_stripe_idempotency(text, text, text, interval, interval, interval),
         check_stripe_idempotency(text, text), record_stripe_idempotency(text, text, text, text, jsonb, interval),
         release_stripe_idempotency(text, text, text, integer) TO demo_app;"
echo "  as demo_app:"
printf '  sql> %s\n' "SELECT state, stripe_resource_id FROM begin_stripe_idempotency('checkout:create', 'cs_demo_1');"
cluster_psql -U demo_app -P pager=off -c "SELECT state, stripe_resource_id FROM begin_stripe_idempotency('checkout:create', 'cs_demo_1');"
printf '  sql> %s\n' "SELECT count(*) FROM stripe_idempotency_keys;"
if cluster_psql -U demo_app -c "SELECT count(*) FROM stripe_idempotency_keys;" 2>&1 | sed 's/^/  /'; then
	echo "the application role could read the table" >&2
	exit 1
fi
echo "  -> refused: the role cannot read or forge rows, only call the functions"

say "7. expiry: 1000 old keys whose ttl has passed, next to the live ones"
sql "WITH old AS (
       INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status,
                                            stripe_resource_id, expires_at)
       SELECT 'checkout:create', 'old_' || g, 'checkout:create:old_' || g, 'completed', 'cs_test_old_' || g,
              now() - interval '1 hour'
       FROM generate_series(1, 1000) g
       RETURNING 1)
     SELECT (SELECT count(*) FROM old) AS expired_inserted,
            (SELECT count(*) FROM stripe_idempotency_keys WHERE expires_at > now()) AS live;"
echo "  the background sweeper runs every 2 s here (stripe_idem.sweep_interval); waiting for its next pass..."
for _ in $(seq 1 60); do
	left=$(cluster_psql -At -c "SELECT count(*) FROM stripe_idempotency_keys WHERE expires_at <= now()")
	[ "$left" = 0 ] && break
	sleep 0.5
done
sql "SELECT count(*) FILTER (WHERE expires_at <= now()) AS expired, count(*) FILTER (WHERE expires_at > now()) AS live
     FROM stripe_idempotency_keys;"
sql "SELECT database, last_rows_deleted, total_rows_deleted, passes, last_error FROM stripe_idem_sweeper;"
echo "  the server log says:"
grep -E "stripe_idem sweeper deleted" "$CLUSTER_LOG" | tail -n 1 | sed 's/^/    /'
[ "$left" = 0 ] || { echo "the sweeper did not remove the expired keys" >&2; exit 1; }

say "8. what the server counted (server-wide), and the overview on-call reads (this database)"
sql "SELECT acquired, completed_replays, in_progress_conflicts, mismatches, records, releases, unresolved, rows_swept FROM stripe_idem_stats;"
sql "SELECT * FROM stripe_idem_overview;"

say "done; stopping the cluster and removing $DEMO"
