#!/usr/bin/env bash
# make model: check test/model/model.pml with Spin, exhaustively.
#
#   run.sh [--work DIR]
#
# - the real protocol, under several settings of lease/window/ttl/retention,
#   must give 0 errors, every state explored (no depth limit hit, no
#   bitstate hashing), one run per safety property and one for liveness;
# - every reachability probe (-DCOVER=n) must be reached, and the two
#   situations the protocol rules out must not be (a clean search is
#   worth nothing if the model never gets anywhere);
# - every broken variant (-DBROKEN_...) must give a counterexample; the
#   search is breadth-first, so the trail is a shortest one; it is kept in
#   the work directory, and the line printed with it replays it (each step
#   prints what the caller, Stripe, the sweeper or the clock did);
# - beyond the design's assumptions, a Stripe that acts on a request after
#   the caller's lease ended (-DSLOW_STRIPE): the 1.2 text must still give
#   its counterexamples, and the remedy (both margins) must be clean.
#
# Writes TAP (test/lib/tap.sh) on stdout: one assertion per check with
# pan's verdict (errors, states stored, depth reached, seconds), then the
# plan; comments and replay lines go to stderr. Exits non-zero if any check
# failed; spin or gcc missing is one failed check. make model runs it
# through prove; test/suites/15-model.sh takes its TAP in with tap_from.
# The work directory (default: a fresh one under /tmp) keeps every pan and
# trail.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib/tap.sh"

work=""
while [ $# -gt 0 ]; do
	case "$1" in
		--work) work=$2; shift 2 ;;
		*) echo "usage: run.sh [--work DIR]" >&2; exit 2 ;;
	esac
done

for tool in spin gcc; do
	if ! command -v "$tool" >/dev/null; then
		not_ok "$tool is not installed; as root: apt-get update && apt-get install -y --no-install-recommends $tool"
		done_testing
	fi
done

[ -n "$work" ] || work=$(mktemp -d /tmp/stripe_idem_model.XXXXXX)
mkdir -p "$work"
work=$(cd "$work" && pwd)
cp "$here/model.pml" "$work/model.pml"
diag "$(spin -V); work directory $work"

# The settings of the real model (ticks): lease L, key window W, ttl T,
# retention R, callers, faults. A: ttl longer than the key window (so
# both ways to unresolved are open); B: ttl shorter than the window; C: a
# lease of two ticks; D: four callers.
CFG_A="-DL=1 -DW=2 -DT=3 -DR=1 -DNCALLERS=3 -DFAULTS=3"
CFG_B="-DL=1 -DW=3 -DT=2 -DR=1 -DNCALLERS=3 -DFAULTS=3"
CFG_C="-DL=2 -DW=3 -DT=4 -DR=1 -DNCALLERS=3 -DFAULTS=3"
CFG_D="-DL=1 -DW=2 -DT=3 -DR=1 -DNCALLERS=4 -DFAULTS=2"
DEPTH=1000000

# verdict LOG: "errors E, states S, depth D, T s" from pan's output
verdict() {
	local log=$1 e s d t
	e=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
	s=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$log" | tail -n 1)
	d=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$log" | tail -n 1)
	t=$(sed -n 's/^pan: elapsed time \([0-9.e+]*\) seconds.*/\1/p' "$log" | tail -n 1)
	echo "errors ${e:-?}, states stored ${s:-?}, depth ${d:-?}, ${t:-?} s"
}

# pan_run NAME SPIN_FLAGS PAN_CC_FLAGS PAN_FLAGS: build and run pan in
# $work/NAME; the log is $work/NAME/pan.log. Returns pan's exit status
# (pan exits 0 whether or not it found errors: read the log).
pan_run() {
	local name=$1 sflags=$2 cflags=$3 pflags=$4 dir="$work/$1"
	rm -rf "$dir"
	mkdir -p "$dir"
	cp "$work/model.pml" "$dir/"
	(
		cd "$dir" &&
			spin $sflags -a model.pml >spin.log 2>&1 &&
			gcc -O2 -w -DCOLLAPSE $cflags -o pan pan.c >gcc.log 2>&1 &&
			./pan -m$DEPTH $pflags >pan.log 2>&1
	) || {
		diag "$name: spin, gcc or pan failed; see $dir"
		cat "$dir"/spin.log "$dir"/gcc.log 2>/dev/null | head -n 20 | sed 's/^/#   /'
		return 1
	}
	echo "$sflags" >"$dir/spin.flags"
}

# An exhaustive search that must come back clean.
expect_clean() {
	local name=$1 what=$2 log="$work/$1/pan.log"
	shift 2
	if ! pan_run "$name" "$@"; then
		not_ok "$what: could not run"
		return
	fi
	local v
	v=$(verdict "$log")
	if grep -q 'errors: 0$' "$log" &&
		! grep -qE 'Search not completed|max search depth too small|depth limit' "$log" &&
		! grep -q 'BITSTATE\|Bit statespace' "$log"; then
		ok "$what: $v"
	else
		grep -E 'violated|cycle|invalid end|depth too small|not completed' "$log" | head -n 3 | sed 's/^/#   /'
		not_ok "$what: $v (log $log)"
	fi
}

# A search that must find an error, with a trail that replays.
expect_error() {
	local name=$1 what=$2 dir="$work/$1" log="$work/$1/pan.log"
	shift 2
	if ! pan_run "$name" "$@"; then
		not_ok "$what: could not run"
		return
	fi
	local v msg flags
	v=$(verdict "$log")
	msg=$(grep -E '^pan:1: ' "$log" | head -n 1 | sed 's/^pan:1: //')
	case "$msg" in
		*life_objs*) msg="two Stripe objects for one operation ($msg)" ;;
		*s_left*) msg="a key sent after Stripe may have forgotten it ($msg)" ;;
		*g_answer*) msg="a completed answer changed ($msg)" ;;
		*acceptance*) msg="a run in which not every caller gets an answer ($msg)" ;;
	esac
	flags=$(cat "$dir/spin.flags")
	if grep -qE 'errors: [1-9]' "$log" && [ -f "$dir/model.pml.trail" ] &&
		(cd "$dir" && spin -t $flags model.pml >replay.log 2>&1) &&
		grep -q 'trail ends after' "$dir/replay.log"; then
		ok "$what: $v: $msg"
		diag "  replay: (cd $dir && spin -t $flags model.pml)"
	else
		not_ok "$what: no counterexample: $v (log $log)"
	fi
}

diag "real model, one run per property (setting A: $CFG_A)"
expect_clean real-one-object "real model, never two Stripe objects for one operation (A)" "$CFG_A -DCHECK=1" "" ""
expect_clean real-key-remembered "real model, no key sent once Stripe may have forgotten it (A)" "$CFG_A -DCHECK=2" "" ""
expect_clean real-answer-stable "real model, a completed answer never changes (A)" "$CFG_A -DCHECK=4" "" ""
diag "real model, every safety property, other settings"
expect_clean real-B "real model, all safety properties, ttl shorter than the key window (B: $CFG_B)" "$CFG_B" "" ""
expect_clean real-C "real model, all safety properties, lease of two ticks (C: $CFG_C)" "$CFG_C" "" ""
expect_clean real-D "real model, all safety properties, four callers (D: $CFG_D)" "$CFG_D" "" ""
diag "liveness: weak fairness (pan -a -f), every caller ends with an answer"
expect_clean real-liveness "real model, liveness under weak fairness (A)" "$CFG_A -DLIVENESS" "-DNFAIR=3" "-a -f"
# The same claim without fairness must fail (the clock ticking for ever
# while the callers wait): the check can tell the two apart.
expect_error real-liveness-unfair "liveness without fairness: counterexample expected" "$CFG_A -DLIVENESS" "-DNFAIR=3" "-a"

diag "reachability probes (setting A): each must be reached"
probes=(
	"1 takeover hands the same key to another caller"
	"2 unresolved because the key window passed"
	"3 unresolved because the row expired"
	"4 reconcile finds Stripe's object and records it"
	"5 restart hands out a fresh key"
	"6 restart refused (55000)"
	"8 record finds the row completed and returns the first result"
	"9 release drops a live lease"
	"10 the sweeper deletes a completed row"
	"11 the sweeper deletes an in_progress row after retention"
	"12 a new life after the row became absent"
	"13 Stripe replays the object of a key it remembers"
	"14 begin answers completed"
	"15 begin answers in_progress"
)
for p in "${probes[@]}"; do
	n=${p%% *}
	name=${p#* }
	if pan_run "cover-$n" "$CFG_A -DCOVER=$n" "" "" && grep -q "assertion violated ($n!=$n)" "$work/cover-$n/pan.log"; then
		ok "probe $n reached: $name"
	else
		not_ok "probe $n not reached: $name ($work/cover-$n)"
	fi
done
diag "ruled out by the protocol (setting A): each must never be reached"
expect_clean cover-7 "record never meets an in_progress row under another key (no 23505)" "$CFG_A -DCOVER=7" "" ""
expect_clean cover-16 "record never finds its row absent or deleted" "$CFG_A -DCOVER=16" "" ""

diag "broken variants (setting A): each must give a counterexample"
expect_error broken-takeover-window "takeover ignoring the key window" "$CFG_A -DBROKEN_TAKEOVER_WINDOW" "-DBFS" ""
expect_error broken-expired-fresh-key "a fresh key for an expired in_progress row (1.1)" "$CFG_A -DBROKEN_EXPIRED_FRESH_KEY" "-DBFS" ""
expect_error broken-sweep-unresolved "the sweeper deleting unresolved rows before retention" "$CFG_A -DBROKEN_SWEEP_UNRESOLVED" "-DBFS" ""
expect_error broken-check-then-call "check, call Stripe with a new key, record (no lease)" "$CFG_A -DBROKEN_CHECK_THEN_CALL" "-DBFS" ""
expect_error broken-rolled-back-begin "a rolled-back begin whose caller calls Stripe anyway" "$CFG_A -DBROKEN_ROLLED_BACK_BEGIN" "-DBFS" ""

# Beyond the design's assumptions: Stripe acting on a request up to D ticks
# after it left (after the SDK gave up and the lease ended). The 1.2 text
# has no margin for that; docs/GUARANTEES.md ("The model") tells the two
# counterexamples and the remedy checked here.
CFG_E="-DL=1 -DW=3 -DT=4 -DR=1 -DNCALLERS=3 -DFAULTS=3 -DD=1"
diag "a slow Stripe (setting E: $CFG_E): the 1.2 text fails, both margins hold"
expect_error slow-1.2 "slow Stripe, 1.2 as written: counterexample expected" "$CFG_E -DSLOW_STRIPE" "-DBFS" ""
expect_error slow-window-margin "slow Stripe, key window margin only: counterexample expected" "$CFG_E -DSLOW_STRIPE -DWINDOW_MARGIN" "-DBFS" ""
expect_error slow-unresolved-margin "slow Stripe, unresolved margin only: counterexample expected" "$CFG_E -DSLOW_STRIPE -DUNRESOLVED_MARGIN" "-DBFS" ""
expect_clean slow-both-margins "slow Stripe, both margins: all safety properties hold (E)" "$CFG_E -DSLOW_STRIPE -DWINDOW_MARGIN -DUNRESOLVED_MARGIN" "" ""
expect_clean both-margins "both margins, Stripe acting at once: all safety properties hold (E)" "$CFG_E -DWINDOW_MARGIN -DUNRESOLVED_MARGIN" "" ""

done_testing
