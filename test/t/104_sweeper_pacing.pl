# The pause between the sweeper's batches (stripe_idem.sweep_batch_delay):
# a pass waits after every batch it commits, shown in pg_stat_activity; a
# reload to 0 and stripe_idem_wake_sweeper(true) each end the pauses of a
# pass under way, and SIGTERM ends a pass in the middle of a pause.
#
# Nothing here depends on the machine's speed. The passes are made so long
# (1,000 batches of 10 rows, with the longest pause of 1 second after each:
# over 16 minutes) that finishing one within poll_query_until's wait can
# only mean the pauses were cut short, while the batches themselves take
# a few seconds in all even on a slow machine.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;

my $node = StripeIdemNode::started('sweeper_pacing', conf => q{
stripe_idem.databases = 'postgres'
stripe_idem.sweep_batch_size = 10
stripe_idem.sweep_batch_delay = 1s
stripe_idem.log_sweeps = off
});
$node->safe_psql('postgres', 'CREATE EXTENSION stripe_idem');

is($node->safe_psql('postgres', q{SELECT setting || ' ' || unit || ' ' || context FROM pg_settings
	WHERE name = 'stripe_idem.sweep_batch_delay'}), '1000 ms sighup', 'the setting, in milliseconds, reloadable');
my ($rc, $out, $err) = $node->psql('postgres', q{SET stripe_idem.sweep_batch_delay = 0});
like($err, qr/permission denied|cannot be changed now/, 'not settable by a session');

my $tag = 0;
sub add_expired
{
	my $type = 'pace' . ++$tag;
	$node->safe_psql('postgres', qq{
		INSERT INTO stripe_idempotency_keys (operation_type, operation_id,
			stripe_idempotency_key, status, stripe_resource_id, expires_at)
		SELECT '$type', 'op' || g, '$type:' || g, 'completed', 'ch_x',
			now() - interval '1 hour' + g * interval '1 ms'
		FROM generate_series(1, $_[0]) g});
	return $type;
}
sub left
{
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM stripe_idempotency_keys WHERE operation_type = '$_[0]'");
}
# The worker is in its pause: waiting on its latch (wait_event "Extension"
# before PostgreSQL 17, its own name from 17 on), not in a transaction.
my $pausing = q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'stripe_idem sweeper' AND wait_event_type = 'Extension'
	  AND wait_event IN ('Extension', 'StripeIdemSweeperBatchDelay') AND backend_xid IS NULL};
sub set_conf
{
	my ($name, $value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET stripe_idem.$name = '$value'; SELECT pg_reload_conf();");
}

# 1. A pass pauses after every batch.
my $t1 = add_expired(10000);
$node->safe_psql('postgres', 'SELECT stripe_idem_wake_sweeper()');
ok($node->poll_query_until('postgres', $pausing), 'a pass pauses between batches');
my $l1 = left($t1);
ok($l1 < 10000 && $l1 % 10 == 0, "it committed whole batches before pausing ($l1 rows left)");
ok($node->poll_query_until('postgres', "SELECT ($pausing) AND (SELECT count(*) FROM stripe_idempotency_keys
	WHERE operation_type = '$t1') < $l1"), 'and pauses again after the next batch');
cmp_ok(left($t1), '>', 0, 'the pass is still under way');

# 2. A reload to 0 ends the pauses of the pass under way: it finishes.
set_conf('sweep_batch_delay', '0');
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM stripe_idempotency_keys WHERE operation_type = '$t1'"),
	'after a reload to 0 the pass finishes (with its pauses it would take over 16 minutes)');
ok($node->poll_query_until('postgres', q{SELECT last_finished >= last_started AND last_error IS NULL
	FROM stripe_idem_sweeper WHERE database = 'postgres'}), 'and reports a clean pass');

# 3. stripe_idem_wake_sweeper(true) ends the pauses of a pass under way.
set_conf('sweep_batch_delay', '1s');
my $t2 = add_expired(10000);
$node->safe_psql('postgres', 'SELECT stripe_idem_wake_sweeper()');
ok($node->poll_query_until('postgres', $pausing), 'a new pass pauses again after the reload back to 1s');
is($node->safe_psql('postgres', 'SELECT stripe_idem_wake_sweeper(true)'), 't', 'a hurried wake request');
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM stripe_idempotency_keys WHERE operation_type = '$t2'"),
	'the pass under way finishes without its pauses');

# ... and a hurried pass started from idle makes none either; afterwards
# the pauses are back for the next plain pass.
my $t3 = add_expired(10000);
is($node->safe_psql('postgres', 'SELECT stripe_idem_wake_sweeper(true)'), 't', 'a hurried pass from idle');
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM stripe_idempotency_keys WHERE operation_type = '$t3'"),
	'runs without pauses to the end');
my $t4 = add_expired(10000);
$node->safe_psql('postgres', 'SELECT stripe_idem_wake_sweeper()');
ok($node->poll_query_until('postgres', $pausing), 'the next plain pass pauses again');

# 4. SIGTERM in the middle of a pause ends the pass there.
my $pid = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'stripe_idem sweeper'});
ok($pid =~ /^\d+$/, 'the pausing worker');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'stripe_idem sweeper'}),
	'pg_terminate_backend ends the worker in its pause');
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE '%terminating%' FROM stripe_idem_sweeper WHERE database = 'postgres'}),
	'the pass is reported as ended by the termination');
my $l4 = left($t4);
cmp_ok($l4, '>', 0, "rows are left for the next pass ($l4)");

# 5. Adaptive (-1, the default): the pass still finishes, pausing as it goes.
set_conf('sweep_batch_delay', '-1');
set_conf('sweep_batch_size', '1000');
$node->safe_psql('postgres', 'SELECT stripe_idem_wake_sweeper()');
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM stripe_idempotency_keys WHERE operation_type = '$t4'"),
	'with the adaptive pause the pass deletes the rest');

$node->stop;
done_testing();
