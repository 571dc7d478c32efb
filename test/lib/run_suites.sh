#!/usr/bin/env bash
# Build and install for one PostgreSQL, then run the suites in throwaway
# clusters as a non-root user. test/run_tests.sh runs this once on the host
# (PostgreSQL 15) and once inside the chroot of every other major.
#
#   run_suites.sh [--every-major] [--asan] [suite-name-pattern ...]
#
# Each suite is test/suites/NN-name.sh. It runs as the postgres user with
#   SRC        a private copy of the source tree
#   SUITE_DIR  an empty scratch directory for its clusters and logs
#   PGMAJOR, PGBIN  the PostgreSQL under test
# and reports by printing "SUITE_RESULT <passed> <failed> [<skipped>]". A
# suite that prints no such line (crashed, killed) counts as one failure. A
# suite that cannot run here (a server extension it needs is not installed)
# prints "SUITE_SKIPPED <reason>" and "SUITE_RESULT 0 0 1": skipped, never
# passed.
#
# --every-major keeps only the suites marked "# majors: all" (those that
# need a server); the static and memory checks run on the host's major.
# --asan (make test-asan) runs only the memory-checking suite, 80-memcheck.
#
# For every suite this prints one line the caller collects:
#   SUITE_SUMMARY <name> <passed> <failed> <seconds> <skipped>
set -uo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"

PGMAJOR=${PGMAJOR:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PGMAJOR/bin}
export PGMAJOR PGBIN PATH="$PGBIN:$PATH"

asan=0
every_major=0
patterns=()
for a in "$@"; do
	case "$a" in
		--asan) asan=1 ;;
		--every-major) every_major=1 ;;
		*) patterns+=("$a") ;;
	esac
done
if [ "$asan" = 1 ] && [ ${#patterns[@]} = 0 ]; then
	patterns=(memcheck)
fi

RUN_AS=()
if [ "$(id -u)" = 0 ]; then
	RUN_AS=(runuser -u postgres --)
fi

echo "== PostgreSQL $("$PGBIN/postgres" --version | sed 's/^postgres (PostgreSQL) //'): build and install"
if ! bash test/lib/build_install.sh; then
	echo "SUITE_SUMMARY build 0 1 0"
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

any_fail=0
for suite in test/suites/*.sh; do
	name=$(basename "$suite" .sh)
	if [ ${#patterns[@]} -gt 0 ]; then
		hit=0
		for p in "${patterns[@]}"; do [[ "$name" == *"$p"* ]] && hit=1; done
		[ $hit = 1 ] || continue
	fi
	if [ "$every_major" = 1 ] && ! grep -q '^# majors: all$' "$suite"; then
		continue
	fi
	# Suites marked "# runs: root" (apt, chroots) are run by test/run_tests.sh.
	grep -q '^# runs: root$' "$suite" && continue
	sdir="$WORK/suites/$name"
	mkdir -p "$sdir"
	[ "$(id -u)" = 0 ] && chown postgres: "$sdir"
	echo "== suite $name (PostgreSQL $PGMAJOR)"
	start=$(date +%s)
	out="$sdir.out"
	"${RUN_AS[@]}" env SRC="$WORK" SUITE_DIR="$sdir" ASAN="$asan" HOME="$sdir" \
		PGMAJOR="$PGMAJOR" PGBIN="$PGBIN" PATH="$PATH" \
		bash "$WORK/test/suites/$name.sh" 2>&1 | tee "$out"
	res=$(grep -E '^SUITE_RESULT [0-9]+ [0-9]+( [0-9]+)?$' "$out" | tail -n 1)
	sk=0
	if [ -z "$res" ]; then
		p=0 f=1
		echo "suite $name reported no result: counted as one failure"
	else
		read -r _ p f sk <<<"$res"
		sk=${sk:-0}
	fi
	[ "$f" = 0 ] || any_fail=1
	reason=$(grep -E '^SUITE_SKIPPED ' "$out" | tail -n 1 | cut -d' ' -f2-)
	[ -n "$reason" ] && echo "SUITE_SKIP_REASON $name $reason"
	echo "SUITE_SUMMARY $name $p $f $(($(date +%s) - start)) $sk"
done

# Keep the logs of a failed run for a look; a green run leaves nothing behind.
if [ "$any_fail" = 0 ]; then
	rm -rf "$WORK"
else
	echo "logs: $WORK/suites"
fi
exit 0
