# TAP (the Test Anything Protocol, as prove and TAP::Harness read it) from
# the shell suites of test/suites. Source it first thing:
#
#   ok DESC                 a passing assertion
#   not_ok DESC             a failing one
#   check DESC CMD...       ok if CMD exits 0, not_ok otherwise
#   skip DESC REASON        an assertion not made here, with the reason
#   skip_all REASON         the whole suite cannot run here ("1..0 # SKIP")
#   diag MSG...             a "# " comment on stderr, shown in the log
#   tap_from LABEL CMD...   run CMD, which writes TAP itself (a Perl .t file,
#                           node --test), and take its results into this
#                           stream, each described "LABEL: ..."; a CMD that
#                           dies, exits non-zero or misses its plan adds one
#                           failure (test/lib/tap_from.pl)
#   done_testing            the plan, "1..N"; exits non-zero after a failure
#
# Only these functions write to the TAP stream: sourcing this file points
# stdout at stderr and keeps the stream on its own descriptor, so a tool's
# output (pg_regress on 16+ prints "ok 1 - ..." lines itself) can never be
# read as an assertion.

exec {TAP_FD}>&1 1>&2
# First thing, so that a harness shows the suite's name before its log.
echo "TAP version 13" >&$TAP_FD
TAP_N=0
TAP_FAILED=0

# A description must stay on one line and must not start a directive.
tap_desc() {
	local d=${*//$'\n'/ }
	printf '%s' "${d//#/\\#}"
}

ok() {
	TAP_N=$((TAP_N + 1))
	echo "ok $TAP_N - $(tap_desc "$*")" >&$TAP_FD
}

not_ok() {
	TAP_N=$((TAP_N + 1))
	TAP_FAILED=$((TAP_FAILED + 1))
	echo "not ok $TAP_N - $(tap_desc "$*")" >&$TAP_FD
}

check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else not_ok "$what"; fi
}

skip() {
	TAP_N=$((TAP_N + 1))
	echo "ok $TAP_N - $(tap_desc "$1") # SKIP $(tap_desc "$2")" >&$TAP_FD
}

skip_all() {
	echo "1..0 # SKIP $(tap_desc "$*")" >&$TAP_FD
	exit 0
}

diag() {
	local line
	while IFS= read -r line; do echo "# $line"; done <<<"$*"
}

tap_from() {
	local label=$1 state
	shift
	state=$(mktemp)
	perl "$(dirname "${BASH_SOURCE[0]}")/tap_from.pl" "$label" "$TAP_N" "$state" -- "$@" >&$TAP_FD
	local n failed
	read -r n failed <"$state" || { n=$((TAP_N + 1)) failed=1; echo "not ok $n - $label: tap_from.pl died" >&$TAP_FD; }
	rm -f "$state"
	TAP_N=$n
	TAP_FAILED=$((TAP_FAILED + failed))
}

done_testing() {
	echo "1..$TAP_N" >&$TAP_FD
	[ "$TAP_FAILED" = 0 ] && exit 0
	exit 1
}
