#!/usr/bin/perl
# Run TAP test files and report the suite result line the runner reads:
# every assertion counts; a file that dies or exits non-zero counts as one
# more failure, so a crash can never look like a pass.
use strict;
use warnings;
use TAP::Harness;

my $harness = TAP::Harness->new({
	verbosity => 0,
	lib => [ @INC ],
	timer => 1,
	failures => 1,
	errors => 1,
});
my $agg = $harness->runtests(@ARGV);
my $passed = scalar($agg->passed);
my $failed = scalar($agg->failed);
for my $file ($agg->descriptions) {
	my ($parser) = $agg->parsers($file);
	$failed++ if $parser->has_problems && !$parser->failed;
}
if (!$agg->total && @ARGV) { $failed++; }
print "SUITE_RESULT $passed $failed\n";
