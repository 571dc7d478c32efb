#!/usr/bin/env bash
# Build the extension and install it into the PostgreSQL that pg_config names.
# Used by make test and make demo. Extra arguments go to make (e.g. COPT=...).
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
# The PostgreSQL to build for: PGMAJOR's Debian tree, or the one PGBIN names.
PGMAJOR=${PGMAJOR:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PGMAJOR/bin}
export PATH="$PGBIN:$PATH"

# One build at a time in this tree: a second run in parallel would clean
# the objects the first is linking.
exec 9>"$here/.build.lock"
flock 9
log=$(mktemp)
if ! { make -s clean >/dev/null && make -s "$@" >"$log" 2>&1 && make -s install >>"$log" 2>&1; }; then
	cat "$log"
	rm -f "$log"
	echo "stripe_idem: build or install failed (make install needs write access to $(pg_config --pkglibdir); run as root)" >&2
	exit 1
fi
grep -E "warning|error" "$log" && echo "(compiler output above)"
rm -f "$log"
exit 0
