#!/usr/bin/env bash
# majors: all
# examples/node-checkout end to end: the official `stripe` SDK and `pg`
# against a Stripe-compatible fake and a throwaway cluster with stripe_idem,
# connected directly. 61-node-pooler runs the same tests through pgbouncer.
set -uo pipefail
source "$SRC/test/lib/tap.sh"
source "$SRC/test/lib/cluster.sh"
source "$SRC/test/lib/node_example.sh"
cd "$SUITE_DIR"

give_up() {
	not_ok "$*"
	done_testing
}

cluster_start "$SUITE_DIR/pg" || give_up "could not start a cluster"
cluster_psql -c "CREATE EXTENSION stripe_idem" || give_up "CREATE EXTENSION stripe_idem failed"

node_example_test node
done_testing
