# The background sweeper's rule and what it reports: expired keys go
# within one interval, in every listed database; live keys, live leases
# and rows locked by a caller stay; a listed database without the
# extension (or that does not exist) is logged once, not every pass; the
# views show the numbers this test caused; the settings reject bad values.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;

my $node = StripeIdemNode::started('sweeper_basic', conf => q{
stripe_idem.databases = 'postgres, app2, noext, ghost'
stripe_idem.sweep_interval = 1
});

$node->safe_psql('postgres', q{
	CREATE EXTENSION stripe_idem;
	CREATE DATABASE app2;
	CREATE DATABASE noext;
});
$node->safe_psql('app2', 'CREATE EXTENSION stripe_idem');

# Rows of every kind the rule distinguishes, written directly (and with
# qualified names: one database gets a hostile search_path below).
sub add_rows
{
	my ($db, $tag, $n, $kind) = @_;
	my %cols = (
		expired   => q{'completed', 'ch_x', NULL, pg_catalog.now() - interval '1 hour'},
		# in progress, expired an hour ago: unresolved (its outcome is
		# unknown), kept for stripe_idem.unresolved_retention (30 days)
		abandoned => q{'in_progress', NULL, pg_catalog.now() - interval '2 hours', pg_catalog.now() - interval '1 hour'},
		# the same, expired longer ago than the retention: swept
		forgotten => q{'in_progress', NULL, NULL, pg_catalog.now() - interval '31 days'},
		live      => q{'completed', 'ch_x', NULL, pg_catalog.now() + interval '1 day'},
		leased    => q{'in_progress', NULL, pg_catalog.now() + interval '1 hour', pg_catalog.now() + interval '1 day'},
		soon      => q{'completed', 'ch_x', NULL, pg_catalog.now() + interval '6 s'},
	);
	$node->safe_psql($db, qq{
		INSERT INTO public.stripe_idempotency_keys (operation_type, operation_id,
			stripe_idempotency_key, status, stripe_resource_id, locked_until, expires_at)
		SELECT '$tag', '$kind' || g, '$tag:$kind:' || g, $cols{$kind}
		FROM generate_series(1, $n) g});
}

sub count_rows
{
	my ($db, $where) = @_;
	return $node->safe_psql($db,
		"SELECT count(*) FROM stripe_idempotency_keys WHERE $where");
}

# Wait for the first passes, so that the counters below start from zero.
$node->poll_query_until('postgres',
	q{SELECT passes > 0 FROM stripe_idem_sweeper WHERE database = 'app2'})
  or die "no pass in app2";
$node->safe_psql('postgres', 'SELECT stripe_idem_stats_reset()');
my %before = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
	q{SELECT database, total_rows_deleted FROM stripe_idem_sweeper});

# A caller locks a row in an open transaction, and the row expires while
# it is locked: the sweeper must skip it, not wait for it.
add_rows('postgres', 'sweep', 1, 'soon');
my $locker = $node->background_psql('postgres');
$locker->query_safe(q{BEGIN; SELECT 1 FROM stripe_idempotency_keys
	WHERE operation_id = 'soon1' FOR UPDATE});

# Passes are counted, not seconds: a pass that starts after the rows were
# written deletes them, and the second pass to finish after this point
# started after it.
my %passes_before = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
	q{SELECT database, passes FROM stripe_idem_sweeper WHERE database IN ('postgres', 'app2')});
add_rows('postgres', 'main', 40, 'expired');
add_rows('postgres', 'main', 5, 'abandoned');
add_rows('postgres', 'main', 5, 'forgotten');
add_rows('postgres', 'main', 10, 'live');
add_rows('postgres', 'main', 3, 'leased');
add_rows('app2', 'other', 30, 'expired');
add_rows('app2', 'other', 5, 'live');

for my $db ('postgres', 'app2')
{
	$node->poll_query_until('postgres', qq{
		SELECT passes >= $passes_before{$db} + 2 FROM stripe_idem_sweeper WHERE database = '$db'})
	  or die "no passes in $db";
}
is(count_rows('postgres', q{operation_type = 'main' AND expires_at <= now() AND operation_id NOT LIKE 'abandoned%'}), '0',
	'expired rows are gone within the first pass after they were written');
is(count_rows('postgres', q{operation_type = 'main' AND operation_id LIKE 'abandoned%'}), '5',
	'unresolved rows (in progress, expired inside the retention) stay');
is(count_rows('app2', q{expires_at <= now()}), '0',
	'second database: the same');

is(count_rows('postgres', q{operation_type = 'main'}), '18',
	'live rows, rows with a live lease and unresolved rows stay');
is(count_rows('postgres', q{operation_type = 'main' AND locked_until > now()}), '3',
	'the three leased rows are among them');
is(count_rows('app2', q{true}), '5', 'second database: expired rows gone, live rows stay');

# A pass has run since the locked row expired, and the row is still there.
$node->poll_query_until('postgres', q{
	SELECT last_started > (SELECT expires_at FROM stripe_idempotency_keys WHERE operation_id = 'soon1')
		AND last_finished > last_started
	FROM stripe_idem_sweeper WHERE database = 'postgres'})
  or die "sweeper stuck behind a locked row";
is(count_rows('postgres', q{operation_id = 'soon1'}), '1',
	'an expired row locked by a caller is skipped, and passes go on');
$locker->query_safe('COMMIT');
$locker->quit;
$node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM stripe_idempotency_keys WHERE operation_id = 'soon1'})
  or die "released row not swept";
pass('the row goes once its lock is released');

# The numbers this test caused: 46 rows in postgres (40 expired, 5
# forgotten, the one that was locked), 30 in app2. (The
# counters move right after each commit, so they are polled for.)
ok($node->poll_query_until('postgres', 'SELECT rows_swept FROM stripe_idem_stats', '76'),
	'stripe_idem_stats counts every row swept');
my $want = ($before{postgres} + 46) . ' ' . ($before{app2} + 30);
$node->poll_query_until('postgres', q{
	SELECT string_agg(total_rows_deleted::text, ' ' ORDER BY database DESC)
	FROM stripe_idem_sweeper WHERE database IN ('postgres', 'app2')}, $want);
my $view = $node->safe_psql('postgres', q{
	SELECT database, total_rows_deleted, passes > 0, last_finished IS NOT NULL,
		coalesce(last_error, '-'), next_pass_at > now() - interval '1 s'
	FROM stripe_idem_sweeper WHERE database IN ('postgres', 'app2')});
my %after = map { (split /\|/)[0, 1] } split /\n/, $view;
is($after{postgres} - $before{postgres}, 46, 'sweeper view: rows deleted in postgres');
is($after{app2} - $before{app2}, 30, 'sweeper view: rows deleted in app2');
like($view, qr/^postgres\|\d+\|t\|t\|-\|t$/m, 'postgres: passes, times, no error, next pass');
like($view, qr/^app2\|\d+\|t\|t\|-\|t$/m, 'app2: passes, times, no error, next pass');
is($node->safe_psql('postgres', q{SELECT string_agg(database, ',') FROM stripe_idem_sweeper}),
	'postgres,app2,noext,ghost', 'one row per listed database, in list order');

# No error spam: several more passes, still one line each.
my $passes = $node->safe_psql('postgres',
	q{SELECT passes FROM stripe_idem_sweeper WHERE database = 'postgres'});
$node->poll_query_until('postgres',
	qq{SELECT passes >= $passes + 4 FROM stripe_idem_sweeper WHERE database = 'postgres'})
  or die "sweeper stopped";
my $log = slurp_file($node->logfile);
my @noext = $log =~ /extension "stripe_idem" is not installed in database "noext"/g;
my @ghost = $log =~ /database "ghost" does not exist/g;
is(scalar @noext, 1, 'database without the extension: logged once over many passes');
is(scalar @ghost, 1, 'database that does not exist: logged once over many passes');
unlike($log, qr/ERROR|FATAL/, 'no errors in the server log');
is($node->safe_psql('postgres', q{
	SELECT passes || ' ' || last_error FROM stripe_idem_sweeper WHERE database = 'noext'}),
	'0 extension "stripe_idem" is not installed in this database',
	'the view says why noext is not swept');
is($node->safe_psql('postgres', q{
	SELECT last_started IS NULL AND last_error = 'database "ghost" does not exist'
	FROM stripe_idem_sweeper WHERE database = 'ghost'}),
	't', 'the view says why ghost is not swept');
like($log, qr/stripe_idem sweeper deleted 30 expired keys in database "app2"/,
	'log_sweeps: one line for a pass that deleted rows');

# log_sweeps = off silences that line.
$node->safe_psql('postgres', q{ALTER SYSTEM SET stripe_idem.log_sweeps = off; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', 'SHOW stripe_idem.log_sweeps', 'off');
my $offset = -s $node->logfile;
add_rows('app2', 'quiet', 7, 'expired');
$node->poll_query_until('app2', q{SELECT count(*) = 0 FROM stripe_idempotency_keys WHERE operation_type = 'quiet'})
  or die "quiet rows not swept";
ok(!$node->log_contains('deleted 7 expired keys', $offset), 'log_sweeps = off: no line');

# The owner of a listed database sets a hostile search_path for it: a
# clock that makes every row look expired, an always-true <=. The sweeper,
# a superuser session in that database, must call none of it.
$node->safe_psql('postgres', q{
	CREATE ROLE mallory LOGIN;
	ALTER DATABASE app2 OWNER TO mallory;
});
$node->safe_psql('app2', q{
	CREATE SCHEMA hostile AUTHORIZATION mallory;
	SET ROLE mallory;
	CREATE TABLE hostile.trap (what text);
	GRANT ALL ON hostile.trap TO PUBLIC;
	CREATE FUNCTION hostile.statement_timestamp() RETURNS timestamptz LANGUAGE sql
		AS $$ INSERT INTO hostile.trap VALUES ('statement_timestamp') RETURNING timestamptz '3000-01-01' $$;
	CREATE FUNCTION hostile.now() RETURNS timestamptz LANGUAGE sql
		AS $$ INSERT INTO hostile.trap VALUES ('now') RETURNING timestamptz '3000-01-01' $$;
	CREATE FUNCTION hostile.le(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql
		AS $$ INSERT INTO hostile.trap VALUES ('<=') RETURNING true $$;
	CREATE OPERATOR hostile.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.le);
	ALTER DATABASE app2 SET search_path = hostile, pg_catalog, public;
});
add_rows('app2', 'hostile', 4, 'expired');
$node->poll_query_until('app2', q{SELECT count(*) = 0 FROM public.stripe_idempotency_keys WHERE operation_type = 'hostile'})
  or die "rows under a hostile search_path not swept";
is($node->safe_psql('app2', q{SELECT count(*) FROM public.stripe_idempotency_keys}), '5',
	'a hostile search_path on the database: expired rows swept, live rows kept');
is($node->safe_psql('app2', q{SELECT count(*) FROM hostile.trap}), '0',
	'and nothing of it was called');

# The sweeper shows up in pg_stat_activity by type, attached to no database.
is($node->safe_psql('postgres', q{
	SELECT count(*) || ' ' || count(datname) FROM pg_stat_activity
	WHERE backend_type = 'stripe_idem launcher'}),
	'1 0', 'one launcher, connected to no database');

# Privileges: the view for pg_monitor, waking for superusers.
$node->safe_psql('postgres', q{
	CREATE ROLE plain LOGIN;
	CREATE ROLE watcher LOGIN IN ROLE pg_monitor;
});
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT * FROM stripe_idem_sweeper',
	extra_params => [ '-U', 'plain' ]);
like($err, qr/permission denied/, 'an ordinary role cannot read the sweeper view');
is($node->safe_psql('postgres', 'SELECT count(*) FROM stripe_idem_sweeper',
	extra_params => [ '-U', 'watcher' ]), '4', 'pg_monitor can');
($ret, $out, $err) = $node->psql('postgres', 'SELECT stripe_idem_wake_sweeper()',
	extra_params => [ '-U', 'watcher' ]);
like($err, qr/permission denied for function stripe_idem_wake_sweeper/,
	'waking the sweeper is not for everybody');
is($node->safe_psql('postgres', 'SELECT stripe_idem_wake_sweeper()'), 't',
	'a superuser can wake it');
# (SQLSTATE pinned: PostgreSQL words the message differently from 16 on.)
($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\nSHOW stripe_idem.databases",
	extra_params => [ '-U', 'plain' ]);
like($err, qr/ERROR:\s+42501:.*pg_read_all_settings/s,
	'the settings are hidden from ordinary roles');

# The check hooks reject bad values with a reason.
my @bad = (
	[ 'databases', q{'a,,b'}, 'an empty name', qr/List syntax is invalid/ ],
	[ 'databases', q{'a, b, a'}, 'a name twice', qr/Database "a" is listed more than once/ ],
	[ 'databases', "'" . join(',', map { "d$_" } 1 .. 65) . "'", '65 names',
		qr/At most 64 databases can be listed; 65 were given/ ],
	[ 'sweep_role', "'" . ('r' x 64) . "'", 'a name too long',
		qr/A role name is at most 63 bytes long/ ],
	[ 'sweep_batch_size', '0', '0', qr/0 is outside the valid range/ ],
	[ 'sweep_interval', '-1', '-1', qr/-1 s is outside the valid range/ ],
);
for my $case (@bad)
{
	my ($name, $value, $what, $re) = @$case;
	($ret, $out, $err) = $node->psql('postgres', "ALTER SYSTEM SET stripe_idem.$name = $value");
	like($err, $re, "stripe_idem.$name: $what is rejected, with the reason");
}
($ret, $out, $err) = $node->psql('postgres', 'SET stripe_idem.no_such = 1');
like($err, qr/invalid configuration parameter name "stripe_idem.no_such"/,
	'the stripe_idem prefix is reserved');

# Between passes the launcher waits on its own wait event from PostgreSQL
# 17 on (custom wait events), on the generic "Extension" one before.
my $want_event = $node->safe_psql('postgres', 'SHOW server_version_num') >= 170000
  ? 'Extension StripeIdemSweeperLauncherMain' : 'Extension Extension';
ok($node->poll_query_until('postgres', q{
	SELECT wait_event_type || ' ' || wait_event FROM pg_stat_activity
	WHERE backend_type = 'stripe_idem launcher'}, $want_event),
	"the launcher's wait shows as $want_event");

# From PostgreSQL 18 the loaded library says what it is.
if ($node->safe_psql('postgres', 'SHOW server_version_num') >= 180000)
{
	like($node->safe_psql('postgres', q{
		SELECT module_name || ' ' || version FROM pg_get_loaded_modules() WHERE file_name = 'stripe_idem.so'}),
		qr/^stripe_idem \d+\.\d+$/, 'pg_get_loaded_modules() names stripe_idem and its version');
}

# Without the preload the functions say how to enable them.
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''");
$node->restart;
for my $q ('SELECT * FROM stripe_idem_sweeper', 'SELECT stripe_idem_wake_sweeper()')
{
	($ret, $out, $err) = $node->psql('postgres', $q);
	like($err, qr/needs stripe_idem in shared_preload_libraries.*\n.*HINT:  Add stripe_idem to shared_preload_libraries/,
		"without the preload: $q explains itself");
}

$node->stop('fast');
done_testing();
