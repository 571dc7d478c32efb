#!/usr/bin/env bash
# make test: every suite on every PostgreSQL major this machine can reach,
# then the fresh-machine check. Every suite writes TAP; one TAP::Harness
# run (test/lib/harness.pl) reads them all and ends with one line
#   N passed, N failed[, N skipped]
#
#   run_tests.sh [--asan] [suite-name-pattern ...]
#
# The jobs, in order:
# - per major, "setup" (test/lib/prepare_major.sh: build and install; for
#   17 and 18 inside a cached debootstrap chroot of Debian trixie and sid,
#   test/lib/chroot.sh), then each suite (test/lib/run_suite.sh):
#   - PostgreSQL 15 (the host's, Debian bookworm): every suite;
#   - 17 and 18, which have no bookworm packages: the suites marked
#     "# majors: all" (regression, isolation, TAP with the fuzz, the Node
#     example, ...). They need root; without it they are skipped, never
#     passed.
# - the suites marked "# runs: root" (40-packages: the PGXN release and the
#   Debian packages of every major, built, installed, tested and purged),
#   once, as root;
# - the fresh-machine check (test/lib/fresh_system.sh): a bookworm chroot
#   with only what a new machine ships, where a clone runs make demo and
#   the regression suite. Needs root too.
#
# Environment: STRIPE_IDEM_MAJORS (default "15 17 18") picks the majors,
# STRIPE_IDEM_FRESH=0 leaves out the fresh-machine check. A pattern or
# --asan (make test-asan: the memory-checking suite alone, on 15) runs a
# subset and leaves out the fresh-machine check as well.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source test/lib/majors.sh

patterns=()
asan=0
for a in "$@"; do
	case "$a" in
		--asan) asan=1 ;;
		*) patterns+=("$a") ;;
	esac
done
majors=${STRIPE_IDEM_MAJORS:-$SI_TESTED_MAJORS}
fresh=${STRIPE_IDEM_FRESH:-1}
[ $# -gt 0 ] && fresh=0
if [ "$asan" = 1 ]; then
	majors=$SI_HOST_MAJOR
	[ ${#patterns[@]} = 0 ] && patterns=(memcheck)
fi
is_root=0
[ "$(id -u)" = 0 ] && is_root=1

selected() {
	local name=$1 p
	[ ${#patterns[@]} = 0 ] && return 0
	for p in "${patterns[@]}"; do [[ "$name" == *"$p"* ]] && return 0; done
	return 1
}

LOGDIR=$(mktemp -d /tmp/stripe_idem_make_test.XXXXXX)
jobs="$LOGDIR/jobs"
: >"$jobs"
job() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$jobs"; }
skipped_job() { job "$1" "$2" "echo $(printf %q "1..0 # SKIP $3")"; }

root_suites=()
per_major=0
for major in $majors; do
	suites=()
	for suite in test/suites/*.sh; do
		name=$(basename "$suite" .sh)
		selected "$name" || continue
		grep -q '^# runs: root$' "$suite" && continue
		if [ "$major" != "$SI_HOST_MAJOR" ] && ! grep -q '^# majors: all$' "$suite"; then
			continue
		fi
		suites+=("$name")
	done
	[ ${#suites[@]} = 0 ] && continue
	why=""
	if [ "$major" != "$SI_HOST_MAJOR" ]; then
		if [ -z "$(si_chroot_name "$major")" ]; then
			why="no Debian release with PostgreSQL $major is reachable"
		elif [ "$is_root" = 0 ]; then
			why="needs root (a debootstrap chroot of Debian $(si_chroot_suite "$major"))"
		fi
	fi
	if [ -n "$why" ]; then
		for name in "${suites[@]}"; do skipped_job "$name" "$major" "$why"; done
		continue
	fi
	per_major=1
	job setup "$major" "bash test/lib/prepare_major.sh $major"
	for name in "${suites[@]}"; do
		job "$name" "$major" "ASAN=$asan bash test/lib/run_suite.sh $major $name"
	done
done
for suite in test/suites/*.sh; do
	name=$(basename "$suite" .sh)
	selected "$name" && [ "$asan" = 0 ] && grep -q '^# runs: root$' "$suite" || continue
	root_suites+=("$name")
	if [ "$is_root" = 1 ]; then
		job "$name" all "STRIPE_IDEM_MAJORS=$(printf %q "$majors") bash $suite"
	else
		skipped_job "$name" all "needs root (apt, chroots)"
	fi
done
if [ "$fresh" = 1 ]; then
	if [ "$is_root" = 1 ]; then
		job fresh-system "$SI_HOST_MAJOR" "bash test/lib/fresh_system.sh"
	else
		skipped_job fresh-system "$SI_HOST_MAJOR" "needs root (a debootstrap chroot of Debian bookworm)"
	fi
fi

# What this run needs, installed once (as root) or named with the apt line.
deps=()
case " $majors " in *" $SI_HOST_MAJOR "*) [ "$per_major" = 1 ] && deps+=(--test) ;; esac
if [ "$is_root" = 1 ] && { [ "$fresh" = 1 ] || [ ${#root_suites[@]} -gt 0 ] ||
	[ -n "$(echo " $majors " | sed "s/ $SI_HOST_MAJOR / /" | tr -d ' ')" ]; }; then
	deps+=(--chroot)
fi
[ "$is_root" = 1 ] && [ ${#root_suites[@]} -gt 0 ] && deps+=(--packages)
bash test/lib/ensure_deps.sh "${deps[@]}" || { echo "0 passed, 1 failed"; exit 1; }

# The suites' copies of the tree are removed after a green run
# (prepare_major.sh makes them anew); a failed run keeps them for a look.
work=${STRIPE_IDEM_WORK:-/tmp/stripe_idem_test}
cleanup() {
	rm -rf "$work".pg*
	[ "$is_root" = 1 ] || return 0
	source test/lib/chroot.sh
	for major in $majors; do
		name=$(si_chroot_name "$major")
		[ -n "$name" ] && rm -rf "$(chroot_dir "$name")$work".pg*
	done
}
untested=""
for m in $SI_SUPPORTED_MAJORS; do
	case " $majors " in *" $m "*) ;; *) untested="$untested $m" ;; esac
done
note=""
[ -n "$untested" ] && note="not run here:$untested (see the README's version table)"
perl test/lib/harness.pl "$jobs" "$note" \
	"the suites' files are kept in $work.pgMAJOR (in the major's chroot for 17 and 18)"
rc=$?
if [ "$rc" = 0 ]; then
	cleanup
	rm -rf "$LOGDIR"
fi
exit "$rc"
