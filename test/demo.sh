#!/usr/bin/env bash
# make demo: build, install, start a throwaway cluster and show the checkout
# flow and the expiry of keys. Nothing outside a temporary directory is touched.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

bash test/lib/ensure_deps.sh
echo "== building and installing stripe_idem"
bash test/lib/build_install.sh

DEMO=$(mktemp -d /tmp/stripe_idem_demo.XXXXXX)
cp test/lib/cluster.sh test/lib/demo_flow.sh "$DEMO/"
if [ "$(id -u)" = 0 ]; then
	chown -R postgres: "$DEMO"
	runuser -u postgres -- bash "$DEMO/demo_flow.sh" "$DEMO"
else
	bash "$DEMO/demo_flow.sh" "$DEMO"
fi
rm -rf "$DEMO"
