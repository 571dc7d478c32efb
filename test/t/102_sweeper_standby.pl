# A streaming standby does not sweep: no launcher runs during recovery,
# the expired rows it replays stay, and nothing in its log complains.
# After promotion the new primary sweeps them.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;

# The primary has sweeping paused, so that the expired rows survive there
# and reach the standby.
my $primary = StripeIdemNode::started('sweeper_primary', init => { allows_streaming => 1 },
	conf => q{
stripe_idem.databases = 'postgres'
});
$primary->safe_psql('postgres', q{
	CREATE EXTENSION stripe_idem;
	INSERT INTO stripe_idempotency_keys (operation_type, operation_id,
		stripe_idempotency_key, status, stripe_resource_id, expires_at)
	SELECT 'standby', 'op' || g, 'standby:' || g, 'completed', 'ch_x',
		now() - interval '1 hour'
	FROM generate_series(1, 50) g;
});
$primary->backup('base');

my $standby = PostgreSQL::Test::Cluster->new('sweeper_standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->append_conf('postgresql.conf', 'stripe_idem.sweep_interval = 1');
$standby->start;
$primary->wait_for_catchup($standby);

# Several intervals go by on the standby.
sleep 4;
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
is($standby->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'stripe_idem%'}),
	'0', 'no launcher and no sweeper on the standby');
is($standby->safe_psql('postgres', 'SELECT stripe_idem_wake_sweeper()'), 'f',
	'waking reports that no launcher runs');
is($standby->safe_psql('postgres',
		q{SELECT database || ' ' || passes || ' ' || (last_started IS NULL) || ' ' || (next_pass_at IS NULL)
		  FROM stripe_idem_sweeper}),
	'postgres 0 true true', 'the view: listed, never swept, no pass scheduled');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM stripe_idempotency_keys'), '50',
	'the expired rows are still there');
my $log = slurp_file($standby->logfile);
unlike($log, qr/ERROR|FATAL|cannot execute/, 'nothing in the standby log complains');

# Promotion: the launcher starts and sweeps.
$standby->promote;
ok($standby->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM stripe_idempotency_keys'),
	'after promotion the expired rows are swept');
ok($standby->poll_query_until('postgres',
		q{SELECT passes > 0 AND total_rows_deleted = 50 FROM stripe_idem_sweeper}),
	'the view counts the pass and the 50 rows');
ok($standby->poll_query_until('postgres', 'SELECT rows_swept FROM stripe_idem_stats', '50'),
	'so does stripe_idem_stats');

$standby->stop('fast');
$primary->stop('fast');
done_testing();
