#!/usr/bin/env bash
# examples/supabase: the Supabase Edge Functions (enhanced-checkout,
# guest-checkout, stripe-webhook) run under Deno, each as its own process,
# against the Stripe-compatible fake and stripe_idem through a private
# pgbouncer in transaction mode, as the functions' own login role. Deno comes
# from the npm package pinned in examples/supabase/package-lock.json; `deno
# test --frozen` refuses any import not in the committed deno.lock.
# majors: all
set -uo pipefail
source "$SRC/test/lib/tap.sh"
source "$SRC/test/lib/cluster.sh"
source "$SRC/test/lib/pgbouncer.sh"
cd "$SUITE_DIR"

give_up() {
	not_ok "$*"
	done_testing
}

POOL_SIZE=6
app="$SRC/examples/supabase"

command -v node >/dev/null && command -v npm >/dev/null || give_up "node and npm are required (they install Deno, and run the fake Stripe)"
cluster_start "$SUITE_DIR/pg" "log_connections = on" || give_up "could not start a cluster"
# The project's migration, as `supabase db push` would apply it; then the
# login role the migration leaves to each environment.
cluster_psql -f "$app/supabase/migrations/"*_stripe_idem_checkout.sql || give_up "the migration failed"
cluster_psql -c "CREATE ROLE checkout_fn LOGIN IN ROLE edge_checkout" || give_up "could not create the login role"
pgbouncer_start "$SUITE_DIR/pgbouncer" "$POOL_SIZE" checkout_fn || give_up "could not start pgbouncer"

cd "$app" || give_up "no $app"
echo "== npm ci (Deno from the npm package)"
npm ci --no-audit --no-fund --loglevel=error >"$SUITE_DIR/npm-ci.log" 2>&1 || {
	cat "$SUITE_DIR/npm-ci.log"
	give_up "npm ci failed"
}
deno=$app/node_modules/.bin/deno
"$deno" --version | head -n 1 || give_up "the deno binary does not run here"

export DENO_DIR="$SUITE_DIR/deno-dir" NO_COLOR=1
export EDGE_FUNCTIONS_DB_URL="postgres://checkout_fn@127.0.0.1:$BOUNCER_PORT/$PGDATABASE"
export EDGE_TEST_DB_URL="postgres://postgres@127.0.0.1:$PGPORT/$PGDATABASE"
xacts0=$(pgbouncer_show "SHOW STATS" "$PGDATABASE" total_xact_count)

# Each Deno test is one assertion here, read from deno test's TAP
# (--reporter=tap); a run that exits non-zero, crashes or misses its plan
# adds a failure (tap_from). Bounded: the tests bound their own waits; this
# catches a hang anyway. The raw TAP is kept in deno-test.tap, and printed
# to the log when deno test fails: the failures' messages are in its YAML
# blocks. Its "TAP version 14" line is dropped before tap_from reads it:
# TAP::Parser before Test::Harness 3.48 refuses version 14, and deno writes
# the YAML blocks as JSON, which TAP::Parser's YAML reader (used from
# version 13 on) does not parse; read as TAP 12, those blocks and the
# indented lines of subtests are left out of the stream.
deno_tap() {
	timeout 600 "$deno" test --frozen --reporter=tap --allow-net --allow-env --allow-read --allow-run test/ |
		tee "$SUITE_DIR/deno-test.tap" | sed '/^TAP version 1[34]$/d'
	local rc=${PIPESTATUS[0]}
	if [ "$rc" != 0 ]; then
		echo "--- deno test exited $rc; its TAP ($SUITE_DIR/deno-test.tap):" >&2
		cat "$SUITE_DIR/deno-test.tap" >&2
	fi
	return "$rc"
}
export -f deno_tap
export deno
tap_from "deno test" bash -c deno_tap

# The functions' traffic went through the pooler: its counters moved, and
# the functions' role reached the server only over the pooler's few
# connections (the tests' own checks connect directly, as postgres).
xacts=$(($(pgbouncer_show "SHOW STATS" "$PGDATABASE" total_xact_count) - xacts0))
clients=$(grep -c 'login attempt: db=[^ ]* user=checkout_fn' "$BOUNCER_DIR/pgbouncer.log")
servers=$(grep -c 'connection authorized: user=checkout_fn' "$CLUSTER_LOG")
waiting=$(pgbouncer_show "SHOW POOLS" "$PGDATABASE" cl_waiting)
diag "through pgbouncer: $xacts transactions, $clients client logins of checkout_fn, $servers server connections"
# The 50-request burst alone is 50 begin transactions; the other scenarios
# make more than 50 more.
check "the functions' transactions went through pgbouncer (SHOW STATS)" test "$xacts" -ge 100
check "the functions' role reached the server through the pooler" test "$servers" -ge 1
check "fewer server connections than client connections" test "$clients" -gt "$servers"
check "no client left waiting in pgbouncer (SHOW POOLS cl_waiting)" test "$waiting" = 0

done_testing
