#!/usr/bin/env bash
# The two commands on a fresh machine: a Debian 12 (bookworm) chroot holding
# only what a new machine of this kind ships (the list below; Node.js, not a
# Debian package here, is copied from the host), where a clone of the
# checkout's HEAD runs `make demo`, then builds, installs and runs the
# regression suite the way `make test` does. A missing install step fails
# here instead of on a newcomer's machine.
#
# The pristine chroot is cached (test/lib/chroot.sh) and never changed: each
# run works in an overlay on top of it (a copy where overlayfs is not
# available), thrown away afterwards, so every run starts from a new machine.
# Run as root; reports in TAP (test/lib/tap.sh).
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
source "$here/test/lib/tap.sh"
source "$here/test/lib/chroot.sh"

source "$here/test/lib/majors.sh"
NEW_MACHINE_PACKAGES=$SI_FRESH_PACKAGES
base=bookworm-fresh
run=bookworm-fresh.run

rundir=$(chroot_dir "$run")
overlay=0
cleanup() {
	chroot_umount "$run"
	if [ "$overlay" = 1 ]; then
		umount -l "$rundir" 2>/dev/null
	fi
	rm -rf --one-file-system "$rundir" "$rundir.upper" "$rundir.work"
}
finish() {
	cleanup
	done_testing
}
trap cleanup EXIT

if ! chroot_ensure "$base" bookworm $NEW_MACHINE_PACKAGES; then
	not_ok "the bookworm chroot could not be built"
	finish
fi

cleanup
mkdir -p "$rundir" "$rundir.upper" "$rundir.work"
if mount -t overlay overlay -o "lowerdir=$(chroot_dir "$base"),upperdir=$rundir.upper,workdir=$rundir.work" "$rundir" 2>/dev/null; then
	overlay=1
else
	cp -a "$(chroot_dir "$base")/." "$rundir/"
fi
if [ -e "$rundir/usr/include/postgresql/15/server/postgres.h" ]; then
	not_ok "the chroot is not fresh: it has the server headers"
	finish
fi

# A clone, as a newcomer would have it: what is committed, nothing else.
if git clone -q --no-local "$here" "$rundir/root/stripe_idem" 2>&1; then
	ok "cloned $(git -C "$here" rev-parse --short HEAD)"
else
	not_ok "git clone failed"
	finish
fi

echo "== make demo on a fresh machine"
chroot_run "$run" bash -c 'cd /root/stripe_idem && make demo' >"$rundir.demo.log" 2>&1
rc=$?
tail -n 25 "$rundir.demo.log"
if [ $rc = 0 ] && grep -q "stripe_idem sweeper deleted" "$rundir.demo.log"; then
	ok "make demo"
else
	not_ok "make demo (exit $rc)"
fi
rm -f "$rundir.demo.log"

# make test's own way in, as on a newcomer's machine: its dependencies
# installed by run_tests.sh itself, then the build and the regression suite.
echo "== build, install and the regression suite on the same machine"
chroot_run "$run" bash -c 'cd /root/stripe_idem && STRIPE_IDEM_MAJORS=15 bash test/run_tests.sh regress'
check "make test's regression suite (its dependencies installed by make test itself)" test $? = 0
finish
