# examples/node-checkout's tests (npm ci from the committed lockfile, npm
# test) against whatever PGHOST/PGPORT name, shared by the suite that runs
# them directly (60-node) and the one through pgbouncer (61-node-pooler).
#
#   node_example_test LABEL    the example's tests, one assertion per
#                              top-level test, described "LABEL: ..."
#
# Source test/lib/tap.sh first. Needs SUITE_DIR and SRC; the npm cache
# lands in $HOME (the scratch dir). node --test writes TAP itself
# (--test-reporter=tap, whatever the Node version's default reporter), which
# tap_from takes in; a run that hangs, dies or exits non-zero adds a failure.

node_example_test() {
	local label=$1 app="$SRC/examples/node-checkout"
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		not_ok "$label: node and npm are required (Node >= 20)"
		return
	fi
	if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
		not_ok "$label: Node >= 20 is required, found $(node --version)"
		return
	fi
	diag "npm ci ($(node --version), npm $(npm --version))"
	if ! (cd "$app" && npm ci --no-audit --no-fund --loglevel=error >"$SUITE_DIR/npm-ci.log" 2>&1); then
		cat "$SUITE_DIR/npm-ci.log"
		not_ok "$label: npm ci"
		return
	fi
	ok "$label: npm ci from the committed lockfile"
	# Bounded: the tests bound their own waits; this catches a hang anyway.
	pushd "$app" >/dev/null || return
	tap_from "$label" env NODE_OPTIONS=--test-reporter=tap timeout 300 npm test --silent
	popd >/dev/null || return
}
