# examples/node-checkout's tests (npm ci from the committed lockfile, npm
# test) against whatever PGHOST/PGPORT name, shared by the suite that runs
# them directly (60-node) and the one through pgbouncer (61-node-pooler).
#
#   node_example_test LABEL    sets NODE_PASS and NODE_FAIL; a run that
#                              cannot start or prints no summary counts failures
# Needs SUITE_DIR and SRC; the npm cache lands in $HOME (the scratch dir).

node_example_test() {
	local label=$1
	NODE_PASS=0
	NODE_FAIL=1
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		echo "$label: node and npm are required (Node >= 20)" >&2
		return
	fi
	if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
		echo "$label: Node >= 20 is required, found $(node --version)" >&2
		return
	fi
	local app="$SRC/examples/node-checkout"
	(
		cd "$app" || exit 1
		echo "== npm ci ($(node --version), npm $(npm --version))"
		npm ci --no-audit --no-fund --loglevel=error >"$SUITE_DIR/npm-ci.log" 2>&1
	) || {
		cat "$SUITE_DIR/npm-ci.log"
		echo "$label: npm ci failed" >&2
		return
	}

	# Bounded: the tests bound their own waits; this catches a hang anyway.
	(cd "$app" && timeout 300 npm test --silent) 2>&1 | tee "$SUITE_DIR/node-test.out"
	local rc=${PIPESTATUS[0]}

	# TAP ("# pass N") when stdout is not a terminal, as here; newer Node's
	# default spec reporter says "ℹ pass N".
	local p f
	p=$(grep -aE '^(# |ℹ )pass [0-9]+$' "$SUITE_DIR/node-test.out" | tail -n 1 | awk '{print $3}')
	f=$(grep -aE '^(# |ℹ )fail [0-9]+$' "$SUITE_DIR/node-test.out" | tail -n 1 | awk '{print $3}')
	if [ -z "$p" ] || [ -z "$f" ]; then
		echo "$label: node --test printed no summary (exit $rc)" >&2
		p=${p:-0}
		f=$((${f:-0} + 1))
	elif [ "$rc" != 0 ] && [ "$f" = 0 ]; then
		echo "$label: npm test exited $rc with no failed test" >&2
		f=1
	fi
	NODE_PASS=$p
	NODE_FAIL=$f
}
