#!/usr/bin/env bash
# Static checks of src/: the build is warning-free with -Wall -Wextra (gcc,
# as errors; and clang when installed), and cppcheck finds nothing.
#
# -Wno-unused-parameter: PostgreSQL's own headers and its fixed callback
# signatures (fmgr's fcinfo, GUC hooks, syscache callbacks) have parameters
# a given implementation does not use; everything else -Wextra checks stays
# on. The clang run also silences the warnings pg_config's gcc flags cause
# in clang (unknown -W options, gnu_printf), which say nothing about src/.
#
# cppcheck suppressions, each with its reason, are in test/cppcheck.supp.
# It checks one configuration: the one this server was built with (the
# macros below); exploring every #ifdef of PostgreSQL's headers would take
# many minutes and test code paths no build here can take.
set -uo pipefail
source "$SRC/test/lib/tap.sh"
cd "$SUITE_DIR"

# Only what the build reads (the suites' scratch directories live inside $SRC).
mkdir -p build/test
cp -a "$SRC/Makefile" "$SRC"/*.control "$SRC/sql" "$SRC/src" build/ &&
	cp -a "$SRC/test/regress_schedule" "$SRC/test/isolation_schedule" build/test/ ||
	{ not_ok "copying the sources failed"; done_testing; }
rm -f build/src/*.o build/src/*.bc build/*.so

build_warnings() {
	local log=$1
	shift
	make -C build -s clean >/dev/null 2>&1
	make -C build -s with_llvm=no "$@" >"$log" 2>&1
	local rc=$?
	grep -E "warning:|error:" "$log"
	return $rc
}

echo "== gcc -Wall -Wextra -Werror"
if out=$(build_warnings gcc.log PG_CPPFLAGS="-I./src -Wall -Wextra -Wno-unused-parameter -Werror") &&
	[ -z "$out" ]; then
	ok "gcc: no warnings with -Wall -Wextra"
else
	cat gcc.log
	not_ok "gcc: warnings with -Wall -Wextra"
fi

echo "== clang -Wall -Wextra"
if command -v clang >/dev/null; then
	if out=$(build_warnings clang.log CC=clang PG_CPPFLAGS="-I./src -Wall -Wextra -Wno-unused-parameter -Wno-ignored-attributes -Wno-unknown-warning-option -Wno-ignored-optimization-argument") &&
		[ -z "$out" ]; then
		ok "clang: no warnings with -Wall -Wextra"
	else
		cat clang.log
		not_ok "clang: warnings with -Wall -Wextra"
	fi
else
	skip "clang: no warnings with -Wall -Wextra" "clang is not installed (gcc above is the required check)"
fi

echo "== cppcheck"
if command -v cppcheck >/dev/null; then
	cppcheck --version
	timeout 600 cppcheck -q --error-exitcode=1 \
		--enable=warning,style,performance,portability --std=c11 \
		--suppressions-list="$SRC/test/cppcheck.supp" \
		-I "$SRC/src" -I "$(pg_config --includedir-server)" \
		-D__GNUC__=12 -D__x86_64__ -D__linux__ \
		"$SRC"/src/*.c >cppcheck.log 2>&1
	rc=$?
	cat cppcheck.log
	if [ $rc = 0 ] && ! grep -qE "(error|warning|style|performance|portability):" cppcheck.log; then
		ok "cppcheck: clean ($(ls "$SRC"/src/*.c | wc -l) files)"
	else
		not_ok "cppcheck: findings above (exit $rc)"
	fi
else
	not_ok "cppcheck is not installed (apt-get install cppcheck; make test installs it when run as root)"
fi

done_testing
