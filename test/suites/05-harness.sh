#!/usr/bin/env bash
# The runner itself: make test's counting rules, proven on jobs whose TAP
# is known (test/lib/harness.pl, tap_from, run_suite.sh). A skip is never
# a pass; a job that breaks off without a failing assertion is one failure;
# a suite of a major that was not set up is a failure, not a pass.
set -uo pipefail
source "$SRC/test/lib/tap.sh"
cd "$SUITE_DIR"

# harness_line JOBS...: the last line harness.pl prints for these jobs
harness_line() {
	printf '%s\n' "$@" >jobs
	perl "$SRC/test/lib/harness.pl" jobs 2>/dev/null | tail -n 1
}
tab=$'\t'
is() { # is GOT WANT DESC
	if [ "$1" = "$2" ]; then ok "$3"; else not_ok "$3 (got: $1)"; fi
}

is "$(harness_line "a${tab}1${tab}printf '1..2\nok 1\nok 2\n'")" "2 passed, 0 failed" \
	"two passing assertions are two passed"
is "$(harness_line "a${tab}1${tab}printf '1..2\nok 1\nnot ok 2\n'")" "1 passed, 1 failed" \
	"a failing assertion is a failure"
is "$(harness_line "a${tab}1${tab}printf '1..2\nok 1\nok 2 # SKIP why\n'")" "1 passed, 0 failed, 1 skipped" \
	"a skipped assertion is skipped, not passed"
is "$(harness_line "a${tab}1${tab}printf '1..0 # SKIP why\n'" "b${tab}1${tab}printf '1..1\nok 1\n'")" "1 passed, 0 failed, 1 skipped" \
	"a suite that skips all is one skip"
is "$(harness_line "a${tab}1${tab}printf '1..3\nok 1\n'")" "1 passed, 1 failed" \
	"a plan not met is a failure"
is "$(harness_line "a${tab}1${tab}printf '1..1\nok 1\n'; exit 3")" "1 passed, 1 failed" \
	"a non-zero exit after passing assertions is a failure"
is "$(harness_line "a${tab}1${tab}printf 'ok 1\n'")" "1 passed, 1 failed" \
	"no plan is a failure"
is "$(harness_line "a${tab}1${tab}printf 'ok 1\n1..1\n'; kill -9 \$\$")" "1 passed, 1 failed" \
	"a job killed by a signal is a failure"
is "$(harness_line "a${tab}1${tab}true")" "0 passed, 1 failed" \
	"a job that writes nothing is a failure"
perl "$SRC/test/lib/harness.pl" jobs >/dev/null 2>&1
check "harness.pl exits non-zero when something failed" test $? != 0
printf '%s\n' "a${tab}1${tab}printf '1..0 # SKIP why\n'" >jobs
perl "$SRC/test/lib/harness.pl" jobs >/dev/null 2>&1
check "harness.pl exits non-zero when nothing passed" test $? != 0

# tap_from, inside a suite: a sub-command's breaking off reaches the suite
inner() { bash -c "source $(printf %q "$SRC/test/lib/tap.sh"); tap_from x bash -c $(printf %q "$1"); done_testing" 2>/dev/null; }
is "$(inner 'echo 1..2; echo ok 1' | grep -c '^not ok')" 1 "tap_from: a plan not met adds a failure"
is "$(inner 'echo 1..1; echo ok 1; exit 2' | grep -c '^not ok')" 1 "tap_from: a non-zero exit adds a failure"
is "$(inner 'echo "1..0 # SKIP why"' | grep -c '# SKIP why$')" 1 "tap_from: a command that skips all is one skipped assertion"
is "$(inner 'echo "TAP version 13"; echo "1..1"; echo "ok 1 - a"' | grep -c '^ok 1 - x: a$')" 1 "tap_from: results are renumbered and labelled"

# a suite whose major was not set up reports itself not run, as a failure
out=$(STRIPE_IDEM_WORK="$SUITE_DIR/none" bash "$SRC/test/lib/run_suite.sh" 15 10-regress 2>/dev/null)
rc=$?
check "run_suite.sh fails a suite of a major that was not set up" test "$rc" != 0 -a "$(grep -c '^not ok' <<<"$out")" = 1

done_testing
