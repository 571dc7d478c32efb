#!/usr/bin/env bash
# Make sure the build and test dependencies are present.
#
#   ensure_deps.sh            install what is missing (root), or print the apt line and fail
#   ensure_deps.sh --check    only report; fail when something is missing
#   ensure_deps.sh --bench    also the benchmark tools (gnuplot)
#   ensure_deps.sh --test     also the static and memory checkers (cppcheck, valgrind),
#                             spin for the model of the protocol (test/model),
#                             the exporter and promtool of the monitoring suite,
#                             pgbouncer, for the suites that test through a pooler, and
#                             pg_cron, for the managed edition's sweep
#   ensure_deps.sh --chroot   also debootstrap, for the chroots of the other majors
#   ensure_deps.sh --packages also what building the Debian packages for this machine's
#                             major and the PGXN release needs (debhelper,
#                             postgresql-server-dev-all, dpkg-dev, fakeroot, unzip)
#
# Only Debian package names are used, so the same line works on a fresh machine.
set -euo pipefail

check_only=0
want_bench=0
want_test=0
want_chroot=0
want_packages=0
for a in "$@"; do
	case "$a" in
		--check) check_only=1 ;;
		--bench) want_bench=1 ;;
		--test) want_test=1 ;;
		--chroot) want_chroot=1 ;;
		--packages) want_packages=1 ;;
	esac
done

PGMAJOR=${PGMAJOR:-15}
PGLIB=/usr/lib/postgresql/$PGMAJOR/lib
missing=()
# Each check looks for what the build or the suites read, not for a file
# that stands for it: on Debian 12, pgxs.mk, pg_regress, pg_isolation_regress
# and the TAP modules come with postgresql-client-15, the server headers
# only with postgresql-server-dev-15 (which pulls in the rest).
if [ ! -f "/usr/include/postgresql/$PGMAJOR/server/postgres.h" ] ||
	[ ! -f "$PGLIB/pgxs/src/makefiles/pgxs.mk" ] ||
	[ ! -f "$PGLIB/pgxs/src/test/perl/PostgreSQL/Test/Cluster.pm" ] ||
	[ ! -x "$PGLIB/pgxs/src/test/isolation/pg_isolation_regress" ]; then
	missing+=("postgresql-server-dev-$PGMAJOR")
fi
[ -x "/usr/lib/postgresql/$PGMAJOR/bin/postgres" ] || missing+=("postgresql-$PGMAJOR")
[ -f /usr/include/uuid/uuid.h ] || missing+=(uuid-dev)
perl -MIPC::Run -e 1 2>/dev/null || missing+=(libipc-run-perl)
command -v make >/dev/null || missing+=(make)
command -v gcc >/dev/null || missing+=(gcc)
if [ "$want_test" = 1 ]; then
	command -v cppcheck >/dev/null || missing+=(cppcheck)
	command -v valgrind >/dev/null || missing+=(valgrind)
	command -v spin >/dev/null || missing+=(spin)
	[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null || missing+=(pgbouncer)
	# pg_cron, so that the managed edition's sweep job runs for real (15-managed)
	[ -f "$PGLIB/pg_cron.so" ] || missing+=("postgresql-$PGMAJOR-cron")
	# the monitoring suite: examples/monitoring/ against the real exporter and promtool
	[ -x /usr/bin/prometheus-postgres-exporter ] || missing+=(prometheus-postgres-exporter)
	command -v promtool >/dev/null || missing+=(prometheus)
	command -v curl >/dev/null || missing+=(curl)
fi
if [ "$want_chroot" = 1 ]; then
	command -v debootstrap >/dev/null || missing+=(debootstrap)
fi
if [ "$want_packages" = 1 ]; then
	command -v dh >/dev/null || missing+=(debhelper)
	[ -f /usr/share/perl5/Debian/Debhelper/Sequence/pgxs.pm ] || missing+=(postgresql-server-dev-all)
	command -v dpkg-buildpackage >/dev/null || missing+=(dpkg-dev)
	command -v fakeroot >/dev/null || missing+=(fakeroot)
	command -v unzip >/dev/null || missing+=(unzip)
fi
if [ "$want_bench" = 1 ]; then
	command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
	command -v valgrind >/dev/null || missing+=(valgrind)
fi

[ ${#missing[@]} -eq 0 ] && exit 0

line="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$check_only" = 1 ] || [ "$(id -u)" != 0 ]; then
	echo "stripe_idem: missing build dependencies: ${missing[*]}" >&2
	echo "stripe_idem: install them as root with:" >&2
	echo "    $line" >&2
	exit 1
fi

echo "stripe_idem: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
