# synchronous_commit = off is a common setting for busy applications: a
# commit returns before its WAL reaches disk, and a crash loses the last
# fraction of a second of commits. For ordinary rows that is a trade-off;
# for an acquired idempotency key it is the double charge the extension
# exists to prevent (the acknowledged key vanishes, the retry gets a new
# one, Stripe creates a second object). So begin and record make their own
# transaction commit synchronously whatever synchronous_commit says.
#
# The server here runs with synchronous_commit = off and a WAL writer that
# wakes only every 10 seconds, then is stopped with -m immediate right
# after the calls returned: every acknowledged acquire and record must be
# there after the restart. A plain table written the same way shows what
# the setting would otherwise cost.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;

my $node = StripeIdemNode::started('async_commit', conf => q{
synchronous_commit = off
wal_writer_delay = 10s
});
$node->safe_psql('postgres', q{
	CREATE EXTENSION stripe_idem;
	CREATE TABLE control (id int);
	CHECKPOINT;
});

for my $round (1 .. 3)
{
	# One session, every statement its own (autocommit) transaction, each
	# answer read back before the next call.
	my $out = $node->safe_psql('postgres', join("\n",
			"SET synchronous_commit = off;",
			map {
				(   "SELECT 'B', stripe_idempotency_key FROM begin_stripe_idempotency('async', 'r$round-op$_');",
					($_ % 2
						? "SELECT 'R', recorded FROM record_stripe_idempotency('async', 'r$round-op$_',"
						  . " (SELECT stripe_idempotency_key FROM stripe_idempotency_keys WHERE operation_id = 'r$round-op$_'), 'cs_$_');"
						: ()),
					"INSERT INTO control VALUES ($round * 100 + $_);")
			} 1 .. 10));
	my @keys = $out =~ /^B\|(\S+)$/mg;
	my @recorded = $out =~ /^R\|t$/mg;
	is(scalar(@keys) . ' ' . scalar(@recorded), '10 5', "round $round: 10 acquires and 5 records acknowledged");

	$node->stop('immediate');
	$node->start;

	is($node->safe_psql('postgres', qq{
		SELECT string_agg(stripe_idempotency_key, ' ' ORDER BY operation_id::text COLLATE "C")
		FROM stripe_idempotency_keys WHERE operation_id::text LIKE 'r$round-op%'}),
		join(' ', map { $keys[$_] } sort { "op" . ($a + 1) cmp "op" . ($b + 1) } 0 .. 9),
		"round $round: every acknowledged acquire survived the crash with its key");
	is($node->safe_psql('postgres', qq{
		SELECT count(*) FROM stripe_idempotency_keys
		WHERE operation_id::text LIKE 'r$round-op%' AND status = 'completed'}),
		'5', "round $round: every acknowledged record survived the crash");
	note "round $round: the plain table kept "
	  . $node->safe_psql('postgres', "SELECT count(*) FROM control WHERE id / 100 = $round")
	  . ' of its 10 asynchronously committed rows';
}

$node->stop;
done_testing();
