# A lock_timeout or statement_timeout firing inside begin, record or cleanup
# leaves no partial state: every call runs in its caller's statement, and an
# error anywhere in it (here, the timeout interrupting one of the
# function's own SQL statements after earlier ones already ran) undoes all
# of it. The table is compared down to ctid and xmin, so even a write that
# left the same values behind would show.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;
use DeleteGate;

my $node = StripeIdemNode::started('timeouts');
$node->safe_psql('postgres', 'CREATE EXTENSION stripe_idem');

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $fingerprint_sql = q{
	SELECT count(*) || ' ' || md5(COALESCE(string_agg((k.ctid, k.xmin, k.*)::text, '|'
		ORDER BY operation_type, operation_id), ''))
	FROM stripe_idempotency_keys k};

# Run $call with the given timeout setting; expect it to fail with
# $sqlstate while its SQL statement $step runs, and the table to be exactly
# as before.
sub times_out
{
	my ($name, $setting, $call, $sqlstate, $step) = @_;
	my $before = sql($fingerprint_sql);
	my ($stdout, $stderr) = ('', '');
	my $ret = $node->psql('postgres', "\\set VERBOSITY verbose\nSET $setting;\n$call;\n",
		stdout => \$stdout, stderr => \$stderr, on_error_stop => 1);
	isnt($ret, 0, "$name: the call fails");
	like($stderr, qr/ERROR:\s+$sqlstate:/, "$name: with SQLSTATE $sqlstate");
	like($stderr, qr/CONTEXT:(.*\n)*?\s*SQL statement "\Q$step\E/, "$name: while the function's own \"$step...\" ran")
	  if defined $step;
	is(sql($fingerprint_sql), $before, "$name: the table is exactly as before");
}

# A statement_timeout is a query cancel raised by a timer, so where it
# strikes depends on how fast the call got there. The same cancel, sent
# once pg_stat_activity shows the call waiting for a lock the test holds,
# strikes at a point the test knows: $step, with the earlier statements
# already run.
sub cancelled_while_waiting
{
	my ($name, $call, $step) = @_;
	my $before = sql($fingerprint_sql);
	my $caller = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $caller->query_safe('SELECT pg_backend_pid()');
	$caller->query_until(qr/started/, "\\set VERBOSITY verbose\n\\echo started\n$call;\n");
	ok($node->poll_query_until('postgres',
		"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pid"),
		"$name: the call waits for the lock");
	sql("SELECT pg_cancel_backend($pid)");
	$caller->query('SELECT 1');
	like($caller->{stderr}, qr/ERROR:\s+57014:/, "$name: fails with SQLSTATE 57014");
	like($caller->{stderr}, qr/CONTEXT:(.*\n)*?\s*SQL statement "\Q$step\E/,
		"$name: while the function's own \"$step...\" ran");
	$caller->quit;
	is(sql($fingerprint_sql), $before, "$name: the table is exactly as before");
}

# A session that holds row locks in an open transaction.
sub holder
{
	my ($sql) = @_;
	my $h = $node->background_psql('postgres');
	$h->query_safe('BEGIN; SET LOCAL stripe_idem.allow_begin_in_transaction = on');
	$h->query_safe($sql);
	return $h;
}

sub lock_row
{
	my ($op) = @_;
	return holder("SELECT 1 FROM stripe_idempotency_keys WHERE operation_type = 'to:test' AND operation_id = '$op' FOR UPDATE");
}

# Rows to work on: one whose lease ran out, one completed that expired, one
# in_progress with a live lease, one completed.
sql(q{
	SELECT 1 FROM begin_stripe_idempotency('to:test', 'lapsed', lease => '1 second');
	SELECT 1 FROM record_stripe_idempotency('to:test', 'expiring', 'to:test:expiring:key', 'cs_e', NULL, ttl => '1 second');
	SELECT 1 FROM begin_stripe_idempotency('to:test', 'held');
	SELECT 1 FROM begin_stripe_idempotency('to:test', 'done');
});
my $held_key = sql(q{SELECT stripe_idempotency_key FROM stripe_idempotency_keys WHERE operation_id = 'held'});
my $done_key = sql(q{SELECT stripe_idempotency_key FROM stripe_idempotency_keys WHERE operation_id = 'done'});
sql(qq{SELECT 1 FROM record_stripe_idempotency('to:test', 'done', '$done_key', 'cs_done')});
# Wait (on the clock, not a guess) until the one-second lease and ttl ran out.
ok($node->poll_query_until('postgres', q{
	SELECT bool_and(locked_until <= statement_timestamp()) AND bool_or(expires_at <= statement_timestamp())
	FROM stripe_idempotency_keys WHERE operation_id IN ('lapsed', 'expiring')}),
	'the lapsed lease and the expired operation ran out');

# The statements inside the functions where the timeouts fire.
my $takeover = 'UPDATE public.stripe_idempotency_keys SET attempts = attempts';
my $replace = 'UPDATE public.stripe_idempotency_keys SET stripe_idempotency_key = $3';
my $complete = q{UPDATE public.stripe_idempotency_keys SET status = 'completed'};

#
# begin
#
my $h = holder(q{SELECT 1 FROM begin_stripe_idempotency('to:test', 'new-op')});
times_out('begin, a new operation another transaction is inserting', "lock_timeout = '300ms'",
	q{SELECT * FROM begin_stripe_idempotency('to:test', 'new-op')}, '55P03', 'INSERT');
$h->quit;
is(sql(q{SELECT count(*) FROM stripe_idempotency_keys WHERE operation_id = 'new-op'}), '0',
	'begin: the other transaction rolled back, nothing of the operation is left');

$h = lock_row('lapsed');
times_out('begin, taking over a lapsed lease', "lock_timeout = '300ms'",
	q{SELECT * FROM begin_stripe_idempotency('to:test', 'lapsed')}, '55P03', $takeover);
times_out('begin, taking over a lapsed lease (statement_timeout)', "statement_timeout = '300ms'",
	q{SELECT * FROM begin_stripe_idempotency('to:test', 'lapsed')}, '57014', undef);
cancelled_while_waiting('begin, taking over a lapsed lease (cancel)',
	q{SELECT * FROM begin_stripe_idempotency('to:test', 'lapsed')}, $takeover);
$h->quit;

$h = lock_row('expiring');
times_out('begin, replacing an expired operation', "lock_timeout = '300ms'",
	q{SELECT * FROM begin_stripe_idempotency('to:test', 'expiring')}, '55P03', $replace);
$h->quit;

#
# record
#
$h = lock_row('held');
times_out('record, completing an in_progress operation', "lock_timeout = '300ms'",
	qq{SELECT * FROM record_stripe_idempotency('to:test', 'held', '$held_key', 'cs_held')}, '55P03', $complete);
times_out('record, completing an in_progress operation (statement_timeout)', "statement_timeout = '300ms'",
	qq{SELECT * FROM record_stripe_idempotency('to:test', 'held', '$held_key', 'cs_held')}, '57014', undef);
cancelled_while_waiting('record, completing an in_progress operation (cancel)',
	qq{SELECT * FROM record_stripe_idempotency('to:test', 'held', '$held_key', 'cs_held')}, $complete);
$h->quit;

$h = holder(q{SELECT 1 FROM begin_stripe_idempotency('to:test', 'racing')});
times_out('record, inserting an operation another transaction is inserting', "lock_timeout = '300ms'",
	q{SELECT * FROM record_stripe_idempotency('to:test', 'racing', 'some-key', 'cs_racing')}, '55P03', 'INSERT');
$h->quit;

# The rows are still usable as the contract says.
is(sql(q{SELECT state || ' ' || attempts FROM begin_stripe_idempotency('to:test', 'lapsed')}),
	'acquired 2', 'after the timeouts: the lapsed operation is taken over, attempts counted once');
is(sql(qq{SELECT recorded FROM record_stripe_idempotency('to:test', 'held', '$held_key', 'cs_held')}),
	't', 'after the timeouts: the held operation is recorded');

#
# cleanup: an error after many batches were already deleted undoes them
# all. Where the error strikes is the test's choice, not the machine's
# speed: a trigger makes the delete of row op-50 (in the tenth batch of
# five, oldest first) wait for an advisory lock this test holds, so the call
# is known to be blocked there with nine batches behind it. Deleted-tuple
# counters include aborted deletes, which shows that those batches did run.
#
sql(q{
	INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key,
		status, stripe_resource_id, created_at, updated_at, completed_at, expires_at)
	SELECT 'to:old', 'op-' || i, 'to:old:op-' || i, 'completed', 'cs_' || i,
		now() - interval '2 days', now() - interval '2 days', now() - interval '2 days',
		now() - interval '1 day' + i * interval '1 ms'
	FROM generate_series(1, 60000) i;
});
DeleteGate::install($node, 'postgres', 'op-50', $DeleteGate::ADVISORY_WAIT);
my $gate = DeleteGate::hold_advisory($node, 'postgres');

sub deletes_so_far
{
	return sql(q{SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'stripe_idempotency_keys'});
}

# A session's table counters reach the view when it ends: wait for them.
sub deleted_since
{
	my ($before, $n) = @_;
	return $node->poll_query_until('postgres', qq{
		SELECT n_tup_del >= $before + $n FROM pg_stat_user_tables WHERE relname = 'stripe_idempotency_keys'});
}

# lock_timeout fires only once the call waits, that is at op-50.
my $del_before = deletes_so_far();
times_out('cleanup, nine batches in (lock_timeout)', "lock_timeout = '300ms'",
	q{SELECT cleanup_expired_idempotency_keys(5)}, '55P03', 'WITH deleted');
ok(deleted_since($del_before, 45), 'cleanup (lock_timeout): the error came after nine batches had been deleted');
is(sql(q{SELECT count(*) FROM stripe_idempotency_keys WHERE operation_type = 'to:old'}), '60000',
	'cleanup (lock_timeout): every expired row is still there');

# The cancel, sent once the call waits at op-50: 57014 with nine batches
# behind it.
$del_before = deletes_so_far();
cancelled_while_waiting('cleanup, nine batches in (cancel)',
	q{SELECT cleanup_expired_idempotency_keys(5)}, 'WITH deleted');
ok(deleted_since($del_before, 45), 'cleanup (cancel): the cancel came after nine batches had been deleted');

# statement_timeout itself: wherever its timer fires (at op-50 on any
# machine fast enough to delete nine batches in 300 ms, earlier on a slower
# one), the call fails with 57014 and leaves nothing behind.
times_out('cleanup (statement_timeout)', "statement_timeout = '300ms'",
	q{SELECT cleanup_expired_idempotency_keys(5)}, '57014', undef);
is(sql(q{SELECT count(*) FROM stripe_idempotency_keys WHERE operation_type = 'to:old'}), '60000',
	'cleanup (statement_timeout): every expired row is still there');

$gate->quit;
DeleteGate::remove($node, 'postgres');

# cleanup never waits for locked rows, so a lock_timeout cannot fire: the
# locked expired row is skipped, everything else goes.
$h = holder(q{SELECT 1 FROM stripe_idempotency_keys WHERE operation_id = 'op-1' FOR UPDATE});
my ($stdout, $stderr) = ('', '');
$node->psql('postgres', "SET lock_timeout = '100ms';\nSELECT cleanup_expired_idempotency_keys(50000);",
	stdout => \$stdout, stderr => \$stderr);
is($stdout, '60000', 'cleanup skips the locked row instead of waiting for it (and deletes the rest)');
is($stderr, '', 'cleanup: no error');
$h->quit;
is(sql(q{SELECT string_agg(operation_id, ',' ORDER BY operation_id) FROM stripe_idempotency_keys
	WHERE expires_at <= now()}), 'op-1', 'cleanup: only the locked expired row is left');

$node->stop;
done_testing();
