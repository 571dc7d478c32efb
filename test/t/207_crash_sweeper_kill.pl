# The sweeper killed with SIGKILL mid-pass, first the per-database worker,
# then the launcher. Each kill makes the postmaster reinitialize (every
# backend goes, WAL is replayed); afterwards the launcher is back, the
# sweep finishes on its schedule, every live row is still there, and rows
# that were locked during the killed pass were skipped, not deleted.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;

my $expired = 200_000;

my $node = StripeIdemNode::started('sweeper_kill', conf => q{
stripe_idem.sweep_batch_size = 20
restart_after_crash = on
});

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(qq{
	CREATE EXTENSION stripe_idem;
	-- expired, no lease: the sweeper's work
	INSERT INTO stripe_idempotency_keys (operation_type, operation_id,
		stripe_idempotency_key, status, stripe_resource_id, expires_at)
	SELECT 'old', 'op' || g, 'old:op' || g, 'completed', 'ch_x',
		now() - interval '1 day' + g * interval '1 ms'
	FROM generate_series(1, $expired) g;
	-- live: completed, in_progress under a lease, in_progress with a lapsed lease
	SELECT count(*) FROM generate_series(1, 2000) g,
		LATERAL begin_stripe_idempotency('live', 'op' || g, lease => '1 hour', ttl => '2 hours');
	SELECT count(*) FROM stripe_idempotency_keys k,
		LATERAL record_stripe_idempotency(k.operation_type, k.operation_id, k.stripe_idempotency_key, 'cs_live')
		WHERE k.operation_type = 'live' AND k.operation_id::text LIKE 'op1%';
	SELECT count(*) FROM generate_series(1, 300) g,
		LATERAL begin_stripe_idempotency('lapsed', 'op' || g, lease => '1 second', ttl => '1 hour');
	-- expired rows some session keeps locked during the first pass
	INSERT INTO stripe_idempotency_keys (operation_type, operation_id,
		stripe_idempotency_key, status, stripe_resource_id, expires_at)
	SELECT 'locked', 'op' || g, 'locked:op' || g, 'completed', 'ch_x', now() - interval '1 hour'
	FROM generate_series(1, 50) g;
	CHECKPOINT;
});
my $live_sql = q{SELECT count(*) || ' ' || md5(string_agg(k::text, '|' ORDER BY operation_type, operation_id))
	FROM stripe_idempotency_keys k WHERE expires_at > now()};
my $live = sql($live_sql);
like($live, qr/^2300 /, '2,300 live rows');

my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN');
$locker->query_safe(q{SELECT count(*) FROM (SELECT 1 FROM stripe_idempotency_keys WHERE operation_type = 'locked' FOR UPDATE) l});

# Kill one sweeper process with SIGKILL once the pass has committed some
# batches; wait for the server to reinitialize.
sub kill_mid_pass
{
	my ($which) = @_;
	is(sql('SELECT stripe_idem_wake_sweeper()'), 't', "$which round: pass requested");
	ok($node->poll_query_until('postgres', q{
			SELECT last_rows_deleted >= 2000
				AND (last_finished IS NULL OR last_finished < last_started)
			FROM stripe_idem_sweeper}),
		"$which round: the pass is under way");
	my $pid = sql(qq{SELECT pid FROM pg_stat_activity WHERE backend_type = 'stripe_idem $which'});
	like($pid, qr/^\d+$/, "$which round: found the $which");
	my $offset = -s $node->logfile;
	ok(kill('KILL', $pid), "$which round: SIGKILL sent to the $which (pid $pid)");
	$node->wait_for_log(
		qr/terminated by signal 9.*all server processes terminated; reinitializing.*ready to accept connections/s,
		$offset);
	$node->poll_query_until('postgres', 'SELECT 1', '1') or die 'server did not come back';
	ok($node->poll_query_until('postgres', q{
			SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'stripe_idem launcher'}),
		"$which round: the launcher is back after the crash");
	my $left = sql(q{SELECT count(*) FROM stripe_idempotency_keys WHERE operation_type = 'old'});
	ok($left > 0 && $left < $expired, "$which round: the killed pass had deleted part of the expired rows ($left left)");
	is(sql($live_sql), $live, "$which round: every live row is still there, unchanged");
	return $left;
}

kill_mid_pass('sweeper');
eval { $locker->quit; };
is(sql(q{SELECT count(*) FROM stripe_idempotency_keys WHERE operation_type = 'locked'}), '50',
	'the rows locked during the killed pass were skipped, not deleted');

kill_mid_pass('launcher');

# Sweeping on schedule resumes and finishes the job.
sql(q{ALTER SYSTEM SET stripe_idem.sweep_interval = '1s'; SELECT pg_reload_conf();});
ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 0 FROM stripe_idempotency_keys WHERE expires_at <= now() AND locked_until IS NULL}),
	'after the restarts the scheduled sweep deletes every expired row');
is(sql($live_sql), $live, 'every live row is still there, unchanged');
is(sql(q{SELECT passes > 0 AND last_error IS NULL FROM stripe_idem_sweeper}), 't',
	'the sweeper view shows completed passes and no error');
ok(!$node->log_contains('PANIC'), 'no PANIC');

$node->stop;
done_testing();
