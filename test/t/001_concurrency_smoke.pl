# Concurrency smoke test: 16 pgbench clients race begin_stripe_idempotency
# on the same 100 operation ids. Exactly one caller per operation may be
# told "acquired", however the calls interleave; the same must hold when
# the leases run out and everybody races for the takeover.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;

# STRIPE_IDEM_EDITION=managed: the same race against the managed edition
# (tle/stripe_idem_tle.sql, installed from the file, nothing preloaded;
# test/suites/15-managed.sh).
my $managed = ($ENV{STRIPE_IDEM_EDITION} // '') eq 'managed';

my $node = StripeIdemNode::started('race', plain => $managed, conf => q{
max_connections = 40
});

if ($managed)
{
	my $tle = "$ENV{SRC}/tle/stripe_idem_tle.sql";
	$tle = '../tle/stripe_idem_tle.sql' unless -f $tle;
	$node->safe_psql('postgres', "SET client_min_messages = warning;\n" . slurp_file($tle));
}
else
{
	$node->safe_psql('postgres', 'CREATE EXTENSION stripe_idem');
}
$node->safe_psql('postgres', q{
	-- every answer begin gave, written in the same statement as the call
	CREATE TABLE outcomes (round int, op text, state text, key text);
});

my $script = q{
\set id random(1, 100)
INSERT INTO outcomes SELECT :round, 'op' || :id, state, stripe_idempotency_key FROM begin_stripe_idempotency('race:test', 'op' || :id);
};

sub race
{
	my ($round) = @_;
	$node->pgbench(
		"--no-vacuum --client=16 --jobs=2 --transactions=200 --random-seed=$round -D round=$round",
		0,
		[qr{processed: 3200/3200}],
		[qr{\Apgbench: setting random seed to \d+\s*\z}],
		"round $round: 16 clients x 200 begins on 100 operations",
		{ "001_race_$round" => $script });
}

# Round 1: fresh operations.
race(1);
is($node->safe_psql('postgres',
		"SELECT count(*) FROM outcomes WHERE round = 1 AND state = 'acquired'"),
	'100', 'round 1: exactly 100 acquired in total');
is($node->safe_psql('postgres',
		"SELECT count(DISTINCT op) FROM outcomes WHERE round = 1 AND state = 'acquired'"),
	'100', 'round 1: one acquired per operation');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM outcomes WHERE round = 1 AND state NOT IN ('acquired', 'in_progress')"),
	'0', 'round 1: every other answer is in_progress');
is($node->safe_psql('postgres',
		"SELECT count(*) || '/' || count(DISTINCT stripe_idempotency_key) FROM stripe_idempotency_keys"),
	'100/100', 'round 1: 100 rows with 100 distinct keys');

# Round 2: every lease has run out; the takeover race must also be won once
# per operation, and under the key the operation already had.
$node->safe_psql('postgres', q{
	CREATE TABLE keys_before AS SELECT operation_id, stripe_idempotency_key FROM stripe_idempotency_keys;
	UPDATE stripe_idempotency_keys SET locked_until = statement_timestamp() - interval '1 second';
});
race(2);
is($node->safe_psql('postgres',
		"SELECT count(*) FROM outcomes WHERE round = 2 AND state = 'acquired'"),
	'100', 'round 2: exactly 100 takeovers in total');
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM outcomes o JOIN keys_before b ON b.operation_id = o.op
		WHERE o.round = 2 AND o.state = 'acquired' AND o.key = b.stripe_idempotency_key}),
	'100', 'round 2: every takeover kept the original key');
is($node->safe_psql('postgres',
		"SELECT min(attempts) || '/' || max(attempts) FROM stripe_idempotency_keys"),
	'2/2', 'round 2: each operation acquired exactly twice');

# The shared counters saw the same thing (the managed edition keeps none).
is($node->safe_psql('postgres', 'SELECT acquired FROM stripe_idem_stats'),
	'200', 'stripe_idem_stats counted 200 acquisitions') unless $managed;

$node->stop;
done_testing();
