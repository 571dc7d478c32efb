# Fast shutdown in the middle of a pass over 1,000,000 expired rows does
# not wait for the pass: the sweeper stops within its current batch, and
# what it committed so far stays deleted. Where the pass is when the
# shutdown comes is the test's choice, not the machine's speed: deleting
# row op500000 waits for an advisory lock the test holds. The time is
# printed, not asserted (pg_ctl's own wait bounds a hang).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;
use DeleteGate;
use Time::HiRes qw(time);

my $rows = 1_000_000;

my $node = StripeIdemNode::started('sweeper_shutdown', conf => q{
stripe_idem.sweep_batch_size = 2000
});

my $t0 = time;
$node->safe_psql('postgres', qq{
	CREATE EXTENSION stripe_idem;
	INSERT INTO stripe_idempotency_keys (operation_type, operation_id,
		stripe_idempotency_key, status, stripe_resource_id, expires_at)
	SELECT 'bulk', 'op' || g, 'bulk:' || g, 'completed', 'ch_x',
		now() - interval '1 day' + g * interval '1 ms'
	FROM generate_series(1, $rows) g;
	CHECKPOINT;
});
note sprintf('wrote %d expired rows in %.1f s', $rows, time - $t0);

# Start a pass and hold it at op500000: 249 batches of 2,000 committed,
# the 250th waiting.
DeleteGate::install($node, 'postgres', 'op500000', $DeleteGate::ADVISORY_WAIT);
my $gate = DeleteGate::hold_advisory($node, 'postgres');
is($node->safe_psql('postgres', 'SELECT stripe_idem_wake_sweeper()'), 't', 'pass requested');
ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		WHERE backend_type = 'stripe_idem sweeper'
		  AND wait_event_type = 'Lock' AND wait_event = 'advisory'
		  AND query LIKE 'stripe_idem sweeper: deleting expired keys, % deleted so far'}),
	'the sweeper reports its progress in pg_stat_activity, and waits at op500000');
is($node->safe_psql('postgres', q{SELECT last_rows_deleted || ' ' || (last_finished IS NULL) FROM stripe_idem_sweeper}),
	'498000 true', 'the pass is under way: 249 batches committed');

$t0 = time;
$node->stop('fast');
note sprintf('fast shutdown during the pass took %.2f s', time - $t0);
ok($node->log_contains(
		qr/FATAL:  terminating background worker "stripe_idem sweeper" due to administrator command/),
	'the sweeper was stopped mid-pass');

# The committed batches stay deleted; the next pass finishes the job.
$node->start;
DeleteGate::remove($node, 'postgres');
my $left = $node->safe_psql('postgres', 'SELECT count(*) FROM stripe_idempotency_keys');
is($left, $rows - 498000, 'the interrupted pass kept its 249 committed batches, the 250th rolled back');
is($node->safe_psql('postgres', 'SELECT stripe_idem_wake_sweeper()'), 't', 'another pass');
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM stripe_idempotency_keys'),
	'the next pass deletes the rest');
ok($node->poll_query_until('postgres', qq{
		SELECT passes = 1 AND last_rows_deleted = $left AND last_error IS NULL
		FROM stripe_idem_sweeper}),
	'the view shows the pass and its count');

$node->stop('fast');
done_testing();
