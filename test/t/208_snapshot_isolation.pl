# Callers in REPEATABLE READ or SERIALIZABLE transactions. When begin or
# record meets a row that another transaction committed after the caller's
# snapshot was taken, the call fails with 40001 (serialization failure:
# retry the transaction), the documented "retry" SQLSTATE, and leaves
# nothing behind; it never answers from a stale view, never acquires an
# operation somebody else holds, never records over another result.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;

my $node = StripeIdemNode::started('snapshots');
$node->safe_psql('postgres', 'CREATE EXTENSION stripe_idem');

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $table_sql = q{SELECT md5(COALESCE(string_agg((k.ctid, k.xmin, k.*)::text, '|' ORDER BY operation_id), ''))
	FROM stripe_idempotency_keys k};

for my $level ('REPEATABLE READ', 'SERIALIZABLE')
{
	(my $tag = lc $level) =~ s/ /-/g;
	for my $case (
		[ 'begin', "SELECT state FROM begin_stripe_idempotency('snap', '$tag-1')",
			"SELECT 1 FROM begin_stripe_idempotency('snap', '$tag-1')" ],
		[ 'record', "SELECT recorded FROM record_stripe_idempotency('snap', '$tag-2', 'late-key-$tag', 'cs_late')",
			"SELECT 1 FROM record_stripe_idempotency('snap', '$tag-2', 'first-key-$tag', 'cs_first')" ],
		[ 'begin after a record', "SELECT state FROM begin_stripe_idempotency('snap', '$tag-3')",
			"SELECT 1 FROM record_stripe_idempotency('snap', '$tag-3', 'key3-$tag', 'cs_3')" ])
	{
		my ($name, $call, $other) = @$case;
		my $s = $node->background_psql('postgres', on_error_stop => 0);
		# The snapshot must be taken before the other session commits, so
		# the call runs in a transaction block, which begin allows only
		# when told the transaction commits before the key is used.
		$s->query_safe("BEGIN ISOLATION LEVEL $level; SET LOCAL stripe_idem.allow_begin_in_transaction = on");
		$s->query_safe('SELECT count(*) FROM stripe_idempotency_keys');	# the snapshot
		sql($other);	# another session commits the operation meanwhile
		my $before = sql($table_sql);
		my ($out, $failed) = $s->query("\\set VERBOSITY sqlstate\n$call");
		like($s->{stderr}, qr/ERROR:  40001/, "$level, $name: fails with 40001") or diag("got: $out");
		$s->query('ROLLBACK');
		$s->quit;
		is(sql($table_sql), $before, "$level, $name: nothing written");
	}
	# A fresh transaction sees the committed row and answers from it.
	is(sql("SET default_transaction_isolation = '$level'; SELECT state FROM begin_stripe_idempotency('snap', '$tag-1');"),
		'in_progress', "$level: retried, begin sees the holder and answers in_progress");
	is(sql("BEGIN ISOLATION LEVEL $level; SELECT recorded || ' ' || stripe_resource_id
		FROM record_stripe_idempotency('snap', '$tag-2', 'late-key-$tag', 'cs_late'); COMMIT;"),
		'false cs_first', "$level: retried, record finds the first result and keeps it");
	is(sql("SET default_transaction_isolation = '$level'; SELECT state || ' ' || stripe_resource_id
		FROM begin_stripe_idempotency('snap', '$tag-3');"),
		'completed cs_3', "$level: retried, begin replays the recorded result");
}

$node->stop;
done_testing();
