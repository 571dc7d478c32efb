# The verdicts of a pg_regress or pg_isolation_regress run as TAP
# assertions (source test/lib/tap.sh first):
#
#   regress_tap LABEL SCHEDULE INPUTDIR OUTPUTDIR EXIT
#
# One assertion per test SCHEDULE names: OUTPUTDIR/results/NAME.out
# matches INPUTDIR/expected/NAME.out or one of its alternatives
# NAME_0.out ... NAME_9.out, compared as pg_regress compares them (diff
# -w). The verdict comes from the files, never from pg_regress's console
# output, whose format changed in 16; a test that never ran has no result
# file and fails. One more assertion holds the run's exit status, which
# also catches a run that broke off between tests. regression.diffs goes to
# the log when there is one.

regress_matches() {
	local expected=$1 result=$2 alt
	[ -f "$result" ] || return 1
	for alt in "$expected.out" "${expected}"_{0..9}.out; do
		[ -f "$alt" ] && diff -w -q "$alt" "$result" >/dev/null && return 0
	done
	return 1
}

regress_tap() {
	local label=$1 schedule=$2 inputdir=$3 outputdir=$4 rc=$5 t
	for t in $(cat "$schedule"); do
		check "$label $t" regress_matches "$inputdir/expected/$t" "$outputdir/results/$t.out"
	done
	check "$label: pg_regress exits 0 (it exited $rc)" test "$rc" = 0
	[ -f "$outputdir/regression.diffs" ] && cat "$outputdir/regression.diffs"
	return 0
}
