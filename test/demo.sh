#!/usr/bin/env bash
# make demo: build, install, start a throwaway cluster and show the checkout
# flow and the expiry of keys. Nothing outside a temporary directory is touched.
#
#   make demo                 PostgreSQL 15, this machine's
#   make demo PGMAJOR=17      (or 18) in the cached Debian chroot make test
#                             uses for that major (root only)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source test/lib/majors.sh
PGMAJOR=${PGMAJOR:-$SI_HOST_MAJOR}
[ -n "$PGMAJOR" ] || PGMAJOR=$SI_HOST_MAJOR
export PGMAJOR

# A major this machine has no packages for runs in its chroot.
if [ "$PGMAJOR" != "$SI_HOST_MAJOR" ] && [ ! -x "/usr/lib/postgresql/$PGMAJOR/bin/postgres" ]; then
	name=$(si_chroot_name "$PGMAJOR")
	if [ -z "$name" ]; then
		echo "stripe_idem: no Debian release reachable here has PostgreSQL $PGMAJOR (tested: $SI_TESTED_MAJORS)" >&2
		exit 1
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "stripe_idem: PostgreSQL $PGMAJOR runs in a Debian $(si_chroot_suite "$PGMAJOR") chroot here; run make demo PGMAJOR=$PGMAJOR as root" >&2
		exit 1
	fi
	bash test/lib/ensure_deps.sh --chroot
	source test/lib/chroot.sh
	trap 'chroot_umount "$name"' EXIT
	chroot_ensure "$name" "$(si_chroot_suite "$PGMAJOR")" $(si_chroot_packages "$PGMAJOR")
	croot=$(chroot_dir "$name")
	rm -rf "$croot/root/stripe_idem_demo"
	mkdir -p "$croot/root/stripe_idem_demo"
	tar -C "$here" --exclude=.git --exclude=node_modules --exclude='*.o' --exclude='*.so' -cf - . |
		tar -C "$croot/root/stripe_idem_demo" -xf -
	echo "== PostgreSQL $PGMAJOR, in the Debian $(si_chroot_suite "$PGMAJOR") chroot $croot"
	rc=0
	chroot_run "$name" bash -c "cd /root/stripe_idem_demo && PGMAJOR=$PGMAJOR bash test/demo.sh" || rc=$?
	rm -rf "$croot/root/stripe_idem_demo"
	exit $rc
fi

bash test/lib/ensure_deps.sh
PGCONFIG=/usr/lib/postgresql/$PGMAJOR/bin/pg_config
echo "== building stripe_idem and installing it (make install) into PostgreSQL $PGMAJOR's directories:"
echo "   $($PGCONFIG --pkglibdir)/stripe_idem.so"
echo "   $($PGCONFIG --sharedir)/extension/stripe_idem.control and stripe_idem--*.sql"
echo "   (the server's own directories: every cluster of PostgreSQL $PGMAJOR on this machine can now"
echo "   CREATE EXTENSION stripe_idem; none is changed by it. Remove with make uninstall.)"
bash test/lib/build_install.sh

DEMO=$(mktemp -d /tmp/stripe_idem_demo.XXXXXX)
cp test/lib/cluster.sh test/lib/demo_flow.sh "$DEMO/"
# psql and the server run as postgres, who may not be able to enter this
# checkout (a clone in root's home): run them from the demo's directory.
cd "$DEMO"
if [ "$(id -u)" = 0 ]; then
	chown -R postgres: "$DEMO"
	runuser -u postgres -- env PGMAJOR="$PGMAJOR" bash "$DEMO/demo_flow.sh" "$DEMO"
else
	bash "$DEMO/demo_flow.sh" "$DEMO"
fi
rm -rf "$DEMO"
