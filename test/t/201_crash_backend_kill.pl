# A backend killed with SIGKILL: the postmaster throws every backend out
# and replays WAL, so whatever the victim had not committed disappears and
# whatever it had committed stays, whole. For an operation that means
# either absent or in_progress with its key, never half-written; and the
# next begin behaves as the contract says for that state.
#
#   1. the lease holder is killed inside an open transaction in which it
#      acquired one operation, recorded it, and took over another;
#   2. a caller is killed between begin (committed) and record;
#   3. a caller is killed inside the transaction of its record;
#   4. a caller is killed in the middle of begin, while it waits for a row
#      lock another transaction holds.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;
use Time::HiRes qw(usleep);

my $node = StripeIdemNode::started('kill', conf => q{
restart_after_crash = on
});
$node->safe_psql('postgres', 'CREATE EXTENSION stripe_idem');

my $uuid = qr/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub row
{
	my ($op) = @_;
	return sql(qq{
		SELECT status || ' ' || stripe_idempotency_key || ' ' || attempts || ' '
			|| COALESCE(stripe_resource_id, '-') || ' ' || (response IS NULL)
			|| ' ' || (completed_at IS NULL)
		FROM stripe_idempotency_keys WHERE operation_type = 'kill:test' AND operation_id = '$op'});
}

# SIGKILL one backend and wait until the server has reinitialized and
# accepts connections again.
sub kill_and_recover
{
	my ($pid, @sessions) = @_;
	my $offset = -s $node->logfile;
	ok(kill('KILL', $pid), "SIGKILL sent to backend $pid");
	$node->wait_for_log(qr/terminated by signal 9.*all server processes terminated; reinitializing.*ready to accept connections/s,
		$offset);
	$node->poll_query_until('postgres', 'SELECT 1', '1') or die 'server did not come back';
	for my $s (@sessions)
	{
		eval { $s->quit; };
	}
	pass('server recovered after the kill');
}

#
# 1. The lease holder, inside an open transaction.
#
sql(q{SELECT 1 FROM begin_stripe_idempotency('kill:test', 'taken', lease => '1 second')});
my $taken_key = sql(q{SELECT stripe_idempotency_key FROM check_stripe_idempotency('kill:test', 'taken')});
# its lease runs out: the next begin takes it over
ok($node->poll_query_until('postgres', q{
	SELECT locked_until <= statement_timestamp() FROM stripe_idempotency_keys WHERE operation_id = 'taken'}),
	'its lease ran out');

my $x = $node->background_psql('postgres');
my $x_pid = $x->query_safe('SELECT pg_backend_pid()');
# (a transaction that says it commits before using the key may begin)
$x->query_safe('BEGIN; SET LOCAL stripe_idem.allow_begin_in_transaction = on');
my $x_a = $x->query_safe(q{SELECT state || ' ' || stripe_idempotency_key
	FROM begin_stripe_idempotency('kill:test', 'open-tx')});
like($x_a, qr/^acquired kill:test:open-tx:$uuid$/, 'inside the transaction: acquired a new operation');
is($x->query_safe(q{SELECT recorded FROM record_stripe_idempotency('kill:test', 'open-tx',
	(SELECT stripe_idempotency_key FROM stripe_idempotency_keys WHERE operation_id = 'open-tx'),
	'cs_lost', '{"id": "cs_lost"}')}), 't', 'inside the transaction: recorded it');
is($x->query_safe(q{SELECT state || ' ' || attempts FROM begin_stripe_idempotency('kill:test', 'taken')}),
	'acquired 2', 'inside the transaction: took over an operation whose lease ran out');

kill_and_recover($x_pid, $x);

is(sql(q{SELECT count(*) FROM stripe_idempotency_keys WHERE operation_id = 'open-tx'}), '0',
	'the uncommitted operation is absent');
is(row('taken'), "in_progress $taken_key 1 - true true",
	'the operation taken over in the killed transaction is in_progress with its key and attempt count as before');
my $again = sql(q{SELECT state || ' ' || stripe_idempotency_key || ' ' || attempts
	FROM begin_stripe_idempotency('kill:test', 'open-tx')});
like($again, qr/^acquired kill:test:open-tx:$uuid 1$/, 'the next begin of the absent operation acquires it');
isnt($again, "$x_a 1", '... under a new key (the lost one never reached anybody)');
is(sql(q{SELECT state || ' ' || stripe_idempotency_key || ' ' || attempts
	FROM begin_stripe_idempotency('kill:test', 'taken')}),
	"acquired $taken_key 2", 'the next begin of the in_progress operation takes it over with the same key');

#
# 2. Between begin (committed) and record.
#
my $z = $node->background_psql('postgres');
my $z_pid = $z->query_safe('SELECT pg_backend_pid()');
my $b_key = $z->query_safe(q{SELECT stripe_idempotency_key
	FROM begin_stripe_idempotency('kill:test', 'between', lease => '15 seconds')});
like($b_key, qr/^kill:test:between:$uuid$/, 'begin acquired and committed');

#
# 3. Inside the transaction of record (set up now, so that one lease wait
#    serves both).
#
my $r_key = sql(q{SELECT stripe_idempotency_key
	FROM begin_stripe_idempotency('kill:test', 'in-record', lease => '15 seconds')});

kill_and_recover($z_pid, $z);

my $w = $node->background_psql('postgres');
my $w_pid = $w->query_safe('SELECT pg_backend_pid()');
$w->query_safe('BEGIN');
is($w->query_safe(qq{SELECT recorded FROM record_stripe_idempotency('kill:test', 'in-record',
	'$r_key', 'cs_uncommitted', '{"id": "cs_uncommitted"}')}), 't',
	'record ran inside the open transaction');
kill_and_recover($w_pid, $w);

for my $case ([ 'between', $b_key ], [ 'in-record', $r_key ])
{
	my ($op, $key) = @$case;
	is(row($op), "in_progress $key 1 - true true", "$op: in_progress with its key, no result, after the kill");
}

# While the lease lives, others are told to wait and get no key.
is(sql(q{
	SELECT string_agg(b.state || ' ' || COALESCE(b.stripe_idempotency_key, '-'), ', ' ORDER BY k.operation_id)
	FROM stripe_idempotency_keys k,
		LATERAL begin_stripe_idempotency(k.operation_type, k.operation_id) b
	WHERE k.operation_id IN ('between', 'in-record')
	AND k.locked_until > statement_timestamp()}),
	'in_progress -, in_progress -', 'while the lease lives the next begin answers in_progress without the key');

ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM stripe_idempotency_keys
	WHERE operation_id IN ('between', 'in-record') AND locked_until > statement_timestamp()}),
	'the leases run out');
for my $case ([ 'between', $b_key ], [ 'in-record', $r_key ])
{
	my ($op, $key) = @$case;
	is(sql(qq{SELECT state || ' ' || stripe_idempotency_key || ' ' || attempts
		FROM begin_stripe_idempotency('kill:test', '$op')}), "acquired $key 2",
		"$op: once the lease ran out the next begin takes it over with the same key");
	is(sql(qq{SELECT recorded FROM record_stripe_idempotency('kill:test', '$op', '$key', 'cs_$op')}),
		't', "$op: and records it");
	is(sql(qq{SELECT state || ' ' || stripe_idempotency_key || ' ' || stripe_resource_id
		FROM begin_stripe_idempotency('kill:test', '$op')}), "completed $key cs_$op",
		"$op: a retry replays the result");
}

#
# 4. In the middle of begin, waiting for a row lock.
#
sql(q{SELECT 1 FROM begin_stripe_idempotency('kill:test', 'mid-call', lease => '1 second')});
my $m_key = sql(q{SELECT stripe_idempotency_key FROM check_stripe_idempotency('kill:test', 'mid-call')});
ok($node->poll_query_until('postgres', q{
	SELECT locked_until <= statement_timestamp() FROM stripe_idempotency_keys WHERE operation_id = 'mid-call'}),
	'its lease ran out');

my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN; SET LOCAL stripe_idem.allow_begin_in_transaction = on');
is($holder->query_safe(q{SELECT state FROM begin_stripe_idempotency('kill:test', 'mid-call')}),
	'acquired', 'a transaction takes the operation over and stays open');

my $victim = $node->background_psql('postgres');
my $v_pid = $victim->query_safe('SELECT pg_backend_pid()');
$victim->query_until(qr/calling/, q{
\echo calling
SELECT state FROM begin_stripe_idempotency('kill:test', 'mid-call');
});
ok($node->poll_query_until('postgres', qq{
	SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $v_pid}),
	'the second begin waits inside the function for the row lock');

kill_and_recover($v_pid, $holder, $victim);

is(row('mid-call'), "in_progress $m_key 1 - true true", 'mid-call: in_progress, same key and attempt count as before both transactions');
is(sql(q{SELECT state || ' ' || stripe_idempotency_key || ' ' || attempts
	FROM begin_stripe_idempotency('kill:test', 'mid-call')}), "acquired $m_key 2",
	'mid-call: the next begin takes it over with the same key');

# Nothing anywhere is half-written.
is(sql(q{SELECT count(*) FROM stripe_idempotency_keys
	WHERE (status = 'completed') <> (completed_at IS NOT NULL)
	OR (status = 'completed' AND stripe_resource_id IS NULL AND response IS NULL)
	OR (status = 'in_progress' AND (stripe_resource_id IS NOT NULL OR response IS NOT NULL))}),
	'0', 'no row is half-written');
ok(!$node->log_contains('PANIC'), 'no PANIC');

$node->stop;
done_testing();
