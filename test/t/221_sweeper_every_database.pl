# With stripe_idem.databases unset (the default) the sweeper sweeps every
# database that has the extension, including one created, and given the
# extension, after the server started; a database without the extension is
# neither logged nor shown in stripe_idem_sweeper; a database that gets
# the extension is logged once; an explicit list still narrows it. Without
# the preload, CREATE EXTENSION warns that nothing will expire on its own.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('sweeper_every_db');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'stripe_idem'
stripe_idem.sweep_interval = 1
});
$node->start;

is($node->safe_psql('postgres', 'SHOW stripe_idem.databases'), '',
	'stripe_idem.databases is empty by default');

sub add_expired
{
	my ($db, $tag, $n) = @_;
	$node->safe_psql($db, qq{
		INSERT INTO public.stripe_idempotency_keys (operation_type, operation_id,
			stripe_idempotency_key, status, stripe_resource_id, expires_at)
		SELECT '$tag', 'op' || g, '$tag:' || g, 'completed', 'ch_x',
			pg_catalog.now() - interval '1 hour'
		FROM generate_series(1, $n) g});
}

sub left_in
{
	my ($db) = @_;
	return $node->safe_psql($db, 'SELECT count(*) FROM public.stripe_idempotency_keys');
}

$node->safe_psql('postgres', 'CREATE EXTENSION stripe_idem');
add_expired('postgres', 'main', 30);
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM stripe_idempotency_keys'),
	'postgres, which has the extension, is swept without being listed');

# A database created after start, without the extension at first.
$node->safe_psql('postgres', 'CREATE DATABASE late');
$node->safe_psql('postgres', 'CREATE DATABASE noext');
my $passes = $node->safe_psql('postgres',
	q{SELECT passes FROM stripe_idem_sweeper WHERE database = 'postgres'});
ok($node->poll_query_until('postgres',
		qq{SELECT passes >= $passes + 2 FROM stripe_idem_sweeper WHERE database = 'postgres'}),
	'two more passes went by');
is($node->safe_psql('postgres', 'SELECT string_agg(database::text, \',\') FROM stripe_idem_sweeper'),
	'postgres', 'the view lists only the database that has the extension');

$node->safe_psql('late', 'CREATE EXTENSION stripe_idem');
add_expired('late', 'late', 25);
ok($node->poll_query_until('late', 'SELECT count(*) = 0 FROM stripe_idempotency_keys'),
	'a database created and given the extension after start is swept');
ok($node->poll_query_until('postgres', q{
		SELECT total_rows_deleted = 25 AND passes > 0 AND last_error IS NULL
		FROM stripe_idem_sweeper WHERE database = 'late'}),
	'the view shows its pass and its rows');
is($node->safe_psql('postgres', q{SELECT string_agg(database::text, ',' ORDER BY database) FROM stripe_idem_sweeper}),
	'late,postgres', 'one row per database swept; noext is not among them');

my $log = slurp_file($node->logfile);
my @announced = ($log =~ /stripe_idem sweeper: sweeping database "late", where extension "stripe_idem" is installed/g);
is(scalar(@announced), 1, 'the new database is logged once');
unlike($log, qr/not installed in database/, 'databases without the extension are not logged');
unlike($log, qr/ERROR|FATAL/, 'no errors');

# An explicit list narrows it.
$node->append_conf('postgresql.conf', "stripe_idem.databases = 'postgres'\n");
$node->reload;
ok($node->poll_query_until('postgres',
		q{SELECT string_agg(database::text, ',') = 'postgres' FROM stripe_idem_sweeper}),
	'with a list, the view shows the listed database only');
add_expired('late', 'narrow', 10);
$passes = $node->safe_psql('postgres',
	q{SELECT passes FROM stripe_idem_sweeper WHERE database = 'postgres'});
ok($node->poll_query_until('postgres',
		qq{SELECT passes >= $passes + 2 FROM stripe_idem_sweeper WHERE database = 'postgres'}),
	'two more passes went by');
is(left_in('late'), '10', 'a database not listed is not swept');

# Back to the default: late is found again.
$node->adjust_conf('postgresql.conf', 'stripe_idem.databases', "''");
$node->reload;
ok($node->poll_query_until('late', 'SELECT count(*) = 0 FROM stripe_idempotency_keys'),
	'back to the default, late is swept again');
$node->stop;

# Without the preload, CREATE EXTENSION warns that nothing expires on its own.
my $plain = PostgreSQL::Test::Cluster->new('no_preload');
$plain->init;
$plain->start;
my ($out, $err);
$plain->psql('postgres', 'CREATE EXTENSION stripe_idem', stdout => \$out, stderr => \$err,
	on_error_stop => 1);
like($err, qr/WARNING:  stripe_idem is not in shared_preload_libraries: expired keys will not be deleted on their own/,
	'CREATE EXTENSION without the preload says that nothing expires on its own');
like($err, qr/HINT:  Add stripe_idem to shared_preload_libraries/, 'and what to do');
$plain->stop;

done_testing();
