#!/usr/bin/env bash
# make test: build, install, then run every suite in throwaway clusters as a
# non-root user, and end with one line "N passed, N failed" over all suites.
#
# Each suite is test/suites/NN-name.sh. It runs as the postgres user with
#   SRC        a private copy of the source tree
#   SUITE_DIR  an empty scratch directory for its clusters and logs
# and reports by printing "SUITE_RESULT <passed> <failed>". A suite that
# prints no such line (crashed, killed) counts as one failure.
#
#   run_tests.sh [--asan] [suite-name-pattern ...]
#
# --asan (make test-asan) runs only the memory-checking suite, 80-memcheck:
# the regression and isolation suites and a fuzz run with every server
# process under valgrind memcheck (that suite says why not ASAN). It checks
# the normal build, so nothing about the build or install changes.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

asan=0
patterns=()
for a in "$@"; do
	case "$a" in
		--asan) asan=1 ;;
		*) patterns+=("$a") ;;
	esac
done

bash test/lib/ensure_deps.sh --test || exit 1

RUN_AS=()
if [ "$(id -u)" = 0 ]; then
	RUN_AS=(runuser -u postgres --)
fi

if [ "$asan" = 1 ] && [ ${#patterns[@]} = 0 ]; then
	patterns=(memcheck)
fi

echo "== build and install"
if ! bash test/lib/build_install.sh; then
	echo "0 passed, 1 failed"
	exit 1
fi

# A private copy the test user owns: the checkout may live where postgres
# cannot write (or even read), and results/ must never land in the tree.
WORK=$(mktemp -d /tmp/stripe_idem_test.XXXXXX)
tar -C "$here" --exclude=.git --exclude=node_modules --exclude=results \
	--exclude=tmp_check --exclude='*.o' --exclude='*.so' -cf - . | tar -C "$WORK" -xf -
mkdir -p "$WORK/suites"
[ "$(id -u)" = 0 ] && chown -R postgres: "$WORK"
chmod 755 "$WORK"

total_pass=0
total_fail=0
summary=()
for suite in test/suites/*.sh; do
	name=$(basename "$suite" .sh)
	if [ ${#patterns[@]} -gt 0 ]; then
		hit=0
		for p in "${patterns[@]}"; do [[ "$name" == *"$p"* ]] && hit=1; done
		[ $hit = 1 ] || continue
	fi
	sdir="$WORK/suites/$name"
	mkdir -p "$sdir"
	[ "$(id -u)" = 0 ] && chown postgres: "$sdir"
	echo "== suite $name"
	start=$(date +%s)
	out="$sdir.out"
	"${RUN_AS[@]}" env SRC="$WORK" SUITE_DIR="$sdir" ASAN="$asan" HOME="$sdir" \
		bash "$WORK/test/suites/$name.sh" 2>&1 | tee "$out"
	res=$(grep -E '^SUITE_RESULT [0-9]+ [0-9]+$' "$out" | tail -n 1)
	if [ -z "$res" ]; then
		p=0 f=1
		echo "suite $name reported no result: counted as one failure"
	else
		read -r _ p f <<<"$res"
	fi
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
	summary+=("$(printf '%-24s %4d passed %4d failed %5ds' "$name" "$p" "$f" $(($(date +%s) - start)))")
done

echo
echo "== summary"
for s in "${summary[@]}"; do echo "$s"; done
[ "$total_fail" = 0 ] || echo "logs: $WORK/suites"
# Keep the logs of a failed run for a look; a green run leaves nothing behind.
if [ "$total_fail" = 0 ] && [ "$total_pass" -gt 0 ]; then
	rm -rf "$WORK"
	echo "$total_pass passed, $total_fail failed"
	exit 0
fi
echo "$total_pass passed, $total_fail failed"
exit 1
