#!/usr/bin/env bash
# make test: every suite on every PostgreSQL major this machine can reach,
# then the fresh-machine check; ends with one line
#   N passed, N failed[, N skipped]
# over all of them.
#
#   run_tests.sh [--asan] [suite-name-pattern ...]
#
# - PostgreSQL 15 (the host's, Debian bookworm): every suite.
# - PostgreSQL 17 (Debian trixie) and 18 (Debian sid), which have no
#   bookworm packages: the suites marked "# majors: all" (regression,
#   isolation, TAP with the fuzz, the Node example, ...), inside a cached
#   debootstrap chroot of that release (test/lib/chroot.sh). Needs root;
#   otherwise those runs are reported as skipped, never as passed.
# - The suites marked "# runs: root" (40-packages: the PGXN release and the
#   Debian packages of every major, built, installed, tested and purged),
#   once, as root, reporting in TAP; without root they are skipped.
# - The fresh-machine check (test/lib/fresh_system.sh): a bookworm chroot
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

args=("$@")
subset=0
for a in "$@"; do subset=1; done
majors=${STRIPE_IDEM_MAJORS:-$SI_TESTED_MAJORS}
fresh=${STRIPE_IDEM_FRESH:-1}
[ "$subset" = 1 ] && fresh=0
for a in "$@"; do [ "$a" = --asan ] && majors=$SI_HOST_MAJOR; done

total_pass=0
total_fail=0
total_skip=0
rows=()
LOGDIR=$(mktemp -d /tmp/stripe_idem_make_test.XXXXXX)
chmod 755 "$LOGDIR"

# collect LOG MAJOR: add the SUITE_SUMMARY lines of one run to the totals
collect() {
	local log=$1 major=$2 name p f secs sk seen=0 row reason
	while read -r _ name p f secs sk; do
		seen=1
		sk=${sk:-0}
		total_pass=$((total_pass + p))
		total_fail=$((total_fail + f))
		total_skip=$((total_skip + sk))
		row=$(printf '%-22s %-5s %5d passed %4d failed %6ss' "$name" "$major" "$p" "$f" "$secs")
		if [ "$sk" != 0 ]; then
			reason=$(grep -aE "^SUITE_SKIP_REASON $name " "$log" | tail -n 1 | cut -d' ' -f3-)
			row="$row, $sk skipped: ${reason:-no reason given}"
		fi
		rows+=("$row")
	done < <(grep -aE '^SUITE_SUMMARY [A-Za-z0-9_-]+ [0-9]+ [0-9]+ [0-9]+( [0-9]+)?$' "$log")
	if [ "$seen" = 0 ]; then
		total_fail=$((total_fail + 1))
		rows+=("$(printf '%-22s %-5s %s' "(no suite ran)" "$major" "counted as one failure, log: $log")")
	fi
}

# skip MAJOR REASON: every suite that would have run there counts as skipped
skip_major() {
	local major=$1 reason=$2 suite n=0
	for suite in test/suites/*.sh; do
		grep -q '^# majors: all$' "$suite" || continue
		matches_patterns "$(basename "$suite" .sh)" || continue
		n=$((n + 1))
	done
	total_skip=$((total_skip + n))
	local what="$n suites"
	[ "$n" = 1 ] && what="1 suite"
	rows+=("$(printf '%-22s %-5s %s' "($what)" "$major" "skipped: $reason")")
}

matches_patterns() {
	local name=$1 a hit=1
	for a in "${args[@]}"; do
		[ "$a" = --asan ] && continue
		hit=0
		break
	done
	[ $hit = 1 ] && return 0
	for a in "${args[@]}"; do
		[ "$a" = --asan ] && continue
		[[ "$name" == *"$a"* ]] && return 0
	done
	return 1
}

is_root=0
[ "$(id -u)" = 0 ] && is_root=1
used_chroots=()
umount_used() {
	local n
	for n in "${used_chroots[@]}"; do chroot_umount "$n"; done
}
if [ "$is_root" = 1 ]; then
	source test/lib/chroot.sh
	trap umount_used EXIT
fi

# Which suites this run has: those run per major, and those run once as root.
user_suites=0
root_suites=()
for suite in test/suites/*.sh; do
	matches_patterns "$(basename "$suite" .sh)" || continue
	[ "${#args[@]}" = 1 ] && [ "${args[0]}" = --asan ] && continue
	if grep -q '^# runs: root$' "$suite"; then
		root_suites+=("$suite")
	else
		user_suites=$((user_suites + 1))
	fi
done
for a in "$@"; do [ "$a" = --asan ] && user_suites=1; done

# What this run needs, installed once (as root) or named with the apt line.
deps=()
case " $majors " in *" $SI_HOST_MAJOR "*) deps+=(--test) ;; esac
if [ "$is_root" = 1 ] && { [ "$fresh" = 1 ] || [ ${#root_suites[@]} -gt 0 ] ||
	[ -n "$(echo " $majors " | sed "s/ $SI_HOST_MAJOR / /" | tr -d ' ')" ]; }; then
	deps+=(--chroot)
fi
[ "$is_root" = 1 ] && [ ${#root_suites[@]} -gt 0 ] && deps+=(--packages)
bash test/lib/ensure_deps.sh "${deps[@]}" || { echo "0 passed, 1 failed"; exit 1; }

for major in $majors; do
	[ "$user_suites" = 0 ] && break
	log="$LOGDIR/pg$major.log"
	if [ "$major" = "$SI_HOST_MAJOR" ]; then
		echo "===== PostgreSQL $major (this machine)"
		PGMAJOR=$major bash test/lib/run_suites.sh "${args[@]}" 2>&1 | tee "$log"
		collect "$log" "$major"
		continue
	fi
	name=$(si_chroot_name "$major")
	if [ -z "$name" ]; then
		skip_major "$major" "no Debian release with PostgreSQL $major is reachable"
		continue
	fi
	if [ "$is_root" = 0 ]; then
		skip_major "$major" "needs root (a debootstrap chroot of Debian $(si_chroot_suite "$major"))"
		continue
	fi
	echo "===== PostgreSQL $major (chroot $name)"
	used_chroots+=("$name")
	start=$SECONDS
	chroot_ensure "$name" "$(si_chroot_suite "$major")" $(si_chroot_packages "$major") 2>&1 | tee "$log.chroot"
	if [ ! -f "$(chroot_dir "$name")/.stripe_idem-chroot" ]; then
		total_fail=$((total_fail + 1))
		rows+=("$(printf '%-22s %-5s %s' "(chroot)" "$major" "could not be built, counted as one failure: $log.chroot")")
		continue
	fi
	# A copy of the checkout inside the chroot; nothing in it is kept.
	croot=$(chroot_dir "$name")
	rm -rf "$croot/root/stripe_idem"
	mkdir -p "$croot/root/stripe_idem"
	tar -C "$here" --exclude=.git --exclude=node_modules --exclude='*.o' --exclude='*.so' \
		--exclude=results --exclude=tmp_check -cf - . | tar -C "$croot/root/stripe_idem" -xf -
	quoted=""
	[ ${#args[@]} -gt 0 ] && quoted=$(printf '%q ' "${args[@]}")
	chroot_run "$name" bash -c "cd /root/stripe_idem && PGMAJOR=$major STRIPE_IDEM_TAP_TESTS=$(printf %q "${STRIPE_IDEM_TAP_TESTS:-}") bash test/lib/run_suites.sh --every-major $quoted" 2>&1 | tee "$log"
	rm -rf "$croot/root/stripe_idem"
	collect "$log" "$major"
	echo "===== PostgreSQL $major: $((SECONDS - start)) s including the chroot"
done

# The suites run once, as root; each reports in TAP. A plan of "1..0 #
# SKIP" or "ok # skip" lines count as skipped, never as passed; a suite
# that breaks off (no plan, a plan not met, a non-zero exit) counts one
# more failure.
for suite in "${root_suites[@]}"; do
	name=$(basename "$suite" .sh)
	if [ "$is_root" = 0 ]; then
		total_skip=$((total_skip + 1))
		rows+=("$(printf '%-22s %-5s %s' "$name" "all" "skipped: needs root (apt, chroots)")")
		continue
	fi
	echo "===== $name (as root)"
	log="$LOGDIR/$name.tap"
	start=$SECONDS
	STRIPE_IDEM_MAJORS="$majors" bash "$suite" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	read -r p f sk reason < <(perl -MTAP::Parser -e '
		my ($log, $rc) = @ARGV;
		open my $fh, "<", $log or die;
		my $p = TAP::Parser->new({ tap => do { local $/; <$fh> } });
		1 while $p->next;
		my $skipped = scalar $p->skipped;
		my ($why) = $p->skip_all ? ($p->skip_all) : ("");
		$skipped = 1 if $p->skip_all;
		my $failed = scalar $p->failed;
		$failed++ if !$p->skip_all && ($p->parse_errors || !$p->is_good_plan || $rc != 0) && !$failed;
		printf "%d %d %d %s
", scalar($p->passed) - scalar($p->skipped), $failed, $skipped, $why;
	' "$log" "$rc")
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
	total_skip=$((total_skip + sk))
	row=$(printf '%-22s %-5s %5d passed %4d failed %6ss' "$name" "${majors// /,}" "$p" "$f" "$((SECONDS - start))")
	[ "$sk" != 0 ] && row="$row, $sk skipped${reason:+: $reason}"
	rows+=("$row")
done

if [ "$fresh" = 1 ]; then
	if [ "$is_root" = 1 ]; then
		echo "===== fresh machine"
		log="$LOGDIR/fresh.log"
		bash test/lib/fresh_system.sh 2>&1 | tee "$log"
		res=$(grep -aE '^FRESH_RESULT [0-9]+ [0-9]+ [0-9]+$' "$log" | tail -n 1)
		if [ -n "$res" ]; then
			read -r _ p f secs <<<"$res"
		else
			p=0 f=1 secs=0
		fi
		total_pass=$((total_pass + p))
		total_fail=$((total_fail + f))
		rows+=("$(printf '%-22s %-5s %5d passed %4d failed %6ss' "fresh-system" "$SI_HOST_MAJOR" "$p" "$f" "$secs")")
	else
		total_skip=$((total_skip + 1))
		rows+=("$(printf '%-22s %-5s %s' "fresh-system" "$SI_HOST_MAJOR" "skipped: needs root (a debootstrap chroot of Debian bookworm)")")
	fi
fi

echo
echo "== summary (suite, PostgreSQL major)"
for r in "${rows[@]}"; do echo "$r"; done
untested=""
for m in $SI_SUPPORTED_MAJORS; do
	case " $majors " in *" $m "*) ;; *) untested="$untested $m" ;; esac
done
[ -n "$untested" ] && echo "not run here:$untested (see the README's version table)"
if [ "$total_fail" = 0 ]; then
	rm -rf "$LOGDIR"
else
	echo "logs: $LOGDIR"
fi
line="$total_pass passed, $total_fail failed"
[ "$total_skip" -gt 0 ] && line="$line, $total_skip skipped"
echo "$line"
[ "$total_fail" = 0 ] && [ "$total_pass" -gt 0 ]
