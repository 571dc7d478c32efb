#!/usr/bin/env bash
# Memory checking: the pg_regress and isolation suites, and a bad-input fuzz
# run, with every server process under valgrind memcheck; any error that
# involves stripe_idem fails the suite.
#
# Why valgrind and not AddressSanitizer: the server binaries are not
# instrumented, so an ASAN build of the extension needs libasan preloaded
# into postgres, and with Debian's PostgreSQL that deadlocks before main()
# (a library constructor in the gnutls that libldap pulls in calls
# bindtextdomain while ASAN initializes; every later bindtextdomain, the
# first thing postgres and psql do, waits forever). Memcheck needs no
# rebuild and no preload, checks the very stripe_idem.so that is installed
# and shipped (so nothing is swapped in or out of the installation other
# suites use), and also finds reads of uninitialized memory, which ASAN
# does not. It does not check stack and global buffers; the library is
# built with the server's -fstack-protector-strong and _FORTIFY_SOURCE=2,
# which abort on the common overruns there (seen below as a crash). Both
# tools share one limit without a server built for them: palloc hands out
# chunks of larger malloc'd blocks, so an overrun into the next chunk of
# the same block is not seen; overruns of whole blocks (every allocation
# over 8 kB has its own), reads of uninitialized values and invalid frees
# are.
#
# Only postgres runs under valgrind: a wrapper named postgres in a private
# bindir, next to links to the real initdb, psql and pg_ctl (initdb finds
# the real postgres next to itself, so the cluster is created at full
# speed). Every backend is a fork of the postmaster and stays under
# valgrind; each process writes its own log.
#
# An error counts against stripe_idem when its stack, the description of
# the address, or the origin of an uninitialized value names stripe_idem.so,
# one of its source files or one of its functions. Errors wholly inside PostgreSQL (for example
# struct padding written to WAL, which PostgreSQL's own valgrind.supp
# suppresses) are counted and listed but are not ours to fix;
# test/valgrind.supp suppresses, with reasons, the PostgreSQL-internal ones
# that happen below our calls.
set -uo pipefail
source "$SRC/test/lib/tap.sh"
source "$SRC/test/lib/cluster.sh"
source "$SRC/test/lib/regress_tap.sh"
cd "$SUITE_DIR"

if ! command -v valgrind >/dev/null; then
	not_ok "valgrind is not installed (apt-get install valgrind; make test installs it when run as root)"
	done_testing
fi

FUZZ_CALLS=${STRIPE_IDEM_MEMCHECK_FUZZ_CALLS:-1500}
realbin=$(pg_config --bindir)
VGBIN="$SUITE_DIR/bin"
VGLOG="$SUITE_DIR/valgrind"
mkdir -p "$VGBIN" "$VGLOG"
for b in "$realbin"/*; do
	[ "$(basename "$b")" = postgres ] || ln -s "$b" "$VGBIN/"
done
cat >"$VGBIN/postgres" <<EOF
#!/bin/sh
exec valgrind --quiet --tool=memcheck --trace-children=no --track-origins=yes \\
	--num-callers=40 --error-limit=no --read-inline-info=yes \\
	--suppressions="$SRC/test/valgrind.supp" \\
	--log-file="$VGLOG/%p.log" "$realbin/postgres" "\$@"
EOF
chmod +x "$VGBIN/postgres"
PGXS_DIR=$(dirname "$(dirname "$(pg_config --pgxs)")")

# One verdict per test from its result file, and one for the run's exit
# status (timeout's 124 when it ran out of time), as in 10-regress and
# 20-isolation.
echo "== pg_regress under valgrind"
mkdir -p regress
timeout 1200 "$PGXS_DIR/test/regress/pg_regress" \
	--bindir="$VGBIN" \
	--inputdir="$SRC" --outputdir="$SUITE_DIR/regress" \
	--temp-instance="$SUITE_DIR/regress/tmp_check" --port="$(free_port)" \
	--temp-config="$SRC/test/regress.conf" \
	$(cat "$SRC/test/regress_schedule")
regress_tap "regress under valgrind" "$SRC/test/regress_schedule" "$SRC" "$SUITE_DIR/regress" $?

echo "== isolation under valgrind"
mkdir -p isolation
timeout 1200 "$PGXS_DIR/test/isolation/pg_isolation_regress" \
	--bindir="$VGBIN" \
	--inputdir="$SRC/test" --outputdir="$SUITE_DIR/isolation" \
	--temp-instance="$SUITE_DIR/isolation/tmp_check" --port="$(free_port)" \
	--temp-config="$SRC/test/regress.conf" \
	$(cat "$SRC/test/isolation_schedule")
regress_tap "isolation under valgrind" "$SRC/test/isolation_schedule" "$SRC/test" "$SUITE_DIR/isolation" $?

echo "== bad-input fuzz under valgrind ($FUZZ_CALLS calls)"
FZ="$SUITE_DIR/fuzz"
mkdir -p "$FZ/work"
if initdb -D "$FZ/data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 >"$FZ/initdb.log" 2>&1; then
	port=$(free_port)
	cat >>"$FZ/data/postgresql.conf" <<EOF
port = $port
listen_addresses = ''
unix_socket_directories = '$FZ'
shared_preload_libraries = 'stripe_idem'
stripe_idem.sweep_interval = 0
stripe_idem.databases = 'not_the_fuzzed_one'
EOF
	if pg_ctl -D "$FZ/data" -p "$VGBIN/postgres" -l "$FZ/server.log" -w -t 300 start >/dev/null; then
		export PGHOST="$FZ" PGPORT="$port" PGUSER=postgres PGDATABASE=postgres
		psql -X -q -v ON_ERROR_STOP=1 -c "CREATE SCHEMA fuzz" -c "CREATE EXTENSION stripe_idem SCHEMA fuzz"
		timeout 1200 perl "$SRC/test/fuzz/fuzz.pl" --schema fuzz --seed 4242 --calls "$FUZZ_CALLS" \
			--workdir "$FZ/work" --psql "$realbin/psql" --timeout 1100 | tee fuzz.out
		if [ "${PIPESTATUS[0]}" = 0 ]; then ok "fuzz under valgrind: $(head -n 1 fuzz.out)"; else not_ok "fuzz under valgrind"; fi
		pg_ctl -D "$FZ/data" -m fast -w -t 300 stop >/dev/null
	else
		tail -n 30 "$FZ/server.log"
		not_ok "could not start the fuzz cluster under valgrind"
	fi
else
	cat "$FZ/initdb.log"
	not_ok "initdb for the fuzz cluster failed"
fi

echo "== valgrind reports"
nlogs=$(ls "$VGLOG" | wc -l)
if [ "$nlogs" -gt 10 ]; then
	ok "valgrind ran the servers ($nlogs processes logged)"
else
	not_ok "valgrind ran the servers (only $nlogs processes logged)"
fi
# Frames of stripe_idem.so carry file:line (it is built with -g; the
# server's own binaries have no debug information installed).
srcfiles=$(cd "$SRC/src" && ls *.c | paste -sd'|' | sed 's/\./\\./g')
cat >classify.pl <<'EOF'
use strict;
use warnings;
my ($dir, $srcfiles) = @ARGV;
my $ours = qr/stripe_idem\.so|\((?:$srcfiles):\d+\)|\b(?:si_[a-z_]+|[a-z_]*stripe_idem[a-z_]*)\b/;
my (@ours, %others);
for my $log (glob "$dir/*.log")
{
	open my $fh, '<', $log or next;
	my ($block, @blocks) = ('');
	while (<$fh>)
	{
		s/^==\d+== ?//;
		if (/^\s*$/) { push @blocks, $block if $block ne ''; $block = ''; next; }
		$block .= $_;
	}
	push @blocks, $block if $block ne '';
	for my $b (@blocks)
	{
		next if $b =~ /^(HEAP SUMMARY|LEAK SUMMARY|ERROR SUMMARY|For lists of|For counts of|All heap blocks)/;
		if ($b =~ $ours) { push @ours, "$log:\n$b"; }
		else { my ($first) = $b =~ /^([^\n]*)/; $others{$first}++; }
	}
}
my $nothers = 0;
$nothers += $_ for values %others;
print "$nothers error reports inside PostgreSQL alone (not stripe_idem's):\n";
printf "  %5d  %s\n", $others{$_}, $_ for sort keys %others;
printf "%d error reports involving stripe_idem\n", scalar @ours;
print "$_\n" for @ours;
exit(@ours ? 1 : 0);
EOF

# The classifier must see an error in our code: a report as valgrind
# writes it for a frame of stripe_idem.so.
mkdir -p classify-selftest
cat >classify-selftest/1.log <<'EOF'
==1== Conditional jump or move depends on uninitialised value(s)
==1==    at 0x87F17C9: si_required_text (validate.c:35)
==1==    by 0x414C3E: ExecMakeTableFunctionResult (in /usr/lib/postgresql/15/bin/postgres)
==1== 
EOF
if perl classify.pl "$SUITE_DIR/classify-selftest" "$srcfiles" >/dev/null; then
	not_ok "the report classifier finds an error in stripe_idem's code"
else
	ok "the report classifier finds an error in stripe_idem's code"
fi
perl classify.pl "$VGLOG" "$srcfiles"
if [ $? = 0 ]; then ok "no valgrind error involves stripe_idem"; else not_ok "valgrind errors involve stripe_idem (above)"; fi
if grep -l "terminated by signal" regress/log/postmaster.log isolation/log/postmaster.log "$FZ/server.log" 2>/dev/null; then
	not_ok "no server process crashed"
else
	ok "no server process crashed"
fi

done_testing
