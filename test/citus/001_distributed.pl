# The keys distributed on Citus: a coordinator and two workers on
# loopback. stripe_idem_distribute() and its refusals; every API state
# through the coordinator, with the rows in shards on both workers; the
# begin race from eight clients; what key uniqueness holds; cleanup through
# the coordinator and each worker's sweeper emptying its own shards while
# live rows and leases stay; a worker stopped and started again mid-run;
# the shards seen through pg_dist_shard and pg_dist_placement; DROP
# EXTENSION refused while shards exist, and the deliberate way out.
#
# A check that fails does not stop the ones after it: once the cluster is
# up, statements run through sql_on(), which returns the error text (for
# is() to show) instead of dying.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my @nodes;
for my $name (qw(coordinator worker1 worker2))
{
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'citus, stripe_idem'
stripe_idem.databases = 'postgres'
stripe_idem.sweep_interval = 0
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION citus');
	push @nodes, $node;
}
my ($coord, $w1, $w2) = @nodes;
my $port = sub { $_[0]->port };

# Before the nodes are joined, a stand-alone Citus node is its own
# coordinator; stripe_idem_distribute() refuses elsewhere below.
$coord->safe_psql('postgres', qq{
	SELECT pg_catalog.citus_set_coordinator_host('127.0.0.1', ${\ $coord->port});
	SELECT pg_catalog.citus_add_node('127.0.0.1', ${\ $w1->port});
	SELECT pg_catalog.citus_add_node('127.0.0.1', ${\ $w2->port});
	CREATE EXTENSION stripe_idem;
});

# Run SQL on a node; its output, or "ERROR: ..." when it failed (the
# failure is then the check's, and the script goes on).
sub sql_on
{
	my ($node, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql, on_error_stop => 1);
	return $out if $ret == 0;
	diag('port ' . $node->port . ": $err");
	return "ERROR: $err";
}

# A psql call that is expected to fail: its SQLSTATE.
sub sqlstate
{
	my ($node, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY sqlstate\n$sql");
	return $ret == 0 ? 'ok' : ($err =~ /ERROR:\s+(\w{5})/ ? $1 : $err);
}

is(sqlstate($coord, 'SELECT stripe_idem_distribute(0)'), '22023',
	'a shard count below 1 is refused');
is(sqlstate($w1, 'SELECT stripe_idem_distribute()'), '55000',
	'distribute refuses to run on a worker');
is(sql_on($coord, 'SELECT stripe_idem_distribute(8)'), '',
	'distribute runs once on the coordinator');
is(sqlstate($coord, 'SELECT stripe_idem_distribute()'), '42710',
	'a second distribute is refused: already distributed');
is(sql_on($coord, q{
	SELECT pg_catalog.count(*) FROM pg_catalog.pg_dist_object o
	JOIN pg_catalog.pg_proc p ON o.classid = 'pg_proc'::regclass AND o.objid = p.oid
	WHERE p.proname IN ('begin_stripe_idempotency', 'check_stripe_idempotency',
		'record_stripe_idempotency', 'release_stripe_idempotency')
	AND o.distribution_argument_index IS NOT NULL AND o.colocationid IS NOT NULL}),
	'4', 'begin, check, record and release are delegated by operation_id');

# Every state of begin, and check, record and release, through the coordinator.
sub q1 { return sql_on($coord, $_[0]); }
is(q1(q{SELECT state || ' ' || attempts FROM begin_stripe_idempotency('c', 'op1', '{"a": 1}')}),
	'acquired 1', 'begin: acquired');
is(q1(q{SELECT state FROM begin_stripe_idempotency('c', 'op1', '{"a": 1}')}),
	'in_progress', 'begin: in_progress under a live lease');
is(q1(q{SELECT state FROM begin_stripe_idempotency('c', 'op1', '{"a": 2}')}),
	'mismatch', 'begin: mismatch');
my $key = q1(q{SELECT stripe_idempotency_key FROM check_stripe_idempotency('c', 'op1')});
like($key, qr/^c:op1:[0-9a-f-]{36}$/, 'check: found, with the key');
is(q1(qq{SELECT release_stripe_idempotency('c', 'op1', '$key', 1)}), 't', 'release');
is(q1(q{SELECT state || ' ' || attempts || ' ' || stripe_idempotency_key FROM begin_stripe_idempotency('c', 'op1', '{"a": 1}')}),
	"acquired 2 $key", 'begin after release: takeover with the same key');
is(q1(qq{SELECT recorded FROM record_stripe_idempotency('c', 'op1', '$key', 'cs_1', '{"id": "cs_1"}')}),
	't', 'record completes the row');
is(q1(q{SELECT state || ' ' || stripe_resource_id FROM begin_stripe_idempotency('c', 'op1', '{"a": 1}')}),
	'completed cs_1', 'begin: completed, the stored result replayed');
is(q1(q{SELECT found FROM check_stripe_idempotency('c', 'nothing')}), 'f', 'check: not found');

# Many operations: rows land in shards on both workers.
q1(q{SELECT pg_catalog.count(*) FROM pg_catalog.generate_series(1, 40) g,
	LATERAL begin_stripe_idempotency('spread', 'op' || g)});
for my $w ($w1, $w2)
{
	my $n = sql_on($coord, qq{
		SELECT result FROM pg_catalog.run_command_on_placements('stripe_idempotency_keys',
			'SELECT pg_catalog.count(*) FROM %s')
		WHERE nodeport = ${\ $w->port}});
	my $sum = 0;
	$sum += $_ for grep { /^\d+$/ } split /\n/, $n;
	ok($sum > 0, 'worker on port ' . $w->port . ' holds rows');
}

# Eight clients race begin on 50 operations, one autocommit call each.
my $script = join '', map { "SELECT 'race$_ ' || state FROM begin_stripe_idempotency('race', 'r$_');\n" } 1 .. 50;
my @runs;
for my $c (1 .. 8)
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-A', '-t', '-h', $coord->host, '-p', $coord->port, 'postgres' ],
		'<', \$script, '>', \$out, '2>', \$err);
	push @runs, [ $h, \$out, \$err ];
}
my %acquired;
my $errors = 0;
for my $r (@runs)
{
	$r->[0]->finish;
	$errors++ if ${ $r->[2] } =~ /ERROR/;
	for (split /\n/, ${ $r->[1] })
	{
		$acquired{$1}++ if /^(race\d+) acquired$/;
	}
}
is($errors, 0, 'the racing clients got no errors');
is(scalar(grep { $acquired{"race$_"} && $acquired{"race$_"} == 1 } 1 .. 50), 50,
	'exactly one of eight clients acquired each of 50 operations');

# Key uniqueness on Citus: record still refuses, one call after another, a
# key another operation owns, in whichever shard that is...
q1(q{SELECT recorded FROM record_stripe_idempotency('u', 'first', 'client-key-1', 'cs_a')});
my $other_shard = q1(q{
	SELECT 'o' || g FROM pg_catalog.generate_series(1, 100) g
	WHERE pg_catalog.get_shard_id_for_distribution_column('stripe_idempotency_keys', 'o' || g)
	  OPERATOR(pg_catalog.<>) pg_catalog.get_shard_id_for_distribution_column('stripe_idempotency_keys', 'first')
	LIMIT 1});
is(sqlstate($coord, qq{SELECT record_stripe_idempotency('u', '$other_shard', 'client-key-1', 'cs_b')}),
	'23505', 'record refuses a key another operation in another shard owns');
# ...and the table keeps UNIQUE (operation_id, key), but no longer a
# global UNIQUE (key): two rows in two shards can hold one key (what two
# concurrent check-then-record calls could do), as docs/CITUS.md says.
is(sqlstate($coord, q{INSERT INTO stripe_idempotency_keys (operation_type, operation_id,
	stripe_idempotency_key, status, stripe_resource_id, expires_at)
	VALUES ('v', 'first', 'client-key-1', 'completed', 'cs_c', pg_catalog.now() + interval '1 day')}),
	'23505', 'one operation_id cannot hold a key twice');
is(sqlstate($coord, qq{INSERT INTO stripe_idempotency_keys (operation_type, operation_id,
	stripe_idempotency_key, status, stripe_resource_id, expires_at)
	VALUES ('u', '$other_shard', 'client-key-1', 'completed', 'cs_c', pg_catalog.now() + interval '1 day')}),
	'ok', 'two operations in different shards can hold one key (no global unique index)');

# Expiry. Rows of every kind, written through the coordinator into every shard.
sub add_rows
{
	my ($tag, $n, $kind) = @_;
	my %cols = (
		expired   => q{'completed', 'ch_x', NULL, pg_catalog.now() - interval '1 hour'},
		# in progress and expired longer ago than stripe_idem.unresolved_retention
		# (30 days): absent, swept (a fresher one is unresolved and kept)
		abandoned => q{'in_progress', NULL, pg_catalog.now() - interval '32 days', pg_catalog.now() - interval '31 days'},
		live      => q{'completed', 'ch_x', NULL, pg_catalog.now() + interval '1 day'},
		leased    => q{'in_progress', NULL, pg_catalog.now() + interval '1 hour', pg_catalog.now() + interval '1 day'},
		unresolved => q{'in_progress', NULL, pg_catalog.now() - interval '2 hours', pg_catalog.now() - interval '1 hour'},
	);
	q1(qq{INSERT INTO stripe_idempotency_keys (operation_type, operation_id,
		stripe_idempotency_key, status, stripe_resource_id, locked_until, expires_at)
		SELECT '$tag', '$kind' || g, '$tag:$kind:' || g, $cols{$kind}
		FROM pg_catalog.generate_series(1, $n) g});
}
sub count_where
{
	return q1("SELECT pg_catalog.count(*) FROM stripe_idempotency_keys WHERE $_[0]");
}
my $expired = q{expires_at <= pg_catalog.now()};
my $kept_before = count_where("NOT ($expired)");
add_rows('x1', 300, $_) for qw(expired abandoned live leased);

is(sqlstate($coord, 'SELECT cleanup_expired_idempotency_keys(0)'), '22023',
	'cleanup: a batch size below 1 is refused');
is(q1('SELECT cleanup_expired_idempotency_keys(25)'), '600',
	'cleanup through the coordinator deletes every expired row in every shard, in batches');
is(count_where($expired), '0', 'no expired row is left');
is(count_where("NOT ($expired)"), $kept_before + 600, 'live rows and leases stay');
add_rows('x1u', 40, 'unresolved');
is(q1('SELECT cleanup_expired_idempotency_keys(25)'), '0',
	'cleanup keeps unresolved rows (in progress, expired inside the retention) in every shard');
is(q1(q{SELECT pg_catalog.count(*) FROM stripe_idempotency_keys WHERE operation_type = 'x1u'}), '40',
	'all 40 are there');
q1(q{DELETE FROM stripe_idempotency_keys WHERE operation_type = 'x1u'});

# A row locked by a caller is skipped, never waited for.
add_rows('x2', 20, 'expired');
my $psql = $w1->background_psql('postgres', on_error_stop => 0);
my $w1_shard_row = q1(qq{
	SELECT operation_id FROM stripe_idempotency_keys WHERE operation_type = 'x2'
	AND pg_catalog.get_shard_id_for_distribution_column('stripe_idempotency_keys', operation_id)
	  IN (SELECT shardid FROM pg_catalog.pg_dist_shard_placement WHERE nodeport = ${\ $w1->port})
	LIMIT 1});
$psql->query(qq{BEGIN; SELECT 1 FROM stripe_idempotency_keys WHERE operation_type = 'x2'
	AND operation_id = '$w1_shard_row' FOR UPDATE});
is(q1('SELECT cleanup_expired_idempotency_keys()'), '19', 'cleanup skips a row a caller has locked');
$psql->query('COMMIT');
$psql->quit;
is(q1('SELECT cleanup_expired_idempotency_keys()'), '1', 'and deletes it once it is free');

# The sweepers: each worker sweeps the shards it holds.
add_rows('x3', 200, $_) for qw(expired abandoned live leased);
sql_on($_, 'SELECT stripe_idem_wake_sweeper()') for ($coord, $w1, $w2);
ok($coord->poll_query_until('postgres',
	"SELECT pg_catalog.count(*) = 0 FROM stripe_idempotency_keys WHERE $expired"),
	'the workers\' sweepers empty every shard of expired rows');
is(count_where("operation_type = 'x3'"), '400', 'live rows and leases stay');
for my $w ($w1, $w2)
{
	ok($w->poll_query_until('postgres',
		q{SELECT total_rows_deleted > 0 AND last_error IS NULL FROM stripe_idem_sweeper}),
		'the sweeper view on port ' . $w->port . ' shows its own deletions');
}
ok($coord->poll_query_until('postgres',
	q{SELECT passes > 0 AND last_error IS NULL FROM stripe_idem_sweeper}),
	'the coordinator\'s sweeper passes without error (it holds no shard)');

# Each sweeper says once what it sweeps, not every pass.
my $passes = sql_on($w1, 'SELECT passes FROM stripe_idem_sweeper');
$passes = 0 unless $passes =~ /^\d+$/;
sql_on($w1, 'SELECT stripe_idem_wake_sweeper()');
ok($w1->poll_query_until('postgres', "SELECT passes > $passes FROM stripe_idem_sweeper"),
	'a second sweeper pass on a worker');
my @said = slurp_file($w1->logfile) =~ /distributed by Citus; this node sweeps the (\d+) shards it holds/g;
is(scalar(@said) . ' ' . ($said[0] // ''), '1 4', 'the worker logs once that it sweeps its 4 shards');
@said = slurp_file($coord->logfile) =~ /distributed by Citus; this node sweeps the (\d+) shards it holds/g;
is(join(',', @said), '0', 'the coordinator logs once that it holds no shard');

# A worker stopped in the middle of a run, then started again.
add_rows('x4', 100, 'expired');
$w2->stop('immediate');
is(sqlstate($coord, 'SELECT cleanup_expired_idempotency_keys()'), '08000',
	'cleanup names the worker it cannot reach');
my $on_w1 = q1(qq{SELECT operation_id FROM pg_catalog.generate_series(1, 100) g,
	LATERAL (SELECT 'w' || g AS operation_id) o
	WHERE pg_catalog.get_shard_id_for_distribution_column('stripe_idempotency_keys', operation_id)
	  IN (SELECT shardid FROM pg_catalog.pg_dist_shard_placement WHERE nodeport = ${\ $w1->port})
	LIMIT 1});
is(q1(qq{SELECT state FROM begin_stripe_idempotency('down', '$on_w1')}), 'acquired',
	'operations on the running worker keep working');
$w2->start;
ok($coord->poll_query_until('postgres',
	q{SELECT cleanup_expired_idempotency_keys() >= 0}), 'cleanup works again once the worker is back');
is(count_where($expired), '0', 'and the stopped worker\'s expired rows are gone too');
is(q1(qq{SELECT state FROM begin_stripe_idempotency('down', '$on_w1')}), 'in_progress',
	'the lease taken meanwhile holds');

# The shards and their placements. citus_shards and citus_tables leave out
# tables that belong to an extension, so they show nothing of this one;
# Citus's catalogs do. The query as docs/CITUS.md gives it.
is(sql_on($coord, q{SELECT pg_catalog.count(*) FROM citus_shards
	WHERE table_name = 'stripe_idempotency_keys'::regclass}), '0',
	'citus_shards leaves the extension\'s table out');
my $placements_sql = q{SELECT n.nodename, n.nodeport, count(*) AS shards
FROM pg_dist_shard s
JOIN pg_dist_placement p USING (shardid)
JOIN pg_dist_node n USING (groupid)
WHERE s.logicalrelid = 'stripe_idempotency_keys'::regclass
GROUP BY n.nodename, n.nodeport
ORDER BY n.nodeport;};
my @placed = sort map { (split /\|/)[1] . ' ' . (split /\|/)[2] } grep { /\|/ } split /\n/, sql_on($coord, $placements_sql);
is(join(', ', @placed), join(', ', sort map { $_->port . ' 4' } $w1, $w2),
	'pg_dist_shard and pg_dist_placement: 4 shards on each worker');
my $shards_sql = q{SELECT n.nodeport, s.shardid FROM pg_dist_shard s
	JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)
	WHERE s.logicalrelid = 'stripe_idempotency_keys'::regclass ORDER BY 1, 2};
my $shards_before = sql_on($coord, $shards_sql);

# The distribution cannot be undone: Citus refuses to undistribute a table
# that belongs to an extension (docs/CITUS.md).
isnt(sqlstate($coord, q{SELECT undistribute_table('stripe_idempotency_keys')}), 'ok',
	'undistribute_table is refused');
is(sql_on($coord, $shards_sql), $shards_before, 'and the shards stay where they were');

# DROP EXTENSION on the coordinator is refused while shards exist, with or
# without CASCADE, by the extension's event trigger (src/drop_guard.c),
# before anything is dropped: the same on every PostgreSQL major, whatever
# Citus's drop trigger would make of the table. The hint names the way out.
my $rows = count_where('true');
is(sqlstate($coord, 'DROP EXTENSION stripe_idem'), '2BP01',
	'DROP EXTENSION alone is refused while shards exist');
is(sqlstate($coord, 'DROP EXTENSION stripe_idem CASCADE'), '2BP01',
	'DROP EXTENSION ... CASCADE is refused too');
{
	my ($ret, $out, $err) = $coord->psql('postgres', 'DROP EXTENSION stripe_idem');
	like($err, qr/HINT:  To delete every key deliberately, drop the shards first: SELECT citus_drop_all_shards\('public\.stripe_idempotency_keys'::regclass, 'public', 'stripe_idempotency_keys'\); then DROP EXTENSION stripe_idem\./,
		'the hint names citus_drop_all_shards() with the table\'s schema');
}
is(count_where('true'), $rows, 'and every row is still there');
is(sql_on($coord, $shards_sql), $shards_before, 'and every shard, on the same worker');
for my $node ($coord, $w1, $w2)
{
	is(sql_on($node, q{SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_extension WHERE extname = 'stripe_idem')
		|| ' ' || (SELECT pg_catalog.count(*) FROM pg_catalog.pg_dist_shard
			WHERE logicalrelid = 'stripe_idempotency_keys'::regclass)}),
		'1 8', 'the extension and the shard metadata are still there on port ' . $node->port);
}
for my $w ($w1, $w2)
{
	is(sql_on($w, q{SET citus.override_table_visibility TO off;
		SELECT pg_catalog.count(*) FROM pg_catalog.pg_class
		WHERE relname LIKE 'stripe\_idempotency\_keys\_%' AND relkind = 'r'}), '4',
		'the 4 shard tables are still there on port ' . $w->port);
}

# The deliberate way out, as docs/CITUS.md gives it: drop the shards, then
# the extension; then nothing is left anywhere.
is(sql_on($coord, q{SELECT citus_drop_all_shards('stripe_idempotency_keys'::regclass, 'public', 'stripe_idempotency_keys');}),
	'8', 'citus_drop_all_shards drops the 8 shards');
is(sql_on($coord, q{DROP EXTENSION stripe_idem;}), '', 'then DROP EXTENSION goes through');
for my $node ($coord, $w1, $w2)
{
	is(sql_on($node, q{SET citus.override_table_visibility TO off;
		SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class WHERE relname LIKE 'stripe\_idem%')
		    || ' ' || (SELECT pg_catalog.count(*) FROM pg_catalog.pg_extension WHERE extname = 'stripe_idem')
		    || ' ' || (SELECT pg_catalog.count(*) FROM pg_catalog.pg_dist_partition)
		    || ' ' || (SELECT pg_catalog.count(*) FROM pg_catalog.pg_event_trigger WHERE evtname LIKE 'stripe\_idem%')}),
		'0 0 0 0', 'after citus_drop_all_shards and DROP EXTENSION nothing is left on port ' . $node->port);
}

done_testing();
