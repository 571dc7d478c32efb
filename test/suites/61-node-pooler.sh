#!/usr/bin/env bash
# The Node example's tests again, this time through a private pgbouncer in
# pool_mode = transaction with fewer server connections than clients, as
# behind Supavisor's port 6543; then begin raced by 16 pgbench clients through
# it (simple and extended protocol), and the session-state rules the README's
# pooler section states. Checks on pgbouncer's admin console and both logs
# that the traffic really went through the pooler.
# majors: all
set -uo pipefail
source "$SRC/test/lib/tap.sh"
source "$SRC/test/lib/cluster.sh"
source "$SRC/test/lib/pgbouncer.sh"
source "$SRC/test/lib/node_example.sh"
cd "$SUITE_DIR"

give_up() {
	not_ok "$*"
	done_testing
}

POOL_SIZE=8          # server connections; the Node tests open 20 per pool, pgbench 16
RACE_CLIENTS=16
RACE_OPS=20
RACE_TX=50           # per client: 800 begins on 20 operations per protocol

cluster_start "$SUITE_DIR/pg" "log_connections = on" || give_up "could not start a cluster"
cluster_psql -c "CREATE EXTENSION stripe_idem" || give_up "CREATE EXTENSION stripe_idem failed"
pgbouncer_start "$SUITE_DIR/pgbouncer" "$POOL_SIZE" || give_up "could not start pgbouncer"
diag "pgbouncer $("$PGBOUNCER" --version | head -n 1 | awk '{print $2}') on 127.0.0.1:$BOUNCER_PORT, pool_mode = transaction, $POOL_SIZE server connections"

ge() { [ "$1" -ge "$2" ]; }
gt() { [ "$1" -gt "$2" ]; }
eq() { [ "$1" = "$2" ]; }
via_bouncer() { psql -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BOUNCER_PORT" -U postgres -d postgres "$@"; }

# 1. The Node tests with PGHOST/PGPORT at the pooler.
xacts0=$(pgbouncer_show "SHOW STATS" postgres total_xact_count)
direct_host=$PGHOST direct_port=$PGPORT
export PGHOST=127.0.0.1 PGPORT=$BOUNCER_PORT
node_example_test "node through pgbouncer"
export PGHOST=$direct_host PGPORT=$direct_port

xacts1=$(pgbouncer_show "SHOW STATS" postgres total_xact_count)
clients=$(pgbouncer_client_logins)
servers=$(pgbouncer_server_logins)
diag "node tests through pgbouncer: $((xacts1 - xacts0)) transactions, $clients client logins, $servers server connections"
# 1,000 checkouts in 07-throughput alone are two transactions each.
check "the Node tests' transactions went through pgbouncer (SHOW STATS)" ge $((xacts1 - xacts0)) 2000
check "the pooler served more clients than it opened server connections" gt "$clients" "$servers"
check "pgbouncer has no client left waiting (SHOW POOLS cl_waiting)" eq "$(pgbouncer_show "SHOW POOLS" postgres cl_waiting)" 0

# 2. begin raced by 16 clients through the pooler, one run per protocol. The
# lease (1 hour) outlasts the run, so each operation is acquired once and
# every later call must be told in_progress. (No colon in the SQL's literals:
# pgbench would take ':name' there for a variable.)
cluster_psql -c "CREATE TABLE race_log (op integer NOT NULL, state text NOT NULL)" || give_up "no race_log"
cat >"$SUITE_DIR/race.sql" <<SQL
\set op random(1, $RACE_OPS) + :base
WITH o AS (SELECT :op::integer AS op) INSERT INTO race_log SELECT o.op, b.state FROM o, begin_stripe_idempotency('race-begin', 'op-' || o.op, NULL, '1 hour') b;
SQL
base=0
for mode in simple extended; do
	x0=$(pgbouncer_show "SHOW STATS" postgres total_xact_count)
	timeout 120 pgbench -n -h 127.0.0.1 -p "$BOUNCER_PORT" -U postgres -M "$mode" \
		-c "$RACE_CLIENTS" -j 4 -t "$RACE_TX" -D base="$base" -f "$SUITE_DIR/race.sql" postgres \
		>"$SUITE_DIR/pgbench-$mode.log" 2>&1
	rc=$?
	x1=$(pgbouncer_show "SHOW STATS" postgres total_xact_count)
	read -r calls ops acquired_ops others < <(cluster_psql -A -t -F ' ' -c "
		SELECT count(*), count(DISTINCT op),
		       (SELECT count(*) FROM (SELECT op FROM race_log WHERE op > $base AND op <= $base + $RACE_OPS
		                              GROUP BY op HAVING count(*) FILTER (WHERE state = 'acquired') = 1) one),
		       count(*) FILTER (WHERE state NOT IN ('acquired', 'in_progress'))
		  FROM race_log WHERE op > $base AND op <= $base + $RACE_OPS")
	diag "pgbench -M $mode: exit $rc, $calls begins on $ops operations, $((x1 - x0)) transactions through pgbouncer"
	[ "$rc" = 0 ] || tail -n 20 "$SUITE_DIR/pgbench-$mode.log"
	check "pgbench -M $mode: $RACE_CLIENTS clients, every transaction done" eq "$rc:$calls" "0:$((RACE_CLIENTS * RACE_TX))"
	check "pgbench -M $mode: exactly one acquired on each of the $RACE_OPS operations, the rest in_progress" \
		eq "$ops:$acquired_ops:$others" "$RACE_OPS:$RACE_OPS:0"
	check "pgbench -M $mode: its transactions went through pgbouncer" ge $((x1 - x0)) $((RACE_CLIENTS * RACE_TX))
	base=$((base + 1000))
done

# 3. Session state and a transaction pooler. SET LOCAL ends with its
# transaction, so the next clients on the same server connections see the
# default; a session SET stays on the server connection for later clients.
via_bouncer -c "BEGIN" -c "SET LOCAL stripe_idem.default_lease = '7s'" -c "COMMIT"
leaked=0
for i in $(seq 1 $((POOL_SIZE * 2))); do
	[ "$(via_bouncer -c "SELECT current_setting('stripe_idem.default_lease', true)")" = 7s ] && leaked=$((leaked + 1))
done
check "SET LOCAL through the pooler is seen by none of the next $((POOL_SIZE * 2)) clients" eq "$leaked" 0

via_bouncer -c "SET stripe_idem.default_lease = '7s'"
leaked=0
for i in $(seq 1 $((POOL_SIZE * 2))); do
	[ "$(via_bouncer -c "SELECT current_setting('stripe_idem.default_lease', true)")" = 7s ] && leaked=$((leaked + 1))
done
diag "a session SET through the pooler was seen by $leaked of the next $((POOL_SIZE * 2)) clients"
check "a session SET through the pooler leaks to later clients (why the example never uses one)" gt "$leaked" 0

done_testing
