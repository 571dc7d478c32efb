#!/usr/bin/env bash
# prepare_major.sh MAJOR: the first job of a major in make test, reporting
# in TAP. Builds and installs the extension for PostgreSQL MAJOR and leaves
# a private copy of the tree for the suites (test/lib/run_suite.sh):
#   - the host's major (15): here, as make install does;
#   - 17 and 18: inside their cached Debian chroot (test/lib/chroot.sh),
#     made or reused first, with a copy of the checkout built there.
# The private copy (/tmp/stripe_idem_test.pgMAJOR, in the chroot for the
# others) belongs to the postgres user: the checkout may live where it
# cannot write, and results/ must never land in the tree. It is made anew
# each time, so nothing of an earlier run is seen.
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
source test/lib/tap.sh
source test/lib/majors.sh
major=$1
work=${STRIPE_IDEM_WORK:-/tmp/stripe_idem_test}.pg$major
# The suites of this major run only once this marker (on the host) says
# the setup went through; otherwise each reports itself not run.
ready=$work.ready
rm -f "$ready"
finish() {
	[ "$TAP_FAILED" = 0 ] && touch "$ready"
	done_testing
}

# the tree as it is, without build outputs, into DIR
copy_tree() {
	rm -rf "$1" && mkdir -p "$1" &&
		tar -C "$here" --exclude=.git --exclude=node_modules --exclude=results \
			--exclude=tmp_check --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
			--exclude='build-*' -cf - . | tar -C "$1" -xf -
}
# the suites' copy, owned by the user they run as
suite_copy() {
	copy_tree "$1" && mkdir -p "$1/suites" && chmod 755 "$1" &&
		{ [ "$(id -u)" != 0 ] || chown -R postgres: "$1"; }
}

if [ "$major" = "$SI_HOST_MAJOR" ]; then
	export PGMAJOR=$major PGBIN=${PGBIN:-/usr/lib/postgresql/$major/bin}
	check "build and install for $("$PGBIN/postgres" --version)" bash test/lib/build_install.sh
	check "a copy of the tree for the suites in $work" suite_copy "$work"
	finish
fi

name=$(si_chroot_name "$major")
[ -n "$name" ] || skip_all "no Debian release with PostgreSQL $major is reachable"
[ "$(id -u)" = 0 ] || skip_all "needs root (a debootstrap chroot of Debian $(si_chroot_suite "$major"))"
source test/lib/chroot.sh
start=$SECONDS
if ! chroot_ensure "$name" "$(si_chroot_suite "$major")" $(si_chroot_packages "$major"); then
	not_ok "the chroot $name"
	finish
fi
ok "the chroot $name ($((SECONDS - start)) s)"
croot=$(chroot_dir "$name")
check "a copy of the checkout in the chroot" copy_tree "$croot/root/stripe_idem"
check "build and install for PostgreSQL $major in the chroot" chroot_run "$name" \
	env PGMAJOR="$major" bash /root/stripe_idem/test/lib/build_install.sh
check "a copy of the tree for the suites in $work" \
	chroot_run "$name" bash -c "cd /root/stripe_idem && $(declare -f copy_tree suite_copy) && here=/root/stripe_idem suite_copy $work"
rm -rf "$croot/root/stripe_idem"
finish
