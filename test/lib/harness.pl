#!/usr/bin/perl
# harness.pl JOBS [NOTE [ON_FAILURE]]: make test's one runner. JOBS lists, a line each,
#   SUITE <tab> WHERE <tab> COMMAND
# (WHERE: the PostgreSQL major, or "all"); every COMMAND writes TAP, and
# TAP::Harness runs them in order and reads them all, showing each line as
# it comes. Then a table, a row per job, and the last line of make test:
#   N passed, N failed[, N skipped]
#
# Counting, the same for every suite: an assertion passes or fails (a TODO
# passes); one with a SKIP directive, or a job that skips all ("1..0 #
# SKIP why"), is skipped, never passed. A job that breaks off (a parse
# error, a plan not met, a non-zero exit or a signal) without a failing
# assertion counts one failure, so a crash can never look like a pass.
# NOTE is printed above that line, ON_FAILURE too when something failed.
# Exits 0 when nothing failed and something passed.
use strict;
use warnings;
use TAP::Harness;

# The jobs' stderr reaches the log unbuffered; so must the TAP shown here,
# or a job's log lands above the line that names it.
STDOUT->autoflush(1);

my ($jobs_file, $note, $on_failure) = @ARGV;
open my $fh, '<', $jobs_file or die "$jobs_file: $!\n";
my (@jobs, %command);
while (my $line = <$fh>) {
	chomp $line;
	next if $line eq '';
	my ($suite, $where, $cmd) = split /\t/, $line, 3;
	my $id = "$where/$suite";
	$command{$id} = $cmd;
	push @jobs, [ $id, $suite, $where ];
}
close $fh;

my $harness = TAP::Harness->new({
	verbosity => 1,
	timer => 1,
	color => 0,
	merge => 0,
	exec => sub { my (undef, $id) = @_; return [ 'bash', '-c', $command{$id} ]; },
	# A line naming the job before it starts: its stderr (a suite's log)
	# can come before the harness's own header for it.
	callbacks => {
		parser_args => sub {
			my ($args, $job) = @_;
			print "\n===== ", (ref $job eq 'ARRAY' ? $job->[1] : $job), "\n";
		},
	},
});
my $agg = $harness->runtests(map { [ $_->[0], $_->[0] ] } @jobs);

my ($passed, $failed, $skipped) = (0, 0, 0);
my @rows;
for my $job (@jobs) {
	my ($id, $suite, $where) = @$job;
	my ($p) = $agg->parsers($id);
	my $secs = defined $p->start_time && defined $p->end_time
		? int($p->end_time - $p->start_time + 0.5) : 0;
	my ($ok, $bad, $skip, $why) = (0, 0, 0, '');
	if ($p->skip_all && !$p->exit) {
		($skip, $why) = (1, $p->skip_all);
	}
	else {
		$skip = scalar $p->skipped;
		$ok = scalar($p->passed) - $skip;
		$bad = scalar $p->failed;
		$bad = 1 if !$bad && $p->has_problems;
	}
	$passed += $ok;
	$failed += $bad;
	$skipped += $skip;
	my $row = sprintf '%-22s %-8s %5d passed %4d failed %6ds', $suite, $where, $ok, $bad, $secs;
	$row .= ", $skip skipped" if $skip;
	$row .= ": $why" if $why ne '';
	push @rows, $row;
}

print "\n== summary (suite, PostgreSQL major)\n";
print "$_\n" for @rows;
print "$note\n" if defined $note && $note ne '';
print "$on_failure\n" if $failed && defined $on_failure && $on_failure ne '';
my $line = "$passed passed, $failed failed";
$line .= ", $skipped skipped" if $skipped;
print "$line\n";
exit($failed == 0 && $passed > 0 ? 0 : 1);
