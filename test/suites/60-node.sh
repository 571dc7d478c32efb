#!/usr/bin/env bash
# majors: all
# examples/node-checkout end to end: the official `stripe` SDK and `pg`
# against a Stripe-compatible fake and a throwaway cluster with stripe_idem.
# Installs the npm dependencies from the committed lockfile (npm ci; the
# cache lands in $HOME, the scratch dir) and runs `npm test`.
set -uo pipefail
source "$SRC/test/lib/cluster.sh"
cd "$SUITE_DIR"

give_up() {
	echo "60-node: $*" >&2
	echo "SUITE_RESULT 0 1"
	exit 0
}

command -v node >/dev/null && command -v npm >/dev/null || give_up "node and npm are required (Node >= 20)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
	give_up "Node >= 20 is required, found $(node --version)"

cluster_start "$SUITE_DIR/pg" || give_up "could not start a cluster"
cluster_psql -c "CREATE EXTENSION stripe_idem" || give_up "CREATE EXTENSION stripe_idem failed"

app="$SRC/examples/node-checkout"
cd "$app" || give_up "no $app"
echo "== npm ci ($(node --version), npm $(npm --version))"
npm ci --no-audit --no-fund --loglevel=error >"$SUITE_DIR/npm-ci.log" 2>&1 || {
	cat "$SUITE_DIR/npm-ci.log"
	give_up "npm ci failed"
}

# Bounded: the tests bound their own waits; this catches a hang anyway.
timeout 300 npm test --silent 2>&1 | tee "$SUITE_DIR/node-test.out"
rc=${PIPESTATUS[0]}

# TAP ("# pass N") when stdout is not a terminal, as here; newer Node's
# default spec reporter says "ℹ pass N".
count() { grep -aE "^(# |ℹ )$1 [0-9]+\$" "$SUITE_DIR/node-test.out" | tail -n 1 | awk '{print $3}'; }
p=$(count pass)
f=$(count fail)
if [ -z "$p" ] || [ -z "$f" ]; then
	echo "60-node: node --test printed no summary (exit $rc)" >&2
	p=${p:-0}
	f=$((${f:-0} + 1))
elif [ "$rc" != 0 ] && [ "$f" = 0 ]; then
	echo "60-node: npm test exited $rc with no failed test" >&2
	f=1
fi
echo "SUITE_RESULT $p $f"
