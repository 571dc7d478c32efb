#!/usr/bin/perl
# tap_from.pl LABEL N STATE -- CMD...: the TAP that CMD writes, renumbered
# from N+1 into the stream of the suite that runs it (test/lib/tap.sh's
# tap_from). Every result keeps its verdict and directive and is described
# "LABEL: ..."; comments go to stderr. CMD breaking off counts, so a crash
# can never look like a pass: a bail-out, a parse error, a plan not met or a
# non-zero exit adds one failing assertion that says which. A CMD that skips
# all ("1..0 # SKIP why") is one skipped assertion. Writes "N FAILED" (the
# last number used, the failures added) to STATE.
use strict;
use warnings;
use TAP::Parser;

my ($label, $n, $state, $sep, @cmd) = @ARGV;
die "usage: tap_from.pl LABEL N STATE -- CMD...\n"
	unless defined $sep && $sep eq '--' && @cmd;

$| = 1;
my $failed = 0;
sub emit {
	my ($ok, $desc, $directive) = @_;
	$n++;
	$desc =~ s/(?<!\\)#/\\#/g;    # a "#" the producer did not escape
	$desc =~ s/\s+/ /g;
	my $line = ($ok ? 'ok' : 'not ok') . " $n - $label: $desc";
	$line .= " # $directive" if defined $directive;
	print "$line\n";
	$failed++ unless $ok || (defined $directive && $directive =~ /^TODO/);
}

my $parser = TAP::Parser->new({ exec => \@cmd });
while (my $r = $parser->next) {
	if ($r->is_test) {
		my $desc = $r->description;
		$desc =~ s/^\s*-\s*//;
		$desc = 'test ' . $r->number if $desc eq '';
		my $directive;
		$directive = $r->directive . ' ' . $r->explanation if $r->directive;
		emit($r->is_actual_ok, $desc, $directive);
	}
	elsif ($r->is_comment) {
		print STDERR $r->as_string, "\n";
	}
	elsif ($r->is_bailout) {
		emit(0, 'bailed out: ' . $r->explanation);
	}
}

my @problems;
push @problems, 'parse error: ' . join('; ', $parser->parse_errors)
	if $parser->parse_errors && !$parser->skip_all;
push @problems, 'exited with status ' . $parser->exit if $parser->exit;
push @problems, 'killed by signal ' . ($parser->wait & 127) if ($parser->wait // 0) & 127;

if ($parser->skip_all && !@problems) {
	emit(1, 'all', 'SKIP ' . $parser->skip_all);
}
elsif (@problems) {
	emit(0, join(', ', @problems));
}

open my $fh, '>', $state or die "$state: $!";
print $fh "$n $failed\n";
close $fh;
