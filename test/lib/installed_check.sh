#!/bin/sh
# The regression and isolation suites against the stripe_idem that is
# installed for PostgreSQL MAJOR (a Debian package, or make install): a
# throwaway cluster with the library preloaded (test/regress.conf), in a
# temporary directory, on a private socket; pg_regress and
# pg_isolation_regress against it (installcheck mode: they create their
# own databases), then the cluster is stopped and removed.
#
#   installed_check.sh MAJOR [SOURCE_TREE]
#
# Needs only the server and client packages of that major (pg_regress and
# pg_isolation_regress ship with the client), not the server's development
# files. Run as root, it runs the server as the postgres user. Exits 0 when
# both suites pass. debian/tests/installcheck runs it for every installed
# major; make test's packages check runs it on systems without the
# development files.
set -eu
major=$1
src=$(cd "${2:-$(dirname "$0")/../..}" && pwd)
bin=/usr/lib/postgresql/$major/bin
pgxs=/usr/lib/postgresql/$major/lib/pgxs/src/test

[ -x "$bin/postgres" ] || { echo "installed_check: no PostgreSQL $major server in $bin" >&2; exit 1; }
[ -f "$($bin/pg_config --pkglibdir)/stripe_idem.so" ] ||
	{ echo "installed_check: stripe_idem is not installed for PostgreSQL $major" >&2; exit 1; }

work=$(mktemp -d /tmp/stripe_idem_installed.XXXXXX)
cleanup() {
	[ -f "$work/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$work/data" -m immediate -w stop >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT
# The inputs are copied: pg_regress writes next to them, and the tree may
# not be writable (or readable) by the server's user.
mkdir -p "$work/src/test" "$work/regress" "$work/isolation"
cp -a "$src/sql" "$src/expected" "$work/src/"
cp -a "$src/test/specs" "$src/test/expected" "$src/test/regress_schedule" \
	"$src/test/isolation_schedule" "$src/test/regress.conf" "$work/src/test/"
if [ "$(id -u)" = 0 ]; then
	chown -R postgres: "$work"
	as_owner() { runuser -u postgres -- "$@"; }
else
	as_owner() { "$@"; }
fi

port=$((20000 + $$ % 20000))
as_owner "$bin/initdb" -D "$work/data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 >"$work/initdb.log" 2>&1 ||
	{ cat "$work/initdb.log" >&2; exit 1; }
{
	echo "port = $port"
	echo "listen_addresses = ''"
	echo "unix_socket_directories = '$work'"
	cat "$work/src/test/regress.conf"
} >>"$work/data/postgresql.conf"
as_owner "$bin/pg_ctl" -D "$work/data" -l "$work/server.log" -w -t 60 start >/dev/null ||
	{ tail -n 30 "$work/server.log" >&2; exit 1; }
echo "== PostgreSQL $("$bin/postgres" --version | sed 's/^postgres (PostgreSQL) //'), stripe_idem from $($bin/pg_config --pkglibdir)"

rc=0
echo "== pg_regress"
as_owner "$pgxs/regress/pg_regress" --bindir="$bin" --host="$work" --port="$port" --user=postgres \
	--inputdir="$work/src" --outputdir="$work/regress" --dbname=contrib_regression \
	$(cat "$work/src/test/regress_schedule") || rc=1
[ -f "$work/regress/regression.diffs" ] && cat "$work/regress/regression.diffs"
echo "== pg_isolation_regress"
as_owner "$pgxs/isolation/pg_isolation_regress" --bindir="$bin" --host="$work" --port="$port" --user=postgres \
	--inputdir="$work/src/test" --outputdir="$work/isolation" --dbname=isolation_regression \
	$(cat "$work/src/test/isolation_schedule") || rc=1
[ -f "$work/isolation/regression.diffs" ] && cat "$work/isolation/regression.diffs"
exit $rc
